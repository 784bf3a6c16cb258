/**
 * Idle tunnelled connections for the in-pod benchmark's memory scenario,
 * one script with two modes, each run inside a lab pod with `ip netns exec`:
 *
 *   node idle-conns.js server <ip> <port>
 *     Accepts connections, answers the first byte of each with one byte (so
 *     the client knows the whole path, both agents or both stunnels, is
 *     built) and then holds it open and silent. Exits when stdin closes.
 *
 *   node idle-conns.js open '<IdleArgs as JSON>'
 *     Opens `count` TCP connections (at most `parallel` being set up at a
 *     time), sends one byte on each and waits for its echo, then prints one
 *     JSON line {"ev":"open","open":n,"failed":m,"ms":t} and keeps them all
 *     idle until stdin closes; then closes them and exits.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export interface IdleArgs {
  readonly host: string;
  readonly port: number;
  readonly count: number;
  readonly parallel?: number;
  readonly timeoutMs?: number;
}

export interface IdleOpened {
  readonly ev: 'open';
  readonly open: number;
  readonly failed: number;
  readonly firstErrors: readonly string[];
  readonly ms: number;
}

function serve(host: string, port: number): void {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.once('data', () => s.write('k'));
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  server.listen({ host, port, backlog: 4096 }, () => process.stdout.write('{"ev":"ready"}\n'));
  const stop = (): void => {
    for (const s of sockets) s.destroy();
    server.close();
    process.exit(0);
  };
  process.stdin.on('end', stop).on('close', stop).resume();
  process.on('SIGTERM', stop);
}

function openOne(a: IdleArgs): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: a.host, port: a.port });
    const timer = setTimeout(() => s.destroy(new Error(`timeout after ${a.timeoutMs ?? 10_000} ms`)), a.timeoutMs ?? 10_000);
    s.once('connect', () => s.write('x'));
    s.once('data', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.on('error', () => undefined);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.once('close', () => reject(new Error('closed before the echo')));
  });
}

async function open(a: IdleArgs): Promise<void> {
  const t0 = performance.now();
  const held: net.Socket[] = [];
  const firstErrors: string[] = [];
  let failed = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < a.count) {
      next++;
      try {
        held.push(await openOne(a));
      } catch (err) {
        failed++;
        if (firstErrors.length < 5) firstErrors.push(err instanceof Error ? err.message : String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, a.parallel ?? 50) }, worker));
  const out: IdleOpened = { ev: 'open', open: held.length, failed, firstErrors, ms: Math.round(performance.now() - t0) };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  const stop = (): void => {
    for (const s of held) s.destroy();
    process.exit(0);
  };
  process.stdin.on('end', stop).on('close', stop).resume();
  process.on('SIGTERM', stop);
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server' && rest.length === 2) serve(rest[0] as string, Number(rest[1]));
else if (mode === 'open' && rest.length === 1) await open(JSON.parse(rest[0] as string) as IdleArgs);
else {
  process.stderr.write("usage: idle-conns.js server <ip> <port> | open '<IdleArgs as JSON>'\n");
  process.exitCode = 64;
}
