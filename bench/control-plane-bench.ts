/**
 * `npm run bench -- --only control-plane`: the control plane at cluster
 * scale (issue 4): a synthetic cluster (default 10,000 pods, 2,000 services,
 * 1,000 AuthorizationPolicies in 100 ambient namespaces on 50 nodes) as a
 * folder of manifests, one file per namespace, served by `ambit
 * control-plane` (its own process, loopback only) to 10 agent-like xDS
 * clients (bench/lib/control-plane-agents.ts, in --agent-procs processes).
 *
 * Measures
 *   - time to first full push: `start` sent to the (already running) client
 *     processes, with the control plane ready, until all clients are synced;
 *   - change delay: one pod's `version` label rewritten (one small file,
 *     written to a temp name and renamed), until every agent has applied the
 *     new workload (store, and ClusterState rebuilt); p50/p99 over --changes;
 *   - bytes pushed per change vs the full state (ambit_xds_pushed_bytes_total
 *     from the control plane's /metrics);
 *   - RSS of the control plane (/proc VmRSS) and of one extra agent process
 *     holding the whole state (after a forced GC, --expose-gc).
 * Writes bench/results/control-plane-<time>.json and control-plane-latest.json.
 * The temp dir and every child process are removed at the end, on failure
 * and on Ctrl-C.
 *
 * Options: --pods N (10000), --services N (2000), --policies N (1000),
 * --namespaces N (100), --nodes N (50), --agents N (10), --agent-procs N (2),
 * --changes N (30), --interval S (1), --no-view, --quick (2,000 pods, 400
 * services, 200 policies, 20 namespaces, 10 changes, 0.5 s apart).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import type { AgentEvent, AgentsConfig } from './lib/control-plane-agents.js';
import { Endpoint, stopChild } from './lib/endpoint.js';
import { fmt, Harness, machineInfo, num, pad, writeResults } from './lib/harness.js';
import { cpuSeconds } from './lib/proc.js';
import { median, percentile, round } from './lib/stats.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RESULTS = join(ROOT, 'bench/results');
const AMBIT = join(ROOT, 'bin/ambit.js');
const AGENTS_JS = fileURLToPath(new URL('./lib/control-plane-agents.js', import.meta.url));

// ------------------------------------------------------------------ parameters

const { values: opt } = parseArgs({
  options: {
    pods: { type: 'string' },
    services: { type: 'string' },
    policies: { type: 'string' },
    namespaces: { type: 'string' },
    nodes: { type: 'string' },
    agents: { type: 'string' },
    'agent-procs': { type: 'string' },
    changes: { type: 'string' },
    interval: { type: 'string' },
    'no-view': { type: 'boolean' },
    quick: { type: 'boolean' },
  },
});
const quick = opt.quick === true;
const int = (v: string | undefined, d: number, name: string): number => Math.round(num(v, d, name));
const params = {
  pods: int(opt.pods, quick ? 2000 : 10_000, 'pods'),
  services: int(opt.services, quick ? 400 : 2000, 'services'),
  policies: int(opt.policies, quick ? 200 : 1000, 'policies'),
  namespaces: int(opt.namespaces, quick ? 20 : 100, 'namespaces'),
  nodes: int(opt.nodes, 50, 'nodes'),
  agents: int(opt.agents, 10, 'agents'),
  agentProcs: int(opt['agent-procs'], 2, 'agent-procs'),
  changes: int(opt.changes, quick ? 10 : 30, 'changes'),
  intervalSeconds: num(opt.interval, quick ? 0.5 : 1, 'interval'),
  rebuildView: opt['no-view'] !== true,
  manifestDebounceMs: 100,
  xdsDebounceMs: 100,
};
if (params.agentProcs > params.agents) params.agentProcs = params.agents;

const harness = new Harness('control-plane benchmark');
const startedAt = new Date();
const loadavgStart = os.loadavg();

// ------------------------------------------------------------------ synthetic cluster

const TRUST = 'cluster.local';
const nsName = (n: number): string => `bench-${String(n).padStart(3, '0')}`;
const nodeName = (k: number): string => `node-${String(k).padStart(2, '0')}`;
const nodeIp = (k: number): string => `172.18.${k >> 8}.${(k & 255) + 1}`;
const podIp = (i: number): string => `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
const svcIp = (i: number): string => `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
/** Spreads `total` over `parts` as evenly as possible; part p gets share(p). */
const share = (total: number, parts: number, p: number): number => Math.floor(total / parts) + (p < total % parts ? 1 : 0);

