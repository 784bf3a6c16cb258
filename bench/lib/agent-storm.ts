/**
 * Connection-storm client of the agent benchmark (bench/agent-bench.ts), run
 * inside a lab pod with `ip netns exec`:
 *
 *   node agent-storm.js '<StormArgs as JSON>'
 *
 * Closed loop: `concurrency` workers, each sending one HTTP/1.1 GET with
 * `Connection: close` on a NEW TCP connection (no agent), waiting for the
 * whole answer, then starting the next, for `warmupSeconds` (not recorded)
 * plus `seconds`. In the mesh every request is a new capture on node-a, a new
 * HBONE stream to node-b (on the agents' pooled connection) and a new
 * connection from the node-b agent to the server: what a connection storm
 * costs the agents. Prints one JSON line (StormResult) at the end.
 *
 * Latency is from `http.request()` (connect included) to the end of the body.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';

export interface StormArgs {
  readonly host: string;
  readonly port: number;
  readonly concurrency: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly timeoutMs?: number;
}

export interface StormResult {
  /** Requests (= new connections) completed in the recorded window. */
  readonly completed: number;
  /** Requests completed over the whole run, warm-up included (what the agents' CPU window covers). */
  readonly completedTotal: number;
  readonly errors: number;
  readonly firstErrors: readonly string[];
  readonly seconds: number;
  /** completed / seconds: new connections per second, end to end. */
  readonly rate: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

function pct(sortedMs: readonly number[], p: number): number {
  if (sortedMs.length === 0) return Number.NaN;
  const rank = Math.min(sortedMs.length, Math.max(1, Math.ceil((p / 100) * sortedMs.length)));
  return Math.round((sortedMs[rank - 1] as number) * 1000) / 1000;
}

async function storm(a: StormArgs): Promise<StormResult> {
  const timeoutMs = a.timeoutMs ?? 5000;
  const start = performance.now();
  const recordFrom = start + a.warmupSeconds * 1000;
  const until = recordFrom + a.seconds * 1000;
  const latencies: number[] = [];
  const firstErrors: string[] = [];
  let errors = 0;
  let completedTotal = 0;

  const once = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      let done = false;
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        const t1 = performance.now();
        if (!err) completedTotal++;
        if (t0 >= recordFrom && t1 <= until) {
          if (err) {
            errors++;
            if (firstErrors.length < 5) firstErrors.push(err.message);
          } else latencies.push(t1 - t0);
        }
        resolve();
      };
      const req = http.request({ host: a.host, port: a.port, method: 'GET', path: '/', agent: false, headers: { connection: 'close' } }, (res) => {
        res.on('data', () => undefined);
        res.on('end', () => finish(res.statusCode === 200 ? undefined : new Error(`status ${res.statusCode}`)));
        res.on('error', finish);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
      req.on('error', finish);
      req.end();
    });

  const worker = async (): Promise<void> => {
    while (performance.now() < until) await once();
  };
  await Promise.all(Array.from({ length: a.concurrency }, worker));
  const seconds = a.seconds;
  const s = latencies.sort((x, y) => x - y);
  return {
    completed: s.length,
    completedTotal,
    errors,
    firstErrors,
    seconds,
    rate: Math.round((s.length / seconds) * 10) / 10,
    p50Ms: pct(s, 50),
    p90Ms: pct(s, 90),
    p99Ms: pct(s, 99),
    maxMs: pct(s, 100),
  };
}

const arg = process.argv[2];
if (arg === undefined) {
  process.stderr.write("usage: agent-storm.js '<StormArgs as JSON>'\n");
  process.exitCode = 64;
} else {
  const result = await storm(JSON.parse(arg) as StormArgs);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
