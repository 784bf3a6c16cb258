/**
 * `npm run bench` (second part; `npm run bench -- --only inpod` alone): what
 * transparent in-pod capture costs, end to end, with real agents.
 *
 * Builds the lab 'bench-inpod' (test/fixtures/bench/inpod.yaml, mesh: true:
 * one `ambit agent` per node, in-pod redirection in the ambient pods) and
 * measures, with unmodified programs in the pods:
 *   - iperf3 throughput, 1 and 8 streams, on four paths:
 *       mesh     mesh/client -> mesh/server   (captured on both sides: pod ->
 *                agent node-a -> HBONE -> agent node-b -> pod)
 *       inbound  outside/legacy -> mesh/server (plaintext, captured only on
 *                the server side, agent node-b on 15006)
 *       direct   outside/legacy -> outside/legacy-b (no capture; same nodes)
 *       stunnel  the peer: outside/legacy -> stunnel4 client on the pod's
 *                loopback -> mTLS, one TLS connection per TCP connection ->
 *                stunnel4 server in outside/legacy-b -> the app (same nodes)
 *   - request/response latency (1 KiB POST, 1 KiB answer) at a fixed rate,
 *     a new TCP connection per request and with keep-alive, on the same paths
 *     (bench/lib/inpod-http.ts runs in the pods); keep-alive at 500, 1,000
 *     and 2,000/s (open loop), with each proxy's CPU seconds per 1,000 requests;
 *   - saturation: h2load --h1 -c 16 (keep-alive, as fast as the path answers);
 *   - new connections per second (bench/lib/agent-storm.ts, closed loop);
 *   - memory per 1,000 idle tunnelled connections (bench/lib/idle-conns.ts):
 *     the proxies' RSS with the connections open minus before;
 *   - each agent's CPU seconds and RSS around every measurement (/proc), and
 *     node-b's connection counters (what the agent actually captured);
 *   - passthrough: iperf3 1 and 4 streams from mesh/client to outside/legacy-b
 *     (captured on node-a, dialled directly, relayed in the agent with
 *     splice() or with the JS copy) next to direct legacy -> legacy-b. The
 *     agents of the first lab run with `--splice on`; afterwards the lab is
 *     rebuilt with `--splice off` for the copy numbers (and direct again).
 * Prints a table with ratios and writes bench/results/inpod-<time>.json and
 * bench/results/inpod-latest.json. The lab and every child process are
 * removed at the end, on failure and on Ctrl-C.
 *
 * Options: --seconds S (5) per iperf3 run and per latency run, --rate N
 * requests/s (500, the new-connection latency), --rates a,b,c (500,1000,2000,
 * keep-alive latency), --warmup S (0.5, latency only, not recorded), --quick
 * (2 s runs), --lab NAME (bench-inpod), --no-passthrough (skip that section
 * and the second lab), --pt-rounds N (passthrough rounds per lab; 3, --quick
 * 1), --no-stunnel, --idle-count N (1000), --storm-concurrency N (32),
 * --sat-clients N (16), --scenarios a,b (any of throughput, latency, rates,
 * saturation, connections, idle, passthrough; default all), --profile-dir DIR
 * (agents started with --cpu-prof --cpu-prof-dir DIR and stopped with SIGTERM
 * before the lab is removed, so the profiles are written). Unknown options
 * (meant for the HBONE part) are ignored.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { defaultSpawnAgent } from '../src/lab/agents.js';
import { labDown, labUp, type LabHandle, type SpawnAgent } from '../src/lab/index.js';
import { fmt, Harness, has, labAgents, machineInfo, writeResults, num, pad, version, waitListening, workload } from './lib/harness.js';
import type { LoadArgs, LoadResult } from './lib/inpod-http.js';
import type { LocalWorkload } from '../src/state/local-config.js';
import { cpuSeconds } from './lib/proc.js';
import { issueFromCaDir } from './lib/certs.js';
import { planStunnel } from './lib/stunnel.js';
import { h2loadArgv, parseH2load, type H2loadResult } from './lib/h2load.js';
import type { IdleArgs, IdleOpened } from './lib/idle-conns.js';
import type { StormArgs, StormResult } from './lib/agent-storm.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { median, percentile, round } from './lib/stats.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/bench/inpod.yaml');
const RESULTS = join(ROOT, 'bench/results');
const HTTP_JS = fileURLToPath(new URL('./lib/inpod-http.js', import.meta.url));
const IDLE_JS = fileURLToPath(new URL('./lib/idle-conns.js', import.meta.url));
const STORM_JS = fileURLToPath(new URL('./lib/agent-storm.js', import.meta.url));
const PORTS = { iperf: 5201, http: 8080, idle: 7100, metrics: 15020 } as const;
/** stunnel: the client's loopback ports and the server's TLS ports, per service. */
const STUNNEL_PORTS = { iperf: { local: 15201, tls: 16201 }, http: { local: 18080, tls: 16080 }, idle: { local: 17100, tls: 16100 } } as const;
type Service = keyof typeof STUNNEL_PORTS;
const NODES = ['node-a', 'node-b'] as const;

const POD = {
  client: { namespace: 'mesh', pod: 'client' },
  server: { namespace: 'mesh', pod: 'server' },
  legacy: { namespace: 'outside', pod: 'legacy' },
  legacyB: { namespace: 'outside', pod: 'legacy-b' },
} as const satisfies Record<string, { namespace: string; pod: string }>;

type PathId = 'mesh' | 'inbound' | 'direct' | 'stunnel' | 'passthrough';
interface PathDef {
  readonly id: PathId;
  readonly label: string;
  readonly from: (typeof POD)[keyof typeof POD];
  readonly to: (typeof POD)[keyof typeof POD];
  readonly what: string;
}
const PATHS: readonly PathDef[] = [
  { id: 'mesh', label: 'mesh (client -> server, HBONE)', from: POD.client, to: POD.server, what: 'mesh/client -> captured 15001 -> agent node-a -> HBONE (mTLS, HTTP/2 CONNECT) -> agent node-b -> mesh/server' },
  { id: 'inbound', label: 'plaintext inbound (legacy -> server)', from: POD.legacy, to: POD.server, what: 'outside/legacy -> node-a -> node-b -> captured 15006 in mesh/server -> agent node-b -> mesh/server' },
  { id: 'direct', label: 'direct (legacy -> legacy-b)', from: POD.legacy, to: POD.legacyB, what: 'outside/legacy -> node-a -> bridge -> node-b -> outside/legacy-b, no capture' },
];
const DIRECT = PATHS[2] as PathDef;
const STUNNEL: PathDef = {
  id: 'stunnel',
  label: 'stunnel4 peer (legacy -> legacy-b)',
  from: POD.legacy,
  to: POD.legacyB,
  what: 'outside/legacy -> 127.0.0.1 stunnel4 client -> mTLS (TLS 1.3, one TLS connection per TCP connection) -> stunnel4 server in outside/legacy-b -> outside/legacy-b app, no capture',
};
const PASSTHROUGH: PathDef = {
  id: 'passthrough',
  label: 'passthrough (client -> legacy-b)',
  from: POD.client,
  to: POD.legacyB,
  what: 'mesh/client -> captured 15001 -> agent node-a dials outside/legacy-b directly (plain TCP, relayed with splice() or the JS copy) -> node-b -> outside/legacy-b (not captured)',
};
type SpliceMode = 'on' | 'off';

// ------------------------------------------------------------------ parameters

const { values: opt } = parseArgs({
  strict: false,
  options: {
    seconds: { type: 'string' },
    rate: { type: 'string' },
    warmup: { type: 'string' },
    quick: { type: 'boolean' },
    lab: { type: 'string' },
    'no-passthrough': { type: 'boolean' },
    'pt-rounds': { type: 'string' },
    rates: { type: 'string' },
    'no-stunnel': { type: 'boolean' },
    'idle-count': { type: 'string' },
    'storm-concurrency': { type: 'string' },
    'sat-clients': { type: 'string' },
    scenarios: { type: 'string' },
    'profile-dir': { type: 'string' },
  },
});

