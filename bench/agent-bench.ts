/**
 * `npm run bench -- --only agent` (and the fourth part of `npm run bench`):
 * the node agent's own cost (issue 5, "Benchmark"), with ztunnel's published
 * figure as the reference.
 *
 *   1. Keep-alive load: 1 KiB HTTP/1.1 POSTs answered with 1 KiB, open loop
 *      at fixed rates (500, 1,000, 2,000/s) from mesh/client to mesh/server
 *      through both agents (pod -> captured 15001 -> agent node-a -> HBONE ->
 *      agent node-b -> pod), and the same over the direct path (outside/legacy
 *      -> outside/legacy-b, no capture, same nodes) for latency. Per step:
 *      each agent's CPU seconds (/proc utime+stime) and RSS (peak VmRSS over
 *      the step), reported as vCPU per 1,000 requests/s and MB, next to
 *      ztunnel's published ~0.06 vCPU and ~12 MB per 1,000 rps.
 *   2. Connection storms: closed loop, `--concurrency` workers each opening a
 *      new TCP connection per request (Connection: close) from mesh/client;
 *      the HBONE connection between the agents is already pooled (checked by
 *      counting established connections to :15008 before and after). Rate of
 *      new tunnelled connections per second, each agent's CPU per
 *      connection and connections per agent CPU-second; direct as reference.
 *   3. Authorization with 1,000 policies: a micro-benchmark of the agent's
 *      per-connection check (ClusterState.policiesFor + authorize()) for
 *      three policy mixes, and end to end: the storm again with 1,000
 *      namespace-wide policies in the control plane's manifest folder against
 *      none, node-b's CPU per connection being the difference.
 *
 * The lab (test/fixtures/bench/inpod.yaml copied into a temp manifest folder)
 * runs with the control plane (`controlPlane: true`), so the agents get
 * workloads, policies and certificates over xDS as in a cluster. Prints a
 * table and writes bench/results/agent-<time>.json and agent-latest.json.
 * The lab and every process started are removed at the end, on failure and
 * on Ctrl-C.
 *
 * Options: --quick (3 s steps, 2 s storms, short micro runs), --seconds S
 * (keep-alive step, 8), --rates a,b,c (500,1000,2000), --warmup S (1),
 * --storm-seconds S (5), --concurrency N (32), --micro-ms MS (per case, 1000),
 * --policies N (1000), --lab NAME (bench-agent), --no-lab (micro-benchmark
 * only, no root needed), --no-authz-e2e. Unknown options are ignored.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { labDown, labUp, type LabHandle, type LabTarget } from '../src/lab/index.js';
import { runAuthzMicro, AUTHZ_CONNECTIONS, type AuthzMicroRow } from './lib/authz-micro.js';
import { policyYaml } from './lib/authz-policies.js';
import type { StormArgs, StormResult } from './lib/agent-storm.js';
import { fmt, Harness, labAgents, machineInfo, num, pad, waitListening, workload, writeResults } from './lib/harness.js';
import type { LoadArgs, LoadResult } from './lib/inpod-http.js';
import { cpuSeconds } from './lib/proc.js';
import { median, percentile, round } from './lib/stats.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/bench/inpod.yaml');
const RESULTS = join(ROOT, 'bench/results');
const HTTP_JS = fileURLToPath(new URL('./lib/inpod-http.js', import.meta.url));
const STORM_JS = fileURLToPath(new URL('./lib/agent-storm.js', import.meta.url));
const HTTP_PORT = 8080;
const HBONE_PORT = 15008;
const NODES = ['node-a', 'node-b'] as const;

/** ztunnel's published figure (issue 5): per 1,000 requests/s of 1 KB HTTP/1.1 keep-alive through two ztunnels. */
const ZTUNNEL = { vcpuPer1000Rps: 0.06, rssMB: 12, source: 'published figure (issue 5): about 0.06 vCPU and 12 MB per 1,000 rps, 1 KB HTTP/1.1 keep-alive' } as const;

const POD = {
  client: { namespace: 'mesh', pod: 'client' },
  server: { namespace: 'mesh', pod: 'server' },
  legacy: { namespace: 'outside', pod: 'legacy' },
  legacyB: { namespace: 'outside', pod: 'legacy-b' },
} as const;
type PodRef = (typeof POD)[keyof typeof POD];

type PathId = 'mesh' | 'direct' | 'inbound';
interface PathDef {
  readonly id: PathId;
  readonly from: PodRef;
  readonly to: PodRef;
  readonly what: string;
}
const MESH: PathDef = { id: 'mesh', from: POD.client, to: POD.server, what: 'mesh/client -> captured 15001 -> agent node-a -> HBONE -> agent node-b -> mesh/server' };
const DIRECT: PathDef = { id: 'direct', from: POD.legacy, to: POD.legacyB, what: 'outside/legacy -> outside/legacy-b, no capture, same nodes' };
/** Plaintext into the mesh: only used to see when node-b's agent has the 1,000 policies (they deny it). */
const INBOUND: PathDef = { id: 'inbound', from: POD.legacy, to: POD.server, what: 'outside/legacy -> captured 15006 in mesh/server -> agent node-b' };

// ------------------------------------------------------------------ parameters

