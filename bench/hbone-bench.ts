/**
 * `npm run bench`: HBONE throughput and stream setup between two lab nodes.
 *
 * Builds the lab 'bench' (two nodes, one pod each; see bench/README.md), runs
 * the two HBONE endpoints as separate processes inside the two pods' netns
 * (bench/hbone-server.ts, bench/hbone-client.ts), and measures
 *   - bulk throughput over HBONE, over plain TCP (same generator and sink),
 *     over a peer HTTP/2 CONNECT proxy in C (nghttpx + tinyproxy) and with
 *     iperf3, with 1 and 8 streams, in interleaved rounds;
 *   - stream setup on a warm pool (open, 1 byte echoed, close).
 * Prints a table with the ratios and writes bench/results/hbone-<time>.json
 * and bench/results/latest.json. The lab, the temp dir and every child
 * process are removed at the end, on failure and on Ctrl-C.
 *
 * Options: --rounds N (3), --seconds S per sample (3), --warmup S (1),
 * --setup-seconds S (2), --chunk-kib K (256), --no-peer, --no-iperf, --quick, --lab NAME (bench).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { HBONE_PORT } from '../src/hbone/settings.js';
import { LocalCa } from '../src/identity/local-ca.js';
import { labDown, labUp, type LabHandle, type LabTarget } from '../src/lab/index.js';
import { issueFromCaDir } from './lib/certs.js';
import { Endpoint } from './lib/endpoint.js';
import { fmt, Harness, machineInfo, writeResults, has, num, pad, version, waitListening, workload } from './lib/harness.js';
import { planPeer } from './lib/peer.js';
import { cpuSeconds } from './lib/proc.js';
import type { ClientConfig, CountResult, LoadStarted, LoadStopped, Path, ServerConfig, SetupResult } from './lib/protocol.js';
import { median, percentile, round } from './lib/stats.js';

const NS = 'bench';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/bench/two-pods.yaml');
const RESULTS = join(ROOT, 'bench/results');
const SERVER_JS = fileURLToPath(new URL('./hbone-server.js', import.meta.url));
const CLIENT_JS = fileURLToPath(new URL('./hbone-client.js', import.meta.url));
const PORTS = { hbone: HBONE_PORT, sink: 7001, echo: 7002, peer: 15009, tinyproxy: 8888, iperf: 5201 } as const;
const CLIENT_POD: LabTarget = { namespace: NS, pod: 'client' };
const SERVER_POD: LabTarget = { namespace: NS, pod: 'server' };

// ------------------------------------------------------------------ parameters

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    'setup-seconds': { type: 'string' },
    'chunk-kib': { type: 'string' },
    'no-peer': { type: 'boolean' },
    'no-iperf': { type: 'boolean' },
    quick: { type: 'boolean' },
    lab: { type: 'string' },
  },
});

/** The lab's name (--lab, default 'bench'): only this lab is removed and built. */
const LAB = typeof opt.lab === 'string' && opt.lab !== '' ? opt.lab : 'bench';

const quick = opt.quick === true;
const params = {
  rounds: Math.round(num(opt.rounds, quick ? 1 : 3, 'rounds')),
  /** Whole seconds: iperf3 -t/-O take integers. */
  sampleSeconds: Math.round(num(opt.seconds, quick ? 2 : 3, 'seconds')),
  warmupSeconds: Math.round(num(opt.warmup, 1, 'warmup')),
  setupSeconds: num(opt['setup-seconds'], quick ? 1 : 2, 'setup-seconds'),
  setupWarmupSeconds: 0.5,
  setupConcurrency: [1, 16],
  streams: [1, 8],
  chunkBytes: Math.round(num(opt['chunk-kib'], 256, 'chunk-kib') * 1024),
  ports: PORTS,
  quick,
  lab: LAB,
};

const harness = new Harness('benchmark');
const onCleanup = harness.onCleanup.bind(harness);

// ------------------------------------------------------------------ helpers