interface Cluster {
  /** File name -> namespace index, and a function rendering the file with the watched pod at revision `rev`. */
  readonly render: (ns: number, rev: string) => string;
  readonly watched: { namespace: string; pod: string; uid: string; file: string; ns: number };
}

function buildCluster(): Cluster {
  const podStart: number[] = [];
  const svcStart: number[] = [];
  const polStart: number[] = [];
  let p = 0;
  let s = 0;
  let a = 0;
  for (let n = 0; n < params.namespaces; n++) {
    podStart.push(p);
    svcStart.push(s);
    polStart.push(a);
    p += share(params.pods, params.namespaces, n);
    s += share(params.services, params.namespaces, n);
    a += share(params.policies, params.namespaces, n);
  }
  const render = (n: number, rev: string): string => {
    const ns = nsName(n);
    const pods = share(params.pods, params.namespaces, n);
    const svcs = Math.max(1, share(params.services, params.namespaces, n));
    const pols = share(params.policies, params.namespaces, n);
    const docs: unknown[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'istio.io/dataplane-mode': 'ambient' } } }];
    for (let k = 0; k < pods; k++) {
      const i = (podStart[n] ?? 0) + k;
      docs.push({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `pod-${k}`, namespace: ns, labels: { app: `app-${k % svcs}`, version: k === 0 ? rev : 'v0' } },
        spec: { nodeName: nodeName(i % params.nodes), serviceAccountName: `sa-${k % 10}`, containers: [{ name: 'main', image: 'app', ports: [{ name: 'http', containerPort: 8080 }] }] },
        status: { podIP: podIp(i + 1), conditions: [{ type: 'Ready', status: 'True' }] },
      });
    }
    for (let k = 0; k < share(params.services, params.namespaces, n); k++) {
      docs.push({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: `svc-${k}`, namespace: ns },
        spec: { clusterIP: svcIp((svcStart[n] ?? 0) + k + 1), selector: { app: `app-${k}` }, ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'grpc', port: 9090, targetPort: 9090 }] },
      });
    }
    for (let k = 0; k < pols; k++) {
      docs.push({
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: `allow-${k}`, namespace: ns },
        spec: {
          selector: { matchLabels: { app: `app-${k % svcs}` } },
          action: 'ALLOW',
          rules: [
            {
              from: [{ source: { principals: [`${TRUST}/ns/${ns}/sa/sa-${k % 10}`, `${TRUST}/ns/${nsName((n + 1) % params.namespaces)}/sa/sa-${(k + 1) % 10}`] } }, { source: { namespaces: [nsName((n + 2) % params.namespaces)] } }],
              to: [{ operation: { ports: ['8080', '9090'] } }],
            },
          ],
        },
      });
    }
    return docs.map((d) => stringify(d)).join('---\n');
  };
  const ns = nsName(0);
  return { render, watched: { namespace: ns, pod: 'pod-0', uid: `Kubernetes//Pod/${ns}/pod-0`, file: `${ns}.yaml`, ns: 0 } };
}

function nodesYaml(): string {
  const docs: unknown[] = [];
  for (let k = 0; k < params.nodes; k++) docs.push({ apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName(k) } });
  return docs.map((d) => stringify(d)).join('---\n');
}

// ------------------------------------------------------------------ processes

/** `ambit control-plane` in its own process; resolves once its ready file exists. */
interface ControlPlaneProc {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly ports: { grpc: number; plaintext: number; monitoring: number };
  readonly spawnedAt: number;
  readonly readyAt: number;
  /** `configuration translated` log lines: wall time and the ms it reports. */
  readonly translations: { t: number; ms: number; addresses: number; authorizations: number }[];
  output(): string;
}