const { values: opt } = parseArgs({
  strict: false,
  options: {
    quick: { type: 'boolean' },
    seconds: { type: 'string' },
    rates: { type: 'string' },
    warmup: { type: 'string' },
    'storm-seconds': { type: 'string' },
    concurrency: { type: 'string' },
    'micro-ms': { type: 'string' },
    policies: { type: 'string' },
    rounds: { type: 'string' },
    'authz-rounds': { type: 'string' },
    lab: { type: 'string' },
    'no-lab': { type: 'boolean' },
    'no-authz-e2e': { type: 'boolean' },
  },
});
const quick = opt.quick === true;
const LAB = typeof opt.lab === 'string' && opt.lab !== '' ? opt.lab : 'bench-agent';
const rates = typeof opt.rates === 'string' ? opt.rates.split(',').map((r) => Math.round(num(r, 1, 'rates'))) : [500, 1000, 2000];
const params = {
  lab: LAB,
  rates,
  stepSeconds: num(opt.seconds, quick ? 3 : 8, 'seconds'),
  warmupSeconds: num(opt.warmup, quick ? 0.5 : 1, 'warmup'),
  requestBytes: 1024,
  responseBytes: 1024,
  stormSeconds: num(opt['storm-seconds'], quick ? 2 : 5, 'storm-seconds'),
  stormWarmupSeconds: quick ? 0.5 : 1,
  concurrency: Math.round(num(opt.concurrency, 32, 'concurrency')),
  microMsPerCase: num(opt['micro-ms'], quick ? 250 : 1000, 'micro-ms'),
  policies: Math.round(num(opt.policies, 1000, 'policies')),
  /** Rounds of every keep-alive step (the table shows medians). */
  rounds: Math.round(num(opt.rounds, quick ? 1 : 2, 'rounds')),
  /** Rounds of (no policies, N policies) storms, alternating. */
  authzRounds: Math.round(num(opt['authz-rounds'], quick ? 1 : 2, 'authz-rounds')),
  runLab: opt['no-lab'] !== true,
  authzE2e: opt['no-authz-e2e'] !== true,
};

const harness = new Harness('agent benchmark');
const t0 = performance.now();
const log = (msg: string): void => console.error(`[agent ${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}`);

// ------------------------------------------------------------------ agents: /proc

function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** What /proc says about an agent process: to show the RSS is the agent's own (no helper processes). */
function processInfo(pid: number): { pid: number; comm: string; threads: number; vmRssMiB: number; vmHwmMiB: number; children: number } {
  let status = '';
  let comm = '?';
  let children = 0;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
    comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').length;
  } catch {
    // gone
  }
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { pid, comm, threads: kib('Threads'), vmRssMiB: round(kib('VmRSS') / 1024, 1), vmHwmMiB: round(kib('VmHWM') / 1024, 1), children };
}

interface AgentUsage {
  readonly wallSeconds: number;
  readonly cpuSeconds: Record<string, number>;
  readonly cpuPercent: Record<string, number>;
  /** VmRSS at the end of the phase and its peak over samples every 200 ms, MiB. */
  readonly rssMiBEnd: Record<string, number>;
  readonly rssMiBPeak: Record<string, number>;
}

/** Runs `fn` while watching both agents: CPU seconds over the call, RSS sampled every 200 ms. */
async function watched<T>(pids: Readonly<Record<string, number>>, fn: () => Promise<T>): Promise<{ result: T; agents: AgentUsage }> {
  const peak: Record<string, number> = {};
  const sample = (): void => {
    for (const [n, pid] of Object.entries(pids)) peak[n] = Math.max(peak[n] ?? 0, rssKiB(pid));
  };
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([n, pid]) => [n, cpuSeconds(pid)]));
  const w0 = performance.now();
  sample();
  const timer = setInterval(sample, 200);
  let result: T;
  try {
    result = await fn();
  } finally {
    clearInterval(timer);
  }
  if (harness.interrupted) throw new Error('interrupted');
  const wall = (performance.now() - w0) / 1000;
  sample();
  const cpu: Record<string, number> = {};
  const pct: Record<string, number> = {};
  const end: Record<string, number> = {};
  const pk: Record<string, number> = {};
  for (const [n, pid] of Object.entries(pids)) {
    const d = cpuSeconds(pid) - (cpu0[n] ?? 0);
    cpu[n] = round(d, 2);
    pct[n] = round((d / wall) * 100, 1);
    end[n] = round(rssKiB(pid) / 1024, 1);
    pk[n] = round((peak[n] ?? Number.NaN) / 1024, 1);
  }
  return { result, agents: { wallSeconds: round(wall, 2), cpuSeconds: cpu, cpuPercent: pct, rssMiBEnd: end, rssMiBPeak: pk } };
}

/** RSS of an empty Node process (same binary, nothing loaded) after 1 s: the floor under any Node agent's RSS. */
async function emptyNodeRssMiB(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    await sleep(1000);
    return child.pid === undefined ? Number.NaN : round(rssKiB(child.pid) / 1024, 1);
  } finally {
    child.kill('SIGKILL');
  }
}

// ------------------------------------------------------------------ load in the pods

async function load(lab: LabHandle, p: PathDef, host: string, a: Omit<LoadArgs, 'host' | 'port'>): Promise<LoadResult> {
  const args: LoadArgs = { host, port: HTTP_PORT, ...a };
  const res = await lab.exec(p.from, [process.execPath, HTTP_JS, 'load', JSON.stringify(args)], { timeoutMs: (a.seconds + a.warmupSeconds + 30) * 1000 });
  if (res.code !== 0) throw new Error(`load generator (${p.id}) failed (exit ${res.code ?? res.signal}): ${res.stderr.trim().slice(-2000)}`);
  return JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as LoadResult;
}

