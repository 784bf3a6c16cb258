/**
 * Composition root of the waypoint proxy (`ambit waypoint run`): wires the
 * L7 engine (src/waypoint) to
 *   - its identity spiffe://<td>/ns/<ns>/sa/<name>, from the Istio CA API on
 *     the control-plane address (renewed at half-life),
 *   - a delta ADS subscription to the one L7Config resource "<ns>/<name>"
 *     (bad configs NACKed, the previous one kept; removal = no services),
 *   - an HBONE server on <podIp>:<hbonePort> (mTLS, same trust domain only)
 *     whose CONNECTs the engine serves (503 before the first config),
 *   - an HBONE upstream pool under the waypoint's identity that verifies
 *     each destination's principal,
 *   - metrics (/stats/prometheus, /metrics) and readiness (/healthz/ready).
 * Ready = certificate + first config applied + listeners up; the ready file
 * is written then. close() drains: not ready, stop xDS, GOAWAY, let requests
 * finish up to the drain deadline, then drop what is left.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { IstioCaClient } from '../ca/ca-client.js';
import { systemClock, type Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { HbonePool } from '../hbone/pool.js';
import { HboneServer } from '../hbone/server.js';
import type { CertificateSource } from '../identity/certificate-source.js';
import { SpiffeId, spiffeUrisOf } from '../identity/spiffe.js';
import { buildNode } from '../xds/node.js';
import type { L7Config } from '../waypoint/config.js';
import { L7_CONFIG_TYPE_URL } from '../waypoint/l7-codec.js';
import { Waypoint } from '../waypoint/server.js';
import { AdminServer } from './admin-server.js';
import { EMPTY_L7_CONFIG, l7ConfigApplier } from './config-applier.js';
import { WaypointProxyStartupError } from './errors.js';
import { dialHbonePeer, hboneDialer } from './hbone-dialer.js';
import { WaypointIdentity } from './identity.js';
import { SingleResourceXdsClient } from './l7-xds-client.js';

export interface WaypointProxyConfig {
  /** Gateway name; also the service account. */
  readonly name: string;
  readonly namespace: string;
  /** host:port of the control plane (delta ADS and, by default, the CA). */
  readonly xdsAddress: string;
  readonly caAddress?: string;
  readonly rootCertFile: string;
  readonly tokenFile: string;
  readonly trustDomain: string;
  readonly clusterId: string;
  readonly node: string;
  readonly podIp: string;
  readonly podName?: string;
  /** SPIFFE id the control plane must present (default spiffe://<td>/ns/istio-system/sa/istiod). */
  readonly controlPlaneIdentity?: string;
  readonly hbonePort: number;
  /** Port of the destination agents' HBONE listener (15008). */
  readonly upstreamHbonePort: number;
  readonly metricsPort: number;
  readonly statusPort: number;
  /** Address of the metrics and status listeners (default 0.0.0.0). */
  readonly adminHost?: string;
  readonly readyFile?: string;
  readonly otlpEndpoint?: string;
  readonly drainDeadlineMs: number;
  readonly certTtlSeconds?: number;
}

export const WAYPOINT_PROXY_DEFAULTS = Object.freeze({
  trustDomain: 'cluster.local', clusterId: 'Kubernetes', hbonePort: 15008, upstreamHbonePort: 15008,
  metricsPort: 15020, statusPort: 15021, drainDeadlineMs: 5_000,
});

/** What the proxy needs from outside; everything but logger/registry has a production default. */
export interface WaypointProxyWorld {
  readonly logger: Logger;
  readonly registry: Registry;
  readonly clock?: Clock;
  /** Default: the Istio CA API client on caAddress/xdsAddress. */
  readonly certificateSource?: CertificateSource;
  /** Default: TLS to the control plane, verified against rootCertFile and controlPlaneIdentity. */
  readonly controlPlaneCredentials?: grpc.ChannelCredentials;
  /** Default: reads tokenFile (every use). */
  readonly token?: () => string;
  readonly xdsBackoff?: { initialMs?: number; maxMs?: number };
}

