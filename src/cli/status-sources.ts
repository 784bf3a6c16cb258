/**
 * Where `ambit status --lab/--kubernetes` gets its data (StatusSources for
 * cluster-status.ts):
 * - a lab: from its state record (nodes, netns, waypoint processes, the
 *   control plane's launch file). The agents' endpoints listen inside the
 *   node netns (admin on its 127.0.0.1), so every request is a TCP socket
 *   the native addon opens inside that netns (needs root, like the lab);
 *   Gateways come from the manifest folder the lab's control plane watches.
 * - Kubernetes: the agent DaemonSet's pods and the waypoint Gateways and
 *   pods through the API (KubeOps), their readiness/metrics and istiod's
 *   monitoring port through the API server's pod/service proxy (so it works
 *   from outside the cluster with only a kubeconfig). The admin endpoint
 *   listens on the pod's localhost and is not reachable this way: the agent
 *   rows come from readiness and metrics.
 */
import { request, type IncomingMessage } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_ADMIN_PORT, DEFAULT_METRICS_PORT, DEFAULT_READINESS_PORT } from '../agent/config.js';
import { folderKubeOps, type KubeOps } from '../cni/kube-ops.js';
import { CONTROL_PLANE_RECORD, LAB_CONTROL_PLANE_MONITORING_PORT } from '../lab/lab.js';
import { LabNotFoundError } from '../lab/errors.js';
import { DEFAULT_STATE_ROOT, listLabNames, readLabState } from '../lab/state.js';
import type { NativeBinding } from '../native/binding.js';
import { loadNativeBinding } from '../native/load.js';
import { connectFromNetns } from '../native/sockets.js';
import type { AgentTarget, HttpGet, StatusSources, WaypointTarget } from './cluster-status.js';

export const AGENT_SELECTOR = 'app=ambit-node';
export const CONTROL_PLANE_SERVICE = 'istiod';
export const WAYPOINT_STATUS_PORT = 15021;

/** GET over a socket opened inside `netns` (a name under /run/netns or a path). */
export function netnsHttpGet(netns: string, host: string, port: number, binding?: NativeBinding, timeoutMs = 5000): HttpGet {
  const path = netns.includes('/') ? netns : `/run/netns/${netns}`;
  return (p, accept) =>
    new Promise((resolvePromise, reject) => {
      const native = binding ?? loadNativeBinding();
      const req = request(
        { host, port, path: p, method: 'GET', headers: accept ? { accept } : {}, createConnection: () => connectFromNetns(native, { netns: path, host, port }) },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', (err: Error & { code?: string }) => reject(new Error(`${host}:${port} in netns ${netns}: ${err.code ?? err.message}`)));
      req.end();
    });
}

/** `--flag value` or `--flag=value` from an argv. */
function argOf(argv: readonly string[], flag: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === `--${flag}`) return argv[i + 1];
    if (a.startsWith(`--${flag}=`)) return a.slice(flag.length + 3);
  }
  return undefined;
}

export interface LabSourceOptions {
  readonly stateRoot?: string;
  readonly binding?: NativeBinding;
  readonly timeoutMs?: number;
}

