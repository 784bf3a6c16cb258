/**
 * Istio's standard TCP metrics and one access-log line per connection, from
 * the same record, so the log and the counters never disagree. Metric names
 * and labels follow ztunnel (ztunnel.md §7) so Istio dashboards work as is.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../common/logger.js';
import type { LocalService, LocalWorkload } from '../state/local-config.js';

export type Direction = 'inbound' | 'outbound';

export interface ConnectionRecord {
  direction: Direction;
  srcAddr: string;
  srcWorkload?: LocalWorkload;
  srcIdentity?: string;
  /** The actual next hop (e.g. podIP:15008 for HBONE). */
  dstAddr: string;
  /** The tunnel target (CONNECT authority) when HBONE is used. */
  dstHboneAddr?: string;
  dstWorkload?: LocalWorkload;
  dstService?: LocalService;
  dstIdentity?: string;
  mtls: boolean;
  clusterId: string;
}

export interface ConnectionOutcome {
  bytesSent: number;
  bytesRecv: number;
  durationMs: number;
  /** Istio response flag: '-' for success, or DENY, CONNECT, NETWORK_POLICY, ... */
  responseFlags: string;
  error?: string;
  /** How the bytes were relayed: kernel splice, JS copy, or an HTTP/2 tunnel. */
  relay?: 'splice' | 'copy' | 'hbone';
}

const LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;
type Label = (typeof LABELS)[number];

function canonicalService(w: LocalWorkload): string {
  return w.labels['service.istio.io/canonical-name'] ?? w.labels['app.kubernetes.io/name'] ?? w.labels.app ?? w.name;
}

function canonicalRevision(w: LocalWorkload): string {
  return w.labels['service.istio.io/canonical-revision'] ?? w.labels['app.kubernetes.io/version'] ?? w.labels.version ?? 'latest';
}

export class Telemetry {
  #active = 0;
  readonly #opened: Counter<Label>;
  readonly #closed: Counter<Label>;
  readonly #sent: Counter<Label>;
  readonly #received: Counter<Label>;
  readonly #failed: Counter<Label>;
  readonly #open: Gauge<'reporter'>;
  readonly #access: Logger;

  constructor(registry: Registry, logger: Logger) {
    const mk = (name: string, help: string): Counter<Label> => new Counter({ name, help, labelNames: LABELS, registers: [registry] });
    this.#opened = mk('istio_tcp_connections_opened_total', 'The total number of TCP connections opened');
    this.#closed = mk('istio_tcp_connections_closed_total', 'The total number of TCP connections closed');
    this.#sent = mk('istio_tcp_sent_bytes_total', 'The size of total bytes sent during response in case of a TCP connection');
    this.#received = mk('istio_tcp_received_bytes_total', 'The size of total bytes received during request in case of a TCP connection');
    this.#failed = mk('istio_tcp_connections_failed_total', 'The total number of TCP connections that failed');
    this.#open = new Gauge({ name: 'istio_tcp_sockets_open', help: 'Currently open proxied TCP connections', labelNames: ['reporter'], registers: [registry] });
    this.#access = logger.child({ component: 'access' });
  }

  labels(r: ConnectionRecord, responseFlags: string): Record<Label, string> {
    const s = r.srcWorkload;
    const d = r.dstWorkload;
    const svc = r.dstService;
    return {
      reporter: r.direction === 'outbound' ? 'source' : 'destination',
      source_workload: s?.name ?? 'unknown',
      source_canonical_service: s ? canonicalService(s) : 'unknown',
      source_canonical_revision: s ? canonicalRevision(s) : 'unknown',
      source_workload_namespace: s?.namespace ?? 'unknown',
      source_principal: r.srcIdentity ?? 'unknown',
      source_app: s?.labels.app ?? 'unknown',
      source_version: s?.labels.version ?? 'unknown',
      source_cluster: s ? r.clusterId : 'unknown',
      destination_service: svc?.hostname ?? 'unknown',
      destination_service_namespace: svc?.namespace ?? 'unknown',
      destination_service_name: svc?.name ?? 'unknown',
      destination_workload: d?.name ?? 'unknown',
      destination_canonical_service: d ? canonicalService(d) : 'unknown',
      destination_canonical_revision: d ? canonicalRevision(d) : 'unknown',
      destination_workload_namespace: d?.namespace ?? 'unknown',
      destination_principal: r.dstIdentity ?? 'unknown',
      destination_app: d?.labels.app ?? 'unknown',
      destination_version: d?.labels.version ?? 'unknown',
      destination_cluster: d ? r.clusterId : 'unknown',
      request_protocol: 'tcp',
      response_flags: responseFlags,
      connection_security_policy: r.mtls ? 'mutual_tls' : 'unknown',
    };
  }

  #fields(r: ConnectionRecord): Record<string, unknown> {
    return {
      'src.addr': r.srcAddr,
      'src.workload': r.srcWorkload?.name,
      'src.namespace': r.srcWorkload?.namespace,
      'src.identity': r.srcIdentity,
      'dst.addr': r.dstAddr,
      'dst.hbone_addr': r.dstHboneAddr,
      'dst.service': r.dstService?.hostname,
      'dst.workload': r.dstWorkload?.name,
      'dst.namespace': r.dstWorkload?.namespace,
      'dst.identity': r.dstIdentity,
      direction: r.direction,
    };
  }

  /** Connections opened and not yet closed (what a draining agent waits for). */
  get active(): number {
    return this.#active;
  }

  opened(r: ConnectionRecord): void {
    this.#active++;
    this.#opened.inc(this.labels(r, '-'));
    this.#open.inc({ reporter: r.direction === 'outbound' ? 'source' : 'destination' });
    this.#access.debug(this.#fields(r), 'connection opened');
  }

  /** A connection that completed (it was opened); logs the one access line. */
  closed(r: ConnectionRecord, o: ConnectionOutcome): void {
    const l = this.labels(r, o.responseFlags);
    const opened = this.labels(r, '-');
    this.#closed.inc(opened);
    this.#sent.inc(opened, o.bytesSent);
    this.#received.inc(opened, o.bytesRecv);
    if (o.responseFlags !== '-') this.#failed.inc(l);
    this.#open.dec({ reporter: l.reporter });
    this.#active--;
    const line = { ...this.#fields(r), bytes_sent: o.bytesSent, bytes_recv: o.bytesRecv, duration: `${Math.round(o.durationMs)}ms`, ...(o.relay ? { relay: o.relay } : {}), ...(o.error ? { error: o.error } : {}) };
    if (o.error) this.#access.error(line, 'connection complete');
    else this.#access.info(line, 'connection complete');
  }

  /** A connection that failed before it was established (never opened). */
  failed(r: ConnectionRecord, responseFlags: string, error: string): void {
    this.#failed.inc(this.labels(r, responseFlags));
    this.#access.warn({ ...this.#fields(r), error }, 'connection failed');
  }
}