const SCENARIOS = ['throughput', 'latency', 'rates', 'saturation', 'connections', 'idle', 'passthrough'] as const;
type Scenario = (typeof SCENARIOS)[number];
const selected = new Set<Scenario>(
  typeof opt.scenarios === 'string'
    ? opt.scenarios.split(',').map((x) => {
        if (!(SCENARIOS as readonly string[]).includes(x)) throw new Error(`--scenarios: unknown scenario '${x}' (one of ${SCENARIOS.join(', ')})`);
        return x as Scenario;
      })
    : SCENARIOS,
);
const PROFILE_DIR = typeof opt['profile-dir'] === 'string' && opt['profile-dir'] !== '' ? opt['profile-dir'] : undefined;

/** The lab's name: every lab this run builds (and removes) has it; nothing else is touched. */
const LAB = typeof opt.lab === 'string' && opt.lab !== '' ? opt.lab : 'bench-inpod';

const quick = opt.quick === true;
const params = {
  /** Whole seconds: iperf3 -t takes integers. */
  iperfSeconds: Math.round(num(opt.seconds, quick ? 2 : 5, 'seconds')),
  streams: [1, 8],
  /** The passthrough section keeps 1 and 4 streams (its ratios are keyed "1"/"4"). */
  passthroughStreams: [1, 4],
  /** Keep-alive latency rates (open loop). */
  rates: typeof opt.rates === 'string' ? opt.rates.split(',').map((x) => Math.round(num(x, 1, 'rates'))) : [500, 1000, 2000],
  saturation: { clients: Math.round(num(opt['sat-clients'], 16, 'sat-clients')), seconds: Math.round(num(opt.seconds, quick ? 2 : 5, 'seconds')), warmupSeconds: 1 },
  storm: { concurrency: Math.round(num(opt['storm-concurrency'], 32, 'storm-concurrency')), seconds: num(opt.seconds, quick ? 2 : 5, 'seconds'), warmupSeconds: 1 },
  idleConnections: Math.round(num(opt['idle-count'], 1000, 'idle-count')),
  stunnel: opt['no-stunnel'] !== true,
  scenarios: [...selected],
  profileDir: PROFILE_DIR ?? null,
  latencySeconds: num(opt.seconds, quick ? 2 : 5, 'seconds'),
  latencyWarmupSeconds: num(opt.warmup, 0.5, 'warmup'),
  rps: Math.round(num(opt.rate, 500, 'rate')),
  requestBytes: 1024,
  responseBytes: 1024,
  ports: PORTS,
  passthrough: opt['no-passthrough'] !== true && selected.has('passthrough'),
  /** Rounds of (passthrough, direct) x (1, 4 streams) per lab; the table shows medians. */
  passthroughRounds: Math.round(num(opt['pt-rounds'], quick ? 1 : 3, 'pt-rounds')),
  lab: LAB,
  quick,
};

const harness = new Harness('in-pod benchmark');
const onCleanup = harness.onCleanup.bind(harness);

// ------------------------------------------------------------------ helpers

const t0 = performance.now();
const log = (msg: string): void => console.error(`[inpod ${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}`);

// ------------------------------------------------------------------ agents: /proc and metrics

interface AgentSnapshot {
  readonly t: number;
  readonly cpuSeconds: Record<string, number>;
  readonly rssKiB: Record<string, number>;
}

function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

function agentSnapshot(pids: Readonly<Record<string, number>>): AgentSnapshot {
  const cpu: Record<string, number> = {};
  const rss: Record<string, number> = {};
  for (const [node, pid] of Object.entries(pids)) {
    cpu[node] = cpuSeconds(pid);
    rss[node] = rssKiB(pid);
  }
  return { t: performance.now(), cpuSeconds: cpu, rssKiB: rss };
}

interface AgentUsage {
  readonly wallSeconds: number;
  /** CPU seconds (user + system) per agent over the phase. */
  readonly cpuSeconds: Record<string, number>;
  /** The same in percent of one core. */
  readonly cpuPercent: Record<string, number>;
  readonly rssKiBBefore: Record<string, number>;
  readonly rssKiBAfter: Record<string, number>;
}

function usage(a: AgentSnapshot, b: AgentSnapshot): AgentUsage {
  const wall = (b.t - a.t) / 1000;
  const cpu: Record<string, number> = {};
  const pct: Record<string, number> = {};
  for (const node of Object.keys(a.cpuSeconds)) {
    const d = (b.cpuSeconds[node] ?? 0) - (a.cpuSeconds[node] ?? 0);
    cpu[node] = round(d, 2);
    pct[node] = round((d / wall) * 100, 0);
  }
  return { wallSeconds: round(wall, 2), cpuSeconds: cpu, cpuPercent: pct, rssKiBBefore: a.rssKiB, rssKiBAfter: b.rssKiB };
}

/**
 * node-b's agent counters of accepted connections by security policy
 * (`mutual_tls` = arrived over HBONE, `unknown` = plaintext captured on 15006),
 * read from its metrics port inside node-b's netns.
 */
async function capturedConnections(lab: LabHandle): Promise<Record<string, number> | undefined> {
  const script = `fetch('http://127.0.0.1:${PORTS.metrics}/metrics').then(r=>r.text()).then(t=>process.stdout.write(t),e=>{console.error(String(e));process.exit(1)})`;
  const r = await lab.exec({ node: 'node-b' }, [process.execPath, '-e', script], { timeoutMs: 10_000 }).catch(() => undefined);
  if (!r || r.code !== 0) return undefined;
  const out: Record<string, number> = {};
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('istio_tcp_connections_opened_total{') || !line.includes('reporter="destination"')) continue;
    const policy = /connection_security_policy="([^"]*)"/.exec(line)?.[1] ?? '?';
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) out[policy] = (out[policy] ?? 0) + value;
  }
  return out;
}