async function storm(lab: LabHandle, p: PathDef, host: string): Promise<StormResult> {
  const args: StormArgs = { host, port: HTTP_PORT, concurrency: params.concurrency, seconds: params.stormSeconds, warmupSeconds: params.stormWarmupSeconds };
  const res = await lab.exec(p.from, [process.execPath, STORM_JS, JSON.stringify(args)], { timeoutMs: (params.stormSeconds + params.stormWarmupSeconds + 30) * 1000 });
  if (res.code !== 0) throw new Error(`storm client (${p.id}) failed (exit ${res.code ?? res.signal}): ${res.stderr.trim().slice(-2000)}`);
  return JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as StormResult;
}

/** Whether a few plaintext/mesh requests on the path get through (true), all fail (false). */
async function answers(lab: LabHandle, p: PathDef, host: string): Promise<boolean | undefined> {
  const r = await load(lab, p, host, { rps: 20, seconds: 0.25, warmupSeconds: 0, bodyBytes: 16, keepAlive: false, timeoutMs: 2000 });
  if (r.errors === 0 && r.completed > 0) return true;
  if (r.completed === 0) return false;
  return undefined;
}

/** Established TCP connections to the HBONE port seen in node-a's netns and the client pod's netns. */
async function hboneConnections(lab: LabHandle): Promise<number> {
  let n = 0;
  for (const target of [{ node: 'node-a' }, POD.client] as LabTarget[]) {
    const r = await lab.exec(target, ['ss', '-Htn', 'state', 'established', `( dport = :${HBONE_PORT} )`], { timeoutMs: 5000 });
    n += r.stdout.split('\n').filter((l) => l.trim() !== '').length;
  }
  return n;
}

// ------------------------------------------------------------------ result rows

interface KeepAliveStep {
  readonly round: number;
  readonly path: 'mesh' | 'direct';
  readonly targetRps: number;
  readonly achievedRps: number;
  readonly sent: number;
  readonly completed: number;
  readonly errors: number;
  readonly skipped: number;
  readonly firstErrors: readonly string[];
  readonly connections: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Requests over the agents' CPU window (recorded + warm-up). */
  readonly requestsInWindow: number;
  readonly agents: AgentUsage;
  /** vCPU per 1,000 requests/s = CPU s / (requests / 1000), per agent; idle-subtracted too. */
  readonly vcpuPer1000Rps: Record<string, number>;
  readonly vcpuPer1000RpsNetOfIdle: Record<string, number>;
  /** vcpuPer1000Rps / ztunnel's 0.06. */
  readonly ratioToZtunnelCpu: Record<string, number>;
  /** Peak RSS MB (1e6 bytes) / ztunnel's 12 MB. */
  readonly ratioToZtunnelRss: Record<string, number>;
}

interface StormRow {
  readonly label: string;
  readonly path: 'mesh' | 'direct';
  readonly policies: number;
  readonly concurrency: number;
  readonly rate: number;
  readonly completed: number;
  readonly completedTotal: number;
  readonly errors: number;
  readonly firstErrors: readonly string[];
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly agents: AgentUsage;
  /** CPU ms per new connection, per agent (over the whole storm, warm-up included). */
  readonly cpuMsPerConnection: Record<string, number>;
  /** New connections per agent CPU-second: the rate one agent could take with one core of its own. */
  readonly connectionsPerCpuSecond: Record<string, number>;
  readonly hboneConnectionsBefore: number;
  readonly hboneConnectionsAfter: number;
}

/** Medians over the rounds of one (path, rate); RSS is the largest peak. */
interface KeepAliveSummary {
  readonly path: 'mesh' | 'direct';
  readonly targetRps: number;
  readonly rounds: number;
  readonly achievedRps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly cpuPercent: Record<string, number>;
  readonly vcpuPer1000Rps: Record<string, number>;
  readonly vcpuPer1000RpsMin: Record<string, number>;
  readonly vcpuPer1000RpsMax: Record<string, number>;
  readonly vcpuPer1000RpsNetOfIdle: Record<string, number>;
  readonly rssMiBPeak: Record<string, number>;
  readonly ratioToZtunnelCpu: Record<string, number>;
  readonly ratioToZtunnelRss: Record<string, number>;
}

