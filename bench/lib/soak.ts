/**
 * The soak: a steady open-loop keep-alive HTTP load plus long-lived
 * checksummed streams through the mesh (client pod on node-a, server pod on
 * node-b, so every byte crosses an HBONE tunnel between the two agents) for
 * a fixed time, sampling each agent's RSS and open fds and the client's p99
 * per interval, then judging the run against stated tolerances:
 *
 *   - RSS: no agent grows more than `rssGrowth` (20 %) from the end of the
 *     warm-up intervals to the last interval;
 *   - fds: after the load ends and the streams close, each agent's fd count
 *     is back within ± `fdDelta` (10) of its count before the load;
 *   - integrity: zero stream integrity errors and zero HTTP errors;
 *   - latency: the last interval's p99 is below `p99Ratio` (3) x the first
 *     recorded interval's p99 (with a floor, `p99FloorMs`, so a 2 ms
 *     baseline on a noisy shared machine does not fail on scheduler jitter);
 *   - rate: the achieved request rate is at least 90 % of the target.
 *
 * Used by scripts/soak.mjs (`npm run soak`, 10 minutes by default) and by
 * test/chaos/chaos-soak.test.ts (60 s in CI). Needs root (the lab).
 */
import { readdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labDown, labStatus, labUp, type LabHandle } from '../../src/lab/lab.js';
import type { SoakClientArgs, SoakClientDone, SoakClientInterval } from './soak-pod.js';

export interface SoakTolerances {
  readonly rssGrowth: number;
  readonly fdDelta: number;
  readonly p99Ratio: number;
  readonly p99FloorMs: number;
  readonly minRateFraction: number;
}

export const DEFAULT_SOAK_TOLERANCES: SoakTolerances = { rssGrowth: 0.2, fdDelta: 10, p99Ratio: 3, p99FloorMs: 25, minRateFraction: 0.9 };

export interface SoakOptions {
  /** Lab name (unique per run). */
  readonly name: string;
  readonly seconds: number;
  readonly intervalSeconds: number;
  readonly rps: number;
  readonly streams: number;
  /** Intervals excluded from the RSS baseline (the baseline is the last warm-up interval). Default 1. */
  readonly warmupIntervals?: number;
  readonly tolerances?: Partial<SoakTolerances>;
  /** Progress lines (one per interval). */
  readonly log?: (line: string) => void;
}

export interface AgentSample {
  readonly node: string;
  readonly pid: number;
  readonly rssKiB: number;
  readonly fds: number;
}

export interface SoakIntervalRow extends SoakClientInterval {
  readonly agents: readonly AgentSample[];
}

export interface SoakResult {
  readonly options: Omit<SoakOptions, 'log'>;
  readonly tolerances: SoakTolerances;
  readonly before: readonly AgentSample[];
  readonly intervals: readonly SoakIntervalRow[];
  readonly after: readonly AgentSample[];
  readonly done: SoakClientDone;
  readonly achievedRps: number;
  readonly pass: boolean;
  readonly failures: readonly string[];
}

const HTTP_PORT = 8080;
const ECHO_PORT = 8081;

const MANIFEST = `apiVersion: v1
kind: Namespace
metadata:
  name: soak
  labels:
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: soak
  labels: { app: client }
spec:
  nodeName: node-a
  serviceAccountName: client
---
apiVersion: v1
kind: Pod
metadata:
  name: server
  namespace: soak
  labels: { app: server }
spec:
  nodeName: node-b
  serviceAccountName: server
`;

/** RSS (KiB) and open fd count of a process, from /proc. */
export function sampleProcess(pid: number): { rssKiB: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? Number.NaN);
  return { rssKiB: rss, fds: readdirSync(`/proc/${pid}/fd`).length };
}

async function sampleAgents(name: string): Promise<AgentSample[]> {
  const st = await labStatus(name);
  return st.nodes.flatMap((n) => (n.agent?.alive ? [{ node: n.name, pid: n.agent.pid, ...sampleProcess(n.agent.pid) }] : []));
}

/** Judges a finished run; exported so the verdict logic is testable on its own. */
export function judgeSoak(r: Omit<SoakResult, 'pass' | 'failures'>, warmupIntervals: number): string[] {
  const t = r.tolerances;
  const f: string[] = [];
  if (r.done.integrityErrors > 0) f.push(`${r.done.integrityErrors} stream integrity errors: ${r.done.integrityNotes.join('; ')}`);
  if (r.done.streamsIntact !== r.options.streams) f.push(`${r.done.streamsIntact}/${r.options.streams} streams intact`);
  if (r.done.httpErrors > 0) f.push(`${r.done.httpErrors} HTTP errors`);
  if (r.achievedRps < r.options.rps * t.minRateFraction) f.push(`achieved ${r.achievedRps} rps < ${t.minRateFraction * 100} % of ${r.options.rps}`);
  const base = r.intervals[Math.min(warmupIntervals, r.intervals.length) - 1] ?? r.intervals[0];
  const last = r.intervals.at(-1);
  if (!base || !last) return [...f, 'no intervals recorded'];
  for (const a of last.agents) {
    const b = base.agents.find((x) => x.node === a.node);
    if (!b) {
      f.push(`${a.node}: agent missing from the baseline sample (restarted?)`);
      continue;
    }
    if (b.pid !== a.pid) f.push(`${a.node}: agent pid changed ${b.pid} -> ${a.pid} (crashed)`);
    const growth = (a.rssKiB - b.rssKiB) / b.rssKiB;
    if (growth > t.rssGrowth) f.push(`${a.node}: RSS grew ${(growth * 100).toFixed(1)} % (${b.rssKiB} -> ${a.rssKiB} KiB) > ${t.rssGrowth * 100} %`);
  }
  for (const a of r.after) {
    const b = r.before.find((x) => x.node === a.node);
    if (b && Math.abs(a.fds - b.fds) > t.fdDelta) f.push(`${a.node}: ${a.fds} fds after the load vs ${b.fds} before (> ± ${t.fdDelta})`);
  }
  if (r.after.length !== r.before.length) f.push(`agents alive after: ${r.after.length}, before: ${r.before.length}`);
  // p99 drift: first vs last interval holding at least half an interval's worth of requests.
  const full = r.intervals.filter((i) => i.completed >= 0.5 * r.options.rps * r.options.intervalSeconds);
  const first = full[0];
  const lastFull = full.at(-1);
  if (full.length < 2 || !first || !lastFull) f.push(`only ${full.length} full intervals recorded`);
  else {
    const bound = Math.max(first.p99Ms * t.p99Ratio, t.p99FloorMs);
    if (lastFull.p99Ms >= bound) f.push(`p99 drifted: last interval ${lastFull.p99Ms} ms >= ${bound} ms (first ${first.p99Ms} ms)`);
  }
  return f;
}

