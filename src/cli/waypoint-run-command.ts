/**
 * `ambit waypoint run`: the waypoint proxy process (what a waypoint pod
 * runs). Parses the flags into a WaypointProxyConfig, starts the proxy
 * (src/waypoint-proxy/waypoint-proxy.ts) and runs until SIGTERM/SIGINT, then
 * drains gracefully (up to --drain-deadline-ms) and exits 0. Flags are
 * declared by waypoint-command.ts (WAYPOINT_RUN_FLAGS); optional ones that it
 * does not declare yet are simply left at their defaults.
 */
import { networkInterfaces } from 'node:os';
import { ConfigError } from '../common/errors.js';
import { createLogger, LOG_LEVELS } from '../common/logger.js';
import { createRegistry } from '../common/metrics.js';
import { startWaypointProxy, WAYPOINT_PROXY_DEFAULTS as D, type WaypointProxyConfig } from '../waypoint-proxy/waypoint-proxy.js';
import { WaypointProxyStartupError } from '../waypoint-proxy/errors.js';
import { enumFlag, intFlag, requiredString, stringFlag, type ParsedArgs } from './command.js';
import type { Output } from './format.js';

/** The first non-internal IPv4 address of this host (the pod IP inside a pod). */
export function defaultPodIp(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new WaypointProxyStartupError('no non-loopback IPv4 address found; pass --pod-ip');
}

export function parseWaypointRunConfig(args: ParsedArgs): WaypointProxyConfig {
  const cmd = 'waypoint run';
  const name = requiredString(args, cmd, 'name');
  const namespace = requiredString(args, cmd, 'namespace');
  const xdsAddress = requiredString(args, cmd, 'xds-address');
  if (!/^[^\s]+:\d+$/.test(xdsAddress)) throw new ConfigError(`ambit ${cmd}: --xds-address must be host:port, got '${xdsAddress}'`);
  const readyFile = stringFlag(args, 'ready-file');
  const otlpEndpoint = stringFlag(args, 'otlp-endpoint');
  const caAddress = stringFlag(args, 'ca-address');
  const controlPlaneIdentity = stringFlag(args, 'control-plane-identity');
  const podName = stringFlag(args, 'pod-name') ?? process.env.POD_NAME;
  const port = (flag: string, dflt: number): number => intFlag(args, flag, dflt, [1, 65535]);
  const hbonePort = port('hbone-port', D.hbonePort);
  return Object.freeze({
    name,
    namespace,
    xdsAddress,
    ...(caAddress ? { caAddress } : {}),
    rootCertFile: requiredString(args, cmd, 'root-cert'),
    tokenFile: requiredString(args, cmd, 'token-file'),
    trustDomain: stringFlag(args, 'trust-domain', D.trustDomain) as string,
    clusterId: stringFlag(args, 'cluster-id', D.clusterId) as string,
    node: stringFlag(args, 'node', process.env.NODE_NAME ?? 'unknown') as string,
    podIp: stringFlag(args, 'pod-ip') ?? process.env.INSTANCE_IP ?? defaultPodIp(),
    ...(podName ? { podName } : {}),
    ...(controlPlaneIdentity ? { controlPlaneIdentity } : {}),
    hbonePort,
    upstreamHbonePort: port('upstream-hbone-port', D.upstreamHbonePort),
    metricsPort: port('metrics-port', D.metricsPort),
    statusPort: port('status-port', D.statusPort),
    ...(readyFile ? { readyFile } : {}),
    ...(otlpEndpoint ? { otlpEndpoint } : {}),
    drainDeadlineMs: intFlag(args, 'drain-deadline-ms', D.drainDeadlineMs, [0, 3_600_000]),
  });
}

export async function runWaypointRun(args: ParsedArgs, out: Output): Promise<number> {
  const cfg = parseWaypointRunConfig(args);
  const logger = createLogger({ level: enumFlag(args, 'log-level', LOG_LEVELS, 'info'), format: 'json', base: { waypoint: `${cfg.namespace}/${cfg.name}` } });
  const proxy = await startWaypointProxy(cfg, { logger, registry: createRegistry({ processMetrics: true }) });
  out.write(`waypoint ${cfg.namespace}/${cfg.name} listening: hbone ${cfg.podIp}:${proxy.ports.hbone}, metrics :${proxy.ports.metrics}, status :${proxy.ports.status}\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ why }, 'waypoint shutting down');
      void proxy.close().then(() => {
        logger.flush();
        resolve(0);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
