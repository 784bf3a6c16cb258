/**
 * `ambit waypoint apply|list|delete -n <ns>`: the waypoint Gateway (class
 * istio-waypoint, HBONE listener on 15008) of a namespace, through the
 * Kubernetes API or in a manifest folder (--manifests). `apply --enroll-namespace`
 * also labels the namespace istio.io/use-waypoint=<name>.
 */
import { ConfigError } from '../common/errors.js';
import { waypointGateway } from '../cni/kube-ops.js';
import { boolFlag, enumFlag, stringFlag, type Command, type ParsedArgs } from './command.js';
import { emit, KUBE_FLAGS, kubeOpsFor, outputFormat } from './enroll-command.js';
import { processOutput, table, type Output } from './format.js';
import type { KubeOps } from '../cni/kube-ops.js';

export async function runWaypoint(args: ParsedArgs, out: Output, ops: KubeOps = kubeOpsFor(args)): Promise<number> {
  const sub = args.positionals[0];
  const all = boolFlag(args, 'all-namespaces');
  const ns = stringFlag(args, 'namespace');
  const name = stringFlag(args, 'name', 'waypoint') as string;
  const fmt = outputFormat(args);
  if (sub === 'list') {
    if (!ns && !all) throw new ConfigError('ambit waypoint list: give -n <namespace> or -A');
    const gws = await ops.listGateways(all ? undefined : ns);
    emit(out, fmt, gws, () => table(['NAMESPACE', 'NAME', 'FOR', 'SOURCE'], gws.map((g) => [g.namespace, g.name, g.waypointFor, g.source]), out.colour));
    return 0;
  }
  if (!ns) throw new ConfigError(`ambit waypoint ${sub ?? ''}: -n <namespace> is required`);
  if (sub === 'apply') {
    const forKind = enumFlag(args, 'for', ['service', 'workload', 'all', 'none'] as const, 'service');
    const result = await ops.applyGateway(waypointGateway(ns, name, forKind));
    if (boolFlag(args, 'enroll-namespace')) await ops.patchNamespaceLabels(ns, { 'istio.io/use-waypoint': name });
    const r = { namespace: ns, name, for: forKind, result };
    emit(out, fmt, r, () => `waypoint ${ns}/${name} ${result}${boolFlag(args, 'enroll-namespace') ? ` (namespace ${ns} now uses it)` : ''}\n`);
    return 0;
  }
  if (sub === 'delete') {
    const deleted = await ops.deleteGateway(ns, name);
    emit(out, fmt, { namespace: ns, name, result: deleted ? 'deleted' : 'not found' }, () => `waypoint ${ns}/${name} ${deleted ? 'deleted' : 'not found'}\n`);
    return deleted ? 0 : 1;
  }
  throw new ConfigError(`ambit waypoint: unknown subcommand '${sub ?? ''}' (apply, list, delete)`);
}

export const waypointCommand: Command = {
  name: 'waypoint',
  summary: 'manage the waypoint (Gateway of class istio-waypoint) of a namespace',
  usage: 'apply|list|delete -n <namespace> [--name waypoint] [--kubeconfig <file> | --manifests <dir>] [-o table|json|yaml]',
  flags: {
    namespace: { type: 'string', short: 'n', help: 'the namespace' },
    'all-namespaces': { type: 'boolean', short: 'A', help: 'list: every namespace' },
    name: { type: 'string', help: 'the Gateway name', default: 'waypoint' },
    for: { type: 'string', help: 'apply: traffic the waypoint handles: service, workload, all, none', default: 'service' },
    'enroll-namespace': { type: 'boolean', help: 'apply: label the namespace istio.io/use-waypoint=<name>' },
    ...KUBE_FLAGS,
  },
  run: (args) => runWaypoint(args, processOutput()),
};
