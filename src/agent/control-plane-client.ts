/**
 * The agent's connection to the control plane: the delta xDS client feeding
 * a WorkloadStore (invalid resources are NACKed with the reason while the
 * valid ones of the same push are applied), rebuilt into the ClusterView on
 * every change; and the CA client the secret manager signs through.
 *
 * While the control plane is away the store keeps its last-known-good state
 * and the data plane keeps using it; the xDS client reconnects with backoff
 * (10 ms doubling to 15 s) and sends initial_resource_versions.
 *
 * The control plane's serving certificate is checked like an HBONE peer's:
 * it must chain to the mesh root and carry the expected SPIFFE id (istiod's
 * identity), since it has no DNS name in the lab.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { IstioCaClient } from '../ca/ca-client.js';
import { spiffeUrisOf } from '../identity/spiffe.js';
import { ClusterState } from '../state/cluster-state.js';
import { clusterConfigFromWorkloadApi, type LocalFacts } from '../state/from-workload-api.js';
import { WorkloadStore } from '../workload-api/store.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../workload-api/types.js';
import { DeltaXdsClient, type XdsTypeUpdate } from '../xds/delta-client.js';
import { Counter, type Registry } from 'prom-client';
import { buildNode } from '../xds/node.js';
import type { ClusterView } from './cluster-view.js';

export interface ControlPlaneClientOptions {
  readonly xdsAddress: string;
  readonly caAddress: string;
  readonly rootCertFile: string;
  readonly tokenFile: string;
  /** The SPIFFE id the control plane must present. */
  readonly controlPlaneIdentity: string;
  readonly node: string;
  readonly nodeIp: string;
  readonly clusterId: string;
  readonly facts: LocalFacts;
  readonly view: ClusterView;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Where istio_xds_* counters are registered. */
  readonly registry?: Registry;
}

function credentials(rootCertFile: string, expected: string): grpc.ChannelCredentials {
  const root = readFileSync(rootCertFile);
  return grpc.credentials.createSsl(root, null, null, {
    checkServerIdentity: (_host, cert) => {
      const uris = spiffeUrisOf(cert);
      return uris.includes(expected) ? undefined : new Error(`control plane certificate has ${uris.join(', ') || 'no spiffe id'}, expected ${expected}`);
    },
  });
}

export class ControlPlaneClient {
  readonly store = new WorkloadStore();
  readonly xds: DeltaXdsClient;
  readonly ca: IstioCaClient;
  #synced = false;

  constructor(o: ControlPlaneClientOptions) {
    const log = o.logger.child({ component: 'control-plane-client' });
    const token = (): string => readFileSync(o.tokenFile, 'utf8').trim();
    const creds = credentials(o.rootCertFile, o.controlPlaneIdentity);
    const registers = o.registry ? [o.registry] : [];
    const terminations = new Counter({ name: 'istio_xds_connection_terminations_total', help: 'xDS streams that ended, by reason', labelNames: ['reason'], registers });
    const messages = new Counter({ name: 'istio_xds_message_total', help: 'xDS resources received, by type URL', labelNames: ['url'], registers });
    const messageBytes = new Counter({ name: 'istio_xds_message_bytes_total', help: 'Bytes of xDS resources received, by type URL', labelNames: ['url'], registers });
    const count = (url: string, u: XdsTypeUpdate): void => {
      messages.inc({ url }, u.upserts.length);
      messageBytes.inc({ url }, u.upserts.reduce((n, r) => n + r.body.length, 0));
    };
    this.xds = new DeltaXdsClient({
      address: o.xdsAddress,
      credentials: creds,
      node: buildNode({ instanceIp: o.nodeIp, podName: `ztunnel-${o.node}`, podNamespace: 'istio-system', nodeName: o.node, cluster: o.clusterId }),
      metadata: () => ({ authorization: `Bearer ${token()}`, clusterid: o.clusterId }),
      handlers: [
        {
          typeUrl: ADDRESS_TYPE_URL,
          apply: (u) => {
            count(ADDRESS_TYPE_URL, u);
            return this.store.applyAddresses({ upserts: u.upserts.map((r) => ({ name: r.name, resource: r.body })), removals: u.removals });
          },
        },
        {
          typeUrl: AUTHORIZATION_TYPE_URL,
          apply: (u) => {
            count(AUTHORIZATION_TYPE_URL, u);
            return this.store.applyAuthorizations({ upserts: u.upserts.map((r) => ({ name: r.name, resource: r.body })), removals: u.removals });
          },
        },
      ],
      logger: o.logger,
      ...(o.clock ? { clock: o.clock } : {}),
    });
    let pending = false;
    this.store.on('change', () => {
      // One rebuild per burst of applied resources (a push applies both types back to back).
      if (pending) return;
      pending = true;
      queueMicrotask(() => {
        pending = false;
        o.view.replace(new ClusterState(clusterConfigFromWorkloadApi(this.store.snapshot(), o.facts)));
      });
    });
    this.xds.on('disconnected', (err?: Error) => terminations.inc({ reason: err ? 'ConnectionError' : 'Complete' }));
    this.xds.on('synced', () => {
      if (!this.#synced) log.info({ ...this.store.counts }, 'first xds sync complete');
      this.#synced = true;
    });
    this.xds.on('nack-sent', (e: { typeUrl: string; message: string }) => log.warn({ typeUrl: e.typeUrl, detail: e.message }, 'rejected resources from the control plane (NACK sent)'));
    this.ca = new IstioCaClient({ address: o.caAddress, credentials: creds, tokenProvider: token, clusterId: o.clusterId });
  }

  get synced(): boolean {
    return this.#synced;
  }

  start(): void {
    this.xds.start();
  }

  async close(): Promise<void> {
    await this.xds.close();
    this.ca.close();
  }
}
