/**
 * `npm run bench -- --only l7`: what the waypoint costs for 1 KiB HTTP/1.1
 * and h2 requests, next to the direct path, the L4-only mesh path and nginx
 * as a plain reverse proxy, in one run on one lab (test/fixtures/bench/l7).
 *
 *   direct    outside/legacy -> outside/legacy-b                      (no proxy)
 *   mesh-l4   mesh/client -> VIP server-l4 -> agent a -> HBONE -> agent b -> mesh/server
 *   waypoint  mesh/client -> VIP server -> agent a -> HBONE -> waypoint pod (node-a)
 *             -> HBONE -> agent b -> mesh/server
 *   nginx     outside/legacy -> outside/nginx (1 worker, keep-alive upstream) -> outside/legacy-b
 *
 * For every path and protocol: open-loop latency (p50/p90/p99) at fixed
 * rates over 4 keep-alive connections (the Istio perf page's setup), the CPU
 * seconds of every proxy process during that window (CPU per 1,000 rps), the
 * proxies' RSS, and saturation requests/s with h2load (C) when installed.
 * The Istio waypoint's published cost (0.25 vCPU and 60 MB per 1,000 rps,
 * Istio 1.24 perf page) is printed as a reference row, never measured here.
 *
 * Options: --seconds S (8; --quick 3), --rates 500,1000,2000 (--quick
 * 500,1000), --connections N (4), --no-saturation, --lab NAME (bench-l7).
 * Writes bench/results/l7-<time>.json and l7-latest.json.
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { labDown, labUp, type LabHandle } from '../src/lab/index.js';
import { fmt, Harness, has, labAgents, machineInfo, num, pad, version, waitListening, workload, writeResults } from './lib/harness.js';
import type { L7LoadArgs, L7LoadResult } from './lib/l7-load.js';
import { cpuSeconds } from './lib/proc.js';
import { percentile, round } from './lib/stats.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/bench/l7');
const RESULTS = join(ROOT, 'bench/results');
const LOAD_JS = fileURLToPath(new URL('./lib/l7-load.js', import.meta.url));
const PORTS = { h1: 8080, h2: 8081 } as const;
const VIP = { waypoint: '10.96.0.60', l4: '10.96.0.61' } as const;
/** Istio 1.24 perf page (reference waypoint-and-l7.md §5.1): published, not measured here. */
const ISTIO_WAYPOINT = { vcpuPer1kRps: 0.25, memoryMB: 60 } as const;

type PathId = 'direct' | 'mesh-l4' | 'waypoint' | 'nginx';
interface PathDef {
  readonly id: PathId;
  readonly from: string;
  readonly host: (lab: LabHandle) => string;
  readonly authority?: string;
  /** Processes whose CPU is the path's cost (besides the client and server). */
  readonly proxies: readonly string[];
}

const PATHS: readonly PathDef[] = [
  { id: 'direct', from: 'outside/legacy', host: (lab) => workload(lab, 'outside', 'legacy-b').ip, proxies: [] },
  { id: 'mesh-l4', from: 'mesh/client', host: () => VIP.l4, proxies: ['agent node-a', 'agent node-b'] },
  { id: 'waypoint', from: 'mesh/client', host: () => VIP.waypoint, authority: 'server.mesh.svc.cluster.local', proxies: ['agent node-a', 'agent node-b', 'waypoint'] },
  { id: 'nginx', from: 'outside/legacy', host: (lab) => workload(lab, 'outside', 'nginx').ip, proxies: ['nginx'] },
];

interface RateResult {
  readonly path: PathId;
  readonly protocol: 'http1' | 'h2';
  readonly rps: number;
  readonly achievedRps: number;
  readonly completed: number;
  readonly errors: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  /** CPU seconds per process over the window, and summed per 1,000 achieved rps. */
  readonly cpu: Readonly<Record<string, number>>;
  readonly vcpuPer1kRps: Readonly<Record<string, number>>;
  readonly firstErrors: readonly string[];
}

interface SaturationResult {
  readonly path: PathId;
  readonly protocol: 'http1' | 'h2';
  readonly rps: number;
  readonly ok2xx: number;
  readonly failed: number;
}