/** The sources of a running lab. Throws LabNotFoundError when there is no such lab. */
export async function labStatusSources(name: string, o: LabSourceOptions = {}): Promise<StatusSources> {
  const root = resolve(o.stateRoot ?? process.env.AMBIT_LAB_STATE_ROOT ?? DEFAULT_STATE_ROOT);
  const state = readLabState(root, name);
  if (!state) {
    const others = listLabNames(root);
    throw new LabNotFoundError(`lab '${name}' is not up${others.length > 0 ? ` (labs: ${others.join(', ')})` : ''}`);
  }
  const get = (netns: string, host: string, port: number): HttpGet => netnsHttpGet(netns, host, port, o.binding, o.timeoutMs);
  // The control plane: where `lab up --control-plane` started it.
  let controlPlane: StatusSources['controlPlane'];
  let manifests: string | undefined;
  const launchFile = join(state.stateDir, 'control-plane.launch.json');
  if (existsSync(launchFile)) {
    const launch = JSON.parse(readFileSync(launchFile, 'utf8')) as { netns?: string; argv?: string[] };
    const argv = launch.argv ?? [];
    const host = argOf(argv, 'address') ?? state.nodes[0]?.ip ?? '127.0.0.1';
    const port = Number(argOf(argv, 'monitoring-port') ?? LAB_CONTROL_PLANE_MONITORING_PORT);
    manifests = argOf(argv, 'manifests');
    const netns = launch.netns ?? state.nodes[0]?.netns ?? '';
    controlPlane = { where: `${host}:${port} (netns ${netns})`, get: get(netns, host, port) };
  }
  const agentNodes = new Set(state.agents.filter((a) => a.node !== CONTROL_PLANE_RECORD).map((a) => a.node));
  const agents: AgentTarget[] = state.nodes
    .filter((n) => agentNodes.has(n.name))
    .map((n) => ({
      node: n.name,
      where: `netns ${n.netns}`,
      readiness: get(n.netns, '127.0.0.1', DEFAULT_READINESS_PORT),
      metrics: get(n.netns, '127.0.0.1', DEFAULT_METRICS_PORT),
      admin: get(n.netns, '127.0.0.1', DEFAULT_ADMIN_PORT),
      usesXds: controlPlane !== undefined,
    }));
  // Waypoints: the Gateways of the watched folder; their pods are the lab's waypoint processes.
  const gateways = manifests && existsSync(manifests) ? await folderKubeOps(manifests).listGateways(undefined) : [];
  const records = state.waypoints ?? [];
  const waypoints: WaypointTarget[] = await Promise.all(
    gateways.map(async (g) => {
      const mine = records.filter((r) => r.namespace === g.namespace && r.gateway === g.name);
      const pods = await Promise.all(
        mine.map(async (r) => {
          const netns = state.pods.find((p) => p.namespace === r.namespace && p.name === r.pod)?.netns;
          let ready = false;
          if (netns) {
            try {
              ready = (await get(netns, '127.0.0.1', WAYPOINT_STATUS_PORT)('/healthz/ready')).status === 200;
            } catch {
              ready = false;
            }
          }
          return { name: r.pod, ready, phase: ready ? 'Running' : 'Unknown' };
        }),
      );
      return { namespace: g.namespace, name: g.name, for: g.waypointFor, source: g.source, pods };
    }),
  );
  return { mode: 'lab', where: name, ...(controlPlane ? { controlPlane } : {}), agents, waypoints };
}

export interface KubeSourceOptions {
  /** Namespace of the control plane and the agent DaemonSet; default istio-system. */
  readonly namespace?: string;
  readonly agentSelector?: string;
  readonly controlPlaneService?: string;
  readonly where?: string;
  readonly timeoutMs?: number;
}

/** The sources of a Kubernetes cluster, through the API server. */
export async function kubeStatusSources(ops: KubeOps, o: KubeSourceOptions = {}): Promise<StatusSources> {
  const ns = o.namespace ?? 'istio-system';
  const t = { timeoutMs: o.timeoutMs ?? 5000 };
  const proxied =
    (podOrSvc: string, port: number, namespace = ns): HttpGet =>
    (path, accept) =>
      ops.proxyGet(namespace, `${podOrSvc}:${port}`, path, { ...t, ...(accept ? { accept } : {}) });
  const pods = await ops.listPods(ns, o.agentSelector ?? AGENT_SELECTOR);
  const agents: AgentTarget[] = pods.map((p) => ({
    node: p.node || p.name,
    where: `pod ${p.namespace}/${p.name}`,
    pod: { namespace: p.namespace, name: p.name, ready: p.ready, phase: p.phase },
    readiness: proxied(`pods/${p.name}`, DEFAULT_READINESS_PORT),
    metrics: proxied(`pods/${p.name}`, DEFAULT_METRICS_PORT),
    usesXds: true,
  }));
  const svc = o.controlPlaneService ?? CONTROL_PLANE_SERVICE;
  const gateways = await ops.listGateways(undefined);
  const waypoints: WaypointTarget[] = await Promise.all(
    gateways.map(async (g) => {
      const wpPods = await ops.listPods(g.namespace, `gateway.networking.k8s.io/gateway-name=${g.name}`);
      return { namespace: g.namespace, name: g.name, for: g.waypointFor, source: g.source, pods: wpPods.map((p) => ({ name: p.name, ready: p.ready, phase: p.phase })) };
    }),
  );
  return {
    mode: 'kubernetes',
    where: o.where ?? 'kubernetes',
    controlPlane: { where: `service ${ns}/${svc}:15014`, get: proxied(`services/${svc}`, 15014) },
    agents,
    waypoints,
  };
}