async function startControlPlane(dir: string): Promise<ControlPlaneProc> {
  const readyFile = join(dir, 'ready');
  const tokens = join(dir, 'node-tokens');
  writeFileSync(tokens, Array.from({ length: params.nodes }, (_, k) => `bench-node-token-${String(k).padStart(8, "0")} ${nodeName(k)}`).join('\n') + '\n');
  const argv = [AMBIT, 'control-plane', '--manifests', join(dir, 'manifests'), '--node-tokens', tokens, '--ca-dir', join(dir, 'ca'), '--address', '127.0.0.1', '--port', '0', '--plaintext-port', '0', '--monitoring-port', '0', '--ready-file', readyFile, '--log-level', 'info'];
  const spawnedAt = Date.now();
  const proc = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  harness.onCleanup('stop the control plane', () => stopChild(proc, 5000));
  let tail = '';
  const keep = (s: string): void => {
    tail = (tail + s).slice(-8192);
  };
  proc.stderr?.on('data', (d: Buffer) => keep(d.toString()));
  const translations: ControlPlaneProc['translations'] = [];
  let ports: ControlPlaneProc['ports'] | undefined;
  createInterface({ input: proc.stdout ?? process.stdin }).on('line', (line) => {
    let m: { msg?: string; ports?: ControlPlaneProc['ports']; ms?: number; addresses?: number; authorizations?: number; level?: number };
    try {
      m = JSON.parse(line) as typeof m;
    } catch {
      keep(`${line}\n`);
      return;
    }
    if ((m.level ?? 0) >= 40) keep(`${line}\n`);
    if (m.msg === 'control plane serving' && m.ports) ports = m.ports;
    if (m.msg === 'configuration translated') translations.push({ t: Date.now(), ms: m.ms ?? Number.NaN, addresses: m.addresses ?? 0, authorizations: m.authorizations ?? 0 });
  });
  const deadline = Date.now() + 180_000;
  while (!existsSync(readyFile) || !ports) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`the control plane exited before it was ready: ${tail}`);
    if (harness.interrupted) throw new Error('interrupted while the control plane was starting');
    if (Date.now() > deadline) throw new Error(`the control plane was not ready after 180 s: ${tail}`);
    await sleep(5);
  }
  const readyAt = Date.now();
  if (proc.pid === undefined) throw new Error('the control plane has no pid');
  return { proc, pid: proc.pid, ports, spawnedAt, readyAt, translations, output: () => tail };
}

interface AgentsProc {
  readonly ep: Endpoint;
  readonly events: AgentEvent[];
  readonly first: number;
  readonly count: number;
}

const listeners = new Set<(e: AgentEvent) => void>();

function startAgents(name: string, cfg: AgentsConfig, first: number, gcFlag: boolean): AgentsProc {
  const args = [...(gcFlag ? ['--expose-gc'] : []), AGENTS_JS, JSON.stringify(cfg)];
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  const ep = new Endpoint(name, proc);
  harness.onCleanup(`stop ${name}`, () => stopChild(proc));
  const events: AgentEvent[] = [];
  createInterface({ input: proc.stdout ?? process.stdin }).on('line', (line) => {
    let e: AgentEvent;
    try {
      e = JSON.parse(line) as AgentEvent;
    } catch {
      return;
    }
    if (e.ev !== 'synced' && e.ev !== 'applied' && e.ev !== 'error') return;
    const g: AgentEvent = { ...e, agent: e.agent + first };
    events.push(g);
    if (g.ev === 'error') console.error(`${name}: agent ${g.agent}: ${g.message ?? ''}`);
    for (const l of listeners) l(g);
  });
  return { ep, events, first, count: cfg.agents.length };
}

/** Resolves with the events once `pred` holds for `n` distinct agents. */
function waitAgents(what: string, n: number, pred: (e: AgentEvent) => boolean, timeoutMs: number, already: readonly AgentEvent[] = []): Promise<Map<number, AgentEvent>> {
  return new Promise((resolve, reject) => {
    const got = new Map<number, AgentEvent>();
    const done = (): void => {
      listeners.delete(on);
      clearTimeout(timer);
      resolve(got);
    };
    const on = (e: AgentEvent): void => {
      if (pred(e) && !got.has(e.agent)) got.set(e.agent, e);
      if (got.size >= n) done();
    };
    const timer = setTimeout(() => {
      listeners.delete(on);
      reject(new Error(`${what}: only ${got.size} of ${n} agents after ${timeoutMs} ms`));
    }, timeoutMs);
    listeners.add(on);
    for (const e of already) on(e);
  });
}

