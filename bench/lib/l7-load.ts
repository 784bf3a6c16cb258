/**
 * The request side of the L7 benchmark (bench/l7-bench.ts), run inside lab
 * pods with `ip netns exec`:
 *
 *   node l7-load.js server <ip> <h1Port> <h2cPort>
 *     One process, two listeners: HTTP/1.1 on h1Port and h2c (prior
 *     knowledge) on h2cPort. Every request's body is read and answered with
 *     1 KiB. Prints {"ev":"ready"} once both listen; exits on stdin end or
 *     SIGTERM.
 *
 *   node l7-load.js load '<L7LoadArgs as JSON>'
 *     Open-loop generator at a fixed rate over a fixed set of keep-alive
 *     connections (HTTP/1.1: one request at a time per connection, extra
 *     requests wait in the agent's queue; h2: every connection is one
 *     session, requests are streams). The schedule is fixed in advance, and
 *     latency runs from the scheduled send time, so a stalled proxy shows up
 *     as latency (no coordinated omission). Prints one JSON result line.
 *
 * Saturation is measured with h2load (C, outside this file) when present:
 * a Node generator on a 2-core machine would measure itself.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { performance } from 'node:perf_hooks';
import { runOpenLoop } from './open-loop.js';
import { answer1KiB, readyAfter, stopOnStdinEnd } from './pod-server.js';

export interface L7LoadArgs {
  readonly host: string;
  readonly port: number;
  readonly protocol: 'http1' | 'h2';
  readonly rps: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly bodyBytes: number;
  /** Keep-alive connections (HTTP/1.1) or sessions (h2). */
  readonly connections: number;
  /** Authority sent (Host / :authority); a service hostname through the waypoint. */
  readonly authority?: string;
  readonly timeoutMs?: number;
  readonly maxInFlight?: number;
}

export interface L7LoadResult {
  readonly sent: number;
  readonly completed: number;
  readonly errors: number;
  readonly skipped: number;
  readonly firstErrors: readonly string[];
  readonly seconds: number;
  readonly achievedRps: number;
  /** Latency (ms) from the scheduled send time to the end of the response. */
  readonly latencyMs: readonly number[];
  readonly statusCounts: Readonly<Record<string, number>>;
}

function runServer(host: string, h1Port: number, h2Port: number): void {
  const h1 = http.createServer(answer1KiB);
  h1.keepAliveTimeout = 60_000;
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: 1000 } }, answer1KiB);
  const ready = readyAfter(2);
  h1.listen(h1Port, host, ready);
  h2.listen(h2Port, host, ready);
  stopOnStdinEnd(() => {
    h1.closeAllConnections();
    h1.close();
    h2.close();
  });
}

type Issue = (done: (status: number | Error) => void) => void;

function h1Issuer(a: L7LoadArgs, body: Buffer): { issue: Issue; close(): void } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: a.connections, maxFreeSockets: a.connections });
  const timeoutMs = a.timeoutMs ?? 5000;
  return {
    issue(done) {
      const req = http.request(
        { host: a.host, port: a.port, method: 'POST', path: '/', agent, headers: { host: a.authority ?? `${a.host}:${a.port}`, 'content-type': 'application/octet-stream', 'content-length': String(body.length) } },
        (res) => {
          res.on('data', () => undefined);
          res.on('end', () => done(res.statusCode ?? 0));
          res.on('error', (e) => done(e));
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
      req.on('error', (e) => done(e));
      req.end(body);
    },
    close: () => agent.destroy(),
  };
}

function h2Issuer(a: L7LoadArgs, body: Buffer): { issue: Issue; close(): void } {
  // A server may retire a session (GOAWAY after N requests, as nginx does
  // after 1,000): such a slot is replaced by a new session, as any h2 client
  // pool would, so the retirement costs a connect and not failed requests.
  const open = (): http2.ClientHttp2Session => {
    const s = http2.connect(`http://${a.host}:${a.port}`);
    s.on('error', () => undefined);
    s.on('goaway', () => s.close());
    return s;
  };
  const sessions = Array.from({ length: a.connections }, open);
  let next = 0;
  let closing = false;
  const timeoutMs = a.timeoutMs ?? 5000;
  const pick = (): http2.ClientHttp2Session => {
    const i = next++ % sessions.length;
    let s = sessions[i] as http2.ClientHttp2Session;
    if (!closing && (s.closed || s.destroyed)) {
      s = open();
      sessions[i] = s;
    }
    return s;
  };
  return {
    issue(done) {
      const s = pick();
      let status = 0;
      let finished = false;
      const end = (r: number | Error): void => {
        if (finished) return;
        finished = true;
        done(r);
      };
      try {
        const st = s.request({ ':method': 'POST', ':path': '/', ':authority': a.authority ?? `${a.host}:${a.port}`, 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
        st.setTimeout(timeoutMs, () => st.close(http2.constants.NGHTTP2_CANCEL));
        st.on('response', (h) => (status = Number(h[':status'] ?? 0)));
        st.on('data', () => undefined);
        st.on('end', () => end(status));
        st.on('close', () => end(status === 0 ? new Error(`stream closed (rst ${st.rstCode})`) : status));
        st.on('error', (e) => end(e));
        st.end(body);
      } catch (e) {
        end(e as Error);
      }
    },
    close: () => {
      closing = true;
      sessions.forEach((s) => s.destroy());
    },
  };
}

async function runLoad(a: L7LoadArgs): Promise<L7LoadResult> {
  const body = Buffer.alloc(a.bodyBytes, 0x62);
  const issuer = a.protocol === 'h2' ? h2Issuer(a, body) : h1Issuer(a, body);
  const latencyMs: number[] = [];
  const firstErrors: string[] = [];
  const statusCounts: Record<string, number> = {};
  let completed = 0;
  let errors = 0;
  let recordEnd = Number.NaN;
  // Latency here runs from the request's due time, so a stalled proxy shows up in it.
  const one = (dueAt: number, warmup: boolean): Promise<void> =>
    new Promise<void>((resolve) => {
      issuer.issue((r) => {
        if (!warmup) {
          if (r instanceof Error) {
            errors++;
            if (firstErrors.length < 5) firstErrors.push(r.message);
          } else {
            statusCounts[String(r)] = (statusCounts[String(r)] ?? 0) + 1;
            if (r === 200) {
              completed++;
              latencyMs.push(Math.round((performance.now() - dueAt) * 1000) / 1000);
              recordEnd = performance.now();
            } else {
              errors++;
              if (firstErrors.length < 5) firstErrors.push(`status ${r}`);
            }
          }
        }
        resolve();
      });
    });
  const { sent, skipped, recordStart } = await runOpenLoop({ rps: a.rps, seconds: a.seconds, warmupSeconds: a.warmupSeconds, maxInFlight: a.maxInFlight ?? 2000 }, (_i, dueAt, warmup) => one(dueAt, warmup));
  issuer.close();
  const seconds = (recordEnd - recordStart) / 1000;
  return {
    sent,
    completed,
    errors,
    skipped,
    firstErrors,
    seconds: Math.round(seconds * 1000) / 1000,
    achievedRps: Math.round((completed / seconds) * 10) / 10,
    latencyMs,
    statusCounts,
  };
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server') {
  runServer(rest[0] ?? '0.0.0.0', Number(rest[1] ?? 8080), Number(rest[2] ?? 8081));
} else if (mode === 'load') {
  const result = await runLoad(JSON.parse(rest[0] ?? '{}') as L7LoadArgs);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  process.stderr.write('usage: l7-load.js server <ip> <h1Port> <h2cPort> | load <json>\n');
  process.exitCode = 64;
}
