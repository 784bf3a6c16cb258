/**
 * `ambit waypoint apply|list|delete -n <ns>`: the waypoint of a namespace.
 * Through the Kubernetes API, `apply` writes the Gateway (class
 * istio-waypoint, HBONE listener on 15008) AND, since Ambit has no gateway
 * deployment controller, the ServiceAccount, Service and Deployment that run
 * it (deploy/waypoint.yaml, rendered by renderWaypoint); `delete` removes all
 * four. In a manifest folder (--manifests, the lab) only the Gateway is
 * written: there is no kubelet to run a Deployment. `apply --enroll-namespace`
 * also labels the namespace istio.io/use-waypoint=<name>.
 *
 * `ambit waypoint run ...` is the waypoint proxy itself (the Deployment's
 * command); it lives in waypoint-run-command.ts and is loaded on demand.
 */
import { ConfigError } from '../common/errors.js';
import { renderWaypoint } from '../cni/deploy-render.js';
import type { KubeOps } from '../cni/kube-ops.js';
import { boolFlag, enumFlag, stringFlag, type Command, type FlagSpec, type ParsedArgs } from './command.js';
import { emit, KUBE_FLAGS, kubeOpsFor, outputFormat } from './enroll-command.js';
import { processOutput, table, type Output } from './format.js';

/** Flags of `ambit waypoint run` (besides --name and --namespace, shared with apply/delete). */
export const WAYPOINT_RUN_FLAGS: Record<string, FlagSpec> = {
  'xds-address': { type: 'string', help: 'run: control plane xDS/CA address (host:port)' },
  'root-cert': { type: 'string', help: 'run: mesh root certificate (PEM)' },
  'token-file': { type: 'string', help: 'run: service-account token for the CA (audience istio-ca)' },
  'trust-domain': { type: 'string', help: 'run: SPIFFE trust domain', default: 'cluster.local' },
  node: { type: 'string', help: 'run: the node this waypoint runs on' },
  'pod-ip': { type: 'string', help: 'run: this pod IP' },
  'hbone-port': { type: 'string', help: 'run: HBONE listener port', default: '15008' },
  'metrics-port': { type: 'string', help: 'run: Prometheus metrics port', default: '15020' },
  'status-port': { type: 'string', help: 'run: readiness port (/healthz/ready)', default: '15021' },
  'ready-file': { type: 'string', help: 'run: file written once ready' },
  'otlp-endpoint': { type: 'string', help: 'run: OTLP/HTTP trace endpoint' },
  'ca-address': { type: 'string', help: 'run: CA address when not the xDS address' },
  'control-plane-identity': { type: 'string', help: "run: SPIFFE id the control plane must present (default istiod's)" },
  'pod-name': { type: 'string', help: 'run: this pod name (default $POD_NAME)' },
  'cluster-id': { type: 'string', help: 'run: cluster id sent to the control plane', default: 'Kubernetes' },
  'upstream-hbone-port': { type: 'string', help: 'run: HBONE port of the destination agents', default: '15008' },
  'drain-deadline-ms': { type: 'string', help: 'run: how long open requests may finish on SIGTERM' },
  'log-level': { type: 'string', help: 'run: log level', default: 'info' },
};

/** The run command's module; a variable so this file compiles whether or not it exists yet. */
const RUN_MODULE: string = './waypoint-run-command.js';

interface WaypointObjectResult {
  kind: string;
  name: string;
  result: string;
}

/** Delete order: the Gateway first (agents stop routing to it), then what runs it. */
const OWNED_KINDS: ReadonlyArray<[string, string]> = [
  ['gateway.networking.k8s.io/v1', 'Gateway'],
  ['apps/v1', 'Deployment'],
  ['v1', 'Service'],
  ['v1', 'ServiceAccount'],
];

