/**
 * Waypoint pods in the lab. A pod labelled
 * `gateway.networking.k8s.io/gateway-name: <gw>` is the waypoint of Gateway
 * <gw> (what istiod's deployment controller would run for a Gateway of class
 * istio-waypoint): in control-plane mode the lab starts `ambit waypoint run`
 * inside that pod's netns, with the pod's node token (the CA signs the
 * waypoint's identity because the pod runs on that node), and stops it on
 * `down`. This module holds the pure parts: which pods are waypoints, the
 * argv, the file names, and the manifest objects a lab needs for a waypoint.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../common/logger.js';
import { defaultSpawnAgent, processStartTime, stopProcess, waitForAgents, type SpawnAgent, type WatchedAgent } from './agents.js';
import { LabWaypointError } from './errors.js';
import type { StateStore, WaypointRecord } from './state.js';

export const WAYPOINT_GATEWAY_LABEL = 'gateway.networking.k8s.io/gateway-name';
export const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint';
export const WAYPOINT_HBONE_PORT = 15008;

/** A lab pod that runs a waypoint. */
export interface LabWaypointPod {
  /** The Gateway this pod serves (the label value). */
  readonly gateway: string;
  readonly namespace: string;
  readonly pod: string;
  readonly node: string;
  readonly ip: string;
  readonly netns: string;
}

/** Everything `ambit waypoint run` needs besides the pod itself. */
export interface WaypointLaunchContext {
  /** host:port of the control plane (xDS and CA). */
  readonly xdsAddress: string;
  readonly rootCert: string;
  /** The node token file for a node (the CA authenticates the caller to that node). */
  readonly tokenFile: (node: string) => string;
  readonly stateDir: string;
  /** Appended to every waypoint's argv, e.g. ['--otlp-endpoint', url]. */
  readonly extraArgs?: readonly string[];
}

/** The waypoint pods among `pods` (anything with the gateway-name label and a non-empty value). */
export function waypointPods(pods: ReadonlyArray<{ namespace: string; name: string; node: string; ip: string; netns: string; labels: Readonly<Record<string, string>> }>): LabWaypointPod[] {
  const out: LabWaypointPod[] = [];
  for (const p of pods) {
    const gateway = p.labels[WAYPOINT_GATEWAY_LABEL];
    if (gateway === undefined || gateway === '') continue;
    out.push({ gateway, namespace: p.namespace, pod: p.name, node: p.node, ip: p.ip, netns: p.netns });
  }
  return out;
}

/** Stable identity of a waypoint process: the pod and the gateway it serves (a relabelled pod gets a new process). */
export function waypointKey(w: Pick<LabWaypointPod, 'namespace' | 'pod' | 'gateway'>): string {
  return `${w.namespace}/${w.pod}=${w.gateway}`;
}

export function waypointFiles(stateDir: string, w: Pick<LabWaypointPod, 'namespace' | 'pod'>): { logFile: string; readyFile: string } {
  const base = `waypoint-${w.namespace}-${w.pod}`;
  return { logFile: join(stateDir, `${base}.log`), readyFile: join(stateDir, `${base}.ready`) };
}

/** `<command> waypoint run --name <gw> --namespace <ns> ...` for one pod. */
export function waypointArgv(command: readonly string[], w: LabWaypointPod, ctx: WaypointLaunchContext): string[] {
  return [
    ...command,
    'waypoint', 'run',
    '--name', w.gateway,
    '--namespace', w.namespace,
    '--xds-address', ctx.xdsAddress,
    '--root-cert', ctx.rootCert,
    '--token-file', ctx.tokenFile(w.node),
    '--pod-ip', w.ip,
    '--node', w.node,
    '--ready-file', waypointFiles(ctx.stateDir, w).readyFile,
    ...(ctx.extraArgs ?? []),
  ];
}

export interface WaypointManifestOptions {
  readonly namespace: string;
  /** Gateway, Service, Pod and service account name; default 'waypoint'. */
  readonly name?: string;
  readonly node: string;
  /** istio.io/waypoint-for: service (default), workload, all, none. */
  readonly for?: 'service' | 'workload' | 'all' | 'none';
  /** The Service's clusterIP; default allocated by the lab. */
  readonly clusterIP?: string;
  /** Pin the pod IP (status.podIP). */
  readonly podIP?: string;
}

/**
 * The objects of one waypoint as lab YAML (three documents, no trailing
 * separator): the Gateway (class istio-waypoint, listener mesh/15008/HBONE),
 * its Service (port 15008 named mesh) and the Pod that runs it (out of the
 * mesh data plane, like Istio's generated Deployment).
 */