// ------------------------------------------------------------------ measurements

function rssOf(pid: number): { rss: number; hwm: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

interface PushCounters {
  bytes: number;
  resources: number;
  pushes: number;
}

async function counters(monitoringPort: number): Promise<PushCounters> {
  const res = await fetch(`http://127.0.0.1:${monitoringPort}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  const sum = (name: string): number => {
    let total = 0;
    for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
    return total;
  };
  return { bytes: sum('ambit_xds_pushed_bytes_total'), resources: sum('ambit_xds_pushed_resources_total'), pushes: sum('ambit_xds_pushes_total') };
}

async function served(monitoringPort: number): Promise<{ workloads: number; services: number; authorizations: number; issues: number }> {
  const res = await fetch(`http://127.0.0.1:${monitoringPort}/debug/status`, { signal: AbortSignal.timeout(10_000) });
  const s = (await res.json()) as { served: { workloads: number; services: number; authorizations: number }; issues: unknown[] };
  return { ...s.served, issues: s.issues.length };
}

const mib = (b: number): number => round(b / 1048576, 1);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'ambit-cp-bench-'));
  harness.onCleanup('remove the temp dir', async () => rmSync(dir, { recursive: true, force: true }));
  const manifests = join(dir, 'manifests');
  mkdirSync(manifests);

  console.log(`== generating ${params.pods} pods, ${params.services} services, ${params.policies} policies in ${params.namespaces} namespaces on ${params.nodes} nodes`);
  const cluster = buildCluster();
  let manifestBytes = 0;
  const g0 = Date.now();
  for (let n = 0; n < params.namespaces; n++) {
    const text = cluster.render(n, 'v0');
    manifestBytes += Buffer.byteLength(text);
    writeFileSync(join(manifests, `${nsName(n)}.yaml`), text);
  }
  writeFileSync(join(manifests, 'nodes.yaml'), nodesYaml());
  const watchedFileBytes = Buffer.byteLength(cluster.render(cluster.watched.ns, 'v0'));
  console.log(`   ${mib(manifestBytes)} MiB of YAML in ${params.namespaces + 1} files (${Date.now() - g0} ms); the changed file is ${round(watchedFileBytes / 1024, 1)} KiB`);

  console.log('== starting the control plane');
  const cp = await startControlPlane(dir);
  const status = await served(cp.ports.monitoring);
  const cpRssReady = rssOf(cp.pid);
  const startupTr = cp.translations.filter((x) => x.t <= cp.readyAt);
  const startup = { ms: cp.readyAt - cp.spawnedAt, translations: startupTr.length, translateMsTotal: startupTr.reduce((sum, x) => sum + x.ms, 0) };
  console.log(`   ready in ${startup.ms} ms (${startup.translations} full translations, ${startup.translateMsTotal} ms): ${status.workloads} workloads, ${status.services} services, ${status.authorizations} authorizations, ${status.issues} issues; RSS ${mib(cpRssReady.rss)} MiB`);
  if (status.issues > 0) console.log(`   warning: ${status.issues} configuration issues (see ambit control-plane status)`);

  // ---- the 10 agents
  const nodes = Array.from({ length: params.nodes }, (_, k) => ({ name: nodeName(k), ip: nodeIp(k) }));
  const address = `127.0.0.1:${cp.ports.plaintext}`;
  const procs: AgentsProc[] = [];
  let first = 0;
  for (let p = 0; p < params.agentProcs; p++) {
    const n = share(params.agents, params.agentProcs, p);
    const agents = Array.from({ length: n }, (_, i) => ({ node: nodeName((first + i) % params.nodes), ip: nodeIp((first + i) % params.nodes) }));
    procs.push(startAgents(`agents-${p}`, { address, agents, nodes, watchUid: cluster.watched.uid, rebuildView: params.rebuildView }, first, false));
    first += n;
  }
  await Promise.all(procs.map((p) => p.ep.ready));
  const before = await counters(cp.ports.monitoring);
  console.log(`== first full push to ${params.agents} agents (${params.agentProcs} client processes)`);
  const syncedP = waitAgents('first sync', params.agents, (e) => e.ev === 'synced', 120_000);
  const agentPids = procs.map((p) => p.ep.proc.pid).filter((x): x is number => x !== undefined);
  const cpu = (): { cp: number; agents: number } => ({ cp: cpuSeconds(cp.pid), agents: agentPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0) });
  const cpu0 = cpu();
  const t0 = Date.now();
  await Promise.all(procs.map((p) => p.ep.request('start')));
  const synced = await syncedP;
  const syncTimes = [...synced.values()].map((e) => e.t - t0);
  const cpu1 = cpu();
  const firstPush = {
    ms: Math.max(...syncTimes),
    perAgentMs: syncTimes.sort((a, b) => a - b),
    readyToStartMs: t0 - cp.readyAt,
    cpuSeconds: { controlPlane: round(cpu1.cp - cpu0.cp), agentProcesses: round(cpu1.agents - cpu0.agents) },
  };
  // The counters are taken once the last ACK-worthy push is out; give the server a moment to count.
  await sleep(200);
  const afterFull = await counters(cp.ports.monitoring);
  const countsAtSync = [...synced.values()].map((e) => e.counts);
  const full = {
    bytesAllAgents: afterFull.bytes - before.bytes,
    bytesPerAgent: (afterFull.bytes - before.bytes) / params.agents,
    resourcesPerAgent: (afterFull.resources - before.resources) / params.agents,
    pushes: afterFull.pushes - before.pushes,
    countsAtSync: countsAtSync[0],
    everyAgentComplete: countsAtSync.every((c) => c?.workloads === status.workloads && c.services === status.services && c.policies === status.authorizations),
  };
  const cpRssFull = rssOf(cp.pid);
  console.log(`   all synced ${firstPush.ms} ms after start; ${mib(full.bytesPerAgent)} MiB per agent; complete: ${full.everyAgentComplete}`);

  // ---- changes
  console.log(`== ${params.changes} single-pod changes (${cluster.watched.namespace}/${cluster.watched.pod} label version), ${params.intervalSeconds} s apart`);
  const changes: {
    rev: string;
    maxMs: number;
    maxStoreMs: number;
    perAgentMs: number[];
    bytesAllAgents: number;
    bytesPerAgent: number;
    resourcesPerAgent: number;
    translateMs: number | undefined;
    translations: number;
  }[] = [];
  const cpuC0 = cpu();
  const file = join(manifests, cluster.watched.file);
  for (let i = 1; i <= params.changes && !harness.interrupted; i++) {
    const rev = `v${i}`;
    const text = cluster.render(cluster.watched.ns, rev);
    const c0 = await counters(cp.ports.monitoring);
    const nTrans = cp.translations.length;
    const appliedP = waitAgents(`change ${i}`, params.agents, (e) => e.ev === 'applied' && e.rev === rev, 30_000);
    writeFileSync(`${file}.tmp`, text);
    const tw = Date.now();
    renameSync(`${file}.tmp`, file);
    const applied = await appliedP;
    const evs = [...applied.values()];
    const per = evs.map((e) => (e.tView ?? e.t) - tw);
    await sleep(50);
    const c1 = await counters(cp.ports.monitoring);
    const tr = cp.translations.slice(nTrans);
    changes.push({
      rev,
      maxMs: Math.max(...per),
      maxStoreMs: Math.max(...evs.map((e) => e.t - tw)),
      perAgentMs: per.sort((a, b) => a - b),
      bytesAllAgents: c1.bytes - c0.bytes,
      bytesPerAgent: (c1.bytes - c0.bytes) / params.agents,
      resourcesPerAgent: (c1.resources - c0.resources) / params.agents,
      translateMs: tr.length > 0 ? tr.reduce((s, x) => s + x.ms, 0) : undefined,
      translations: tr.length,
    });
    const elapsed = Date.now() - tw;
    const wait = params.intervalSeconds * 1000 - elapsed;
    if (wait > 0) await sleep(wait);
  }
  const cpRssAfter = rssOf(cp.pid);
  const cpuC1 = cpu();
  const changeCpu = { controlPlanePerChange: round((cpuC1.cp - cpuC0.cp) / Math.max(1, changes.length)), agentProcessesPerChange: round((cpuC1.agents - cpuC0.agents) / Math.max(1, changes.length)) };

  // ---- one agent holding the whole state, in its own process
  console.log('== one agent process holding the whole state (RSS after GC)');
  const solo = startAgents('agent-rss', { address, agents: [{ node: nodeName(0), ip: nodeIp(0) }], nodes, watchUid: cluster.watched.uid, rebuildView: params.rebuildView }, params.agents, true);
  await solo.ep.ready;
  const baseline = await solo.ep.request<{ rss: number; heapUsed: number; gcRan: boolean }>('rss');
  const soloSynced = waitAgents('rss agent sync', 1, (e) => e.ev === 'synced' && e.agent === params.agents, 120_000);
  await solo.ep.request('start');
  await soloSynced;
  await sleep(300);
  const agentMem = await solo.ep.request<{ gcRan: boolean; rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number; counts: unknown }>('rss');
  const agentHwm = solo.ep.proc.pid !== undefined ? rssOf(solo.ep.proc.pid).hwm : Number.NaN;

  // ---- report
  const delays = changes.map((c) => c.maxMs);
  const storeDelays = changes.map((c) => c.maxStoreMs);
  const bytesPerChange = changes.map((c) => c.bytesPerAgent);
  const translateMs = changes.map((c) => c.translateMs).filter((x): x is number => x !== undefined);
  const summary: Summary = {
    firstPushMs: firstPush.ms,
    controlPlaneStartupMs: cp.readyAt - cp.spawnedAt,
    changeDelayMs: { p50: median(delays), p99: percentile(delays, 99), min: Math.min(...delays), max: Math.max(...delays) },
    changeDelayStoreMs: { p50: median(storeDelays), p99: percentile(storeDelays, 99) },
    translateMsPerChange: { p50: median(translateMs), p99: percentile(translateMs, 99) },
    fullStateBytesPerAgent: full.bytesPerAgent,
    changeBytesPerAgent: { p50: median(bytesPerChange), max: Math.max(...bytesPerChange) },
    changeResourcesPerAgent: median(changes.map((c) => c.resourcesPerAgent)),
    changeOverFullBytes: median(bytesPerChange) / full.bytesPerAgent,
    controlPlaneRss: { ready: cpRssReady.rss, afterFullPush: cpRssFull.rss, afterChanges: cpRssAfter.rss, peak: cpRssAfter.hwm },
    agentRss: { holdingState: agentMem.rss, empty: baseline.rss, peak: agentHwm, heapUsed: agentMem.heapUsed, gcForced: agentMem.gcRan },
  };
  const report = {
    schema: 'ambit-bench-control-plane/1',
    startedAt: startedAt.toISOString(),
    machine: machineInfo(loadavgStart, {}),
    parameters: params,
    cluster: { served: status, manifestBytes, files: params.namespaces + 1, changedFile: cluster.watched.file, changedFileBytes: watchedFileBytes, watchedUid: cluster.watched.uid },
    summary,
    controlPlaneStartup: startup,
    firstPush: { ...firstPush, ...full },
    changeCpuSeconds: changeCpu,
    changes,
    memory: { controlPlane: { ready: cpRssReady, afterFullPush: cpRssFull, afterChanges: cpRssAfter }, agent: { baseline, holdingState: agentMem, hwm: agentHwm } },
    notes: [
      'xDS is plaintext (the control plane\'s --plaintext-port), not TLS: the agent\'s TLS + SPIFFE check of the control plane is not measured.',
      `${params.agents} agents run as ${params.agentProcs} client process(es) on a ${os.availableParallelism()}-core machine shared with the control plane; their decode work competes for the same cores.`,
      `Change delay = max over agents of (applied - rename of the changed file); "applied" = ClusterState rebuilt after the store change${params.rebuildView ? '' : ' (disabled: store only)'}; it includes the manifest watcher debounce (${params.manifestDebounceMs} ms) and the xDS push debounce (${params.xdsDebounceMs} ms).`,
      'Agent RSS: a separate process with one client, started after the changes, node --expose-gc, measured after gc() twice.',
      'Bytes: ambit_xds_pushed_bytes_total (serialized delta xDS responses) on the control plane, divided by the number of agents.',
    ],
  };
  const path = writeResults(RESULTS, 'control-plane', 'control-plane-latest.json', startedAt, report);
  printTable(summary, full, status, { n: startup.translations, ms: startup.translateMsTotal });
  console.log(`${pad('CPU s: first push (control plane / agents)', 46)} ${fmt(firstPush.cpuSeconds.controlPlane)} / ${fmt(firstPush.cpuSeconds.agentProcesses)}; per change ${fmt(changeCpu.controlPlanePerChange)} / ${fmt(changeCpu.agentProcessesPerChange)} (includes the ${params.intervalSeconds} s idle gaps)`);
  console.log(`\nresults: ${path}`);
}