function nginxConf(dir: string, listenIp: string, upstreamIp: string): string {
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # As for the other contenders, a connection is never retired by request count (the default, 1,000, would close h2 sessions mid-run).
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream backend { server ${upstreamIp}:${PORTS.h1}; keepalive 64; }
  server {
    listen ${listenIp}:${PORTS.h1};
    listen ${listenIp}:${PORTS.h2} http2;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  return conf;
}

/** Pids of every process whose network namespace is the named one (the waypoint runs in its pod's). */
function pidsInNetns(netnsName: string): number[] {
  let ino: number;
  try {
    // The /var/run/netns file is a bind mount of the nsfs inode that /proc/<pid>/ns/net links to.
    ino = statSync(`/var/run/netns/${netnsName}`).ino;
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readlinkSync(`/proc/${p}/ns/net`) === `net:[${ino}]`) out.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      seconds: { type: 'string' },
      rates: { type: 'string' },
      connections: { type: 'string' },
      'no-saturation': { type: 'boolean' },
      lab: { type: 'string' },
    },
    strict: false,
  });
  const quick = values.quick === true;
  const seconds = num(values.seconds, quick ? 3 : 8, 'seconds');
  const rates = (typeof values.rates === 'string' ? values.rates : quick ? '500,1000' : '500,1000,2000').split(',').map((r) => num(r, 0, 'rates'));
  const connections = num(values.connections, 4, 'connections');
  const labName = typeof values.lab === 'string' ? values.lab : 'bench-l7';
  const saturation = values['no-saturation'] !== true && has('h2load');
  const startedAt = new Date();
  const loadStart = os.loadavg();
  const h = new Harness('L7 benchmark');

  const dir = mkdtempSync(join(os.tmpdir(), 'ambit-bench-l7-'));
  cpSync(FIXTURE, join(dir, 'manifests'), { recursive: true });
  await labDown(labName);
  console.log(`== lab ${labName}: 2 nodes, control plane, agents, waypoint pod (test/fixtures/bench/l7)`);
  const lab = await labUp({ manifests: join(dir, 'manifests'), name: labName, mesh: true, controlPlane: true });
  h.onCleanup(`remove lab ${labName}`, () => labDown(labName));

  const serverArgs = (pod: string, ns: string): string[] => [process.execPath, LOAD_JS, 'server', workload(lab, ns, pod).ip, String(PORTS.h1), String(PORTS.h2)];
  for (const [ns, pod] of [['mesh', 'server'], ['outside', 'legacy-b']] as const) {
    const t = h.spawnTool(lab, `server ${ns}/${pod}`, `${ns}/${pod}`, serverArgs(pod, ns));
    await waitListening(lab, `${ns}/${pod}`, PORTS.h2, t);
  }
  const nginxDir = mkdtempSync(join(os.tmpdir(), 'ambit-bench-nginx-'));
  const nginx = has('nginx') ? h.spawnTool(lab, 'nginx', 'outside/nginx', ['nginx', '-c', nginxConf(nginxDir, workload(lab, 'outside', 'nginx').ip, workload(lab, 'outside', 'legacy-b').ip), '-p', nginxDir]) : undefined;
  if (nginx) await waitListening(lab, 'outside/nginx', PORTS.h2, nginx);

  const agents = await labAgents(labName, ['node-a', 'node-b']);
  const waypointPids = (): number[] => pidsInNetns(lab.podNetns('mesh', 'waypoint'));
  const procs = (): Record<string, number[]> => ({
    'agent node-a': [agents.pids['node-a'] as number],
    'agent node-b': [agents.pids['node-b'] as number],
    waypoint: waypointPids(),
    nginx: nginx?.pid !== undefined ? [nginx.pid] : [],
  });
  const cpuOf = (pids: readonly number[]): number => pids.reduce((s, p) => s + cpuSeconds(p), 0);
  const hasWaypoint = waypointPids().length > 0;
  if (!hasWaypoint) console.log('   (no waypoint process in mesh/waypoint: the waypoint path is skipped)');

  const paths = PATHS.filter((p) => (p.id !== 'waypoint' || hasWaypoint) && (p.id !== 'nginx' || nginx !== undefined));
  const runLoad = async (p: PathDef, protocol: 'http1' | 'h2', rps: number, secs: number, warmup: number): Promise<L7LoadResult> => {
    const args: L7LoadArgs = { host: p.host(lab), port: protocol === 'h2' ? PORTS.h2 : PORTS.h1, protocol, rps, seconds: secs, warmupSeconds: warmup, bodyBytes: 1024, connections, ...(p.authority ? { authority: `${p.authority}:${protocol === 'h2' ? PORTS.h2 : PORTS.h1}` } : {}) };
    const r = await lab.exec(p.from, [process.execPath, LOAD_JS, 'load', JSON.stringify(args)], { timeoutMs: (secs + warmup + 60) * 1000 });
    if (r.code !== 0) throw new Error(`load ${p.id} ${protocol} @${rps}: exit ${r.code}: ${r.stderr.slice(-500)}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as L7LoadResult;
  };

  // Warm every path once (connections, JIT, certificates) before measuring.
  for (const p of paths) for (const proto of ['http1', 'h2'] as const) await h.retry(`warm-up ${p.id} ${proto}`, () => runLoad(p, proto, 100, 1, 0), 30_000, 1000);

  const results: RateResult[] = [];
  for (const rps of rates) {
    for (const protocol of ['http1', 'h2'] as const) {
      for (const p of paths) {
        if (h.interrupted) return;
        const ps = procs();
        const before = Object.fromEntries(p.proxies.map((n) => [n, cpuOf(ps[n] ?? [])]));
        const r = await runLoad(p, protocol, rps, seconds, 1);
        const cpu = Object.fromEntries(p.proxies.map((n) => [n, round(cpuOf(ps[n] ?? []) - (before[n] ?? 0), 3)]));
        const window = seconds + 1; // warm-up second included in the CPU window
        const vcpuPer1kRps = Object.fromEntries(Object.entries(cpu).map(([n, c]) => [n, round(c / window / (rps / 1000), 3)]));
        const row: RateResult = {
          path: p.id, protocol, rps, achievedRps: r.achievedRps, completed: r.completed, errors: r.errors,
          p50: round(percentile(r.latencyMs, 50), 2), p90: round(percentile(r.latencyMs, 90), 2), p99: round(percentile(r.latencyMs, 99), 2),
          cpu, vcpuPer1kRps, firstErrors: r.firstErrors,
        };
        results.push(row);
        console.log(`   ${pad(p.id, 9)} ${pad(protocol, 5)} @${pad(String(rps), 5)} achieved ${pad(fmt(r.achievedRps, 0), 6, true)} rps  p50 ${pad(fmt(row.p50), 7, true)}  p90 ${pad(fmt(row.p90), 7, true)}  p99 ${pad(fmt(row.p99), 7, true)} ms  errors ${r.errors}  cpu ${Object.entries(vcpuPer1kRps).map(([n, v]) => `${n} ${fmt(v, 3)}`).join(', ') || '-'} vCPU/1k rps`);
      }
    }
  }

  const sat: SaturationResult[] = [];
  if (saturation) {
    console.log('== saturation (h2load, 16 connections; h2 with 10 streams per connection)');
    const body = join(dir, 'body-1k');
    writeFileSync(body, Buffer.alloc(1024, 0x62));
    for (const protocol of ['http1', 'h2'] as const) {
      for (const p of paths) {
        if (h.interrupted) return;
        const port = protocol === 'h2' ? PORTS.h2 : PORTS.h1;
        const argv = ['h2load', '-D', String(Math.max(3, Math.round(seconds / 2))), '-c', '16', '-m', protocol === 'h2' ? '10' : '1', '-d', body, ...(protocol === 'http1' ? ['--h1'] : []), ...(p.authority ? ['-H', `host: ${p.authority}:${port}`] : []), `http://${p.host(lab)}:${port}/`];
        const r = await lab.exec(p.from, argv, { timeoutMs: 120_000 });
        const m = /finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(r.stdout);
        const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(r.stdout);
        const failed = /requests: .* (\d+) failed/.exec(r.stdout);
        const row: SaturationResult = { path: p.id, protocol, rps: m ? Number(m[1]) : Number.NaN, ok2xx: codes ? Number(codes[1]) : 0, failed: (failed ? Number(failed[1]) : 0) + (codes ? Number(codes[4]) + Number(codes[3]) : 0) };
        sat.push(row);
        console.log(`   ${pad(p.id, 9)} ${pad(protocol, 5)} ${pad(fmt(row.rps, 0), 7, true)} req/s  (2xx ${row.ok2xx}, failed ${row.failed})`);
      }
    }
  }

  const rss = Object.fromEntries(Object.entries(procs()).map(([n, pids]) => [n, round(pids.reduce((s, p) => s + rssMiB(p), 0), 1)]));
  const report = {
    benchmark: 'l7',
    startedAt: startedAt.toISOString(),
    machine: machineInfo(loadStart, { nginx: version(['nginx', '-v']), h2load: version(['h2load', '--version']) }),
    params: { seconds, rates, connections, bodyBytes: 1024, responseBytes: 1024, saturation },
    paths: PATHS.map((p) => ({ id: p.id, measured: paths.includes(p), proxies: p.proxies })),
    rates: results,
    saturation: sat,
    rssMiB: rss,
    reference: { istioWaypoint: { ...ISTIO_WAYPOINT, source: 'istio.io performance-and-scalability (1.24), published figure, not measured here' } },
  };
  const file = writeResults(RESULTS, 'l7', 'l7-latest.json', startedAt, report);
  const wp = results.filter((r) => r.path === 'waypoint');
  if (wp.length > 0) {
    const per1k = wp.map((r) => r.vcpuPer1kRps.waypoint ?? Number.NaN);
    console.log(`   waypoint process: ${fmt(Math.min(...per1k), 3)}-${fmt(Math.max(...per1k), 3)} vCPU per 1,000 rps (Istio waypoint, published: ${ISTIO_WAYPOINT.vcpuPer1kRps}); RSS ${fmt(rss.waypoint, 1)} MiB (published ${ISTIO_WAYPOINT.memoryMB} MB)`);
  }
  console.log(`== wrote ${file}`);
  await h.cleanup();
}

main().catch((err: unknown) => {
  console.error(`L7 benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