function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buf = '';
  stream.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) onLine(line);
    }
  });
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const tolerances = { ...DEFAULT_SOAK_TOLERANCES, ...opts.tolerances };
  const warmupIntervals = opts.warmupIntervals ?? 1;
  const log = opts.log ?? (() => undefined);
  const podScript = fileURLToPath(new URL('./soak-pod.js', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'ambit-soak-'));
  const manifests = join(dir, 'soak.yaml');
  writeFileSync(manifests, MANIFEST);
  let lab: LabHandle | undefined;
  let server: ReturnType<LabHandle['spawn']> | undefined;
  let client: ReturnType<LabHandle['spawn']> | undefined;
  try {
    lab = await labUp({ manifests, name: opts.name, mesh: true });
    const serverIp = lab.cluster.workloads.find((w) => w.name === 'server')?.ip;
    if (!serverIp) throw new Error('soak: no server pod in the lab');
    server = lab.spawn('soak/server', [process.execPath, podScript, 'server', serverIp, String(HTTP_PORT), String(ECHO_PORT)], { stdio: ['pipe', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('soak server printed nothing within 10 s')), 10_000);
      server?.stdout?.once('data', () => (clearTimeout(timer), resolve()));
      server?.once('exit', (c) => (clearTimeout(timer), reject(new Error(`soak server exited (${c})`))));
    });
    // One request so the HBONE pool between the agents exists before the fd baseline.
    const warm = await lab.exec('soak/client', ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', '--data', 'x', `http://${serverIp}:${HTTP_PORT}/`], { timeoutMs: 10_000 });
    if (warm.stdout.trim() !== '200') throw new Error(`soak: warm-up request failed: ${warm.stdout} ${warm.stderr}`);
    await new Promise((r) => setTimeout(r, 500));
    const before = await sampleAgents(opts.name);
    log(`before: ${JSON.stringify(before)}`);

    const args: SoakClientArgs = {
      host: serverIp,
      httpPort: HTTP_PORT,
      echoPort: ECHO_PORT,
      rps: opts.rps,
      seconds: opts.seconds,
      intervalSeconds: opts.intervalSeconds,
      streams: opts.streams,
      streamChunkBytes: 1024,
      streamPaceMs: 100,
    };
    const intervals: SoakIntervalRow[] = [];
    const pending: Array<Promise<void>> = [];
    let done: SoakClientDone | undefined;
    const errText: string[] = [];
    client = lab.spawn('soak/client', [process.execPath, podScript, 'client', JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    client.stderr?.on('data', (d: Buffer) => errText.push(d.toString()));
    lines(client.stdout!, (line) => {
      const o = JSON.parse(line) as SoakClientInterval | SoakClientDone;
      if (o.ev === 'done') {
        done = o;
        return;
      }
      pending.push(
        sampleAgents(opts.name).then((agents) => {
          const row = { ...o, agents };
          intervals.push(row);
          log(
            `interval ${o.index}: ${o.completed} ok, ${o.errors} errors, p50 ${o.p50Ms.toFixed(1)} ms, p99 ${o.p99Ms.toFixed(1)} ms, streams ${o.streamsOpen}, ` +
              `${(o.streamBytes / 1024).toFixed(0)} KiB verified, integrity errors ${o.integrityErrors}; ` +
              agents.map((a) => `${a.node} rss ${(a.rssKiB / 1024).toFixed(1)} MiB fds ${a.fds}`).join(', '),
          );
        }),
      );
    });
    const code = await new Promise<number | null>((resolve) => client?.once('exit', (c) => resolve(c)));
    await Promise.all(pending);
    intervals.sort((a, b) => a.index - b.index);
    if (code !== 0 || !done) throw new Error(`soak client exited ${code} without a result: ${errText.join('').slice(-2000)}`);
    // Let the agents close what the streams and the HTTP pool held.
    await new Promise((r) => setTimeout(r, 3000));
    const after = await sampleAgents(opts.name);
    log(`after: ${JSON.stringify(after)}`);
    const recorded = intervals.reduce((s, i) => s + i.completed, 0);
    const achievedRps = Math.round((recorded / opts.seconds) * 10) / 10;
    const { log: _log, ...options } = opts;
    const partial = { options, tolerances, before, intervals, after, done: done as SoakClientDone, achievedRps };
    const failures = judgeSoak(partial, warmupIntervals);
    return { ...partial, pass: failures.length === 0, failures };
  } finally {
    client?.kill();
    server?.kill();
    if (lab) await labDown(opts.name).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}
