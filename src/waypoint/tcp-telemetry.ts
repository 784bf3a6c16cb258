/**
 * Istio's TCP metrics for connections the waypoint passes through as opaque
 * TCP (tcp services, non-HTTP fallback, workload passthrough), with
 * reporter="waypoint" and the same label names as the node agent
 * (src/agent/telemetry.ts ISTIO_TCP_LABELS; a unit test keeps them equal).
 * Bytes are counted as they flow, so long connections show up before they
 * close. received = from the client, sent = to the client.
 */
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../common/logger.js';
import type { Endpoint, ServiceConfig } from './config.js';

export const ISTIO_TCP_LABELS = [
  'reporter',
  'source_workload', 'source_canonical_service', 'source_canonical_revision', 'source_workload_namespace', 'source_principal',
  'source_app', 'source_version', 'source_cluster',
  'destination_service', 'destination_service_namespace', 'destination_service_name',
  'destination_workload', 'destination_canonical_service', 'destination_canonical_revision', 'destination_workload_namespace',
  'destination_principal', 'destination_app', 'destination_version', 'destination_cluster',
  'request_protocol', 'response_flags', 'connection_security_policy',
] as const;
export type IstioTcpLabel = (typeof ISTIO_TCP_LABELS)[number];
export type TcpLabels = Record<IstioTcpLabel, string>;

export interface TcpLabelInput {
  readonly sourcePrincipal?: string;
  readonly sourceWorkload?: { workload?: string; namespace?: string; cluster?: string; canonicalService?: string; canonicalRevision?: string };
  readonly service?: ServiceConfig;
  readonly endpoint?: Endpoint;
  readonly clusterId: string;
  readonly responseFlags: string;
}

export function tcpLabels(i: TcpLabelInput): TcpLabels {
  const u = (v: string | undefined): string => (v === undefined || v === '' ? 'unknown' : v);
  const sw = i.sourceWorkload;
  const srcNs = i.sourcePrincipal ? /\/ns\/([^/]+)\//.exec(i.sourcePrincipal)?.[1] : undefined;
  const ep = i.endpoint;
  const svc = i.service;
  return {
    reporter: 'waypoint',
    source_workload: u(sw?.workload), source_canonical_service: u(sw?.canonicalService), source_canonical_revision: u(sw?.canonicalRevision),
    source_workload_namespace: u(sw?.namespace ?? srcNs), source_principal: u(i.sourcePrincipal),
    source_app: u(sw?.canonicalService), source_version: u(sw?.canonicalRevision), source_cluster: u(sw?.cluster),
    destination_service: u(svc?.hostname), destination_service_namespace: u(svc?.namespace), destination_service_name: u(svc?.hostname.split('.')[0]),
    destination_workload: u(ep?.workload),
    destination_canonical_service: u(ep?.labels['service.istio.io/canonical-name'] ?? ep?.labels.app ?? ep?.workload),
    destination_canonical_revision: u(ep?.labels['service.istio.io/canonical-revision'] ?? ep?.labels.version ?? 'latest'),
    destination_workload_namespace: u(ep?.namespace), destination_principal: u(ep?.principal),
    destination_app: u(ep?.labels.app), destination_version: u(ep?.labels.version), destination_cluster: i.clusterId,
    request_protocol: 'tcp', response_flags: i.responseFlags, connection_security_policy: i.sourcePrincipal ? 'mutual_tls' : 'unknown',
  };
}

export interface TcpConnectionCounters {
  received(n: number): void;
  sent(n: number): void;
  closed(): void;
}

export class WaypointTcpTelemetry {
  readonly #opened: Counter<IstioTcpLabel>;
  readonly #closed: Counter<IstioTcpLabel>;
  readonly #sent: Counter<IstioTcpLabel>;
  readonly #received: Counter<IstioTcpLabel>;
  readonly #failed: Counter<IstioTcpLabel>;
  readonly #log: Logger;

  constructor(registry: Registry, logger: Logger) {
    const mk = (name: string, help: string): Counter<IstioTcpLabel> => new Counter({ name, help, labelNames: [...ISTIO_TCP_LABELS], registers: [registry] });
    this.#opened = mk('istio_tcp_connections_opened_total', 'The total number of TCP connections opened');
    this.#closed = mk('istio_tcp_connections_closed_total', 'The total number of TCP connections closed');
    this.#sent = mk('istio_tcp_sent_bytes_total', 'The size of total bytes sent during response in case of a TCP connection');
    this.#received = mk('istio_tcp_received_bytes_total', 'The size of total bytes received during request in case of a TCP connection');
    this.#failed = mk('istio_tcp_connections_failed_total', 'The total number of TCP connections that failed');
    this.#log = logger.child({ component: 'waypoint-access' });
  }

  /** Counts an opened connection; the returned counters track its bytes and close. */
  opened(labels: TcpLabels, info: { src: string; upstream: string }): TcpConnectionCounters {
    this.#opened.inc(labels);
    const rx = this.#received.labels(labels);
    const tx = this.#sent.labels(labels);
    const started = Date.now();
    let bytesIn = 0;
    let bytesOut = 0;
    let done = false;
    return {
      received: (n) => {
        bytesIn += n;
        rx.inc(n);
      },
      sent: (n) => {
        bytesOut += n;
        tx.inc(n);
      },
      closed: () => {
        if (done) return;
        done = true;
        this.#closed.inc(labels);
        this.#log.info({
          protocol: 'tcp', src_addr: info.src, src_principal: labels.source_principal, dst_service: labels.destination_service,
          dst_workload: labels.destination_workload, upstream: info.upstream, bytes_received: bytesIn, bytes_sent: bytesOut,
          duration_ms: Date.now() - started, response_flags: labels.response_flags,
        }, 'connection');
      },
    };
  }

  failed(labels: TcpLabels, info: { src: string; reason: string }): void {
    this.#failed.inc(labels);
    this.#log.info({ protocol: 'tcp', src_addr: info.src, src_principal: labels.source_principal, dst_service: labels.destination_service, response_flags: labels.response_flags, error: info.reason }, 'connection');
  }
}