function diffCounts(a: Record<string, number> | undefined, b: Record<string, number> | undefined): Record<string, number> | undefined {
  if (!a || !b) return undefined;
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (b[k] ?? 0) - (a[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/** Runs `fn` between two agent snapshots and two reads of node-b's counters. */
async function measured<T>(lab: LabHandle, pids: Readonly<Record<string, number>>, fn: () => Promise<T>): Promise<{ result: T; agents: AgentUsage; captured: Record<string, number> | undefined }> {
  const m0 = await capturedConnections(lab);
  const a = agentSnapshot(pids);
  const result = await fn();
  // Ctrl-C stops the servers too: what the run returned after that means nothing.
  if (harness.interrupted) throw new Error('interrupted');
  const b = agentSnapshot(pids);
  const m1 = await capturedConnections(lab);
  return { result, agents: usage(a, b), captured: diffCounts(m0, m1) };
}

// ------------------------------------------------------------------ measurements

interface IperfJson {
  end?: {
    sum_received?: { bytes: number; seconds: number; bits_per_second: number };
    sum_sent?: { retransmits?: number };
    cpu_utilization_percent?: { host_total: number; remote_total: number };
  };
  error?: string;
}

interface ThroughputSample {
  readonly path: PathId;
  readonly streams: number;
  readonly gbps: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly retransmits: number | null;
  readonly iperfCpu: { client: number; server: number } | null;
  readonly agents: AgentUsage;
  readonly capturedOnNodeB: Record<string, number> | null;
}

async function iperf(lab: LabHandle, p: PathDef, serverIp: string, streams: number, port: number = PORTS.iperf): Promise<IperfJson> {
  const argv = ['iperf3', '-c', serverIp, '-p', String(port), '-t', String(params.iperfSeconds), '-P', String(streams), '-J'];
  return harness.retry(
    `iperf3 ${p.id}`,
    async () => {
      const res = await lab.exec(p.from, argv, { timeoutMs: (params.iperfSeconds + 20) * 1000 });
      let j: IperfJson;
      try {
        j = JSON.parse(res.stdout || '{}') as IperfJson;
      } catch {
        throw new Error(res.stderr.trim() || `unparsable output, exit ${res.code}`);
      }
      if (res.code !== 0 || !j.end?.sum_received) throw new Error(j.error ?? (res.stderr.trim() || `exit ${res.code}`));
      return j;
    },
    5000,
  );
}

interface LatencySample {
  readonly path: PathId;
  readonly keepAlive: boolean;
  /** The target rate (requests/s). */
  readonly rps: number;
  readonly sent: number;
  readonly completed: number;
  readonly errors: number;
  readonly skipped: number;
  readonly firstErrors: readonly string[];
  readonly achievedRps: number;
  readonly connections: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** CPU seconds per 1,000 requests (all sent, warm-up included) of each proxy process on the path. */
  readonly cpuSecondsPer1kRequests: Record<string, number>;
  readonly agents: AgentUsage;
  readonly capturedOnNodeB: Record<string, number> | null;
  readonly latencyMs: readonly number[];
}

interface SaturationSample extends H2loadResult {
  readonly path: PathId;
  readonly clients: number;
  readonly seconds: number;
  readonly cpuSecondsPer1kRequests: Record<string, number>;
  readonly agents: AgentUsage;
}

interface ConnectionSample {
  readonly path: PathId;
  readonly concurrency: number;
  /** New connections (= requests) per second, end to end. */
  readonly rate: number;
  readonly completed: number;
  readonly errors: number;
  readonly firstErrors: readonly string[];
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuMsPerConnection: Record<string, number>;
  readonly agents: AgentUsage;
}

interface IdleSample {
  readonly path: PathId;
  readonly requested: number;
  readonly open: number;
  readonly failed: number;
  readonly firstErrors: readonly string[];
  readonly openMs: number;
  readonly rssKiBBefore: Record<string, number>;
  readonly rssKiBOpen: Record<string, number>;
  /** (RSS with the connections open - before) per 1,000 connections, MiB, per proxy process. */
  readonly rssMiBPer1kConnections: Record<string, number>;
}

/** Opens `params.idleConnections` idle connections through `p`, reads the proxies' RSS before and with them open. */
async function idleConnections(lab: LabHandle, p: PathDef, e: { host: string; port: number }, pids: Readonly<Record<string, number>>): Promise<IdleSample> {
  const procs = proxiesOf(p.id);
  const rss = (): Record<string, number> => Object.fromEntries(procs.map((n) => [n, rssKiB(pids[n] ?? 0)]));
  await sleep(1000);
  const before = rss();
  const args: IdleArgs = { host: e.host, port: e.port, count: params.idleConnections, parallel: 50, timeoutMs: 15_000 };
  const child = lab.spawn(p.from, [process.execPath, IDLE_JS, 'open', JSON.stringify(args)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  onCleanup(`stop idle opener (${p.id})`, async () => {
    child.stdin?.end();
    child.kill('SIGTERM');
  });
  let out = '';
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
  const opened = await new Promise<IdleOpened>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`idle opener (${p.id}) did not report within 120 s: ${err}`)), 120_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{"ev":"open"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as IdleOpened);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`idle opener (${p.id}) exited (${code}) before reporting: ${err}`));
    });
  });
  // Let lazily allocated buffers settle before reading the RSS.
  await sleep(2000);
  const withOpen = rss();
  child.stdin?.end();
  await Promise.race([done, sleep(10_000)]);
  const perK = Object.fromEntries(procs.map((n) => [n, round(((withOpen[n] ?? Number.NaN) - (before[n] ?? Number.NaN)) / 1024 / (Math.max(1, opened.open) / 1000), 2)]));
  log(`idle ${p.id}: ${opened.open}/${params.idleConnections} open in ${opened.ms} ms (failed ${opened.failed}), RSS MiB per 1,000: ${procs.map((n) => `${n} ${fmt(perK[n])}`).join(', ')}`);
  return { path: p.id, requested: params.idleConnections, open: opened.open, failed: opened.failed, firstErrors: opened.firstErrors, openMs: opened.ms, rssKiBBefore: before, rssKiBOpen: withOpen, rssMiBPer1kConnections: perK };
}

async function load(lab: LabHandle, p: PathDef, host: string, a: Omit<LoadArgs, 'host' | 'port'>, port: number = PORTS.http): Promise<LoadResult> {
  const args: LoadArgs = { host, port, ...a };
  const res = await lab.exec(p.from, [process.execPath, HTTP_JS, 'load', JSON.stringify(args)], { timeoutMs: (a.seconds + a.warmupSeconds + 30) * 1000 });
  if (res.code !== 0) throw new Error(`load generator (${p.id}) failed (exit ${res.code ?? res.signal}): ${res.stderr.trim().slice(-2000)}`);
  return JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as LoadResult;
}

// ------------------------------------------------------------------ report

function signed(x: number): string {
  return Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(3)}` : '-';
}

const capCell = (c: Record<string, number> | null): string => {
  if (!c) return '?';
  const e = Object.entries(c);
  return e.length === 0 ? 'none' : e.map(([k, v]) => `${k === 'mutual_tls' ? 'mTLS' : k === 'unknown' ? 'plain' : k} ${v}`).join(', ');
};

// ------------------------------------------------------------------ labs

interface Ips {
  client: LocalWorkload;
  server: LocalWorkload;
  legacy: LocalWorkload;
  legacyB: LocalWorkload;
}

interface RunningLab {
  lab: LabHandle;
  splice: SpliceMode;
  ips: Ips;
  pids: Record<string, number>;
  /** Each agent's log file (JSON lines, with the access log). */
  logFiles: Record<string, string>;
}

/** The lab's own launch, with `--splice on|off` appended to `ambit agent ...`. */
const spawnWithSplice =
  (mode: SpliceMode): SpawnAgent =>
  (launch) => {
    const argv = [...launch.argv, '--splice', mode];
    // --profile-dir: V8's CPU profiler in the node agents (not the control plane);
    // the flags go right after the node binary, before bin/ambit.js.
    if (PROFILE_DIR !== undefined && (NODES as readonly string[]).includes(launch.node) && argv.length > 1) {
      argv.splice(1, 0, '--cpu-prof', '--cpu-prof-dir', PROFILE_DIR, '--cpu-prof-name', `agent-${launch.node}-splice-${mode}.cpuprofile`);
    }
    return defaultSpawnAgent({ ...launch, argv });
  };

/**
 * Builds the lab with agents started with `--splice <mode>`, starts iperf3 -s
 * and the HTTP server in `servers`, and waits until every path in `probe`
 * answers (capture can take a moment after the agent is ready).
 */
async function startLab(splice: SpliceMode, servers: ReadonlyArray<(typeof POD)[keyof typeof POD]>, probe: readonly PathDef[]): Promise<RunningLab> {
  log(`starting lab '${LAB}' with one agent per node (--splice ${splice})`);
  const lab = await labUp({ manifests: FIXTURE, name: LAB, mesh: true, spawnAgent: spawnWithSplice(splice) });
  const ips: Ips = {
    client: workload(lab, POD.client.namespace, POD.client.pod),
    server: workload(lab, POD.server.namespace, POD.server.pod),
    legacy: workload(lab, POD.legacy.namespace, POD.legacy.pod),
    legacyB: workload(lab, POD.legacyB.namespace, POD.legacyB.pod),
  };
  const { pids, logFiles } = await labAgents(LAB, NODES);
  log(`lab up: agents ${NODES.map((n) => `${n} pid ${pids[n]}`).join(', ')}; client ${ips.client.ip}, server ${ips.server.ip}, legacy ${ips.legacy.ip}, legacy-b ${ips.legacyB.ip}`);

  // Servers in the destination pods: iperf3 and the 1 KiB HTTP server.
  for (const target of servers) {
    const name = `${target.namespace}/${target.pod}`;
    const w = target === POD.server ? ips.server : ips.legacyB;
    const ip3 = harness.spawnTool(lab, `iperf3 -s in ${name} (splice ${splice})`, target, ['iperf3', '-s', '-B', w.ip, '-p', String(PORTS.iperf)]);
    await waitListening(lab, target, PORTS.iperf, ip3);
    const http = harness.spawnTool(lab, `http server in ${name} (splice ${splice})`, target, [process.execPath, HTTP_JS, 'server', w.ip, String(PORTS.http)]);
    await waitListening(lab, target, PORTS.http, http);
    if (selected.has('idle') && splice === 'on') {
      const idle = harness.spawnTool(lab, `idle-connection server in ${name}`, target, [process.execPath, IDLE_JS, 'server', w.ip, String(PORTS.idle)]);
      await waitListening(lab, target, PORTS.idle, idle);
    }
  }

  // Every path must work before anything is measured.
  for (const p of probe) {
    await harness.retry(
      `probe ${p.id}`,
      async () => {
        const r = await load(lab, p, p.to === POD.server ? ips.server.ip : ips.legacyB.ip, { rps: 20, seconds: 0.25, warmupSeconds: 0, bodyBytes: params.requestBytes, keepAlive: false, timeoutMs: 3000 });
        if (r.errors > 0 || r.completed === 0) throw new Error(r.firstErrors.join('; ') || 'no request completed');
      },
      15_000,
    ).catch((err: unknown) => {
      // What the agents said is usually the reason (e.g. the upstream refused).
      const tails = NODES.map((n) => `agent ${n} log tail:\n${tailLines(logFiles[n], 8)}`).join('\n');
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n${tails}`);
    });
  }
  return { lab, splice, ips, pids, logFiles };
}

