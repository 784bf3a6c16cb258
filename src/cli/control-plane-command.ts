/** `ambit control-plane`: the istiod analogue (workload xDS + Istio CA), and `status` to inspect one. */
import { ConfigError } from '../common/errors.js';
import { createLogger, LOG_LEVELS } from '../common/logger.js';
import { createRegistry } from '../common/metrics.js';
import { kubeAuthClientFromConfig, KubeTokenReviewAuthenticator } from '../ca/kube-token-authenticator.js';
import { NodeTokenAuthenticator } from '../ca/node-token-authenticator.js';
import { KubeSource, kubeInformerFactory, loadKubeConfig } from '../control-plane/kube-source.js';
import { apiKubeOps } from '../cni/kube-ops.js';
import { startRootCertPublisher, type RootCertPublisher } from '../control-plane/root-cert-publisher.js';
import { ControlPlane, type ControlPlaneConfig } from '../control-plane/server.js';
import { formatStatus, type ControlPlaneStatus } from '../control-plane/status.js';
import { boolFlag, enumFlag, intFlag, stringFlag, type Command, type ParsedArgs } from './command.js';
import { DASHBOARD_FLAGS, dashboardConfigFromArgs, reportDashboardInStatus, startControlPlaneDashboard, type ControlPlaneDashboard } from '../dashboard/control-plane-dashboard.js';

export const DEFAULT_XDS_TLS_PORT = 15012;
export const DEFAULT_XDS_PLAINTEXT_PORT = 15010;
export const DEFAULT_MONITORING_PORT = 15014;

async function status(args: ParsedArgs): Promise<number> {
  const address = stringFlag(args, 'status-address', `127.0.0.1:${DEFAULT_MONITORING_PORT}`) as string;
  let s: ControlPlaneStatus;
  try {
    const res = await fetch(`http://${address}/debug/status`, { signal: AbortSignal.timeout(5_000) });
    s = (await res.json()) as ControlPlaneStatus;
  } catch (err) {
    process.stderr.write(`cannot reach the control plane monitoring endpoint at ${address}: ${(err as Error).message}; is 'ambit control-plane' running?\n`);
    return 69;
  }
  process.stdout.write(boolFlag(args, 'json') ? JSON.stringify(s, null, 2) + '\n' : formatStatus(s));
  return s.issues.length > 0 ? 1 : 0;
}

