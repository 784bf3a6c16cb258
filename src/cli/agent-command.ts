/** `ambit agent`: the node agent (ztunnel analogue) for one node. */
import { Agent } from '../agent/agent.js';
import { loadClusterFile } from '../agent/cluster-view.js';
import * as D from '../agent/config.js';
import type { AgentConfig, ControlPlaneSettings } from '../agent/config.js';
import { ConfigError } from '../common/errors.js';
import { createLogger, LOG_LEVELS } from '../common/logger.js';
import { createRegistry } from '../common/metrics.js';
import { loadNativeBinding } from '../native/load.js';
import { enumFlag, intFlag, requiredString, stringFlag, type Command, type ParsedArgs } from './command.js';

function parseControlPlane(args: ParsedArgs, trustDomain: string): ControlPlaneSettings | undefined {
  const xdsAddress = stringFlag(args, 'xds-address');
  if (xdsAddress === undefined) {
    for (const f of ['ca-address', 'token-file', 'root-cert']) if (args.values[f] !== undefined) throw new ConfigError(`ambit agent: --${f} needs --xds-address (remote mode)`);
    return undefined;
  }
  return {
    xdsAddress,
    caAddress: stringFlag(args, 'ca-address', xdsAddress) as string,
    tokenFile: requiredString(args, 'agent', 'token-file'),
    rootCertFile: requiredString(args, 'agent', 'root-cert'),
    identity: stringFlag(args, 'control-plane-identity', `spiffe://${trustDomain}/ns/istio-system/sa/istiod`) as string,
    clusterId: stringFlag(args, 'cluster-id', 'Kubernetes') as string,
  };
}

function parseConfig(args: ParsedArgs): AgentConfig {
  const readyFile = stringFlag(args, 'ready-file');
  const zdsSocket = stringFlag(args, 'zds-socket');
  const trustDomain = stringFlag(args, 'trust-domain', 'cluster.local') as string;
  const controlPlane = parseControlPlane(args, trustDomain);
  return Object.freeze({
    node: requiredString(args, 'agent', 'node'),
    clusterFile: controlPlane ? (stringFlag(args, 'cluster', '') as string) : requiredString(args, 'agent', 'cluster'),
    trustDomain,
    ...(controlPlane ? { controlPlane } : {}),
    caDir: stringFlag(args, 'ca-dir', '/var/run/ambit/ca') as string,
    ...(readyFile ? { readyFile } : {}),
    ...(zdsSocket ? { zdsSocket } : {}),
    logLevel: enumFlag(args, 'log-level', LOG_LEVELS, 'info'),
    logFormat: enumFlag(args, 'log-format', ['json', 'pretty'] as const, 'json'),
    adminPort: intFlag(args, 'admin-port', D.DEFAULT_ADMIN_PORT, [1, 65535]),
    metricsPort: intFlag(args, 'metrics-port', D.DEFAULT_METRICS_PORT, [1, 65535]),
    readinessPort: intFlag(args, 'readiness-port', D.DEFAULT_READINESS_PORT, [1, 65535]),
    socks5Port: intFlag(args, 'socks5-port', D.DEFAULT_SOCKS5_PORT, [1, 65535]),
    inboundPort: D.DEFAULT_INBOUND_PORT,
    capture: enumFlag(args, 'capture', ['on', 'off'] as const, 'on') === 'on',
    splice: enumFlag(args, 'splice', ['on', 'off'] as const, 'on') === 'on',
    packetMark: intFlag(args, 'packet-mark', D.DEFAULT_PACKET_MARK, [1, 0xffffffff]),
    drainDeadlineMs: intFlag(args, 'drain-deadline-ms', D.DEFAULT_DRAIN_DEADLINE_MS, [0, 3_600_000]),
    certTtlSeconds: intFlag(args, 'cert-ttl-seconds', D.DEFAULT_CERT_TTL_SECONDS, [60, 365 * 24 * 3600]),
    maxPendingPerPod: intFlag(args, 'max-pending-per-pod', D.DEFAULT_MAX_PENDING_PER_POD, [1, 1_000_000]),
  });
}

