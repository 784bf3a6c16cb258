/**
 * `ambit install --dry-run`: prints the manifests of deploy/ rendered for a
 * namespace, image and options, ready for `kubectl apply -f -`. Applying
 * directly is not implemented: pipe the output into kubectl.
 */
import { ConfigError } from '../common/errors.js';
import { renderDeploy, toYamlStream } from '../cni/deploy-render.js';
import { boolFlag, enumFlag, intFlag, stringFlag, type Command, type ParsedArgs } from './command.js';
import { processOutput, type Output } from './format.js';

export function runInstall(args: ParsedArgs, out: Output): number {
  if (!boolFlag(args, 'dry-run')) throw new ConfigError('ambit install: only --dry-run is supported; apply with `ambit install --dry-run | kubectl apply -f -`');
  const drain = stringFlag(args, 'drain-deadline-ms');
  const exclude = stringFlag(args, 'exclude-namespaces');
  const docs = renderDeploy({
    namespace: stringFlag(args, 'namespace', 'istio-system') as string,
    ...(stringFlag(args, 'image') ? { image: stringFlag(args, 'image') as string } : {}),
    ...(stringFlag(args, 'trust-domain') ? { trustDomain: stringFlag(args, 'trust-domain') as string } : {}),
    ...(stringFlag(args, 'log-level') ? { logLevel: stringFlag(args, 'log-level') as string } : {}),
    ...(drain !== undefined ? { drainDeadlineMs: intFlag(args, 'drain-deadline-ms', 25_000, [0, 600_000]) } : {}),
    ...(exclude !== undefined ? { excludeNamespaces: exclude.split(',').filter((x) => x !== '') } : {}),
  });
  const fmt = enumFlag(args, 'output', ['yaml', 'json'] as const, 'yaml');
  out.write(fmt === 'json' ? JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }, null, 2) + '\n' : toYamlStream(docs));
  return 0;
}

export const installCommand: Command = {
  name: 'install',
  summary: 'render the Kubernetes manifests (namespace, RBAC, control plane, node DaemonSet) for kubectl apply',
  usage: '--dry-run [--namespace istio-system] [--image <ref>] [--trust-domain <td>] [--drain-deadline-ms <n>] [-o yaml|json]',
  flags: {
    'dry-run': { type: 'boolean', help: 'print the manifests instead of applying them (required)' },
    namespace: { type: 'string', short: 'n', help: 'namespace of the control plane and the DaemonSet', default: 'istio-system' },
    image: { type: 'string', help: 'container image of every component' },
    'trust-domain': { type: 'string', help: 'SPIFFE trust domain', default: 'cluster.local' },
    'drain-deadline-ms': { type: 'string', help: 'agent drain deadline; the grace period follows it', default: '25000' },
    'exclude-namespaces': { type: 'string', help: 'namespaces the CNI plugin never enrolls', default: 'kube-system,<namespace>' },
    'log-level': { type: 'string', help: 'control plane log level', default: 'info' },
    output: { type: 'string', short: 'o', help: 'yaml or json', default: 'yaml' },
  },
  details: 'Before applying: install the Gateway API and Istio CRDs (deploy/README.md), and create the Secrets ambit-ca and ambit-node-tokens (the control plane publishes the ConfigMap istio-ca-root-cert into every namespace).',
  run: (args) => Promise.resolve(runInstall(args, processOutput())),
};
