/**
 * The living mesh behind `ambit demo` (what `npm start` runs): a two-node
 * lab with the control plane and an agent per node, the sample app in the
 * ambient namespace, load generators at a steady rate, the deny policy for
 * the rogue client, and the dashboard on 127.0.0.1. It keeps running until
 * the caller's AbortSignal fires (Ctrl-C), then tears everything down.
 * `startLivingMesh` is also what the tour and the browser test build on.
 *
 * The dashboard is served by the control plane (the Kiali role), not by
 * this process: the control plane gets --dashboard-listen and
 * --dashboard-netns /proc/<this pid>/ns/net, creates its listening socket
 * in this process's netns (the host's, where the user's browser is) with
 * the native addon, and scrapes the agents and waypoints itself. This
 * process only waits for the page to answer and reads the same JSON API the
 * page reads. The netns path names this process, which lives as long as the
 * demo (and the lab) does; it is whatever netns the user started the demo
 * in, which /proc/1/ns/net need not be.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DashboardClient, waitForDashboard } from '../dashboard/client.js';
import { DashboardBindError } from '../dashboard/errors.js';
import type { EdgeStats } from '../dashboard/history.js';
import { LAB_CONTROL_PLANE_MONITORING_PORT } from '../dashboard/lab-targets.js';
import { defaultFetch } from '../dashboard/netns-http.js';
import { DEFAULT_DASHBOARD_ADDRESS, DEFAULT_DASHBOARD_PORT } from '../dashboard/server.js';
import { labDown, labUp, type LabHandle } from '../lab/lab.js';
import { APP_MANIFESTS, APP_NAMESPACE, appArgv, appProcesses, DENY_POLICY, DENY_POLICY_FILE } from './app.js';

export interface LivingMeshOptions {
  name: string;
  /** Load generator rate (requests per second into the frontend). */
  rps?: number;
  rogueRps?: number;
  /** Start with the deny policy in place (default true). */
  deny?: boolean;
  dashboardPort?: number;
  dashboardAddress?: string;
  /** Scrape interval of the dashboard (ms). */
  intervalMs?: number;
  /** Progress lines. */
  out?: (line: string) => void;
  /** Aborts the setup between steps (Ctrl-C while it builds); what was built is torn down. */
  signal?: AbortSignal;
}

export interface LoadCounts {
  ok: number;
  failed: number;
  last: string;
}

export interface LivingMesh {
  readonly lab: LabHandle;
  /** The dashboard the control plane serves, read over its JSON API. */
  readonly dashboard: DashboardClient;
  /** The pid of the process that answers on the dashboard URL (its `server` header): the control plane's. */
  readonly dashboardPid: number;
  readonly manifestsDir: string;
  /** The latest counts each load generator printed (pod -> counts). */
  readonly load: ReadonlyMap<string, LoadCounts>;
  applyDeny(): Promise<void>;
  removeDeny(): Promise<void>;
  /** Stops the app, the dashboard and the lab (idempotent). */
  stop(): Promise<void>;
}

export const LIVING_STEPS = 5;

function bold(s: string): string {
  return process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s;
}

export function stepLine(n: number, total: number, msg: string): string {
  return `${bold(`[${n}/${total}]`)} ${msg}`;
}

/** Resolves when the child printed its first line (its ready signal); rejects when it exits first or stays silent. */
function firstLine(child: ChildProcess, what: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => done(new Error(`${what} printed nothing within ${timeoutMs} ms`)), timeoutMs);
    const onData = (d: Buffer): void => {
      seen += d.toString();
      const nl = seen.indexOf('\n');
      if (nl >= 0) done(undefined, seen.slice(0, nl));
    };
    const onExit = (code: number | null, signal: string | null): void => done(new Error(`${what} exited (${signal ?? code}) before it was ready: ${seen.trim()}`));
    const done = (err?: Error, line?: string): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(line ?? '');
    };
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** The netns path the control plane listens in for the dashboard: this process's own (see the header). */
export function hostNetnsPath(pid: number = process.pid): string {
  return `/proc/${pid}/ns/net`;
}

/** The control plane flags that put the dashboard on the host's `address:port`. */
export function dashboardControlPlaneArgs(o: { address: string; port: number; netns: string; intervalMs?: number; title: string }): string[] {
  const listen = `${o.address.includes(':') ? `[${o.address}]` : o.address}:${o.port}`;
  return ['--dashboard-listen', listen, '--dashboard-netns', o.netns, ...(o.intervalMs ? ['--dashboard-interval', String(o.intervalMs)] : []), '--dashboard-title', o.title];
}

/**
 * The port the control plane will be told to use: fails early (before the
 * lab is built) when `port` is taken here; port 0 is resolved to a free port
 * now, so the URL stays the same when the control plane restarts
 * (labStartControlPlane replays the same flags).
 */