export const agentCommand: Command = {
  name: 'agent',
  summary: 'run the node agent: transparent capture (15001/15006), HBONE inbound (15008) and SOCKS5 (15080) in every local pod',
  usage: '--node <name> (--cluster <file> | --xds-address <host:port> --token-file <f> --root-cert <f>) [flags]',
  flags: {
    node: { type: 'string', help: 'this node name (pods with spec.nodeName equal to it are served)' },
    cluster: { type: 'string', help: 'local mode: the cluster view (JSON/YAML: nodes, workloads, services), as written by ambit lab up; remote mode: only pod network namespaces and nodes' },
    'ca-dir': { type: 'string', help: 'local CA directory shared by the agents of one machine', default: '/var/run/ambit/ca' },
    'xds-address': { type: 'string', help: 'remote mode: host:port of the control plane (delta xDS over TLS, like istiod 15012)' },
    'ca-address': { type: 'string', help: 'remote mode: host:port of the Istio CA API (default: the xds address)' },
    'token-file': { type: 'string', help: 'remote mode: bearer token for xDS and the CA (re-read on every use)' },
    'root-cert': { type: 'string', help: 'remote mode: mesh root certificate the control plane must chain to' },
    'control-plane-identity': { type: 'string', help: 'remote mode: SPIFFE id the control plane presents (default spiffe://<td>/ns/istio-system/sa/istiod)' },
    'cluster-id': { type: 'string', help: 'remote mode: clusterid header', default: 'Kubernetes' },
    'trust-domain': { type: 'string', help: 'trust domain when no cluster file gives one', default: 'cluster.local' },
    'zds-socket': { type: 'string', help: 'ZDS socket of the CNI node agent; without it the agent enrolls its node\'s ambient pods itself (lab mode)' },
    'ready-file': { type: 'string', help: 'file written once every local workload is serving' },
    splice: { type: 'string', help: 'on: relay plain-TCP legs with zero-copy splice(); off: copy in JS', default: 'on' },
    capture: { type: 'string', help: 'on: pods are captured (lab mode installs the in-pod nftables rules; inbound keeps the client address); off: reached through SOCKS5 and 15008 only', default: 'on' },
    'log-level': { type: 'string', help: `one of ${LOG_LEVELS.join(', ')}`, default: 'info' },
    'log-format': { type: 'string', help: 'json or pretty', default: 'json' },
    'admin-port': { type: 'string', help: 'admin port on 127.0.0.1 (/config_dump, /quitquitquit)', default: String(D.DEFAULT_ADMIN_PORT) },
    'metrics-port': { type: 'string', help: 'Prometheus metrics port', default: String(D.DEFAULT_METRICS_PORT) },
    'readiness-port': { type: 'string', help: 'readiness port (/healthz/ready)', default: String(D.DEFAULT_READINESS_PORT) },
    'socks5-port': { type: 'string', help: 'SOCKS5 outbound port on 127.0.0.1 in each pod', default: String(D.DEFAULT_SOCKS5_PORT) },
    'packet-mark': { type: 'string', help: 'SO_MARK for sockets opened from pod namespaces', default: String(D.DEFAULT_PACKET_MARK) },
    'drain-deadline-ms': { type: 'string', help: 'how long open connections may finish on shutdown', default: String(D.DEFAULT_DRAIN_DEADLINE_MS) },
    'cert-ttl-seconds': { type: 'string', help: 'workload certificate lifetime', default: String(D.DEFAULT_CERT_TTL_SECONDS) },
    'max-pending-per-pod': { type: 'string', help: 'per pod and direction: outbound connections accepted but not yet tunnelled, and plaintext inbound (15006) ones not yet connected to the app; more are reset at once', default: String(D.DEFAULT_MAX_PENDING_PER_POD) },
  },
  details: 'Runs until SIGTERM/SIGINT or POST /quitquitquit, then drains open connections up to the drain deadline.',
  async run(args) {
    const cfg = parseConfig(args);
    const logger = createLogger({ level: cfg.logLevel, format: cfg.logFormat, base: { node: cfg.node } });
    // Validate the cluster file before anything that needs privileges or the addon, so a bad file exits 64.
    const state = cfg.clusterFile ? await loadClusterFile(cfg.clusterFile) : undefined;
    const agent = await Agent.start(cfg, { native: loadNativeBinding(), logger, registry: createRegistry({ processMetrics: true }) }, state);
    return new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (why: string): void => {
        if (stopping) return;
        stopping = true;
        logger.info({ why }, 'agent shutting down');
        void agent.close().then(() => {
          logger.flush();
          resolve(0);
        });
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      agent.onQuit(() => stop('/quitquitquit'));
    });
  },
};
