/**
 * Benchmark endpoint, client side. Runs inside the client pod's netns, like
 * a node agent's outbound side plus an application: an HbonePool and a load
 * generator that reaches the server pod's sink either
 *
 *   direct  plain TCP to podIp:sinkPort (no mesh)
 *   hbone   a CONNECT tunnel through the pool to Ambit's HboneServer on :15008
 *   peer    a CONNECT tunnel through the same pool to the peer proxy (nghttpx)
 *
 * with the same writer (fixed-size writes of one random buffer, with
 * backpressure). Commands: `load` starts N streams that write until `stop`;
 * `setup` measures tunnel/connection setup (open, 1 byte echoed, close).
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { createLogger } from '../src/common/logger.js';
import { formatAuthority } from '../src/hbone/authority.js';
import { HbonePool, type PoolKey } from '../src/hbone/pool.js';
import { configFromArgv, emit, serveCommands } from './lib/control.js';
import { issueFromCaDir } from './lib/certs.js';
import type { ClientConfig, LoadArgs, LoadStarted, LoadStopped, Path, SetupArgs, SetupResult } from './lib/protocol.js';
import { round } from './lib/stats.js';

const cfg = configFromArgv<ClientConfig>();
const log = createLogger({ level: 'warn', format: 'json', destination: process.stderr });
const identity = await issueFromCaDir(cfg.caDir, cfg.trustDomain, cfg.namespace, cfg.serviceAccount);

const pool = new HbonePool({
  identityFor: () => Promise.resolve(identity),
  // The outer HBONE connection must not be half-open (see HbonePoolOptions.dial).
  dial: (dst) => net.connect({ host: dst.host, port: dst.port }),
  logger: log,
});

function keyFor(path: 'hbone' | 'peer'): PoolKey {
  const port = path === 'hbone' ? cfg.hbonePort : cfg.peerPort;
  if (port === undefined) throw new Error('no peer proxy configured');
  return { srcIdentity: identity.identity, dstIdentities: [cfg.serverIdentity], dstHost: cfg.serverIp, dstPort: port };
}

/** Opens a byte stream to serverIp:port over `path`; resolves once it is usable (TCP connected / 200). */
async function open(path: Path, port: number): Promise<Duplex> {
  if (path !== 'direct') return pool.openTunnel(keyFor(path), formatAuthority(cfg.serverIp, port));
  const s = net.connect({ host: cfg.serverIp, port, allowHalfOpen: true });
  try {
    await once(s, 'connect');
  } catch (err) {
    s.destroy();
    throw err;
  }
  return s;
}

/** Waits for a stream to close, destroying it after `ms`. */
async function closed(s: Duplex, ms: number): Promise<void> {
  if (s.destroyed && s.closed) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([once(s, 'close').catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
  if (!s.destroyed) s.destroy();
}

// ------------------------------------------------------------------ bulk load

const chunk = randomBytes(cfg.chunkBytes);

interface Load {
  path: Path;
  streams: Duplex[];
  written: number[];
  errors: string[];
  stopping: boolean;
}
let load: Load | undefined;

function pump(l: Load, s: Duplex, i: number): void {
  s.on('error', (err: Error) => l.errors.push(err.message));
  s.resume(); // the sink sends nothing but its FIN; read it
  const go = (): void => {
    while (!l.stopping && !s.destroyed) {
      l.written[i] = (l.written[i] ?? 0) + chunk.length;
      if (!s.write(chunk)) {
        s.once('drain', go);
        return;
      }
    }
  };
  go();
}

async function startLoad(args: LoadArgs): Promise<LoadStarted> {
  if (load) throw new Error('a load is already running');
  const l: Load = { path: args.path, streams: [], written: [], errors: [], stopping: false };
  load = l;
  const t0 = performance.now();
  l.streams = await Promise.all(Array.from({ length: args.streams }, () => open(args.path, cfg.sinkPort)));
  const openMs = performance.now() - t0;
  l.streams.forEach((s, i) => pump(l, s, i));
  return { streams: l.streams.length, openMs: round(openMs) };
}

/**
 * nghttpx does not pass a client's END_STREAM on a CONNECT tunnel on to its
 * HTTP/1.1 backend, so a peer stream never closes after end(): reset it.
 */
const endsCleanly = (path: Path): boolean => path !== 'peer';

async function stopLoad(): Promise<LoadStopped> {
  const l = load;
  if (!l) throw new Error('no load is running');
  l.stopping = true;
  if (endsCleanly(l.path)) {
    for (const s of l.streams) s.end();
    await Promise.all(l.streams.map((s) => closed(s, 3000)));
  } else {
    for (const s of l.streams) s.destroy();
  }
  load = undefined;
  return { written: l.written, errors: l.errors };
}

// ------------------------------------------------------------------ setup rate

interface Iteration {
  openMs: number;
  firstByteMs: number;
  closedMs: number;
}

/** Open a stream to the echo target, send 1 byte, get it back, end, wait for close (peer: reset). */
async function setupOnce(path: Path): Promise<Iteration> {
  const t0 = performance.now();
  const s = await open(path, cfg.echoPort);
  const t1 = performance.now();
  try {
    const back = once(s, 'data');
    s.write('x');
    await back;
    const t2 = performance.now();
    if (endsCleanly(path)) {
      s.end();
      s.resume();
      await closed(s, 5000);
    } else {
      s.destroy();
    }
    return { openMs: t1 - t0, firstByteMs: t2 - t0, closedMs: performance.now() - t0 };
  } catch (err) {
    s.destroy();
    throw err;
  }
}

async function runSetup(args: SetupArgs): Promise<SetupResult> {
  const iterations: Iteration[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const phase = async (ms: number, record: boolean): Promise<number> => {
    const start = performance.now();
    const deadline = start + ms;
    const worker = async (): Promise<void> => {
      while (performance.now() < deadline) {
        try {
          const it = await setupOnce(args.path);
          if (record) iterations.push(it);
        } catch (err) {
          if (record) {
            errors++;
            firstError ??= err instanceof Error ? err.message : String(err);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: args.concurrency }, worker));
    return performance.now() - start;
  };
  await phase(args.warmupMs, false);
  const elapsedMs = await phase(args.durationMs, true);
  return {
    path: args.path,
    concurrency: args.concurrency,
    completed: iterations.length,
    errors,
    ...(firstError !== undefined ? { firstError } : {}),
    elapsedMs: round(elapsedMs),
    perSecond: round((iterations.length / elapsedMs) * 1000, 1),
    openMs: iterations.map((i) => round(i.openMs)),
    firstByteMs: iterations.map((i) => round(i.firstByteMs)),
    closedMs: iterations.map((i) => round(i.closedMs)),
  };
}

function shutdown(): void {
  pool.destroy();
  for (const s of load?.streams ?? []) s.destroy();
  process.exit(0);
}

serveCommands(
  {
    load: (a) => startLoad(a as LoadArgs),
    stop: () => stopLoad(),
    setup: (a) => runSetup(a as SetupArgs),
    /** One setup iteration (readiness probe of a path). */
    probe: async (a) => setupOnce((a as { path: Path }).path),
    connections: () => ({ hbone: pool.connectionCount(keyFor('hbone')), peer: cfg.peerPort !== undefined ? pool.connectionCount(keyFor('peer')) : 0 }),
    exit: () => {
      setImmediate(shutdown);
      return 'bye';
    },
  },
  shutdown,
);
process.on('SIGTERM', shutdown);
emit({ ev: 'ready', pid: process.pid, identity: identity.identity });