export async function choosePort(address: string, port: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', (err: NodeJS.ErrnoException) =>
      reject(new DashboardBindError(`the dashboard cannot listen on ${address}:${port} (${err.code ?? err.message}); choose another port with --port (0 picks a free one) or another --address`, { cause: err })),
    );
    s.listen(port, address, () => {
      const bound = (s.address() as AddressInfo).port;
      s.close(() => resolve(bound));
    });
  });
}

async function writeAtomic(dir: string, file: string, text: string): Promise<void> {
  const tmp = join(dir, `.${file}.tmp`);
  await writeFile(tmp, text);
  await rename(tmp, join(dir, file));
}

export async function startLivingMesh(o: LivingMeshOptions): Promise<LivingMesh> {
  const out = o.out ?? ((): void => {});
  const rps = o.rps ?? 5;
  const dir = await mkdtemp(join(tmpdir(), 'ambit-demo-'));
  const children: ChildProcess[] = [];
  const load = new Map<string, LoadCounts>();
  let lab: LabHandle | undefined;
  let dashboard: { url: string; servedByPid: number } | undefined;
  let stopped = false;
  const address = o.dashboardAddress ?? DEFAULT_DASHBOARD_ADDRESS;
  let port = o.dashboardPort ?? DEFAULT_DASHBOARD_PORT;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const c of children) c.kill();
    // The dashboard goes with the control plane process.
    await labDown(o.name).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  const check = (): void => {
    if (o.signal?.aborted) throw new Error('interrupted');
  };
  try {
    // What a crashed earlier run left behind, first: its control plane may still hold the dashboard port.
    await labDown(o.name);
    port = await choosePort(address, port);
    await writeFile(join(dir, 'app.yaml'), APP_MANIFESTS);
    if (o.deny !== false) await writeFile(join(dir, DENY_POLICY_FILE), DENY_POLICY);
    out(stepLine(1, LIVING_STEPS, `creating the lab '${o.name}': 2 nodes, 7 pods in the ambient namespace "${APP_NAMESPACE}"; starting the control plane (with the dashboard) and an agent per node`));
    const t0 = Date.now();
    const controlPlaneArgs = dashboardControlPlaneArgs({ address, port, netns: hostNetnsPath(), ...(o.intervalMs ? { intervalMs: o.intervalMs } : {}), title: `Ambit demo (lab ${o.name})` });
    lab = await labUp({ manifests: dir, name: o.name, mesh: true, controlPlane: true, controlPlaneArgs });
    const l = lab;
    out(`      control plane on ${l.cluster.nodes[0]?.ip ?? '?'}:15012 (xDS + CA), watching ${dir}`);
    for (const n of l.cluster.nodes) out(`      agent on ${n.name} (${n.ip}) ready; pods enrolled: ${l.cluster.workloads.filter((w) => w.node === n.name).map((w) => w.name).join(', ')}`);
    out(`      (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

    check();
    const procs = appProcesses(rps, o.rogueRps ?? 1);
    const ipOf = (pod: string): string => {
      const w = l.cluster.workloads.find((x) => x.name === pod && x.namespace === APP_NAMESPACE);
      if (!w) throw new Error(`BUG: the demo manifests lack the pod ${pod}`);
      return w.ip;
    };
    out(stepLine(2, LIVING_STEPS, 'starting the sample app: frontend -> productpage -> reviews (HTTP, through the waypoint: 90% v1, 10% v2) and details (gRPC, through the waypoint), reviews-v2 -> ratings (TCP)'));
    for (const p of procs.filter((x) => x.mode !== 'load')) {
      const child = l.spawn(`${APP_NAMESPACE}/${p.pod}`, [process.execPath, ...appArgv(p, ipOf(p.pod))], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      await firstLine(child, `${p.pod} server`, 10_000);
      child.stdout?.resume();
      child.stderr?.resume();
      out(`      ${p.pod.padEnd(12)} ${ipOf(p.pod)}:${p.port} ${p.mode.toUpperCase()}${p.calls?.length ? ` -> ${p.calls.map((c) => c.replace(/\.svc\.cluster\.local/, '').replace(/^[a-z]+:\/\//, '')).join(', ')}` : ''}`);
    }

    check();
    out(stepLine(3, LIVING_STEPS, `starting traffic: loadgen -> frontend at ${rps} req/s; rogue -> productpage at ${o.rogueRps ?? 1} req/s`));
    for (const p of procs.filter((x) => x.mode === 'load')) {
      const child = l.spawn(`${APP_NAMESPACE}/${p.pod}`, [process.execPath, ...appArgv(p, ipOf(p.pod))], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      await firstLine(child, `${p.pod} load generator`, 10_000);
      let buf = '';
      child.stdout?.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        for (const line of lines) {
          try {
            load.set(p.pod, JSON.parse(line) as LoadCounts);
          } catch {
            // not a counts line
          }
        }
      });
      child.stderr?.resume();
    }
    if (o.deny !== false) out(`      AuthorizationPolicy ${APP_NAMESPACE}/deny-rogue (DENY from sa/rogue to app=productpage) is in place`);

    check();
    out(stepLine(4, LIVING_STEPS, 'waiting for the dashboard: the control plane serves it and scrapes the agents\' /metrics, readiness and /config_dump and the waypoints\' /stats/prometheus'));
    const first = l.cluster.nodes[0];
    if (!first) throw new Error('BUG: the lab has no node');
    const ready = await waitForDashboard({
      fetch: defaultFetch().fetch,
      controlPlane: { netns: first.netns, host: first.ip, port: LAB_CONTROL_PLANE_MONITORING_PORT },
      timeoutMs: 20_000,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    dashboard = { url: ready.url, servedByPid: ready.servedByPid };
    out(`      ${ready.url}  served by the control plane (pid ${ready.servedByPid}) from ${first.name}'s netns; its socket was made in this process's netns (${hostNetnsPath()}) by the native addon`);
  } catch (err) {
    await stop();
    throw err;
  }
  const d = dashboard;
  const l = lab;
  return {
    lab: l,
    dashboard: new DashboardClient(d.url),
    dashboardPid: d.servedByPid,
    manifestsDir: dir,
    load,
    applyDeny: () => writeAtomic(dir, DENY_POLICY_FILE, DENY_POLICY),
    removeDeny: () => rm(join(dir, DENY_POLICY_FILE), { force: true }),
    stop,
  };
}

/** Polls the dashboard's graph until `pred` holds for some edge (or the timeout passes). */
export async function waitForEdge(mesh: LivingMesh, pred: (e: EdgeStats) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<EdgeStats | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = (await mesh.dashboard.graph().catch(() => undefined))?.edges.find(pred);
    if (hit || Date.now() > deadline || signal?.aborted) return hit;
    await new Promise((r) => setTimeout(r, 250));
  }
}

export function edgeLine(e: EdgeStats): string {
  const name = (id: string): string => (id.startsWith('svc:') ? `${id.slice(4)} (svc)` : id.replace(/^(wl|ext):/, ''));
  const rate = e.rps > 0 ? `${e.rps.toFixed(1)} req/s` : `${e.cps.toFixed(1)} conn/s`;
  return `${name(e.source).padEnd(20)} -> ${name(e.target).padEnd(24)} ${rate.padStart(12)}  ${(e.bytesPerSec / 1024).toFixed(1).padStart(6)} KB/s  mTLS ${e.mtls.padEnd(7)} ${e.status === 'denied' ? `DENIED ${e.deniedPerSec.toFixed(1)}/s (${e.deniedTotal} total)` : e.status}`;
}

export interface LivingDemoOptions extends LivingMeshOptions {
  out: (line: string) => void;
  /** Fires on Ctrl-C: the demo tears down and returns. */
  signal: AbortSignal;
}

export async function runLivingDemo(o: LivingDemoOptions): Promise<number> {
  const { out } = o;
  const t0 = Date.now();
  let mesh: LivingMesh;
  try {
    mesh = await startLivingMesh(o);
  } catch (err) {
    if (o.signal.aborted) return 130;
    throw err;
  }
  try {
    out(stepLine(5, LIVING_STEPS, 'waiting for the first traffic in the graph'));
    await waitForEdge(mesh, (e) => e.target === 'svc:demo/productpage' && e.cps > 0, 15_000, o.signal);
    await waitForEdge(mesh, (e) => e.status === 'denied', 8_000, o.signal);
    const g = await mesh.dashboard.graph();
    out('');
    out(bold(`The mesh is running (ready in ${((Date.now() - t0) / 1000).toFixed(1)} s)`));
    out(`  Dashboard:  ${mesh.dashboard.url}   (served by the control plane, pid ${mesh.dashboardPid})`);
    out(`  Graph now (rates over ${g.windowSeconds} s):`);
    for (const e of g.edges.filter((x) => x.status !== 'idle' && !x.source.startsWith('svc:')).sort((a, b) => a.source.localeCompare(b.source))) out(`    ${edgeLine(e)}`);
    out(`  Try:        node bin/ambit.js lab exec ${APP_NAMESPACE}/loadgen --name ${o.name} -- curl -s http://frontend/`);
    out(`              rm ${join(mesh.manifestsDir, DENY_POLICY_FILE)}   (lifts the deny policy; the red edge turns green)`);
    out(`              node bin/ambit.js lab exec --node node-b --name ${o.name} -- node bin/ambit.js status`);
    out(`  API:        ${mesh.dashboard.url}api/snapshot   (see docs/DASHBOARD.md)`);
    out('  Press Ctrl-C to stop; everything is torn down.');
    if (!o.signal.aborted) await new Promise<void>((resolve) => o.signal.addEventListener('abort', () => resolve(), { once: true }));
    out('stopping: the app, the agents and the control plane with its dashboard; removing the lab ...');
    return 0;
  } finally {
    await mesh.stop();
    out('done; the lab is gone.');
  }
}