type Summary = {
  firstPushMs: number;
  controlPlaneStartupMs: number;
  changeDelayMs: { p50: number; p99: number; min: number; max: number };
  changeDelayStoreMs: { p50: number; p99: number };
  translateMsPerChange: { p50: number; p99: number };
  fullStateBytesPerAgent: number;
  changeBytesPerAgent: { p50: number; max: number };
  changeResourcesPerAgent: number;
  changeOverFullBytes: number;
  controlPlaneRss: { ready: number; afterFullPush: number; afterChanges: number; peak: number };
  agentRss: { holdingState: number; empty: number; peak: number; heapUsed: number; gcForced: boolean };
};

function printTable(s: Summary, full: { resourcesPerAgent: number; everyAgentComplete: boolean }, served: { workloads: number; services: number; authorizations: number }, startupTranslations: { n: number; ms: number }): void {
  const row = (k: string, v: string): void => console.log(`${pad(k, 46)} ${v}`);
  console.log(`\ncontrol plane: ${served.workloads} workloads, ${served.services} services, ${served.authorizations} authorizations; ${params.agents} agents`);
  row('control plane start (spawn -> ready)', `${s.controlPlaneStartupMs} ms  (${startupTranslations.n} full translations: ${startupTranslations.ms} ms)`);
  row('first full push to all agents', `${s.firstPushMs} ms  (every agent complete: ${full.everyAgentComplete})`);
  row(`change delay, max over agents (${params.changes} changes)`, `p50 ${fmt(s.changeDelayMs.p50, 0)} ms  p99 ${fmt(s.changeDelayMs.p99, 0)} ms  (min ${s.changeDelayMs.min}, max ${s.changeDelayMs.max})`);
  row('  of which in the store (before view rebuild)', `p50 ${fmt(s.changeDelayStoreMs.p50, 0)} ms  p99 ${fmt(s.changeDelayStoreMs.p99, 0)} ms`);
  row('  control plane translate per change', `p50 ${fmt(s.translateMsPerChange.p50, 0)} ms  p99 ${fmt(s.translateMsPerChange.p99, 0)} ms`);
  row('  debounces included', `${params.manifestDebounceMs} ms manifest watch + ${params.xdsDebounceMs} ms xDS push`);
  row('full state pushed per agent', `${fmt(s.fullStateBytesPerAgent / 1024, 1)} KiB  (${fmt(full.resourcesPerAgent, 0)} resources)`);
  row('pushed per agent for one pod change', `${fmt(s.changeBytesPerAgent.p50, 0)} B median (max ${fmt(s.changeBytesPerAgent.max, 0)} B, ${fmt(s.changeResourcesPerAgent, 0)} resource(s))`);
  row('  change / full state', `${s.changeOverFullBytes.toExponential(2)}  (1 : ${fmt(1 / s.changeOverFullBytes, 0)})`);
  row('control plane RSS (ready / full push / end)', `${mib(s.controlPlaneRss.ready)} / ${mib(s.controlPlaneRss.afterFullPush)} / ${mib(s.controlPlaneRss.afterChanges)} MiB  (peak ${mib(s.controlPlaneRss.peak)})`);
  row('agent RSS holding the whole state', `${mib(s.agentRss.holdingState)} MiB after GC (empty ${mib(s.agentRss.empty)} MiB, peak ${mib(s.agentRss.peak)}, heap ${mib(s.agentRss.heapUsed)})`);
}

try {
  await main();
} catch (err) {
  console.error(`control-plane benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
} finally {
  await harness.cleanup();
}