function summarizeKeepAlive(steps: readonly KeepAliveStep[]): KeepAliveSummary[] {
  const out: KeepAliveSummary[] = [];
  for (const rps of params.rates) {
    for (const path of ['mesh', 'direct'] as const) {
      const xs = steps.filter((s) => s.path === path && s.targetRps === rps);
      if (xs.length === 0) continue;
      const m = (f: (s: KeepAliveStep) => number, d = 3): number => round(median(xs.map(f)), d);
      const vcpu = perAgent((n) => m((s) => s.vcpuPer1000Rps[n] ?? Number.NaN, 4));
      const rss = perAgent((n) => Math.max(...xs.map((s) => s.agents.rssMiBPeak[n] ?? Number.NaN)));
      out.push({
        path,
        targetRps: rps,
        rounds: xs.length,
        achievedRps: m((s) => s.achievedRps, 1),
        p50Ms: m((s) => s.p50Ms),
        p99Ms: m((s) => s.p99Ms),
        errors: xs.reduce((a, s) => a + s.errors + s.skipped, 0),
        cpuPercent: perAgent((n) => m((s) => s.agents.cpuPercent[n] ?? Number.NaN, 1)),
        vcpuPer1000Rps: vcpu,
        vcpuPer1000RpsMin: perAgent((n) => Math.min(...xs.map((s) => s.vcpuPer1000Rps[n] ?? Number.NaN))),
        vcpuPer1000RpsMax: perAgent((n) => Math.max(...xs.map((s) => s.vcpuPer1000Rps[n] ?? Number.NaN))),
        vcpuPer1000RpsNetOfIdle: perAgent((n) => m((s) => s.vcpuPer1000RpsNetOfIdle[n] ?? Number.NaN, 4)),
        rssMiBPeak: rss,
        ratioToZtunnelCpu: perAgent((n) => round((vcpu[n] ?? Number.NaN) / ZTUNNEL.vcpuPer1000Rps, 2)),
        ratioToZtunnelRss: perAgent((n) => round(((rss[n] ?? Number.NaN) * 1.048576) / ZTUNNEL.rssMB, 2)),
      });
    }
  }
  return out;
}

