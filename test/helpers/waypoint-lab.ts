/**
 * Shared set-up of the waypoint end-to-end tests (test/integration/
 * waypoint-lab-*.test.ts): a lab with the control plane, an ambient
 * namespace `shop` that uses the waypoint `wp` (node-b), clients on node-a,
 * and `reviews` backends v1 (node-a) and v2 (node-b) with one Service per
 * version (Istio's advice for Gateway API routes) plus the umbrella Service.
 * Traffic goes client pod -> agent -> waypoint pod -> agent -> backend pod.
 * Backends are test/helpers/l7-backend.ts processes started in the pods.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labApply, labDown, labUp, type LabHandle, type LabTarget } from '../../src/lab/lab.js';
import { renderWaypointManifest } from '../../src/lab/waypoints.js';
import { startInPod } from './pod-process.js';

export const NS = 'shop';
export const WAYPOINT = 'wp';
export const BACKEND = fileURLToPath(new URL('./l7-backend.js', import.meta.url));
export const GRPC_CLIENT = fileURLToPath(new URL('./grpc-client.js', import.meta.url));
export const OTLP_RECEIVER = fileURLToPath(new URL('./otlp-receiver.js', import.meta.url));
export const VIP = { reviews: '10.96.0.50', 'reviews-v1': '10.96.0.51', 'reviews-v2': '10.96.0.52', wp: '10.96.0.60' } as const;
export const HTTP_PORT = 9080;
export const GRPC_PORT = 9090;
export const BACKEND_HTTP = 8080;
export const BACKEND_GRPC = 9091;
/** Waypoint ports (contract of `ambit waypoint run`). */
export const WP_METRICS = 15020;
export const WP_STATUS = 15021;