export async function runWaypoint(args: ParsedArgs, out: Output, ops?: KubeOps): Promise<number> {
  const sub = args.positionals[0];
  if (sub === 'run') {
    const mod = (await import(RUN_MODULE)) as { runWaypointRun(args: ParsedArgs, out: Output): Promise<number> };
    return mod.runWaypointRun(args, out);
  }
  const kube = (): KubeOps => (ops ??= kubeOpsFor(args));
  const all = boolFlag(args, 'all-namespaces');
  const ns = stringFlag(args, 'namespace');
  const name = stringFlag(args, 'name', 'waypoint') as string;
  const fmt = outputFormat(args);
  if (sub === 'list') {
    if (!ns && !all) throw new ConfigError('ambit waypoint list: give -n <namespace> or -A');
    const gws = await kube().listGateways(all ? undefined : ns);
    emit(out, fmt, gws, () => table(['NAMESPACE', 'NAME', 'FOR', 'SOURCE'], gws.map((g) => [g.namespace, g.name, g.waypointFor, g.source]), out.colour));
    return 0;
  }
  if (!ns) throw new ConfigError(`ambit waypoint ${sub ?? ''}: -n <namespace> is required`);
  if (sub === 'apply') {
    const forKind = enumFlag(args, 'for', ['service', 'workload', 'all', 'none'] as const, 'service');
    const image = stringFlag(args, 'image');
    const k = kube();
    const docs = renderWaypoint({ namespace: ns, name, forKind, ...(image ? { image } : {}), controlPlaneNamespace: stringFlag(args, 'istio-namespace', 'istio-system') as string });
    const objects: WaypointObjectResult[] = [];
    for (const d of docs) {
      if (d.kind === 'Gateway') objects.push({ kind: d.kind, name, result: await k.applyGateway(d) });
      else if (k.mode === 'api') objects.push({ kind: d.kind, name: d.metadata.name, result: await k.applyObject(d) });
    }
    const result = objects[0]?.result ?? 'created';
    if (boolFlag(args, 'enroll-namespace')) await k.patchNamespaceLabels(ns, { 'istio.io/use-waypoint': name });
    const r = { namespace: ns, name, for: forKind, result, objects };
    emit(out, fmt, r, () => {
      const lines = [`waypoint ${ns}/${name} ${result}${boolFlag(args, 'enroll-namespace') ? ` (namespace ${ns} now uses it)` : ''}\n`];
      for (const o of objects.slice(1)) lines.push(`  ${o.kind.toLowerCase()}/${o.name} ${o.result}\n`);
      if (k.mode === 'folder') lines.push('  (manifest folder: only the Gateway is written; run the proxy with `ambit waypoint run`)\n');
      return lines.join('');
    });
    return 0;
  }
  if (sub === 'delete') {
    const k = kube();
    const objects: WaypointObjectResult[] = [];
    for (const [apiVersion, kind] of k.mode === 'api' ? OWNED_KINDS : OWNED_KINDS.slice(0, 1)) {
      const gone = kind === 'Gateway' ? await k.deleteGateway(ns, name) : await k.deleteObject(apiVersion, kind, ns, name);
      objects.push({ kind, name, result: gone ? 'deleted' : 'not found' });
    }
    const deleted = objects[0]?.result === 'deleted';
    emit(out, fmt, { namespace: ns, name, result: deleted ? 'deleted' : 'not found', objects }, () =>
      [`waypoint ${ns}/${name} ${deleted ? 'deleted' : 'not found'}\n`, ...objects.slice(1).filter((o) => o.result === 'deleted').map((o) => `  ${o.kind.toLowerCase()}/${o.name} deleted\n`)].join(''),
    );
    return deleted ? 0 : 1;
  }
  throw new ConfigError(`ambit waypoint: unknown subcommand '${sub ?? ''}' (apply, list, delete, run)`);
}

export const waypointCommand: Command = {
  name: 'waypoint',
  summary: 'manage the waypoint (Gateway of class istio-waypoint) of a namespace, or run one',
  usage: 'apply|list|delete -n <namespace> [--name waypoint] [--kubeconfig <file> | --manifests <dir>] [-o table|json|yaml]\n       ambit waypoint run --name <gw> --namespace <ns> --xds-address <host:port> --root-cert <pem> --token-file <file> [flags]',
  flags: {
    namespace: { type: 'string', short: 'n', help: 'the namespace' },
    'all-namespaces': { type: 'boolean', short: 'A', help: 'list: every namespace' },
    name: { type: 'string', help: 'the Gateway name', default: 'waypoint' },
    for: { type: 'string', help: 'apply: traffic the waypoint handles: service, workload, all, none', default: 'service' },
    'enroll-namespace': { type: 'boolean', help: 'apply: label the namespace istio.io/use-waypoint=<name>' },
    image: { type: 'string', help: 'apply: container image of the waypoint Deployment', default: 'the one in deploy/waypoint.yaml' },
    'istio-namespace': { type: 'string', help: 'apply: namespace of the control plane (istiod.<ns>.svc:15012)', default: 'istio-system' },
    ...KUBE_FLAGS,
    ...WAYPOINT_RUN_FLAGS,
  },
  details:
    'Through the Kubernetes API, apply creates the Gateway and the ServiceAccount, Service and Deployment that run it\n(deploy/waypoint.yaml); delete removes them. With --manifests only the Gateway is written.',
  run: (args) => runWaypoint(args, processOutput()),
};