export function renderWaypointManifest(o: WaypointManifestOptions): string {
  const name = o.name ?? 'waypoint';
  const q = (s: string): string => JSON.stringify(s);
  return [
    [
      'apiVersion: gateway.networking.k8s.io/v1',
      'kind: Gateway',
      'metadata:',
      `  name: ${q(name)}`,
      `  namespace: ${q(o.namespace)}`,
      '  labels:',
      `    istio.io/waypoint-for: ${q(o.for ?? 'service')}`,
      'spec:',
      `  gatewayClassName: ${WAYPOINT_GATEWAY_CLASS}`,
      '  listeners:',
      '    - name: mesh',
      `      port: ${WAYPOINT_HBONE_PORT}`,
      '      protocol: HBONE',
    ].join('\n'),
    [
      'apiVersion: v1',
      'kind: Service',
      'metadata:',
      `  name: ${q(name)}`,
      `  namespace: ${q(o.namespace)}`,
      'spec:',
      ...(o.clusterIP ? [`  clusterIP: ${q(o.clusterIP)}`] : []),
      '  selector:',
      `    ${WAYPOINT_GATEWAY_LABEL}: ${q(name)}`,
      '  ports:',
      '    - name: mesh',
      `      port: ${WAYPOINT_HBONE_PORT}`,
    ].join('\n'),
    [
      'apiVersion: v1',
      'kind: Pod',
      'metadata:',
      `  name: ${q(name)}`,
      `  namespace: ${q(o.namespace)}`,
      '  labels:',
      `    ${WAYPOINT_GATEWAY_LABEL}: ${q(name)}`,
      '    istio.io/dataplane-mode: none',
      'spec:',
      `  nodeName: ${q(o.node)}`,
      `  serviceAccountName: ${q(name)}`,
      ...(o.podIP ? ['status:', `  podIP: ${q(o.podIP)}`] : []),
    ].join('\n'),
  ].join('\n---\n');
}

export interface StartWaypointsOptions {
  /** Program and leading args that replace `<node> <repo>/bin/ambit.js`. */
  readonly command: readonly string[];
  readonly spawn?: SpawnAgent;
  readonly readyTimeoutMs: number;
  readonly logger: Logger;
}

/**
 * Starts one `ambit waypoint run` per pod inside the pod's netns, records
 * each (pid and start time) before waiting, then waits for every ready file.
 * Throws LabWaypointError (with the log tail) when one exits or times out;
 * the processes already started stay recorded, so `down` stops them.
 */
export async function startWaypointProcesses(store: StateStore, pods: readonly LabWaypointPod[], ctx: WaypointLaunchContext, o: StartWaypointsOptions): Promise<WaypointRecord[]> {
  const launch = o.spawn ?? defaultSpawnAgent;
  const watched: WatchedAgent[] = [];
  const started: WaypointRecord[] = [];
  for (const w of pods) {
    const { logFile, readyFile } = waypointFiles(ctx.stateDir, w);
    rmSync(readyFile, { force: true }); // a stale one would fake readiness
    const argv = waypointArgv(o.command, w, ctx);
    const proc = await launch({ node: w.node, netns: w.netns, argv, logFile, readyFile });
    const startTime = processStartTime(proc.pid);
    const rec: WaypointRecord = { namespace: w.namespace, pod: w.pod, gateway: w.gateway, node: w.node, pid: proc.pid, ...(startTime ? { startTime } : {}), logFile, readyFile };
    store.update((s) => (s.waypoints ??= []).push(rec));
    started.push(rec);
    o.logger.info({ waypoint: `${w.namespace}/${w.gateway}`, pod: `${w.namespace}/${w.pod}`, pid: proc.pid, logFile }, 'waypoint started');
    const where = `${w.namespace}/${w.pod}`;
    watched.push({
      node: where,
      proc,
      readyFile,
      logFile,
      what: `the waypoint ${w.namespace}/${w.gateway} in pod ${where}`,
      error: (message, tail) => new LabWaypointError(where, message, tail),
    });
  }
  await waitForAgents(watched, o.readyTimeoutMs);
  return started;
}

/** Stops waypoint processes (SIGTERM, SIGKILL after `graceMs`) and drops them from the record. */
export async function stopWaypointProcesses(store: StateStore, records: readonly WaypointRecord[], graceMs: number): Promise<Array<{ where: string; pid: number; result: 'not-running' | 'terminated' | 'killed' }>> {
  const results = await Promise.all(
    records.map(async (r) => {
      const result = await stopProcess(r.pid, r.startTime, graceMs);
      rmSync(r.readyFile, { force: true });
      return { where: `waypoint ${r.namespace}/${r.pod}`, pid: r.pid, result };
    }),
  );
  const gone = new Set(records.map((r) => r.pid));
  store.update((s) => (s.waypoints = (s.waypoints ?? []).filter((w) => !gone.has(w.pid))));
  return results;
}