// ------------------------------------------------------------------ the stunnel4 peer

const STUNNEL_PROCS = ['stunnel-client', 'stunnel-server'] as const;

/**
 * Starts the stunnel4 peer between outside/legacy (client, loopback ports)
 * and outside/legacy-b (server), with certificates from a LocalCa in a temp
 * dir (removed at cleanup), and checks HTTP through it.
 */
async function startStunnel(r: RunningLab): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(os.tmpdir(), 'ambit-bench-stunnel-'));
  onCleanup('remove stunnel dir', async () => rmSync(dir, { recursive: true, force: true }));
  const caDir = join(dir, 'ca');
  const clientId = await issueFromCaDir(caDir, 'cluster.local', 'outside', 'legacy');
  const serverId = await issueFromCaDir(caDir, 'cluster.local', 'outside', 'legacy-b');
  const b = r.ips.legacyB.ip;
  const services = (Object.keys(STUNNEL_PORTS) as Service[]).map((svc) => ({ name: svc, localPort: STUNNEL_PORTS[svc].local, tlsPort: STUNNEL_PORTS[svc].tls, targetHost: b, targetPort: PORTS[svc] }));
  const plan = planStunnel(dir, clientId, serverId, b, services);
  const server = harness.spawnTool(r.lab, 'stunnel4 server in outside/legacy-b', POD.legacyB, plan.serverArgv);
  for (const svc of services) await waitListening(r.lab, POD.legacyB, svc.tlsPort, server);
  const client = harness.spawnTool(r.lab, 'stunnel4 client in outside/legacy', POD.legacy, plan.clientArgv);
  for (const svc of services) await waitListening(r.lab, POD.legacy, svc.localPort, client);
  if (server.pid === undefined || client.pid === undefined) throw new Error('stunnel4 did not start');
  await harness.retry(
    'probe stunnel',
    async () => {
      const res = await load(r.lab, STUNNEL, '127.0.0.1', { rps: 20, seconds: 0.25, warmupSeconds: 0, bodyBytes: params.requestBytes, keepAlive: false, timeoutMs: 3000 }, STUNNEL_PORTS.http.local);
      if (res.errors > 0 || res.completed === 0) throw new Error(res.firstErrors.join('; ') || 'no request completed');
    },
    10_000,
  ).catch((err: unknown) => {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\nstunnel client: ${client.output()}\nstunnel server: ${server.output()}`);
  });
  log(`stunnel4 peer up: client pid ${client.pid} (outside/legacy), server pid ${server.pid} (outside/legacy-b)`);
  return { 'stunnel-client': client.pid, 'stunnel-server': server.pid };
}

/** The proxy processes on a path (whose CPU and RSS are that path's cost). */
function proxiesOf(path: PathId): readonly string[] {
  if (path === 'mesh') return NODES;
  if (path === 'inbound') return ['node-b'];
  if (path === 'stunnel') return STUNNEL_PROCS;
  if (path === 'passthrough') return ['node-a'];
  return [];
}

/** CPU seconds per 1,000 requests of each proxy process of the path. */
function cpuPer1k(path: PathId, u: AgentUsage, requests: number): Record<string, number> {
  return Object.fromEntries(proxiesOf(path).map((n) => [n, round((u.cpuSeconds[n] ?? Number.NaN) / (requests / 1000), 4)]));
}

/** The proxies' CPU % of one core over the phase, "a/b" ('-' on the direct path). */
function proxyCell(path: PathId, u: AgentUsage): string {
  const ps = proxiesOf(path);
  return ps.length === 0 ? '-' : ps.map((n) => fmt(u.cpuPercent[n], 0)).join('/');
}

// ------------------------------------------------------------------ profiling

function exited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/**
 * --profile-dir: V8 writes the .cpuprofile only when the process exits
 * normally, so the agents are sent SIGTERM (they drain and exit) and waited
 * for, before the lab is removed (which would SIGKILL them after its grace).
 */
async function stopAgentsForProfile(pids: Readonly<Record<string, number>>): Promise<void> {
  if (PROFILE_DIR === undefined) return;
  for (const n of NODES) {
    const pid = pids[n];
    if (pid === undefined) continue;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && NODES.some((n) => !exited(pids[n] ?? 0))) await sleep(200);
  const left = NODES.filter((n) => !exited(pids[n] ?? 0));
  if (left.length > 0) log(`warning: agents ${left.join(', ')} did not exit within 20 s of SIGTERM; their profiles may be missing`);
  else log(`agents stopped; CPU profiles in ${PROFILE_DIR}`);
}

function tailLines(file: string | undefined, n: number): string {
  if (!file) return '(no log)';
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch (err) {
    return `(cannot read ${file}: ${err instanceof Error ? err.message : String(err)})`;
  }
}

// ------------------------------------------------------------------ passthrough (splice vs copy)

/** How many access-log lines of each relay kind ("relay":"splice"|"copy"|"hbone") an agent log holds. */
function relayCounts(logFile: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (!logFile) return out;
  let text: string;
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    return out;
  }
  for (const m of text.matchAll(/"relay":"(\w+)"/g)) out[m[1] ?? '?'] = (out[m[1] ?? '?'] ?? 0) + 1;
  return out;
}

interface PassthroughSample {
  readonly round: number;
  readonly path: 'passthrough' | 'direct';
  /** How the lab's agents were started. */
  readonly splice: SpliceMode;
  readonly streams: number;
  readonly gbps: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly retransmits: number | null;
  readonly iperfCpu: { client: number; server: number } | null;
  readonly agents: AgentUsage;
  /** node-a agent CPU seconds per GB (1e9 bytes) received. */
  readonly nodeACpuSecondsPerGB: number;
  /** New access-log lines in node-a's agent log over the run, by relay (what really moved the bytes). */
  readonly relayOnNodeA: Record<string, number>;
  readonly capturedOnNodeB: Record<string, number> | null;
}

/** Rounds of iperf3 1 and 4 streams, passthrough and direct (rotated order), in one running lab. */
async function measurePassthrough(r: RunningLab, k0: number): Promise<PassthroughSample[]> {
  const out: PassthroughSample[] = [];
  const pair = [PASSTHROUGH, DIRECT] as const;
  let k = k0;
  const plan = Array.from({ length: params.passthroughRounds }, (_, i) => params.passthroughStreams.map((streams) => ({ round_: i, streams }))).flat();
  for (const { round_, streams } of plan) {
    const order = [pair[k % 2], pair[(k + 1) % 2]] as PathDef[];
    k++;
    for (const p of order) {
      const before = relayCounts(r.logFiles['node-a']);
      const m = await measured(r.lab, r.pids, () => iperf(r.lab, p, r.ips.legacyB.ip, streams));
      // The access line is written when the connection closes; iperf3 has closed them all when it exits.
      const after = relayCounts(r.logFiles['node-a']);
      const sum = m.result.end?.sum_received as { bytes: number; seconds: number; bits_per_second: number };
      const cpu = m.result.end?.cpu_utilization_percent;
      const relay: Record<string, number> = {};
      for (const [kind, n] of Object.entries(after)) if (n - (before[kind] ?? 0) > 0) relay[kind] = n - (before[kind] ?? 0);
      const s: PassthroughSample = {
        round: round_,
        path: p.id === 'passthrough' ? 'passthrough' : 'direct',
        splice: r.splice,
        streams,
        gbps: round(sum.bits_per_second / 1e9, 3),
        bytes: sum.bytes,
        seconds: round(sum.seconds),
        retransmits: m.result.end?.sum_sent?.retransmits ?? null,
        iperfCpu: cpu ? { client: round(cpu.host_total, 0), server: round(cpu.remote_total, 0) } : null,
        agents: m.agents,
        nodeACpuSecondsPerGB: round((m.agents.cpuSeconds['node-a'] ?? Number.NaN) / (sum.bytes / 1e9), 3),
        relayOnNodeA: relay,
        capturedOnNodeB: m.captured ?? null,
      };
      out.push(s);
      log(`iperf3 ${p.id} (agents --splice ${r.splice}, round ${round_ + 1}/${params.passthroughRounds}) -P ${streams}: ${fmt(s.gbps)} Gbit/s, agents cpu s a/b ${NODES.map((n) => fmt(s.agents.cpuSeconds[n])).join('/')}, node-a relays: ${relayCell(relay)}`);
    }
  }
  return out;
}

/** Medians over the rounds of one (path, splice mode, streams). */
interface PassthroughSummary {
  readonly path: 'passthrough' | 'direct';
  readonly splice: SpliceMode;
  readonly streams: number;
  readonly rounds: number;
  readonly gbps: number;
  readonly gbpsMin: number;
  readonly gbpsMax: number;
  /** Median agent CPU seconds per run, per node. */
  readonly cpuSeconds: Record<string, number>;
  readonly nodeACpuSecondsPerGB: number;
  /** Access-log lines by relay kind on node-a, summed over the rounds. */
  readonly relayOnNodeA: Record<string, number>;
}

function summarize(samples: readonly PassthroughSample[]): PassthroughSummary[] {
  const out: PassthroughSummary[] = [];
  for (const path of ['passthrough', 'direct'] as const) {
    for (const splice of ['on', 'off'] as const) {
      for (const streams of params.passthroughStreams) {
        const xs = samples.filter((s) => s.path === path && s.splice === splice && s.streams === streams);
        if (xs.length === 0) continue;
        const g = xs.map((s) => s.gbps);
        const relay: Record<string, number> = {};
        for (const s of xs) for (const [kind, n] of Object.entries(s.relayOnNodeA)) relay[kind] = (relay[kind] ?? 0) + n;
        out.push({
          path,
          splice,
          streams,
          rounds: xs.length,
          gbps: round(median(g), 3),
          gbpsMin: Math.min(...g),
          gbpsMax: Math.max(...g),
          cpuSeconds: Object.fromEntries(NODES.map((n) => [n, round(median(xs.map((s) => s.agents.cpuSeconds[n] ?? Number.NaN)), 2)])),
          nodeACpuSecondsPerGB: round(median(xs.map((s) => s.nodeACpuSecondsPerGB)), 3),
          relayOnNodeA: relay,
        });
      }
    }
  }
  return out;
}

const relayCell = (r: Record<string, number>): string => {
  const e = Object.entries(r);
  return e.length === 0 ? 'none' : e.map(([k, v]) => `${k} ${v}`).join(', ');
};

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark builds a network-namespace lab and needs root');
  if (spawnSync('sh', ['-c', 'command -v iperf3'], { stdio: 'ignore' }).status !== 0) throw new Error('iperf3 is not installed (scripts/bench.mjs installs it as root)');
  const startedAt = new Date();
  const loadavgStart = os.loadavg();

  // Only the lab named LAB is touched, first any leftover of an earlier run.
  await labDown(LAB);
  onCleanup('remove lab', () => labDown(LAB));
  const first = await startLab('on', [POD.server, POD.legacyB], [...PATHS, ...(params.passthrough ? [PASSTHROUGH] : [])]);
  const { lab, ips, pids } = first;
  const serverIp = (p: PathDef): string => (p.to === POD.server ? ips.server.ip : ips.legacyB.ip);
  const agentStart = agentSnapshot(pids);

  // The stunnel4 peer, when installed (scripts/bench.mjs installs it as root).
  const needsPeer = SCENARIOS.some((x) => x !== 'passthrough' && selected.has(x));
  let stunnelPids: Record<string, number> = {};
  const notes: string[] = [];
  if (!params.stunnel) notes.push('stunnel4 peer skipped (--no-stunnel)');
  else if (!has('stunnel4')) notes.push('stunnel4 peer skipped: stunnel4 is not installed');
  else if (needsPeer) stunnelPids = await startStunnel(first);
  const contenders: readonly PathDef[] = Object.keys(stunnelPids).length > 0 ? [...PATHS, STUNNEL] : PATHS;
  /** The issue's contenders (direct, L4 mesh, the peer) for the scenarios added for it; inbound only where it always was. */
  const core = contenders.filter((p) => p.id !== 'inbound');
  /** Agents and stunnel processes: every measurement records all of them. */
  const procPids = { ...pids, ...stunnelPids };
  const ep = (p: PathDef, svc: Service): { host: string; port: number } => (p.id === 'stunnel' ? { host: '127.0.0.1', port: STUNNEL_PORTS[svc].local } : { host: serverIp(p), port: PORTS[svc] });

  const countersStart = await capturedConnections(lab);
  log(`all paths answer; node-b counters ${countersStart ? 'readable' : 'NOT readable (capture check skipped)'}`);

  // Throughput, rotated order so drift on a noisy machine is spread over the paths.
  const throughput: ThroughputSample[] = [];
  let k = 0;
  for (const streams of selected.has('throughput') ? params.streams : []) {
    const order = contenders.map((_, i) => contenders[(i + k) % contenders.length] as PathDef);
    k++;
    for (const p of order) {
      const e = ep(p, 'iperf');
      const m = await measured(lab, procPids, () => iperf(lab, p, e.host, streams, e.port));
      const sum = m.result.end?.sum_received as { bytes: number; seconds: number; bits_per_second: number };
      const cpu = m.result.end?.cpu_utilization_percent;
      const s: ThroughputSample = {
        path: p.id,
        streams,
        gbps: round(sum.bits_per_second / 1e9, 3),
        bytes: sum.bytes,
        seconds: round(sum.seconds),
        retransmits: m.result.end?.sum_sent?.retransmits ?? null,
        iperfCpu: cpu ? { client: round(cpu.host_total, 0), server: round(cpu.remote_total, 0) } : null,
        agents: m.agents,
        capturedOnNodeB: m.captured ?? null,
      };
      throughput.push(s);
      log(`iperf3 ${p.id} -P ${streams}: ${fmt(s.gbps)} Gbit/s, proxies cpu ${proxyCell(p.id, s.agents)} %, node-b captured: ${capCell(s.capturedOnNodeB)}`);
    }
  }

  // Request/response latency at fixed rates (open loop): a new connection per
  // request at --rate, then keep-alive at each of --rates.
  const latency: LatencySample[] = [];
  const latencyPlan: Array<{ keepAlive: boolean; rps: number }> = [
    ...(selected.has('latency') ? [{ keepAlive: false, rps: params.rps }] : []),
    ...(selected.has('rates') ? params.rates.map((rps) => ({ keepAlive: true, rps })) : []),
  ];
  for (const { keepAlive, rps } of latencyPlan) {
    // Keep-alive at rates other than --rate: the core paths only (time).
    const set = keepAlive && rps !== params.rps ? core : contenders;
    const order = set.map((_, i) => set[(i + k) % set.length] as PathDef);
    k++;
    for (const p of order) {
      const e = ep(p, 'http');
      const m = await measured(lab, procPids, () => load(lab, p, e.host, { rps, seconds: params.latencySeconds, warmupSeconds: params.latencyWarmupSeconds, bodyBytes: params.requestBytes, keepAlive }, e.port));
      const r = m.result;
      const s: LatencySample = {
        path: p.id,
        keepAlive,
        rps,
        sent: r.sent,
        completed: r.completed,
        errors: r.errors,
        skipped: r.skipped,
        firstErrors: r.firstErrors,
        achievedRps: r.achievedRps,
        connections: r.connections,
        p50Ms: percentile(r.latencyMs, 50),
        p90Ms: percentile(r.latencyMs, 90),
        p99Ms: percentile(r.latencyMs, 99),
        maxMs: percentile(r.latencyMs, 100),
        cpuSecondsPer1kRequests: cpuPer1k(p.id, m.agents, r.sent),
        agents: m.agents,
        capturedOnNodeB: m.captured ?? null,
        latencyMs: r.latencyMs,
      };
      latency.push(s);
      log(`latency ${p.id} ${keepAlive ? 'keep-alive' : 'new conn'} at ${rps}/s: ${fmt(s.achievedRps, 0)}/s p50 ${fmt(s.p50Ms, 3)} ms p99 ${fmt(s.p99Ms, 3)} ms, errors ${s.errors}, proxies cpu ${proxyCell(p.id, s.agents)} %`);
    }
  }

  // Saturation: h2load, keep-alive, one request in flight per connection.
  const saturation: SaturationSample[] = [];
  if (selected.has('saturation')) {
    if (!has('h2load')) notes.push('saturation skipped: h2load (nghttp2-client) is not installed');
    else {
      const order = core.map((_, i) => core[(i + k) % core.length] as PathDef);
      k++;
      for (const p of order) {
        const e = ep(p, 'http');
        const sat = params.saturation;
        const argv = h2loadArgv({ url: `http://${e.host}:${e.port}/`, clients: sat.clients, seconds: sat.seconds, warmupSeconds: sat.warmupSeconds });
        const m = await measured(lab, procPids, async () => {
          const res = await lab.exec(p.from, argv, { timeoutMs: (sat.seconds + sat.warmupSeconds + 30) * 1000 });
          if (res.code !== 0) throw new Error(`h2load (${p.id}) failed (exit ${res.code ?? res.signal}): ${(res.stderr || res.stdout).trim().slice(-1000)}`);
          return parseH2load(res.stdout);
        });
        // The CPU window includes the warm-up; h2load counts only after it.
        const requests = m.result.rps * (sat.seconds + sat.warmupSeconds);
        const s: SaturationSample = { path: p.id, clients: sat.clients, seconds: sat.seconds, ...m.result, cpuSecondsPer1kRequests: cpuPer1k(p.id, m.agents, requests), agents: m.agents };
        saturation.push(s);
        log(`saturation ${p.id}: ${fmt(s.rps, 0)} req/s (failed ${s.failed}, errored ${s.errored}), proxies cpu ${proxyCell(p.id, s.agents)} %`);
      }
    }
  }

  // New connections per second: closed-loop storm, a new TCP connection per request.
  const connections: ConnectionSample[] = [];
  if (selected.has('connections')) {
    const order = core.map((_, i) => core[(i + k) % core.length] as PathDef);
    k++;
    for (const p of order) {
      const e = ep(p, 'http');
      const st = params.storm;
      const args: StormArgs = { host: e.host, port: e.port, concurrency: st.concurrency, seconds: st.seconds, warmupSeconds: st.warmupSeconds };
      const m = await measured(lab, procPids, async () => {
        const res = await lab.exec(p.from, [process.execPath, STORM_JS, JSON.stringify(args)], { timeoutMs: (st.seconds + st.warmupSeconds + 30) * 1000 });
        if (res.code !== 0) throw new Error(`storm (${p.id}) failed (exit ${res.code ?? res.signal}): ${res.stderr.trim().slice(-1000)}`);
        return JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as StormResult;
      });
      const r = m.result;
      const s: ConnectionSample = {
        path: p.id,
        concurrency: st.concurrency,
        rate: r.rate,
        completed: r.completed,
        errors: r.errors,
        firstErrors: r.firstErrors,
        p50Ms: r.p50Ms,
        p99Ms: r.p99Ms,
        cpuMsPerConnection: Object.fromEntries(proxiesOf(p.id).map((n) => [n, round(((m.agents.cpuSeconds[n] ?? Number.NaN) * 1000) / Math.max(1, r.completedTotal), 3)])),
        agents: m.agents,
      };
      connections.push(s);
      log(`new connections ${p.id}: ${fmt(s.rate, 0)}/s p50 ${fmt(s.p50Ms, 3)} ms, errors ${s.errors}, proxies cpu ${proxyCell(p.id, s.agents)} %`);
    }
  }

  // Memory per 1,000 idle tunnelled connections: the proxies' RSS with the
  // connections open (each echoed once, so the whole tunnel exists) minus before.
  const idle: IdleSample[] = [];
  if (selected.has('idle')) {
    for (const p of contenders.filter((x) => x.id === 'mesh' || x.id === 'stunnel')) idle.push(await idleConnections(lab, p, ep(p, 'idle'), procPids));
  }
  const agentEnd = agentSnapshot(pids);
  const countersEnd = await capturedConnections(lab);

  // Passthrough: splice with these agents, then copy in the lab rebuilt with
  // the agents started --splice off (an agent's relay mode is fixed at start).
  // Direct is measured again in each lab as that lab's reference.
  const passthrough: PassthroughSample[] = [];
  let second: RunningLab | undefined;
  if (params.passthrough) {
    passthrough.push(...(await measurePassthrough(first, k)));
    await stopAgentsForProfile(first.pids);
    log(`rebuilding lab '${LAB}' with the agents started with --splice off`);
    await labDown(LAB);
    second = await startLab('off', [POD.legacyB], [PASSTHROUGH, DIRECT]);
    passthrough.push(...(await measurePassthrough(second, k + 1)));
    await stopAgentsForProfile(second.pids);
  } else await stopAgentsForProfile(first.pids);

  // ---------------------------------------------------------------- ratios and table
  const tp = (path: PathId, streams: number): ThroughputSample | undefined => throughput.find((s) => s.path === path && s.streams === streams);
  const lat = (path: PathId, keepAlive: boolean, rps: number = params.rps): LatencySample | undefined => latency.find((s) => s.path === path && s.keepAlive === keepAlive && s.rps === rps);
  const byStreams = (a: PathId, b: PathId): Record<string, number> => Object.fromEntries(params.streams.map((n) => [String(n), round((tp(a, n)?.gbps ?? Number.NaN) / (tp(b, n)?.gbps ?? Number.NaN), 3)]));
  type Added = { p50AddedMs: number; p99AddedMs: number; p50Ratio: number; p99Ratio: number };
  const overhead = (a: PathId, b: PathId): { newConnection: Added; keepAlive: Added } =>
    Object.fromEntries(
      [false, true].map((ka) => {
        const x = lat(a, ka);
        const y = lat(b, ka);
        const d = (f: 'p50Ms' | 'p99Ms'): number => round((x?.[f] ?? Number.NaN) - (y?.[f] ?? Number.NaN), 3);
        const q = (f: 'p50Ms' | 'p99Ms'): number => round((x?.[f] ?? Number.NaN) / (y?.[f] ?? Number.NaN), 2);
        return [ka ? 'keepAlive' : 'newConnection', { p50AddedMs: d('p50Ms'), p99AddedMs: d('p99Ms'), p50Ratio: q('p50Ms'), p99Ratio: q('p99Ms') }];
      }),
    ) as { newConnection: Added; keepAlive: Added };
  const ptSummary = summarize(passthrough);
  const pt = (path: 'passthrough' | 'direct', splice: SpliceMode, streams: number): PassthroughSummary | undefined =>
    ptSummary.find((s) => s.path === path && s.splice === splice && s.streams === streams);
  const ptRatio = (a: [path: 'passthrough' | 'direct', splice: SpliceMode], b: [path: 'passthrough' | 'direct', splice: SpliceMode], f: (s: PassthroughSummary | undefined) => number = (s) => s?.gbps ?? Number.NaN): Record<string, number> =>
    Object.fromEntries(params.passthroughStreams.map((n) => [String(n), round(f(pt(a[0], a[1], n)) / f(pt(b[0], b[1], n)), 3)]));
  const cpuPerGB = (s: PassthroughSummary | undefined): number => s?.nodeACpuSecondsPerGB ?? Number.NaN;
  const passthroughRatios = params.passthrough
    ? {
        splice_over_copy: { label: 'splice / copy', byStreams: ptRatio(['passthrough', 'on'], ['passthrough', 'off']) },
        splice_over_direct: { label: 'splice / direct (same lab)', byStreams: ptRatio(['passthrough', 'on'], ['direct', 'on']) },
        copy_over_direct: { label: 'copy / direct (same lab)', byStreams: ptRatio(['passthrough', 'off'], ['direct', 'off']) },
        nodeA_cpu_per_gb_splice_over_copy: { label: 'node-a CPU s/GB splice / copy', byStreams: ptRatio(['passthrough', 'on'], ['passthrough', 'off'], cpuPerGB) },
      }
    : null;
  const ratios = {
    passthrough: passthroughRatios,
    throughput: {
      mesh_over_direct: { label: 'mesh / direct', byStreams: byStreams('mesh', 'direct') },
      inbound_over_direct: { label: 'plaintext inbound / direct', byStreams: byStreams('inbound', 'direct') },
      stunnel_over_direct: { label: 'stunnel4 / direct', byStreams: byStreams('stunnel', 'direct') },
      mesh_over_stunnel: { label: 'mesh / stunnel4', byStreams: byStreams('mesh', 'stunnel') },
    },
    latency: {
      mesh_vs_direct: { label: 'mesh - direct', ...overhead('mesh', 'direct') },
      inbound_vs_direct: { label: 'plaintext inbound - direct', ...overhead('inbound', 'direct') },
      stunnel_vs_direct: { label: 'stunnel4 - direct', ...overhead('stunnel', 'direct') },
    },
  };

  const machine = machineInfo(loadavgStart, { iperf3: version(['iperf3', '-v']), nft: version(['nft', '--version']), stunnel4: version(['sh', '-c', 'stunnel4 -version 2>&1 | grep -m1 "^stunnel"']), h2load: version(['h2load', '--version']) });


  const L: string[] = [];
  L.push(`In-pod capture benchmark, lab '${LAB}' (mesh: true, one ambit agent per node), node-a -> node-b over veth/bridge`);
  L.push(`${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, kernel ${machine.kernel}; load avg ${loadavgStart.map((x) => x.toFixed(2)).join(' ')} -> ${machine.loadavgEnd.map((x) => x.toFixed(2)).join(' ')}`);
  L.push('');
  const [s1, sN] = [params.streams[0] ?? 1, params.streams[1] ?? 8];
  if (throughput.length > 0) {
    L.push(`Throughput, iperf3 -t ${params.iperfSeconds}, Gbit/s (receiver); proxies' CPU % of one core (agents node-a/node-b, stunnel client/server); connections node-b's agent accepted`);
    L.push(`${pad('path', 38)}${pad(`${s1} stream`, 10, true)}  ${pad('proxies', 10)}${pad(`${sN} streams`, 10, true)}  ${pad('proxies', 10)}captured (node-b, ${sN} streams)`);
    for (const p of contenders) {
      const one = tp(p.id, s1);
      const many = tp(p.id, sN);
      L.push(`${pad(p.label, 38)}${pad(fmt(one?.gbps), 10, true)}  ${pad(one ? proxyCell(p.id, one.agents) : '-', 10)}${pad(fmt(many?.gbps), 10, true)}  ${pad(many ? proxyCell(p.id, many.agents) : '-', 10)}${many ? capCell(many.capturedOnNodeB) : '-'}`);
    }
    for (const r of Object.values(ratios.throughput)) {
      L.push(`${pad(`ratio ${r.label}`, 38)}${pad(fmt(r.byStreams[String(s1)], 3), 10, true)}  ${pad('', 10)}${pad(fmt(r.byStreams[String(sN)], 3), 10, true)}`);
    }
    L.push('');
  }
  if (latency.length > 0) {
    L.push(`Request/response, ${params.requestBytes} B POST -> ${params.responseBytes} B answer, open loop, ${params.latencySeconds} s (after ${params.latencyWarmupSeconds} s warm-up), ms from request issued to response end; CPU s per 1,000 requests per proxy process`);
    L.push(`${pad('path', 38)}${pad('conn', 12)}${pad('rate', 6, true)}${pad('done/s', 8, true)}${pad('p50', 9, true)}${pad('p90', 9, true)}${pad('p99', 9, true)}${pad('err', 5, true)}  ${pad('cpu %', 10)}${pad('cpu s/1k', 16)}captured (node-b)`);
    for (const { keepAlive: ka, rps } of latencyPlan) {
      for (const p of contenders) {
        const s = lat(p.id, ka, rps);
        if (!s) continue;
        const per1k = Object.values(s.cpuSecondsPer1kRequests).map((v) => fmt(v, 3)).join('/') || '-';
        L.push(`${pad(p.label, 38)}${pad(ka ? 'keep-alive' : 'new per req', 12)}${pad(String(rps), 6, true)}${pad(fmt(s.achievedRps, 0), 8, true)}${pad(fmt(s.p50Ms, 3), 9, true)}${pad(fmt(s.p90Ms, 3), 9, true)}${pad(fmt(s.p99Ms, 3), 9, true)}${pad(String(s.errors + s.skipped), 5, true)}  ${pad(proxyCell(p.id, s.agents), 10)}${pad(per1k, 16)}${capCell(s.capturedOnNodeB)}`);
      }
    }
    for (const [key, label] of [['mesh_vs_direct', 'mesh - direct'], ['inbound_vs_direct', 'plaintext inbound - direct'], ['stunnel_vs_direct', 'stunnel4 - direct']] as const) {
      const o = ratios.latency[key];
      const added = (x: Added): string => `p50 ${signed(x.p50AddedMs)} ms (x${fmt(x.p50Ratio)}), p99 ${signed(x.p99AddedMs)} ms (x${fmt(x.p99Ratio)})`;
      L.push(`added latency at ${params.rps}/s, ${label}:`);
      L.push(`  ${pad('new connection per request', 28)}${added(o.newConnection)}`);
      L.push(`  ${pad('keep-alive', 28)}${added(o.keepAlive)}`);
    }
  }
  if (saturation.length > 0) {
    L.push('');
    L.push(`Saturation, h2load --h1 -c ${params.saturation.clients} -m 1 -D ${params.saturation.seconds} (keep-alive, GET, 1 KiB answer): requests/s; proxies' CPU %; CPU s per 1,000 requests`);
    for (const s of saturation) {
      const label = contenders.find((p) => p.id === s.path)?.label ?? s.path;
      L.push(`${pad(label, 38)}${pad(fmt(s.rps, 0), 10, true)}  fail ${pad(String(s.failed + s.errored), 5)}${pad(proxyCell(s.path, s.agents), 10)}${Object.values(s.cpuSecondsPer1kRequests).map((v) => fmt(v, 3)).join('/')}`);
    }
  }
  if (connections.length > 0) {
    L.push('');
    L.push(`New connections per second, ${params.storm.concurrency} closed-loop workers, each request a new TCP connection, ${params.storm.seconds} s: rate, p50/p99 ms, proxies' CPU %, CPU ms per connection`);
    for (const s of connections) {
      const label = contenders.find((p) => p.id === s.path)?.label ?? s.path;
      L.push(`${pad(label, 38)}${pad(fmt(s.rate, 0), 8, true)}/s ${pad(fmt(s.p50Ms, 2), 8, true)} ${pad(fmt(s.p99Ms, 2), 8, true)}  err ${pad(String(s.errors), 4)}${pad(proxyCell(s.path, s.agents), 10)}${Object.values(s.cpuMsPerConnection).map((v) => fmt(v, 3)).join('/')}`);
    }
  }
  if (idle.length > 0) {
    L.push('');
    L.push(`Memory per 1,000 idle tunnelled connections (${params.idleConnections} opened, each echoed once, then idle): RSS MiB delta per 1,000, per proxy process`);
    for (const s of idle) {
      const label = contenders.find((p) => p.id === s.path)?.label ?? s.path;
      L.push(`${pad(label, 38)}open ${s.open}/${s.requested} in ${s.openMs} ms  ${Object.entries(s.rssMiBPer1kConnections).map(([n, v]) => `${n} ${fmt(v)}`).join(', ')}`);
    }
  }
  if (params.passthrough) {
    L.push('');
    L.push(`Passthrough, mesh/client -> outside/legacy-b (captured on node-a, the agent dials legacy-b directly and relays plain TCP), iperf3 -t ${params.iperfSeconds}, ${params.passthroughRounds} round(s) per lab`);
    L.push(`Gbit/s (receiver; median, min..max); agent CPU seconds node-a/node-b per run (median); s/GB a = node-a CPU s per GB (4 streams); relays = node-a access-log lines by relay kind (4 streams, all rounds)`);
    L.push(`${pad('path', 34)}${pad('1 stream', 19, true)}  ${pad('cpu s', 10)}${pad('4 streams', 19, true)}  ${pad('cpu s', 10)}${pad('s/GB a', 7, true)}  relays`);
    const cpuS = (u: PassthroughSummary): string => NODES.map((n) => fmt(u.cpuSeconds[n])).join('/');
    const gbpsCell = (u: PassthroughSummary | undefined): string => (u ? `${fmt(u.gbps)}${u.rounds > 1 ? ` ${fmt(u.gbpsMin)}..${fmt(u.gbpsMax)}` : ''}` : '-');
    for (const [path, splice, label] of [
      ['passthrough', 'on', 'passthrough, agents --splice on'],
      ['passthrough', 'off', 'passthrough, agents --splice off'],
      ['direct', 'on', 'direct (lab with --splice on)'],
      ['direct', 'off', 'direct (lab with --splice off)'],
    ] as const) {
      const one = pt(path, splice, 1);
      const four = pt(path, splice, 4);
      L.push(
        `${pad(label, 34)}${pad(gbpsCell(one), 19, true)}  ${pad(one ? cpuS(one) : '-', 10)}${pad(gbpsCell(four), 19, true)}  ${pad(four ? cpuS(four) : '-', 10)}${pad(path === 'passthrough' ? fmt(four?.nodeACpuSecondsPerGB, 3) : '', 7, true)}  ${four ? relayCell(four.relayOnNodeA) : '-'}`,
      );
    }
    for (const r of Object.values(passthroughRatios ?? {})) {
      L.push(`${pad(`ratio ${r.label}`, 34)}${pad(fmt(r.byStreams['1'], 3), 19, true)}  ${pad('', 10)}${pad(fmt(r.byStreams['4'], 3), 19, true)}`);
    }
  }
  L.push('');
  const whole = usage(agentStart, agentEnd);
  L.push(`Agents over the whole run (${fmt(whole.wallSeconds, 1)} s): CPU s ${NODES.map((n) => `${n} ${fmt(whole.cpuSeconds[n])}`).join(', ')}; RSS MiB start -> end ${NODES.map((n) => `${n} ${fmt((agentStart.rssKiB[n] ?? Number.NaN) / 1024, 1)} -> ${fmt((agentEnd.rssKiB[n] ?? Number.NaN) / 1024, 1)}`).join(', ')}`);
  console.log(`\n${L.join('\n')}`);

  const report = {
    schema: 'ambit-bench-inpod/3',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    durationSeconds: round((performance.now() - t0) / 1000, 1),
    machine,
    parameters: params,
    topology: {
      lab: LAB,
      fixture: 'test/fixtures/bench/inpod.yaml',
      pods: Object.fromEntries(Object.values(ips).map((w) => [`${w.namespace}/${w.name}`, { node: w.node, ip: w.ip }])),
      agents: Object.fromEntries(NODES.map((n) => [n, { pid: pids[n], splice: 'on', ...(second ? { pidSpliceOff: second.pids[n] } : {}) }])),
      paths: Object.fromEntries([...contenders, ...(params.passthrough ? [PASSTHROUGH] : [])].map((p) => [p.id, p.what])),
      stunnel: Object.keys(stunnelPids).length > 0 ? { pids: stunnelPids, ports: STUNNEL_PORTS } : null,
    },
    units: {
      throughput: 'Gbit/s (1e9 bit/s), iperf3 end.sum_received.bits_per_second',
      latency: 'ms from http.request() to the end of the response body',
      agentCpu: 'CPU seconds (utime+stime of the agent and its children) over the phase, and percent of one core',
      rss: 'KiB, VmRSS of the agent process',
      nodeACpuSecondsPerGB: 'node-a agent CPU seconds / (iperf3 received bytes / 1e9)',
      relayOnNodeA: 'new access-log lines in the node-a agent log by relay field over the run',
      captured: "change of node-b's istio_tcp_connections_opened_total{reporter=destination} by connection_security_policy over the phase",
      cpuSecondsPer1kRequests: 'CPU seconds of each proxy process (agents node-a/node-b, stunnel-client/stunnel-server) over the phase / (requests / 1000); latency: all requests sent, warm-up included; saturation: h2load req/s x (duration + warm-up)',
      saturation: 'h2load requests/s (its own figure, after the warm-up)',
      connections: 'completed requests, each on a new TCP connection, per second; cpuMsPerConnection = proxy CPU ms / connections completed, warm-up included',
      idle: 'rssMiBPer1kConnections = (VmRSS with the connections open 2 s after the last was echoed - VmRSS 1 s before opening) / 1024 / (open / 1000)',
    },
    throughput,
    latency,
    saturation,
    connections,
    idle,
    notes,
    passthrough: params.passthrough
      ? {
          what: 'iperf3 mesh/client -> outside/legacy-b (passthrough, node-a agent) and outside/legacy -> outside/legacy-b (direct); splice "on" samples come from the first lab, "off" from the lab rebuilt with the agents started --splice off',
          summary: ptSummary,
          samples: passthrough,
        }
      : null,
    ratios,
    agents: { start: agentStart, end: agentEnd, whole, capturedOnNodeB: { start: countersStart ?? null, end: countersEnd ?? null } },
  };
  // A profiling run (agents slowed by the profiler, usually one scenario) does not replace inpod-latest.json.
  const file = PROFILE_DIR === undefined ? writeResults(RESULTS, 'inpod', 'inpod-latest.json', startedAt, report) : writeResults(PROFILE_DIR, 'inpod', 'inpod-profile.json', startedAt, report);
  log(`results written to ${file}${PROFILE_DIR === undefined ? ' and bench/results/inpod-latest.json' : ' (profiling run: inpod-latest.json left as it was)'}`);
}

try {
  await main();
} catch (err) {
  console.error(`in-pod benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
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
