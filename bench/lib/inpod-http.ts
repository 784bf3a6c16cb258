/**
 * The request/response side of the in-pod benchmark (bench/inpod-bench.ts),
 * one script with two modes, each run inside a lab pod with `ip netns exec`:
 *
 *   node inpod-http.js server <ip> <port>
 *     HTTP/1.1 server: reads the request body, answers with `responseBytes`
 *     (1 KiB) of payload. Prints one JSON line {"ev":"ready"} once listening;
 *     exits when stdin closes (the driver ends it) or on SIGTERM.
 *
 *   node inpod-http.js load '<LoadArgs as JSON>'
 *     Open-loop load generator: POSTs `bodyBytes` at a fixed rate for
 *     `seconds` (after `warmupSeconds` not recorded), with or without
 *     keep-alive, and prints one JSON line (LoadResult) at the end. Without
 *     keep-alive every request is a new TCP connection (`Connection: close`),
 *     so in the mesh each one is a new capture + HBONE stream.
 *
 * Latency is from the moment the request is issued (connect included) to the
 * end of the response body, in ms. The schedule is fixed in advance; when
 * the generator falls behind it sends the late requests at once (so slowness
 * shows up as latency, not as a lower rate), up to `maxInFlight`.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { runOpenLoop } from './open-loop.js';
import { answer1KiB, readyAfter, stopOnStdinEnd } from './pod-server.js';

export interface LoadArgs {
  readonly host: string;
  readonly port: number;
  readonly rps: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly bodyBytes: number;
  readonly keepAlive: boolean;
  readonly maxInFlight?: number;
  readonly timeoutMs?: number;
}

export interface LoadResult {
  readonly sent: number;
  readonly completed: number;
  readonly errors: number;
  /** Requests not sent because maxInFlight was reached. */
  readonly skipped: number;
  readonly firstErrors: readonly string[];
  readonly seconds: number;
  /** Completed requests per second over the recorded window. */
  readonly achievedRps: number;
  /** Latencies (ms) of the requests issued in the recorded window, in issue order. */
  readonly latencyMs: readonly number[];
  /** TCP connections the client opened (sockets created) over the whole run. */
  readonly connections: number;
}

function runServer(host: string, port: number): void {
  const server = http.createServer(answer1KiB);
  server.keepAliveTimeout = 5000;
  server.listen(port, host, readyAfter(1));
  stopOnStdinEnd(() => {
    server.close();
    server.closeAllConnections();
  });
}

async function runLoad(a: LoadArgs): Promise<LoadResult> {
  const body = Buffer.alloc(a.bodyBytes, 0x62);
  const agent = new http.Agent({ keepAlive: a.keepAlive, maxSockets: a.keepAlive ? 64 : Infinity });
  let connections = 0;
  const timeoutMs = a.timeoutMs ?? 5000;
  const latencyMs: number[] = [];
  const firstErrors: string[] = [];
  let completed = 0;
  let errors = 0;
  let recordEnd = Number.NaN;

  const one = (warmup: boolean): Promise<void> =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      let done = false;
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        if (!warmup) {
          if (err) {
            errors++;
            if (firstErrors.length < 5) firstErrors.push(err.message);
          } else {
            completed++;
            latencyMs.push(Math.round((performance.now() - t0) * 1000) / 1000);
            recordEnd = performance.now();
          }
        }
        resolve();
      };
      const req = http.request(
        {
          host: a.host,
          port: a.port,
          method: 'POST',
          path: '/',
          agent,
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length), ...(a.keepAlive ? {} : { connection: 'close' }) },
        },
        (res) => {
          res.on('data', () => undefined);
          res.on('end', () => finish(res.statusCode === 200 ? undefined : new Error(`status ${res.statusCode}`)));
          res.on('error', finish);
        },
      );
      req.on('socket', (s) => {
        if (!(s as { __counted?: boolean }).__counted) {
          (s as { __counted?: boolean }).__counted = true;
          connections++;
        }
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
      req.on('error', finish);
      req.end(body);
    });

  // Latency here runs from the moment the request is issued (connect included).
  const { sent, skipped, recordStart } = await runOpenLoop({ rps: a.rps, seconds: a.seconds, warmupSeconds: a.warmupSeconds, maxInFlight: a.maxInFlight ?? 256 }, (_i, _due, warmup) => one(warmup));
  agent.destroy();
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
    connections,
  };
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server') {
  runServer(rest[0] ?? '0.0.0.0', Number(rest[1] ?? 8080));
} else if (mode === 'load') {
  const result = await runLoad(JSON.parse(rest[0] ?? '{}') as LoadArgs);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  process.stderr.write('usage: inpod-http.js server <ip> <port> | load <json>\n');
  process.exitCode = 64;
}