function pod(name: string, node: string, labels: Record<string, string>, sa = name): string {
  const l = Object.entries(labels).map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`);
  return ['apiVersion: v1', 'kind: Pod', 'metadata:', `  name: ${name}`, `  namespace: ${NS}`, ...(l.length ? ['  labels:', ...l] : []), 'spec:', `  nodeName: ${node}`, `  serviceAccountName: ${sa}`].join('\n');
}

function service(name: string, ip: string, selector: Record<string, string>): string {
  return [
    'apiVersion: v1', 'kind: Service', 'metadata:', `  name: ${name}`, `  namespace: ${NS}`, 'spec:', `  clusterIP: ${ip}`, '  selector:',
    ...Object.entries(selector).map(([k, v]) => `    ${k}: ${v}`),
    '  ports:', `    - name: http`, `      port: ${HTTP_PORT}`, `      targetPort: ${BACKEND_HTTP}`, `    - name: grpc`, `      port: ${GRPC_PORT}`, `      targetPort: ${BACKEND_GRPC}`,
  ].join('\n');
}

/** The base manifests (file name -> YAML). Policies and routes are added per test. */
export function baseManifests(): Record<string, string> {
  const mesh = [
    ['apiVersion: v1', 'kind: Namespace', 'metadata:', `  name: ${NS}`, '  labels:', '    istio.io/dataplane-mode: ambient', `    istio.io/use-waypoint: ${WAYPOINT}`].join('\n'),
    // A namespace outside the mesh, for the bypass test.
    ['apiVersion: v1', 'kind: Namespace', 'metadata:', '  name: outside'].join('\n'),
    pod('client', 'node-a', { app: 'client' }),
    pod('trusted', 'node-a', { app: 'trusted' }),
    pod('reviews-v1', 'node-a', { app: 'reviews', version: 'v1' }, 'reviews'),
    pod('reviews-v2', 'node-b', { app: 'reviews', version: 'v2' }, 'reviews'),
    pod('outsider', 'node-a', { 'istio.io/dataplane-mode': 'none' }).replace(`namespace: ${NS}`, 'namespace: outside'),
  ].join('\n---\n');
  const services = [
    service('reviews', VIP.reviews, { app: 'reviews' }),
    service('reviews-v1', VIP['reviews-v1'], { app: 'reviews', version: 'v1' }),
    service('reviews-v2', VIP['reviews-v2'], { app: 'reviews', version: 'v2' }),
  ].join('\n---\n');
  return {
    'mesh.yaml': mesh,
    'services.yaml': services,
    'waypoint.yaml': renderWaypointManifest({ namespace: NS, name: WAYPOINT, node: 'node-b', clusterIP: VIP.wp }),
  };
}

export interface WaypointLab {
  readonly name: string;
  readonly lab: LabHandle;
  readonly dir: string;
  readonly procs: Set<ChildProcess>;
}

/** Brings a lab up with the control plane on `files` (base + extra). */
export async function upWaypointLab(name: string, extra: Record<string, string> = {}, opts: { waypointArgs?: readonly string[] } = {}): Promise<WaypointLab> {
  const dir = mkdtempSync(join(tmpdir(), `ambit-${name}-`));
  for (const [f, text] of Object.entries({ ...baseManifests(), ...extra })) writeFileSync(join(dir, f), text + '\n');
  await labDown(name);
  const lab = await labUp({ manifests: dir, name, mesh: true, controlPlane: true, readyTimeoutMs: 30_000, ...(opts.waypointArgs ? { waypointArgs: opts.waypointArgs } : {}) });
  return { name, lab, dir, procs: new Set() };
}

export async function downWaypointLab(w: WaypointLab | undefined, name: string): Promise<void> {
  for (const p of w?.procs ?? []) p.kill();
  if (process.getuid?.() === 0) await labDown(name);
  if (w) rmSync(w.dir, { recursive: true, force: true });
}

export function podIp(w: WaypointLab, name: string): string {
  const wl = w.lab.cluster.workloads.find((x) => x.name === name);
  assert.ok(wl, `no pod ${name}`);
  return wl.ip;
}

/** Writes (or with `undefined` removes) a manifest the way an editor does, then tells the lab (waypoint processes follow labels). */
export async function setManifest(w: WaypointLab, file: string, text: string | undefined): Promise<void> {
  if (text === undefined) rmSync(join(w.dir, file), { force: true });
  else {
    const tmp = join(w.dir, `.${file}.tmp`);
    writeFileSync(tmp, text + '\n');
    renameSync(tmp, join(w.dir, file));
  }
  await labApply(w.name, { manifests: w.dir });
}

export interface BackendOptions {
  readonly version?: string;
  readonly args?: readonly string[];
  readonly countFile?: string;
}

/** Starts an l7-backend in a reviews pod (HTTP/h2c on 8080, gRPC on 9091). */
export async function startBackend(w: WaypointLab, podName: string, o: BackendOptions = {}): Promise<ChildProcess> {
  const version = o.version ?? (podName.endsWith('v2') ? 'v2' : 'v1');
  const argv = [process.execPath, BACKEND, '--host', podIp(w, podName), '--port', String(BACKEND_HTTP), '--grpc', String(BACKEND_GRPC), '--version', version, '--pod', podName, ...(o.countFile ? ['--count-file', o.countFile] : []), ...(o.args ?? [])];
  const p = await startInPod(w.lab, `${NS}/${podName}`, argv);
  w.procs.add(p);
  return p;
}

export async function stopProc(w: WaypointLab, p: ChildProcess | undefined): Promise<void> {
  if (!p) return;
  w.procs.delete(p);
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    p.kill();
  });
}

/** Backend hit counts written by l7-backend --count-file. */
export function hits(file: string): { http: number; grpc: number; failed: number } {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { http: number; grpc: number; failed: number };
  } catch {
    return { http: 0, grpc: 0, failed: 0 };
  }
}

/**
 * The wire-audit marker (docs/WIRE-AUDIT.md) as a request header, sent by
 * pods of the ambient namespace only: the backends echo request headers in
 * their JSON answer, so both directions of mesh traffic carry it, and the
 * suite's wire tap fails the run if it ever crosses the bridge in clear. A
 * pod outside the mesh (plaintext on purpose) never sends it.
 */
export const WIRE_CANARY_HEADER = ['-H', 'x-wire-canary: AMBIT-CANARY'] as const;

function meshPod(from: LabTarget): boolean {
  if (typeof from === 'string') return from.startsWith(`${NS}/`);
  return 'pod' in from && from.namespace === NS;
}

/** Runs curl in a pod with `args`; never throws on curl errors. */
export function curl(w: WaypointLab, from: LabTarget, args: readonly string[], timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return w.lab.exec(from, ['curl', '-sS', ...(meshPod(from) ? WIRE_CANARY_HEADER : []), ...args], { timeoutMs });
}

/** One line per transfer: `<status> <seconds> <x-backend-version>` (curl -w). */
export const WRITE_OUT = '%{http_code} %{time_total} %header{x-backend-version}\\n';

export interface Transfer { readonly status: number; readonly seconds: number; readonly version: string }

export function parseTransfers(stdout: string): Transfer[] {
  return stdout
    .split('\n')
    .filter((l) => /^\d{3} /.test(l))
    .map((l) => {
      const [s, t, v] = l.split(' ');
      return { status: Number(s), seconds: Number(t), version: v ?? '' };
    });
}

/**
 * `n` requests, e.g. url = http://10.96.0.50:9080/r (numbered /r1 ... /rn).
 * HTTP/1.1: one curl process (URL globbing, keep-alive). h2c
 * (--http2-prior-knowledge): one curl process per request, because curl
 * 7.88's reuse of an h2c connection fails on the second stream ("Error in
 * the HTTP2 framing layer", also against Node's own http2 server).
 */
export async function requests(w: WaypointLab, from: LabTarget, url: string, n: number, extra: readonly string[] = []): Promise<Transfer[]> {
  const h2c = extra.includes('--http2-prior-knowledge');
  const r = h2c
    ? await w.lab.exec(from, ['sh', '-c', `i=1; while [ $i -le ${n} ]; do curl -sS -o /dev/null -w '${WRITE_OUT}' --max-time 10 "$@" "${url}$i"; i=$((i+1)); done`, 'sh', ...(meshPod(from) ? WIRE_CANARY_HEADER : []), ...extra], { timeoutMs: 300_000 })
    : await curl(w, from, ['-o', '/dev/null', '-w', WRITE_OUT, '--max-time', '10', ...extra, `${url}[1-${n}]`]);
  const t = parseTransfers(r.stdout);
  assert.equal(t.length, n, `curl made ${t.length} of ${n} requests (exit ${r.code}): ${r.stderr.slice(0, 500)}`);
  return t;
}

export function tally<T>(xs: readonly T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return out;
}

/** The waypoint's Prometheus text (`/stats/prometheus` on the metrics port, from inside its pod). */
export async function scrapeWaypoint(w: WaypointLab): Promise<string> {
  const ip = podIp(w, WAYPOINT);
  for (const host of ['127.0.0.1', ip]) {
    const r = await curl(w, `${NS}/${WAYPOINT}`, ['--max-time', '5', `http://${host}:${WP_METRICS}/stats/prometheus`], 10_000);
    if (r.code === 0) return r.stdout;
  }
  assert.fail(`cannot scrape the waypoint metrics on ${ip}:${WP_METRICS}/stats/prometheus or 127.0.0.1`);
}