function spawnEndpoint(lab: LabHandle, name: string, target: LabTarget, script: string, config: ServerConfig | ClientConfig): Endpoint {
  const proc = lab.spawn(target, [process.execPath, '--enable-source-maps', script, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const ep = new Endpoint(name, proc);
  onCleanup(`stop ${name}`, () => ep.stop());
  return ep;
}

const gbit = (bytes: number, seconds: number): number => (bytes * 8) / seconds / 1e9;

// ------------------------------------------------------------------ measurements

interface ThroughputConfig {
  readonly id: string;
  readonly label: string;
  readonly kind: 'node' | 'iperf3';
  readonly path?: Path;
  readonly streams: number;
}

interface Sample {
  readonly round: number;
  readonly gbps: number;
  readonly bytes: number;
  readonly seconds: number;
  /** Percent of one CPU over the sample window. */
  readonly cpu?: Readonly<Record<string, number>>;
  readonly openMs?: number;
  readonly extra?: Readonly<Record<string, unknown>>;
}

interface Ctx {
  readonly lab: LabHandle;
  readonly server: Endpoint;
  readonly client: Endpoint;
  readonly serverIp: string;
  /** Processes whose CPU is reported, by role. */
  readonly pids: Readonly<Record<string, number>>;
}

function cpuSnapshot(pids: Readonly<Record<string, number>>): { t: number; cpu: Record<string, number> } {
  const cpu: Record<string, number> = {};
  for (const [role, pid] of Object.entries(pids)) cpu[role] = cpuSeconds(pid);
  return { t: performance.now(), cpu };
}

function cpuPercent(a: ReturnType<typeof cpuSnapshot>, b: ReturnType<typeof cpuSnapshot>, roles: readonly string[]): Record<string, number> {
  const wall = (b.t - a.t) / 1000;
  const out: Record<string, number> = {};
  for (const r of roles) out[r] = round((((b.cpu[r] ?? 0) - (a.cpu[r] ?? 0)) / wall) * 100, 0);
  return out;
}

/** Our generator and sink: load for warm-up + sample seconds; bytes counted by the sink over the sample window. */
async function sampleNode(ctx: Ctx, c: ThroughputConfig, roundNo: number): Promise<Sample> {
  const path = c.path as Path;
  const started = await ctx.client.request<LoadStarted>('load', { path, streams: c.streams }, 30_000);
  let stopped: LoadStopped | undefined;
  try {
    await sleep(params.warmupSeconds * 1000);
    const c0 = await ctx.server.request<CountResult>('count');
    const p0 = cpuSnapshot(ctx.pids);
    await sleep(params.sampleSeconds * 1000);
    const c1 = await ctx.server.request<CountResult>('count');
    const p1 = cpuSnapshot(ctx.pids);
    stopped = await ctx.client.request<LoadStopped>('stop', undefined, 30_000);
    if (stopped.errors.length > 0) throw new Error(`${c.label}: stream errors: ${stopped.errors.slice(0, 3).join('; ')}`);
    const seconds = (c1.t - c0.t) / 1000;
    const bytes = c1.bytes - c0.bytes;
    const roles = path === 'peer' ? ['client', 'server', 'nghttpx', 'tinyproxy'] : ['client', 'server'];
    return { round: roundNo, gbps: round(gbit(bytes, seconds), 3), bytes, seconds: round(seconds), cpu: cpuPercent(p0, p1, roles), openMs: started.openMs };
  } finally {
    if (!stopped) await ctx.client.request('stop', undefined, 30_000).catch(() => undefined);
  }
}

interface IperfJson {
  end?: {
    sum_received?: { bytes: number; seconds: number; bits_per_second: number };
    sum_sent?: { retransmits?: number };
    cpu_utilization_percent?: { host_total: number; remote_total: number };
  };
  error?: string;
}

/** iperf3 client in the client pod against `iperf3 -s` in the server pod; -O omits the warm-up from the result. */
async function sampleIperf(ctx: Ctx, c: ThroughputConfig, roundNo: number): Promise<Sample> {
  const argv = ['iperf3', '-c', ctx.serverIp, '-p', String(PORTS.iperf), '-t', String(params.sampleSeconds), '-O', String(params.warmupSeconds), '-P', String(c.streams), '-J'];
  const timeoutMs = (params.sampleSeconds + params.warmupSeconds + 20) * 1000;
  const r = await harness.retry('iperf3', async () => {
    const res = await ctx.lab.exec(CLIENT_POD, argv, { timeoutMs });
    const j = JSON.parse(res.stdout || '{}') as IperfJson;
    if (res.code !== 0 || !j.end?.sum_received) throw new Error(j.error ?? (res.stderr.trim() || `exit ${res.code}`));
    return j;
  }, 5000);
  const sum = r.end?.sum_received as { bytes: number; seconds: number; bits_per_second: number };
  const cpu = r.end?.cpu_utilization_percent;
  return {
    round: roundNo,
    gbps: round(sum.bits_per_second / 1e9, 3),
    bytes: sum.bytes,
    seconds: round(sum.seconds),
    ...(cpu ? { cpu: { client: round(cpu.host_total, 0), server: round(cpu.remote_total, 0) } } : {}),
    extra: { retransmits: r.end?.sum_sent?.retransmits ?? null },
  };
}

// ------------------------------------------------------------------ report

interface ThroughputResult extends ThroughputConfig {
  samples: Sample[];
  medianGbps: number;
  minGbps: number;
  maxGbps: number;
}

interface Ratio {
  readonly label: string;
  readonly byStreams: Readonly<Record<string, number>>;
}

function printReport(results: ThroughputResult[], setups: SetupResult[], ratios: Readonly<Record<string, Ratio>>, header: string): void {
  const byId = new Map(results.map((r) => [r.id, r]));
  const rows: Array<[string, string]> = [
    ['direct TCP (Node generator -> sink)', 'direct'],
    ['HBONE (Ambit client -> Ambit server)', 'hbone'],
    ['peer: Ambit client -> nghttpx+tinyproxy (C)', 'peer'],
    ['iperf3 direct (reference)', 'iperf3'],
  ];
  const lines: string[] = [header, ''];
  lines.push(`Throughput, Gbit/s (median of ${params.rounds} x ${params.sampleSeconds} s after ${params.warmupSeconds} s warm-up; min..max; CPU % of one core client/server[/nghttpx/tinyproxy])`);
  lines.push(`${pad('path', 46)}${pad('1 stream', 10, true)}  ${pad('min..max', 14)}${pad('cpu', 16)}${pad('8 streams', 10, true)}  ${pad('min..max', 14)}cpu`);
  for (const [label, id] of rows) {
    const one = byId.get(`${id}-1`);
    const eight = byId.get(`${id}-8`);
    if (!one && !eight) continue;
    const cell = (r: ThroughputResult | undefined): [string, string, string] => {
      if (!r) return ['-', '', ''];
      const cpus = r.samples.map((s) => s.cpu).filter((c): c is Readonly<Record<string, number>> => c !== undefined);
      const roles = cpus[0] ? Object.keys(cpus[0]) : [];
      const cpu = roles.map((k) => fmt(median(cpus.map((c) => c[k] ?? Number.NaN)), 0)).join('/');
      return [fmt(r.medianGbps), `${fmt(r.minGbps)}..${fmt(r.maxGbps)}`, cpu];
    };
    const [a, ar, ac] = cell(one);
    const [b, br, bc] = cell(eight);
    lines.push(`${pad(label, 46)}${pad(a, 10, true)}  ${pad(ar, 14)}${pad(ac, 16)}${pad(b, 10, true)}  ${pad(br, 14)}${bc}`);
  }
  lines.push('');
  lines.push('Ratios (medians)                               1 stream   8 streams');
  for (const r of Object.values(ratios)) {
    lines.push(`${pad(r.label, 46)}${pad(fmt(r.byStreams['1']), 10, true)}${pad(fmt(r.byStreams['8']), 12, true)}`);
  }
  lines.push('');
  lines.push(`Stream setup (open, 1 byte echoed, close), ${params.setupSeconds} s after ${params.setupWarmupSeconds} s warm-up; HBONE on a warm pool`);
  lines.push(`${pad('path', 16)}${pad('conc.', 7, true)}${pad('per s', 10, true)}${pad('open p50/p99 ms', 20, true)}${pad('1st byte p50/p99 ms', 24, true)}${pad('errors', 8, true)}`);
  for (const s of setups) {
    const open = `${fmt(percentile(s.openMs, 50), 3)}/${fmt(percentile(s.openMs, 99), 3)}`;
    const first = `${fmt(percentile(s.firstByteMs, 50), 3)}/${fmt(percentile(s.firstByteMs, 99), 3)}`;
    lines.push(`${pad(s.path === 'hbone' ? 'HBONE' : 'direct TCP', 16)}${pad(String(s.concurrency), 7, true)}${pad(fmt(s.perSecond, 0), 10, true)}${pad(open, 20, true)}${pad(first, 24, true)}${pad(String(s.errors), 8, true)}`);
  }
  console.log(lines.join('\n'));
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark builds a network-namespace lab and needs root');
  const startedAt = new Date();
  const loadavgStart = os.loadavg();
  const t0 = performance.now();
  const log = (msg: string): void => console.error(`[bench ${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}`);

  // The lab: only the one named LAB is touched, first any leftover of an earlier run.
  await labDown(LAB);
  onCleanup('remove lab', () => labDown(LAB));
  const lab = await labUp({ manifests: FIXTURE, name: LAB, mesh: false });
  const clientW = workload(lab, NS, 'client');
  const serverW = workload(lab, NS, 'server');
  log(`lab '${LAB}' up: client ${clientW.ip} on ${clientW.node}, server ${serverW.ip} on ${serverW.node}`);

  const tmp = mkdtempSync(join(os.tmpdir(), 'ambit-bench-'));
  onCleanup('remove temp dir', async () => rmSync(tmp, { recursive: true, force: true }));
  const caDir = join(tmp, 'ca');
  const td = lab.cluster.trustDomain;
  await LocalCa.openOrCreate(caDir, { trustDomain: td });

  const server = spawnEndpoint(lab, 'server endpoint', SERVER_POD, SERVER_JS, {
    caDir,
    trustDomain: td,
    namespace: NS,
    serviceAccount: serverW.serviceAccount,
    podIp: serverW.ip,
    hbonePort: PORTS.hbone,
    sinkPort: PORTS.sink,
    echoPort: PORTS.echo,
  });
  const serverReady = await server.ready;

  const pids: Record<string, number> = { server: serverReady.pid };
  const peerWanted = opt['no-peer'] !== true;
  const peerAvailable = peerWanted && has('nghttpx') && has('tinyproxy');
  const notes: string[] = [];
  if (peerWanted && !peerAvailable) notes.push('peer skipped: nghttpx and/or tinyproxy not installed');
  let peerDiagnostics = (): string => '';
  if (peerAvailable) {
    // The peer proxy presents the server pod's identity, so the same client key accepts it.
    const peerId = await issueFromCaDir(caDir, td, NS, serverW.serviceAccount);
    const plan = planPeer(tmp, peerId, PORTS.peer, PORTS.tinyproxy);
    const tp = harness.spawnTool(lab, 'tinyproxy', SERVER_POD, plan.tinyproxyArgv);
    await waitListening(lab, SERVER_POD, PORTS.tinyproxy, tp);
    const nx = harness.spawnTool(lab, 'nghttpx', SERVER_POD, plan.nghttpxArgv);
    await waitListening(lab, SERVER_POD, PORTS.peer, nx);
    onCleanup('nghttpx log', async () => {
      if (nx.alive() || harness.interrupted) return;
      let errlog = '';
      try {
        errlog = readFileSync(plan.files.nghttpxLog, 'utf8').slice(-2000);
      } catch {
        // no log written
      }
      console.error(`nghttpx had exited: ${nx.output()}${errlog}`);
    });
    peerDiagnostics = () => {
      let errlog = '';
      try {
        errlog = readFileSync(plan.files.nghttpxLog, 'utf8').slice(-2000);
      } catch {
        // no log written
      }
      return `nghttpx ${nx.alive() ? 'running' : 'exited'}: ${nx.output()}${errlog}; tinyproxy ${tp.alive() ? 'running' : 'exited'}: ${tp.output()}`;
    };
    if (tp.pid) pids.tinyproxy = tp.pid;
    if (nx.pid) pids.nghttpx = nx.pid;
  }
  const iperfAvailable = opt['no-iperf'] !== true && has('iperf3');
  if (opt['no-iperf'] !== true && !iperfAvailable) notes.push('iperf3 reference skipped: iperf3 not installed');
  if (iperfAvailable) {
    const ip3 = harness.spawnTool(lab, 'iperf3 server', SERVER_POD, ['iperf3', '-s', '-B', serverW.ip, '-p', String(PORTS.iperf)]);
    await waitListening(lab, SERVER_POD, PORTS.iperf, ip3);
  }

  const client = spawnEndpoint(lab, 'client endpoint', CLIENT_POD, CLIENT_JS, {
    caDir,
    trustDomain: td,
    namespace: NS,
    serviceAccount: clientW.serviceAccount,
    serverIp: serverW.ip,
    serverIdentity: serverReady.identity,
    hbonePort: PORTS.hbone,
    sinkPort: PORTS.sink,
    echoPort: PORTS.echo,
    ...(peerAvailable ? { peerPort: PORTS.peer } : {}),
    chunkBytes: params.chunkBytes,
  });
  pids.client = (await client.ready).pid;
  log('endpoints ready; probing every path');
  await client.request('probe', { path: 'direct' });
  await client.request('probe', { path: 'hbone' });
  let peerOk = peerAvailable;
  if (peerAvailable) {
    try {
      await harness.retry('peer probe', () => client.request('probe', { path: 'peer' }, 5000), 10_000);
    } catch (err) {
      peerOk = false;
      notes.push(`peer skipped: ${err instanceof Error ? err.message : String(err)}`);
      log(`peer proxy not usable: ${err instanceof Error ? err.message : String(err)}; ${peerDiagnostics()}`);
    }
  }

  const ctx: Ctx = { lab, server, client, serverIp: serverW.ip, pids };
  const configs: ThroughputConfig[] = [];
  for (const streams of params.streams) {
    configs.push({ id: `direct-${streams}`, label: `direct TCP, ${streams} stream(s)`, kind: 'node', path: 'direct', streams });
    configs.push({ id: `hbone-${streams}`, label: `HBONE, ${streams} stream(s)`, kind: 'node', path: 'hbone', streams });
    if (peerOk) configs.push({ id: `peer-${streams}`, label: `peer nghttpx+tinyproxy, ${streams} stream(s)`, kind: 'node', path: 'peer', streams });
    if (iperfAvailable) configs.push({ id: `iperf3-${streams}`, label: `iperf3 direct, ${streams} stream(s)`, kind: 'iperf3', streams });
  }
  const samples = new Map<string, Sample[]>(configs.map((c) => [c.id, []]));
  for (let r = 1; r <= params.rounds; r++) {
    // Interleaved and rotated, so slow drift of a noisy machine hits every path alike.
    const order = configs.map((_, i) => configs[(i + r - 1) % configs.length] as ThroughputConfig);
    for (const c of order) {
      const s = c.kind === 'iperf3' ? await sampleIperf(ctx, c, r) : await sampleNode(ctx, c, r);
      samples.get(c.id)?.push(s);
      log(`round ${r}/${params.rounds} ${c.label}: ${s.gbps.toFixed(2)} Gbit/s${s.cpu ? ` (cpu ${Object.entries(s.cpu).map(([k, v]) => `${k} ${v}%`).join(', ')})` : ''}`);
    }
  }
  const hboneConnections = await client.request<{ hbone: number; peer: number }>('connections');

  const setups: SetupResult[] = [];
  for (const path of ['direct', 'hbone'] as const) {
    for (const concurrency of params.setupConcurrency) {
      const s = await client.request<SetupResult>('setup', { path, concurrency, warmupMs: params.setupWarmupSeconds * 1000, durationMs: params.setupSeconds * 1000 }, 120_000);
      setups.push(s);
      log(`setup ${path} concurrency ${concurrency}: ${s.perSecond}/s, first byte p50 ${fmt(percentile(s.firstByteMs, 50), 3)} ms, errors ${s.errors}`);
    }
  }

  const results: ThroughputResult[] = configs.map((c) => {
    const ss = samples.get(c.id) ?? [];
    const g = ss.map((s) => s.gbps);
    return { ...c, samples: ss, medianGbps: round(median(g), 3), minGbps: Math.min(...g), maxGbps: Math.max(...g) };
  });
  const med = (id: string): number => results.find((r) => r.id === id)?.medianGbps ?? Number.NaN;
  const ratio = (a: string, b: string): Record<string, number> => Object.fromEntries(params.streams.map((n) => [String(n), round(med(`${a}-${n}`) / med(`${b}-${n}`), 3)]));
  /** The same ratio per round (samples taken seconds apart), for judging the noise. */
  const perRound = (a: string, b: string): Record<string, number[]> =>
    Object.fromEntries(
      params.streams.map((n) => {
        const sa = samples.get(`${a}-${n}`) ?? [];
        const sb = samples.get(`${b}-${n}`) ?? [];
        return [String(n), sa.map((x, i) => round(x.gbps / (sb[i]?.gbps ?? Number.NaN), 3))];
      }),
    );
  const pairs: Array<[string, string, string, string]> = [['hbone_over_direct', 'HBONE / direct TCP', 'hbone', 'direct']];
  if (peerOk) pairs.push(['peer_over_direct', 'peer / direct TCP', 'peer', 'direct'], ['hbone_over_peer', 'HBONE / peer', 'hbone', 'peer']);
  if (iperfAvailable) pairs.push(['direct_over_iperf3', 'direct TCP (Node) / iperf3', 'direct', 'iperf3']);
  const ratios = Object.fromEntries(pairs.map(([key, label, a, b]) => [key, { label, byStreams: ratio(a, b), perRound: perRound(a, b) }]));

  const machine = machineInfo(loadavgStart, { iperf3: version(['iperf3', '-v']), nghttpx: version(['nghttpx', '--version']), tinyproxy: version(['tinyproxy', '-v']) });

  const header = [
    `HBONE benchmark, lab '${LAB}': client pod ${clientW.ip} (${clientW.node}) -> server pod ${serverW.ip} (${serverW.node}) over veth/bridge`,
    `${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, OpenSSL ${machine.openssl}, kernel ${machine.kernel}; load avg ${loadavgStart.map((x) => x.toFixed(2)).join(' ')}`,
    `HBONE connections used by the client for all streams: ${hboneConnections.hbone} (8 streams share one HTTP/2 connection; direct TCP uses one connection per stream)`,
    ...notes.map((n) => `note: ${n}`),
  ].join('\n');
  console.log('');
  printReport(results, setups, ratios, header);

  const report = {
    schema: 'ambit-bench-hbone/1',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    durationSeconds: round((performance.now() - t0) / 1000, 1),
    machine,
    parameters: params,
    topology: {
      lab: LAB,
      client: { pod: `${NS}/client`, node: clientW.node, ip: clientW.ip, identity: `spiffe://${td}/ns/${NS}/sa/${clientW.serviceAccount}` },
      server: { pod: `${NS}/server`, node: serverW.node, ip: serverW.ip, identity: serverReady.identity },
      dataPath: 'client pod eth0 (veth) -> node-a -> br0 (bridge netns) -> node-b -> server pod eth0 (veth)',
      hboneConnections,
    },
    units: { throughput: 'Gbit/s (1e9 bit/s) of payload delivered to the sink (iperf3: its receiver sum)', latency: 'ms', cpu: 'percent of one core over the sample window' },
    throughput: results,
    ratios,
    setup: setups.map((s) => ({
      ...s,
      openP50Ms: percentile(s.openMs, 50),
      openP99Ms: percentile(s.openMs, 99),
      firstByteP50Ms: percentile(s.firstByteMs, 50),
      firstByteP99Ms: percentile(s.firstByteMs, 99),
      closedP50Ms: percentile(s.closedMs, 50),
      closedP99Ms: percentile(s.closedMs, 99),
    })),
    notes,
  };
  const file = writeResults(RESULTS, 'hbone', 'latest.json', startedAt, report);
  log(`results written to ${file} and bench/results/latest.json`);
}

try {
  await main();
} catch (err) {
  console.error(`benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
} finally {
  await harness.cleanup();
  // Belt and braces: nothing of the lab may survive the benchmark.
  try {
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.startsWith(`${LAB}-`));
    if (left.length > 0) console.error(`warning: lab namespaces left behind: ${left.join(', ')}; run 'ambit lab down --name ${LAB}'`);
  } catch {
    // ip is missing: nothing was created either
  }
}