export interface WaypointProxyHandle {
  readonly identity: string;
  readonly waypoint: Waypoint;
  readonly xds: SingleResourceXdsClient;
  readonly ports: { readonly hbone: number; readonly metrics: number; readonly status: number };
  /** undefined when ready, else why not. */
  notReadyReason(): string | undefined;
  /** Resolves once ready (certificate, first config, listeners). */
  whenReady(): Promise<void>;
  /** Graceful: not ready, stop xDS, stop accepting, drain up to drainDeadlineMs, release everything. */
  close(): Promise<void>;
  /** Immediate: drop every connection and release everything. */
  destroy(): void;
}

function controlPlaneCredentials(rootCertFile: string, expected: string): grpc.ChannelCredentials {
  let root: Buffer;
  try {
    root = readFileSync(rootCertFile);
  } catch (err) {
    throw new WaypointProxyStartupError(`cannot read --root-cert ${rootCertFile}`, err);
  }
  return grpc.credentials.createSsl(root, null, null, {
    checkServerIdentity: (_host, cert) => {
      const uris = spiffeUrisOf(cert);
      return uris.includes(expected) ? undefined : new Error(`control plane certificate has ${uris.join(', ') || 'no spiffe id'}, expected ${expected}`);
    },
  });
}

export async function startWaypointProxy(cfg: WaypointProxyConfig, world: WaypointProxyWorld): Promise<WaypointProxyHandle> {
  const log = world.logger.child({ component: 'waypoint-proxy', waypoint: `${cfg.namespace}/${cfg.name}` });
  const clock = world.clock ?? systemClock;
  const id = SpiffeId.of(cfg.trustDomain, cfg.namespace, cfg.name);
  const token = world.token ?? ((): string => readFileSync(cfg.tokenFile, 'utf8').trim());
  const needCreds = !world.certificateSource || !world.controlPlaneCredentials;
  const creds = world.controlPlaneCredentials ?? (needCreds ? controlPlaneCredentials(cfg.rootCertFile, cfg.controlPlaneIdentity ?? `spiffe://${cfg.trustDomain}/ns/istio-system/sa/istiod`) : undefined);
  let ca: IstioCaClient | undefined;
  const source = world.certificateSource ?? (ca = new IstioCaClient({ address: cfg.caAddress ?? cfg.xdsAddress, credentials: creds as grpc.ChannelCredentials, tokenProvider: token, clusterId: cfg.clusterId }));
  const identity = new WaypointIdentity({ id, source, logger: world.logger, clock, ...(cfg.certTtlSeconds ? { ttlSeconds: cfg.certTtlSeconds } : {}) });

  const pool = new HbonePool({ logger: world.logger, registry: world.registry, clock, identityFor: () => identity.get(), dial: (dst) => dialHbonePeer(dst) });
  const waypoint = new Waypoint({
    config: EMPTY_L7_CONFIG,
    logger: world.logger,
    registry: world.registry,
    clock,
    clusterId: cfg.clusterId,
    dialer: hboneDialer({ pool, srcIdentity: id.toString(), hbonePort: cfg.upstreamHbonePort, trustDomain: cfg.trustDomain }),
    tracing: { ...(cfg.otlpEndpoint ? { otlpEndpoint: cfg.otlpEndpoint } : {}), serviceName: `${cfg.name}.${cfg.namespace}` },
  });
  const hbone = new HboneServer({ identityFor: () => identity.current(), ...waypoint.hboneHooks(), logger: world.logger, registry: world.registry, clock });

  let configApplied = false;
  let certReady = false;
  let closing = false;
  let readyResolve: () => void = () => undefined;
  const readyPromise = new Promise<void>((r) => (readyResolve = r));
  const notReadyReason = (): string | undefined =>
    closing ? 'shutting down' : !certReady ? `no certificate for ${id.toString()} yet` : !configApplied ? `no l7 config ${cfg.namespace}/${cfg.name} from ${cfg.xdsAddress} yet` : undefined;
  let announced = false;
  const maybeReady = (): void => {
    if (announced || notReadyReason() !== undefined) return;
    announced = true;
    log.info({ identity: id.toString(), hbone: `${cfg.podIp}:${hboneServerPort}` }, 'waypoint ready');
    // whenReady() resolves after the ready file exists, so callers can rely on both
    if (!cfg.readyFile) readyResolve();
    else writeFile(cfg.readyFile, 'ready\n').catch((err: unknown) => log.error({ err, file: cfg.readyFile }, 'cannot write the ready file')).finally(readyResolve);
  };

  const xds = new SingleResourceXdsClient({
    address: cfg.xdsAddress,
    credentials: creds ?? grpc.credentials.createInsecure(),
    node: buildNode({ role: 'router', instanceIp: cfg.podIp, podName: cfg.podName ?? hostname(), podNamespace: cfg.namespace, nodeName: cfg.node, cluster: cfg.clusterId, extraMetadata: { WAYPOINT: `${cfg.namespace}/${cfg.name}`, SERVICE_ACCOUNT: cfg.name } }),
    metadata: () => ({ authorization: `Bearer ${token()}`, clusterid: cfg.clusterId }),
    typeUrl: L7_CONFIG_TYPE_URL,
    resourceName: `${cfg.namespace}/${cfg.name}`,
    apply: l7ConfigApplier(waypoint, world.logger, (_c: L7Config) => {
      if (!configApplied) {
        configApplied = true;
        maybeReady();
      }
    }),
    ...(world.xdsBackoff ? { backoff: world.xdsBackoff } : {}),
    clock,
    logger: world.logger,
  });

  const admin = new AdminServer({ host: cfg.adminHost ?? '0.0.0.0', metricsPort: cfg.metricsPort, statusPort: cfg.statusPort, registry: world.registry, notReadyReason });
  let hboneServerPort = cfg.hbonePort;
  const release = (): void => {
    identity.close();
    ca?.close();
    pool.close();
    admin.close();
  };
  try {
    const srv = await hbone.listen(cfg.hbonePort, cfg.podIp);
    const addr = srv.address();
    if (addr && typeof addr === 'object') hboneServerPort = addr.port;
    await admin.listen();
  } catch (err) {
    hbone.destroy();
    release();
    await waypoint.close();
    throw new WaypointProxyStartupError(`cannot listen on ${cfg.podIp}:${cfg.hbonePort} (hbone) or ${cfg.adminHost ?? '0.0.0.0'}:${cfg.metricsPort}/${cfg.statusPort} (admin)`, err);
  }
  identity.ready().then(
    () => {
      certReady = true;
      maybeReady();
    },
    () => undefined,
  );
  xds.start();
  log.info({ identity: id.toString(), xds: cfg.xdsAddress, resource: `${cfg.namespace}/${cfg.name}`, hbone: `${cfg.podIp}:${hboneServerPort}` }, 'waypoint proxy started');

  let closed: Promise<void> | undefined;
  return {
    identity: id.toString(),
    waypoint,
    xds,
    ports: { hbone: hboneServerPort, metrics: admin.ports.metrics, status: admin.ports.status },
    notReadyReason,
    whenReady: () => readyPromise,
    close(): Promise<void> {
      closed ??= (async () => {
        closing = true;
        log.info({ deadlineMs: cfg.drainDeadlineMs }, 'waypoint draining');
        await xds.close();
        const goaway = hbone.close();
        await waypoint.drain(cfg.drainDeadlineMs);
        await Promise.race([goaway, new Promise((r) => clock.setTimeout(() => r(undefined), 100))]);
        hbone.destroy();
        await waypoint.close();
        release();
        log.info('waypoint stopped');
      })();
      return closed;
    },
    destroy(): void {
      closing = true;
      void xds.close();
      hbone.destroy();
      void waypoint.close();
      release();
    },
  };
}