async function serve(args: ParsedArgs): Promise<number> {
  const manifests = stringFlag(args, 'manifests');
  const kubeconfig = stringFlag(args, 'kubeconfig');
  const inCluster = boolFlag(args, 'in-cluster');
  if (!manifests && !kubeconfig && !inCluster) throw new ConfigError('ambit control-plane: give --manifests <dir>, --kubeconfig <file> or --in-cluster');
  const tokens = stringFlag(args, 'node-tokens');
  const tokenReview = stringFlag(args, 'token-review');
  if (!tokens && !tokenReview) throw new ConfigError('ambit control-plane: give --node-tokens <file> or --token-review <ns/sa,...>: they authenticate the agents that ask the CA for certificates');
  if (tokens && tokenReview) throw new ConfigError('ambit control-plane: use either --node-tokens or --token-review');
  if (tokenReview && !kubeconfig && !inCluster) throw new ConfigError('ambit control-plane: --token-review needs the Kubernetes API (--kubeconfig or --in-cluster)');
  const plaintext = stringFlag(args, 'plaintext-port');
  const dashboardCfg = dashboardConfigFromArgs(args);
  const cfg: ControlPlaneConfig = Object.freeze({
    ...(manifests ? { manifests } : {}),
    ...(stringFlag(args, 'lab-cluster') ? { labCluster: stringFlag(args, 'lab-cluster') as string } : {}),
    caDir: stringFlag(args, 'ca-dir', '/var/run/ambit/ca') as string,
    trustDomain: stringFlag(args, 'trust-domain', 'cluster.local') as string,
    clusterDomain: stringFlag(args, 'cluster-domain', 'cluster.local') as string,
    address: stringFlag(args, 'address', '0.0.0.0') as string,
    grpcPort: intFlag(args, 'port', DEFAULT_XDS_TLS_PORT, [0, 65535]),
    ...(plaintext !== undefined ? { plaintextPort: intFlag(args, 'plaintext-port', DEFAULT_XDS_PLAINTEXT_PORT, [0, 65535]) } : {}),
    monitoringPort: intFlag(args, 'monitoring-port', DEFAULT_MONITORING_PORT, [0, 65535]),
    ...(args.values['ca-max-ttl-seconds'] !== undefined ? { caMaxTtlSeconds: intFlag(args, 'ca-max-ttl-seconds', 86_400, [60, 365 * 24 * 3600]) } : {}),
  });
  const logger = createLogger({ level: enumFlag(args, 'log-level', LOG_LEVELS, 'info'), format: enumFlag(args, 'log-format', ['json', 'pretty'] as const, 'json'), base: { component: 'control-plane' } });
  const registry = createRegistry({ processMetrics: true });
  const caAuthenticator = tokenReview
    ? new KubeTokenReviewAuthenticator({ client: kubeAuthClientFromConfig(loadKubeConfig(kubeconfig)), trustedServiceAccounts: tokenReview.split(',').map((x) => x.trim()).filter(Boolean), logger })
    : await NodeTokenAuthenticator.fromFile({ file: tokens as string, logger });
  const cp = await ControlPlane.start(cfg, {
    logger,
    registry,
    caAuthenticator,
    ...(kubeconfig || inCluster
      ? {
          attachSources: async (store) => {
            const source = new KubeSource({ store, logger, informers: kubeInformerFactory(loadKubeConfig(kubeconfig)) });
            await source.start();
            return source;
          },
        }
      : {}),
  });
  // Kubernetes mode: publish the mesh root as ConfigMap istio-ca-root-cert in every namespace, as istiod does.
  let rootCerts: RootCertPublisher | undefined;
  if (kubeconfig || inCluster) {
    const kc = loadKubeConfig(kubeconfig);
    rootCerts = (await startRootCertPublisher({ kube: apiKubeOps(kc), rootCertPem: cp.rootCertPem ?? '', logger, informers: kubeInformerFactory(kc) })).publisher;
  }
  // The dashboard (Kiali role) in this process; a bind failure is reported in /debug/status, never fatal.
  let dashboard: ControlPlaneDashboard | undefined;
  if (dashboardCfg) {
    const d = await startControlPlaneDashboard(dashboardCfg, cp, { logger, ...(cfg.labCluster ? { labCluster: cfg.labCluster } : {}) });
    dashboard = d;
    reportDashboardInStatus(cp, () => d.status);
  }
  const readyFile = stringFlag(args, 'ready-file');
  if (readyFile) {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(readyFile, `${process.pid}\n`);
  }
  return new Promise<number>((resolve) => {
    const stop = (why: string): void => {
      logger.info({ why }, 'control plane shutting down');
      void Promise.resolve(rootCerts?.close())
        .then(() => dashboard?.close())
        .then(() => cp.close())
        .then(() => {
          logger.flush();
          resolve(0);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

export const controlPlaneCommand: Command = {
  name: 'control-plane',
  summary: 'run the control plane: Kubernetes/Istio resources to workload xDS (15012), the Istio CA, monitoring on 15014',
  usage: '[status] --manifests <dir> | --kubeconfig <file> | --in-cluster [flags]',
  flags: {
    manifests: { type: 'string', help: 'folder of YAML manifests, watched: edits apply without a restart' },
    kubeconfig: { type: 'string', help: 'read resources from the Kubernetes API with this kubeconfig' },
    'in-cluster': { type: 'boolean', help: 'read resources from the Kubernetes API with the in-cluster service account' },
    'lab-cluster': { type: 'string', help: "the lab's cluster file: pod IPs, nodes, netns and service IPs the manifests leave out" },
    'node-tokens': { type: 'string', help: 'file of "<token> <node>" lines: which node an agent token belongs to (CA authentication, manifest mode)' },
    'token-review': { type: 'string', help: 'Kubernetes mode: authenticate agents with TokenReview (audience istio-ca); comma-separated <namespace>/<service-account> of the node agents' },
    'ca-dir': { type: 'string', help: 'mesh root key and certificate (created if absent)', default: '/var/run/ambit/ca' },
    'ca-max-ttl-seconds': { type: 'string', help: 'longest workload certificate the CA issues (default 86400); root rotation: see ambit ca' },
    'trust-domain': { type: 'string', help: 'SPIFFE trust domain', default: 'cluster.local' },
    'cluster-domain': { type: 'string', help: 'DNS suffix of services', default: 'cluster.local' },
    address: { type: 'string', help: 'address to listen on', default: '0.0.0.0' },
    port: { type: 'string', help: 'TLS gRPC port (xDS and CA)', default: String(DEFAULT_XDS_TLS_PORT) },
    'plaintext-port': { type: 'string', help: 'also serve xDS without TLS on this port (lab only)' },
    'monitoring-port': { type: 'string', help: '/metrics, /ready, /debug/status, /debug/config', default: String(DEFAULT_MONITORING_PORT) },
    'ready-file': { type: 'string', help: 'file written once serving' },
    'status-address': { type: 'string', help: 'status: host:port of the monitoring endpoint', default: `127.0.0.1:${DEFAULT_MONITORING_PORT}` },
    json: { type: 'boolean', help: 'status: print JSON' },
    'log-level': { type: 'string', help: `one of ${LOG_LEVELS.join(', ')}`, default: 'info' },
    'log-format': { type: 'string', help: 'json or pretty', default: 'json' },
    ...DASHBOARD_FLAGS,
  },
  details: `Subcommands:
  (none)   serve until SIGTERM
  status   print the served resources and every configuration issue (exit 1 when there are issues)`,
  async run(args) {
    const sub = args.positionals[0];
    if (sub === 'status') return status(args);
    if (sub !== undefined) throw new ConfigError(`ambit control-plane: unknown subcommand '${sub}' (status); see 'ambit control-plane --help'`);
    return serve(args);
  },
};