/** Sum of a metric's samples whose labels include every `labels` pair. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Polls `check` until it returns true or `ms` passes (then fails with `what` and the last detail). */
export async function eventually(what: string, ms: number, check: () => Promise<boolean | string>): Promise<number> {
  const t0 = Date.now();
  let last: boolean | string = false;
  for (;;) {
    last = await check();
    if (last === true) return Date.now() - t0;
    if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms${typeof last === 'string' ? ` (last: ${last})` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until the waypoint answers through the mesh on `url` with a 2xx (config delivered, backends up). */
export async function waitServed(w: WaypointLab, from: LabTarget, url: string, ms = 20_000, extra: readonly string[] = []): Promise<void> {
  await eventually(`${url} served through the waypoint`, ms, async () => {
    const r = await curl(w, from, ['-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', ...extra, url], 10_000);
    return r.stdout === '200' || `exit ${r.code} status ${r.stdout} ${r.stderr.trim()}`;
  });
}

/** The waypoint's log (for diagnostics on failure). */
export function waypointLog(w: WaypointLab): string {
  try {
    return readFileSync(join(w.lab.stateDir, `waypoint-${NS}-${WAYPOINT}.log`), 'utf8').split('\n').slice(-40).join('\n');
  } catch {
    return '(no waypoint log)';
  }
}

/** Binomial tolerance: |observed - n p| <= k sqrt(n p (1-p)). */
export function withinSigma(observed: number, n: number, p: number, k = 3): boolean {
  return Math.abs(observed - n * p) <= k * Math.sqrt(n * p * (1 - p));
}

/** Runs a readiness step; on failure the error carries the waypoint's log tail. */
export async function withWaypointLog<T>(w: WaypointLab | undefined, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- waypoint log ---\n${w ? waypointLog(w) : '(no lab)'}`);
  }
}