function perAgent(f: (n: (typeof NODES)[number]) => number): Record<string, number> {
  return Object.fromEntries(NODES.map((n) => [n, f(n)]));
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadavgStart = os.loadavg();
  const notes: string[] = [];

  // 3a. Micro-benchmark first, before any lab load.
  log(`authorization micro-benchmark: ${params.policies} policies, ${params.microMsPerCase} ms per case`);
  const micro = runAuthzMicro(params.microMsPerCase, params.policies);
  notes.push(...micro.notes);
  const nodeBaselineRssMiB = await emptyNodeRssMiB();

  let keepAlive: KeepAliveStep[] = [];
  const storms: StormRow[] = [];
  let idle: AgentUsage | undefined;
  let topology: Record<string, unknown> = {};
  let authzE2e: Record<string, unknown> | null = null;
  let agentProcesses: Record<string, ReturnType<typeof processInfo>> = {};

  if (!params.runLab) notes.push('--no-lab: only the micro-benchmark ran');
  else if (process.getuid?.() !== 0) notes.push('not root: the lab parts (keep-alive, storms, end-to-end authorization) were skipped');
  else {
    const dir = mkdtempSync(join(os.tmpdir(), 'ambit-agent-bench-'));
    harness.onCleanup('remove manifest dir', async () => rmSync(dir, { recursive: true, force: true }));
    cpSync(FIXTURE, join(dir, 'lab.yaml'));
    await labDown(LAB);
    harness.onCleanup('remove lab', () => labDown(LAB));
    log(`starting lab '${LAB}' with the control plane and one agent per node`);
    const lab = await labUp({ manifests: dir, name: LAB, mesh: true, controlPlane: true });
    const { pids, logFiles } = await labAgents(LAB, NODES);
    const ip = {
      client: workload(lab, 'mesh', 'client').ip,
      server: workload(lab, 'mesh', 'server').ip,
      legacy: workload(lab, 'outside', 'legacy').ip,
      legacyB: workload(lab, 'outside', 'legacy-b').ip,
    };
    const host = (p: PathDef): string => (p.to === POD.server ? ip.server : ip.legacyB);
    topology = { lab: LAB, fixture: 'test/fixtures/bench/inpod.yaml', controlPlane: true, pods: ip, agents: pids, paths: { mesh: MESH.what, direct: DIRECT.what, inbound: INBOUND.what } };
    log(`lab up: agents ${NODES.map((n) => `${n} pid ${pids[n]}`).join(', ')}`);

    for (const target of [POD.server, POD.legacyB]) {
      const w = target === POD.server ? ip.server : ip.legacyB;
      const t = harness.spawnTool(lab, `http server in ${target.namespace}/${target.pod}`, target, [process.execPath, HTTP_JS, 'server', w, String(HTTP_PORT)]);
      await waitListening(lab, target, HTTP_PORT, t);
    }
    for (const p of [MESH, DIRECT, INBOUND]) {
      await harness
        .retry(`probe ${p.id}`, async () => {
          if ((await answers(lab, p, host(p))) !== true) throw new Error('requests fail');
        }, 20_000)
        .catch((err: unknown) => {
          const tails = NODES.map((n) => `agent ${n} log tail:\n${tail(logFiles[n], 8)}`).join('\n');
          throw new Error(`${err instanceof Error ? err.message : String(err)}\n${tails}`);
        });
    }
    log('all paths answer');

    // Idle agents: the baseline subtracted in the "net" column.
    idle = (await watched(pids, () => sleep(quick ? 1500 : 3000))).agents;
    log(`idle agents: cpu % a/b ${NODES.map((n) => fmt(idle?.cpuPercent[n], 1)).join('/')}, RSS MiB ${NODES.map((n) => fmt(idle?.rssMiBEnd[n], 1)).join('/')}`);

    // 1. Keep-alive steps, mesh and direct alternating which goes first.
    // JIT and pool warm-up at the highest rate, not recorded.
    const top = Math.max(...params.rates);
    await load(lab, MESH, host(MESH), { rps: top, seconds: quick ? 1 : 2, warmupSeconds: 0, bodyBytes: params.requestBytes, keepAlive: true });
    log(`warm-up: ${top}/s keep-alive through the agents for ${quick ? 1 : 2} s (not recorded)`);
    keepAlive = [];
    let k = 0;
    const plan = Array.from({ length: params.rounds }, (_, r) => params.rates.map((rps) => ({ round_: r, rps }))).flat();
    for (const { round_, rps } of plan) {
      const order = k++ % 2 === 0 ? [MESH, DIRECT] : [DIRECT, MESH];
      for (const p of order) {
        const m = await watched(pids, () => load(lab, p, host(p), { rps, seconds: params.stepSeconds, warmupSeconds: params.warmupSeconds, bodyBytes: params.requestBytes, keepAlive: true }));
        const r = m.result;
        const requests = r.completed + Math.round(rps * params.warmupSeconds);
        const idlePerS = (n: string): number => (idle ? (idle.cpuSeconds[n] ?? 0) / idle.wallSeconds : 0);
        const per1000 = perAgent((n) => round((m.agents.cpuSeconds[n] ?? Number.NaN) / (requests / 1000), 4));
        const net = perAgent((n) => round(((m.agents.cpuSeconds[n] ?? Number.NaN) - idlePerS(n) * m.agents.wallSeconds) / (requests / 1000), 4));
        const step: KeepAliveStep = {
          round: round_,
          path: p.id === 'mesh' ? 'mesh' : 'direct',
          targetRps: rps,
          achievedRps: r.achievedRps,
          sent: r.sent,
          completed: r.completed,
          errors: r.errors,
          skipped: r.skipped,
          firstErrors: r.firstErrors,
          connections: r.connections,
          p50Ms: percentile(r.latencyMs, 50),
          p90Ms: percentile(r.latencyMs, 90),
          p99Ms: percentile(r.latencyMs, 99),
          maxMs: percentile(r.latencyMs, 100),
          requestsInWindow: requests,
          agents: m.agents,
          vcpuPer1000Rps: per1000,
          vcpuPer1000RpsNetOfIdle: net,
          ratioToZtunnelCpu: perAgent((n) => round((per1000[n] ?? Number.NaN) / ZTUNNEL.vcpuPer1000Rps, 2)),
          ratioToZtunnelRss: perAgent((n) => round(((m.agents.rssMiBPeak[n] ?? Number.NaN) * 1.048576) / ZTUNNEL.rssMB, 2)),
        };
        keepAlive.push(step);
        log(
          `keep-alive ${p.id} ${rps}/s (round ${round_ + 1}/${params.rounds}): ${fmt(r.achievedRps, 0)}/s p50 ${fmt(step.p50Ms, 3)} p99 ${fmt(step.p99Ms, 3)} ms, err ${r.errors + r.skipped}, conns ${r.connections}; agents cpu % a/b ${NODES.map((n) => fmt(m.agents.cpuPercent[n], 1)).join('/')}, vCPU/1000rps ${NODES.map((n) => fmt(per1000[n], 3)).join('/')}, RSS peak MiB ${NODES.map((n) => fmt(m.agents.rssMiBPeak[n], 1)).join('/')}`,
        );
      }
    }

    // 2. Connection storms on a warm pool (the mesh storm's warm-up also warms it).
    const runStorm = async (label: string, p: PathDef, policies: number): Promise<StormRow> => {
      const before = await hboneConnections(lab);
      const m = await watched(pids, () => storm(lab, p, host(p)));
      const after = await hboneConnections(lab);
      const r = m.result;
      const row: StormRow = {
        label,
        path: p.id === 'mesh' ? 'mesh' : 'direct',
        policies,
        concurrency: params.concurrency,
        rate: r.rate,
        completed: r.completed,
        completedTotal: r.completedTotal,
        errors: r.errors,
        firstErrors: r.firstErrors,
        p50Ms: r.p50Ms,
        p99Ms: r.p99Ms,
        agents: m.agents,
        cpuMsPerConnection: perAgent((n) => round(((m.agents.cpuSeconds[n] ?? Number.NaN) * 1000) / r.completedTotal, 3)),
        connectionsPerCpuSecond: perAgent((n) => round(r.completedTotal / (m.agents.cpuSeconds[n] ?? Number.NaN), 0)),
        hboneConnectionsBefore: before,
        hboneConnectionsAfter: after,
      };
      storms.push(row);
      log(
        `storm ${label}: ${fmt(r.rate, 0)} conn/s p50 ${fmt(r.p50Ms, 2)} p99 ${fmt(r.p99Ms, 2)} ms, err ${r.errors}; agents cpu % a/b ${NODES.map((n) => fmt(m.agents.cpuPercent[n], 0)).join('/')}, ms/conn ${NODES.map((n) => fmt(row.cpuMsPerConnection[n], 3)).join('/')}, HBONE conns ${before} -> ${after}`,
      );
      return row;
    };
    await runStorm('mesh', MESH, 0);
    await runStorm('direct', DIRECT, 0);

    agentProcesses = Object.fromEntries(NODES.map((n) => [n, processInfo(pids[n] as number)]));

    // 3b. End to end: the storm with N namespace-wide policies against none.
    if (params.authzE2e) {
      const file = join(dir, 'policies.yaml');
      const write = (text: string): void => {
        writeFileSync(`${file}.tmp`, text);
        renameSync(`${file}.tmp`, file);
      };
      const waitInbound = async (want: boolean, what: string): Promise<number> => {
        const ts = performance.now();
        await harness.retry(what, async () => {
          if ((await answers(lab, INBOUND, ip.server)) !== want) throw new Error(`plaintext legacy -> server still ${want ? 'refused' : 'answered'}`);
        }, 30_000, 100);
        return round((performance.now() - ts) / 1000, 2);
      };
      const pairs: Array<{ none: StormRow; withPolicies: StormRow; propagationSeconds: number }> = [];
      for (let r = 0; r < params.authzRounds; r++) {
        const tag = `round ${r + 1}/${params.authzRounds}`;
        const none = await runStorm(`mesh, no policies (${tag})`, MESH, 0);
        write(policyYaml('worst', params.policies));
        const propagationSeconds = await waitInbound(false, `${params.policies} policies reach node-b`);
        log(`${params.policies} policies written; node-b's agent denies plaintext after ${fmt(propagationSeconds, 2)} s`);
        const withPolicies = await runStorm(`mesh, ${params.policies} policies (${tag})`, MESH, params.policies);
        rmSync(file, { force: true });
        await waitInbound(true, 'policies removed from node-b');
        pairs.push({ none, withPolicies, propagationSeconds });
      }
      const med = (xs: StormRow[], f: (x: StormRow) => number): number => round(median(xs.map(f)), 3);
      const nones = pairs.map((x) => x.none);
      const withs = pairs.map((x) => x.withPolicies);
      const msA = (x: StormRow): number => x.cpuMsPerConnection['node-a'] ?? Number.NaN;
      const msB = (x: StormRow): number => x.cpuMsPerConnection['node-b'] ?? Number.NaN;
      const none = { rate: med(nones, (x) => x.rate), cpuMsPerConnection: { 'node-a': med(nones, msA), 'node-b': med(nones, msB) } };
      const withPolicies = { rate: med(withs, (x) => x.rate), cpuMsPerConnection: { 'node-a': med(withs, msA), 'node-b': med(withs, msB) } };
      const bDelta = withPolicies.cpuMsPerConnection['node-b'] - none.cpuMsPerConnection['node-b'];
      const worstMicro = micro.rows.find((r) => r.mix === 'worst' && r.connection === 'allowed-mtls');
      authzE2e = {
        policies: params.policies,
        mix: 'worst (all namespace-wide in mesh, the client ALLOW last; bench/lib/authz-policies.ts)',
        rounds: params.authzRounds,
        propagationSeconds: round(median(pairs.map((x) => x.propagationSeconds)), 2),
        /** Medians over the rounds. */
        none,
        withPolicies,
        perRound: pairs.map((x) => ({ noneRate: x.none.rate, withRate: x.withPolicies.rate, noneNodeBMs: msB(x.none), withNodeBMs: msB(x.withPolicies), propagationSeconds: x.propagationSeconds })),
        rateRatio: round(withPolicies.rate / none.rate, 3),
        nodeBCpuMsPerConnectionAdded: round(bDelta, 3),
        microNsPerCheckAllowed: worstMicro?.nsPerCheck ?? null,
      };
    }
  }

  // ---------------------------------------------------------------- table
  const machine = machineInfo(loadavgStart, {});
  const L: string[] = [];
  L.push(`Agent benchmark (issue 5)${params.runLab ? `, lab '${LAB}' (control plane + one ambit agent per node)` : ''}`);
  L.push(`${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, kernel ${machine.kernel}; load avg ${loadavgStart.map((x) => x.toFixed(2)).join(' ')} -> ${machine.loadavgEnd.map((x) => x.toFixed(2)).join(' ')}`);
  const keepAliveSummary = summarizeKeepAlive(keepAlive);
  if (keepAlive.length > 0) {
    L.push('');
    L.push(`1. Keep-alive HTTP/1.1, ${params.requestBytes} B POST -> ${params.responseBytes} B, open loop, ${params.stepSeconds} s per step after ${params.warmupSeconds} s warm-up, median of ${params.rounds} round(s); latency ms; agents node-a/node-b`);
    if (idle) L.push(`   idle agents: CPU % ${NODES.map((n) => fmt(idle?.cpuPercent[n], 1)).join('/')}, RSS MiB ${NODES.map((n) => fmt(idle?.rssMiBEnd[n], 1)).join('/')} (an empty Node process: ${fmt(nodeBaselineRssMiB, 1)} MiB)`);
    L.push(`${pad('path', 8)}${pad('rate', 6, true)}${pad('done/s', 8, true)}${pad('p50', 8, true)}${pad('p99', 8, true)}${pad('err', 5, true)}  ${pad('cpu %', 11)}${pad('vCPU/1k rps', 13)}${pad('net of idle', 13)}${pad('RSS MiB pk', 12)}x ztunnel cpu / rss`);
    for (const s of keepAliveSummary) {
      const pair = (r: Record<string, number>, d: number): string => NODES.map((n) => fmt(r[n], d)).join('/');
      const isMesh = s.path === 'mesh';
      L.push(
        `${pad(s.path, 8)}${pad(String(s.targetRps), 6, true)}${pad(fmt(s.achievedRps, 0), 8, true)}${pad(fmt(s.p50Ms, 3), 8, true)}${pad(fmt(s.p99Ms, 3), 8, true)}${pad(String(s.errors), 5, true)}  ${pad(isMesh ? pair(s.cpuPercent, 1) : '-', 11)}${pad(isMesh ? pair(s.vcpuPer1000Rps, 3) : '-', 13)}${pad(isMesh ? pair(s.vcpuPer1000RpsNetOfIdle, 3) : '-', 13)}${pad(isMesh ? pair(s.rssMiBPeak, 1) : '-', 12)}${isMesh ? `${pair(s.ratioToZtunnelCpu, 1)} / ${pair(s.ratioToZtunnelRss, 1)}` : ''}`,
      );
    }
    L.push(`${pad('ztunnel', 8)}${pad('1000', 6, true)}${pad('', 37)}${pad(`${ZTUNNEL.vcpuPer1000Rps}`, 13)}${pad('', 13)}${pad(`${ZTUNNEL.rssMB} MB`, 12)}published figure (not measured here)`);
  }
  if (Object.keys(agentProcesses).length > 0) {
    L.push(`   agent processes: ${NODES.map((n) => { const p = agentProcesses[n]; return p ? `${n} pid ${p.pid} (${p.comm}, ${p.threads} threads, ${p.children} children, VmHWM ${fmt(p.vmHwmMiB, 1)} MiB)` : n; }).join('; ')}`);
  }
  if (storms.length > 0) {
    L.push('');
    L.push(`2. Connection storms: ${params.concurrency} workers, a new TCP connection per request (Connection: close), ${params.stormSeconds} s after ${params.stormWarmupSeconds} s warm-up; HBONE pool warm`);
    L.push(`${pad('run', 36)}${pad('conn/s', 8, true)}${pad('p50', 8, true)}${pad('p99', 8, true)}${pad('err', 5, true)}  ${pad('cpu % a/b', 12)}${pad('ms/conn a/b', 14)}${pad('conn per cpu-s a/b', 20)}HBONE conns`);
    for (const s of storms) {
      const isMesh = s.path === 'mesh';
      L.push(
        `${pad(s.label, 36)}${pad(fmt(s.rate, 0), 8, true)}${pad(fmt(s.p50Ms, 2), 8, true)}${pad(fmt(s.p99Ms, 2), 8, true)}${pad(String(s.errors), 5, true)}  ${pad(NODES.map((n) => fmt(s.agents.cpuPercent[n], 0)).join('/'), 12)}${pad(isMesh ? NODES.map((n) => fmt(s.cpuMsPerConnection[n], 3)).join('/') : '-', 14)}${pad(isMesh ? NODES.map((n) => fmt(s.connectionsPerCpuSecond[n], 0)).join('/') : '-', 20)}${isMesh ? `${s.hboneConnectionsBefore} -> ${s.hboneConnectionsAfter}` : ''}`,
      );
    }
  }
  L.push('');
  L.push(`3. Authorization per connection (InboundAuthz.check path: policiesFor + authorize), micro-benchmark, ${params.microMsPerCase} ms per case; µs per check`);
  L.push(`${pad('mix', 8)}${pad('held', 6, true)}${pad('in scope', 10, true)}  ${pad('connection', 18)}${pad('decision', 10)}${pad('µs/check', 10, true)}${pad('p99 batch', 11, true)}${pad('authorize()', 13, true)}`);
  for (const r of micro.rows) {
    L.push(`${pad(r.mix, 8)}${pad(String(r.policiesHeld), 6, true)}${pad(String(r.policiesInScope), 10, true)}  ${pad(r.connection, 18)}${pad(r.allowed ? 'allowed' : 'denied', 10)}${pad(fmt(r.nsPerCheck / 1000, 2), 10, true)}${pad(fmt(r.nsPerCheckP99 / 1000, 2), 11, true)}${pad(fmt(r.nsPerAuthorize / 1000, 2), 13, true)}`);
  }
  if (authzE2e) {
    const e = authzE2e as { policies: number; propagationSeconds: number; none: { rate: number; cpuMsPerConnection: Record<string, number> }; withPolicies: { rate: number; cpuMsPerConnection: Record<string, number> }; rateRatio: number; nodeBCpuMsPerConnectionAdded: number };
    L.push(
      `   end to end (storm, worst mix): ${fmt(e.none.rate, 0)} conn/s without policies, ${fmt(e.withPolicies.rate, 0)} with ${e.policies} (x${fmt(e.rateRatio, 3)}); node-b CPU ms/conn ${fmt(e.none.cpuMsPerConnection['node-b'], 3)} -> ${fmt(e.withPolicies.cpuMsPerConnection['node-b'], 3)} (${e.nodeBCpuMsPerConnectionAdded >= 0 ? '+' : ''}${fmt(e.nodeBCpuMsPerConnectionAdded, 3)} ms); policies reached node-b in ${fmt(e.propagationSeconds, 2)} s`,
    );
  }
  // Headline: the anchor's rate (or the nearest measured one) against ztunnel's figure.
  const meshRows = keepAliveSummary.filter((r) => r.path === 'mesh');
  const anchor = meshRows.slice().sort((a, b) => Math.abs(a.targetRps - 1000) - Math.abs(b.targetRps - 1000))[0];
  const meshStorms = storms.filter((s) => s.path === 'mesh' && s.policies === 0);
  const summary = {
    keepAlive: anchor
      ? {
          atRps: anchor.targetRps,
          vcpuPer1000Rps: anchor.vcpuPer1000Rps,
          rssMiBPeak: anchor.rssMiBPeak,
          ratioToZtunnelCpu: anchor.ratioToZtunnelCpu,
          ratioToZtunnelRss: anchor.ratioToZtunnelRss,
          addedLatencyP50Ms: round(anchor.p50Ms - (keepAliveSummary.find((r) => r.path === 'direct' && r.targetRps === anchor.targetRps)?.p50Ms ?? Number.NaN), 3),
        }
      : null,
    storm: meshStorms.length > 0
      ? {
          connectionsPerSecond: round(median(meshStorms.map((s) => s.rate)), 1),
          connectionsPerAgentCpuSecond: perAgent((n) => round(median(meshStorms.map((s) => s.connectionsPerCpuSecond[n] ?? Number.NaN)), 0)),
          cpuMsPerConnection: perAgent((n) => round(median(meshStorms.map((s) => s.cpuMsPerConnection[n] ?? Number.NaN)), 3)),
        }
      : null,
    authzMicroUsPerCheck: Object.fromEntries(micro.rows.filter((r) => r.mix !== 'none').map((r) => [`${r.mix}/${r.connection}`, round(r.nsPerCheck / 1000, 2)])),
  };
  L.push('');
  L.push('Summary');
  if (summary.keepAlive) {
    const k = summary.keepAlive;
    L.push(
      `  keep-alive at ${k.atRps}/s: vCPU per 1,000 rps node-a ${fmt(k.vcpuPer1000Rps['node-a'], 3)} (x${fmt(k.ratioToZtunnelCpu['node-a'], 1)} ztunnel's 0.06), node-b ${fmt(k.vcpuPer1000Rps['node-b'], 3)} (x${fmt(k.ratioToZtunnelCpu['node-b'], 1)}); RSS peak MiB ${fmt(k.rssMiBPeak['node-a'], 1)}/${fmt(k.rssMiBPeak['node-b'], 1)} (x${fmt(k.ratioToZtunnelRss['node-a'], 1)}/x${fmt(k.ratioToZtunnelRss['node-b'], 1)} of 12 MB); p50 +${fmt(k.addedLatencyP50Ms, 3)} ms over direct`,
    );
  }
  if (summary.storm) {
    const st = summary.storm;
    L.push(`  connection storm: ${fmt(st.connectionsPerSecond, 0)} new tunnelled conn/s per agent (median of the no-policy mesh storms), ${NODES.map((n) => `${n} ${fmt(st.cpuMsPerConnection[n], 3)} ms CPU/conn = ${fmt(st.connectionsPerAgentCpuSecond[n], 0)} conn per CPU-second`).join(', ')}`);
  }
  const w = micro.rows.find((r) => r.mix === 'worst' && r.connection === 'allowed-mtls');
  const sp = micro.rows.find((r) => r.mix === 'spread' && r.connection === 'allowed-mtls');
  if (w && sp) L.push(`  authorization with ${params.policies} policies: ${fmt(w.nsPerCheck / 1000, 1)} µs per allowed connection with all in scope, ${fmt(sp.nsPerCheck / 1000, 1)} µs with ${sp.policiesInScope} in scope (micro-benchmark)`);
  if (notes.length > 0) L.push('', ...notes.map((n) => `note: ${n}`));
  console.log(`\n${L.join('\n')}`);

  const report = {
    schema: 'ambit-bench-agent/1',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    durationSeconds: round((performance.now() - t0) / 1000, 1),
    machine,
    parameters: params,
    topology,
    reference: { ztunnel: ZTUNNEL },
    summary,
    units: {
      vcpuPer1000Rps: 'agent CPU seconds (utime+stime, /proc) over the step / (requests in the window / 1000) = vCPU per 1,000 requests/s',
      vcpuPer1000RpsNetOfIdle: 'the same after subtracting the idle agent CPU rate over the same wall time',
      rssMiB: 'VmRSS, MiB (2^20 bytes); ratioToZtunnelRss converts to MB (1e6 bytes) before dividing by 12',
      latency: 'ms from http.request() to the end of the response body',
      cpuMsPerConnection: 'agent CPU ms over the storm / connections completed in it (warm-up included)',
      nsPerCheck: 'ns per ClusterState.policiesFor + toAuthzConnection + authorize (mean of 500-iteration batches)',
    },
    idleAgents: idle ?? null,
    emptyNodeProcessRssMiB: nodeBaselineRssMiB,
    agentProcesses,
    keepAliveSummary,
    keepAlive,
    storms,
    authz: { connections: AUTHZ_CONNECTIONS, micro: micro.rows satisfies AuthzMicroRow[], endToEnd: authzE2e },
    notes,
  };
  const file = writeResults(RESULTS, 'agent', 'agent-latest.json', startedAt, report);
  log(`results written to ${file} and bench/results/agent-latest.json`);
}

function tail(file: string | undefined, n: number): string {
  if (!file) return '(no log)';
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch (err) {
    return `(cannot read ${file}: ${err instanceof Error ? err.message : String(err)})`;
  }
}

try {
  await main();
} catch (err) {
  console.error(`agent benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
} finally {
  await harness.cleanup();
  try {
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.startsWith(`${LAB}-`));
    if (left.length > 0) console.error(`warning: lab namespaces left behind: ${left.join(', ')}; run 'ambit lab down --name ${LAB}'`);
  } catch {
    // ip is missing: nothing was created either
  }
}
