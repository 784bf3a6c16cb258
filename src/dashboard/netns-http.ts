/**
 * HTTP GETs to endpoints inside the lab's network namespaces, from the
 * dashboard process in the host netns, without any route from the host into
 * the lab: the TCP socket is created inside the target netns by the native
 * addon (the same path the agent uses to dial from pods), and Node's HTTP
 * client runs over it. Where the addon is not available, the request runs as
 * `ip netns exec <netns> curl`, which is how `ambit metrics` / `ambit status`
 * reach an agent in the lab (`ambit lab exec --node ...`).
 */
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { basename } from 'node:path';
import { toError } from '../common/errors.js';
import type { NativeBinding } from '../native/binding.js';
import { loadNativeBinding } from '../native/load.js';
import { connectFromNetns } from '../native/sockets.js';
import { DashboardScrapeError } from './errors.js';

export interface HttpTarget {
  /** Netns path (/var/run/netns/x) or name; undefined: the dashboard's own netns. */
  netns?: string;
  host: string;
  port: number;
}

export interface FetchResult {
  status: number;
  body: string;
}

/** GET `path` on `target`; rejects with DashboardScrapeError when nothing answered. */
export type NetnsFetch = (target: HttpTarget, path: string, opts?: { accept?: string; timeoutMs?: number }) => Promise<FetchResult>;

const MAX_BODY = 8 * 1024 * 1024;

function where(t: HttpTarget, path: string): string {
  return `${t.host}:${t.port}${path}${t.netns ? ` in netns ${basename(t.netns)}` : ''}`;
}

/** Fetch over sockets made in the netns by the addon (or plain sockets when no netns is given). */
export function nativeFetch(binding: NativeBinding): NetnsFetch {
  return (t, path, opts = {}) =>
    new Promise((resolve, reject) => {
      const fail = (err: unknown): void => reject(new DashboardScrapeError(`cannot fetch ${where(t, path)}: ${toError(err).message}`, { cause: err }));
      const req = request(
        {
          host: t.host,
          port: t.port,
          path,
          method: 'GET',
          headers: { connection: 'close', ...(opts.accept ? { accept: opts.accept } : {}) },
          // Node uses createConnection only without an agent (agent: false would bring its own).
          ...(t.netns ? { createConnection: () => connectFromNetns(binding, { netns: t.netns as string, host: t.host, port: t.port }) } : { agent: false }),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_BODY) req.destroy(new Error(`answer larger than ${MAX_BODY} bytes`));
            else chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', fail);
        },
      );
      req.setTimeout(opts.timeoutMs ?? 3000, () => req.destroy(new Error('timed out')));
      req.on('error', fail);
      req.end();
    });
}

/** Fetch by running curl inside the netns (`ip netns exec`); slower (a process per request) but needs no addon. */
export function execFetch(): NetnsFetch {
  return (t, path, opts = {}) =>
    new Promise((resolve, reject) => {
      const secs = String(Math.max(1, Math.ceil((opts.timeoutMs ?? 3000) / 1000)));
      const curl = ['curl', '-sS', '--max-time', secs, '-o', '-', '-w', '\n%{http_code}', ...(opts.accept ? ['-H', `accept: ${opts.accept}`] : []), `http://${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}${path}`];
      const argv = t.netns ? ['ip', 'netns', 'exec', basename(t.netns), ...curl] : curl;
      execFile(argv[0] as string, argv.slice(1), { maxBuffer: MAX_BODY, timeout: (opts.timeoutMs ?? 3000) + 2000 }, (err, stdout, stderr) => {
        if (err) return reject(new DashboardScrapeError(`cannot fetch ${where(t, path)}: ${String(stderr).trim() || err.message}`, { cause: err }));
        const out = String(stdout);
        const nl = out.lastIndexOf('\n');
        resolve({ status: Number(out.slice(nl + 1)) || 0, body: out.slice(0, Math.max(0, nl)) });
      });
    });
}

/** The addon's fetch when the addon loads, else the curl one. */
export function defaultFetch(): { fetch: NetnsFetch; how: 'native' | 'curl' } {
  try {
    return { fetch: nativeFetch(loadNativeBinding()), how: 'native' };
  } catch {
    return { fetch: execFetch(), how: 'curl' };
  }
}

/** GET that must answer 200. */
export async function fetchOk(f: NetnsFetch, t: HttpTarget, path: string, opts?: { accept?: string; timeoutMs?: number }): Promise<string> {
  const r = await f(t, path, opts);
  if (r.status !== 200) throw new DashboardScrapeError(`${where(t, path)} answered ${r.status}: ${r.body.trim().slice(0, 200)}`);
  return r.body;
}
