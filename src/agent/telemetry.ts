/**
 * Istio's standard TCP metrics and one access-log line per connection, from
 * the same record, so the log and the counters never disagree. Metric names
 * and labels follow ztunnel (ztunnel.md §7) so Istio dashboards work as is.
 *
 * Byte counters move while a connection is open: a connection may carry a
 * live byte source (e.g. the socket counters of one leg), polled every
 * `flushIntervalMs` and once more at close, where the relay's exact totals
 * settle the difference. Series expire: a label set with no open connection
 * that nothing touched for `seriesTtlMs` is removed from every counter, so
 * deleted workloads do not grow the scrape forever.
 */
import type { Socket } from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import { systemClock, type Clock, type Timer } from '../common/clock.js';
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

export const ISTIO_TCP_LABELS = [
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
export type IstioTcpLabel = (typeof ISTIO_TCP_LABELS)[number];
type Label = IstioTcpLabel;

function canonicalService(w: LocalWorkload): string {
  return w.labels['service.istio.io/canonical-name'] ?? w.labels['app.kubernetes.io/name'] ?? w.labels.app ?? w.name;
}

function canonicalRevision(w: LocalWorkload): string {
  return w.labels['service.istio.io/canonical-revision'] ?? w.labels['app.kubernetes.io/version'] ?? w.labels.version ?? 'latest';
}

/** Bytes a connection moved so far, in the reporter's terms (sent = toward the client side's peer, as in closed()). */
export interface ByteCounts {
  sent: number;
  recv: number;
}

/** Reads the bytes moved so far by an open connection (cheap; polled periodically). */
export type LiveBytes = () => ByteCounts;

/**
 * A live byte source from one leg's socket counters, counted from now on.
 * `readIs` says which metric the bytes read from this socket count as: for
 * the client leg of an outbound connection what it reads is what the client
 * sends ('sent'); for the application leg of an inbound one what it reads is
 * the answer going back ('sent' as well, reporter=destination); for the
 * other orientation pass 'recv'. Bytes moved by splice() bypass these
 * counters; such connections are settled at close.
 */
export function socketBytes(s: Socket, readIs: 'sent' | 'recv'): LiveBytes {
  const r0 = s.bytesRead;
  const w0 = s.bytesWritten;
  return () => {
    const read = s.bytesRead - r0;
    const written = (s.bytesWritten ?? w0) - w0;
    return readIs === 'sent' ? { sent: read, recv: written } : { sent: written, recv: read };
  };
}

export interface TelemetryOptions {
  clock?: Clock;
  /** How often open connections' byte counts are added to the counters (default 5 s). */
  flushIntervalMs?: number;
  /** A series with no open connection expires after this long untouched (default 15 min). */
  seriesTtlMs?: number;
}

export const DEFAULT_FLUSH_INTERVAL_MS = 5_000;
export const DEFAULT_SERIES_TTL_MS = 15 * 60_000;

interface Series {
  labels: Record<Label, string>;
  open: number;
  touched: number;
}

/** An open connection, returned by opened(); pass it back to closed(). */
export class OpenConnection {
  /** Bytes already added to the counters. */
  reported: ByteCounts = { sent: 0, recv: 0 };
  live: LiveBytes | undefined;
  constructor(
    readonly key: string,
    readonly record: ConnectionRecord,
    readonly openedAt: number,
  ) {}

  /** Attaches a live byte source; bytes it reports are counted before the connection closes. */
  trackBytes(live: LiveBytes): void {
    this.live = live;
  }
}

function seriesKey(l: Record<Label, string>): string {
  return ISTIO_TCP_LABELS.map((k) => l[k]).join('\u0000');
}

function clampDelta(now: number, reported: number): number {
  return Number.isFinite(now) && now > reported ? now - reported : 0;
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
  readonly #clock: Clock;
  readonly #flushMs: number;
  readonly #ttlMs: number;
  readonly #series = new Map<string, Series>();
  readonly #conns = new Set<OpenConnection>();
  #timer: Timer | undefined;
  #closedDown = false;

  constructor(registry: Registry, logger: Logger, opts: TelemetryOptions = {}) {
    const mk = (name: string, help: string): Counter<Label> => new Counter({ name, help, labelNames: ISTIO_TCP_LABELS, registers: [registry] });
    this.#opened = mk('istio_tcp_connections_opened_total', 'The total number of TCP connections opened');
    this.#closed = mk('istio_tcp_connections_closed_total', 'The total number of TCP connections closed');
    this.#sent = mk('istio_tcp_sent_bytes_total', 'The size of total bytes sent during response in case of a TCP connection');
    this.#received = mk('istio_tcp_received_bytes_total', 'The size of total bytes received during request in case of a TCP connection');
    this.#failed = mk('istio_tcp_connections_failed_total', 'The total number of TCP connections that failed');
    this.#open = new Gauge({ name: 'istio_tcp_sockets_open', help: 'Currently open proxied TCP connections', labelNames: ['reporter'], registers: [registry] });
    this.#access = logger.child({ component: 'access' });
    this.#clock = opts.clock ?? systemClock;
    this.#flushMs = opts.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
    this.#ttlMs = opts.seriesTtlMs ?? DEFAULT_SERIES_TTL_MS;
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
      'src.cluster': r.srcWorkload ? r.clusterId : undefined,
      'dst.addr': r.dstAddr,
      'dst.hbone_addr': r.dstHboneAddr,
      'dst.service': r.dstService?.hostname,
      'dst.workload': r.dstWorkload?.name,
      'dst.namespace': r.dstWorkload?.namespace,
      'dst.identity': r.dstIdentity,
      'dst.cluster': r.dstWorkload ? r.clusterId : undefined,
      direction: r.direction,
    };
  }

  /** Connections opened and not yet closed (what a draining agent waits for). */
  get active(): number {
    return this.#active;
  }

  /** Label sets currently kept (for tests and the status view). */
  get seriesCount(): number {
    return this.#series.size;
  }

  #touch(labels: Record<Label, string>, openDelta: number): Series {
    const key = seriesKey(labels);
    let s = this.#series.get(key);
    if (!s) {
      s = { labels, open: 0, touched: 0 };
      this.#series.set(key, s);
    }
    s.open += openDelta;
    s.touched = this.#clock.now();
    this.#schedule();
    return s;
  }

  #schedule(): void {
    if (this.#timer || this.#closedDown) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.flush();
      this.sweep();
      if (this.#series.size > 0 || this.#conns.size > 0) this.#schedule();
    }, this.#flushMs);
  }

  #report(c: OpenConnection, now: ByteCounts): void {
    const labels = this.#series.get(c.key)?.labels ?? this.labels(c.record, '-');
    const ds = clampDelta(now.sent, c.reported.sent);
    const dr = clampDelta(now.recv, c.reported.recv);
    if (ds > 0) this.#sent.inc(labels, ds);
    if (dr > 0) this.#received.inc(labels, dr);
    c.reported = { sent: c.reported.sent + ds, recv: c.reported.recv + dr };
  }

  /** Adds what open connections moved since the last flush (runs every flushIntervalMs). */
  flush(): void {
    for (const c of this.#conns) {
      if (!c.live) continue;
      let now: ByteCounts;
      try {
        now = c.live();
      } catch {
        continue;
      }
      this.#report(c, now);
      const s = this.#series.get(c.key);
      if (s) s.touched = this.#clock.now();
    }
  }

  /** Removes series with no open connection untouched for seriesTtlMs. */
  sweep(): void {
    const limit = this.#clock.now() - this.#ttlMs;
    for (const [key, s] of this.#series) {
      if (s.open > 0 || s.touched > limit) continue;
      for (const m of [this.#opened, this.#closed, this.#sent, this.#received, this.#failed]) m.remove(s.labels);
      this.#series.delete(key);
    }
  }

  opened(r: ConnectionRecord, live?: LiveBytes): OpenConnection {
    this.#active++;
    const labels = this.labels(r, '-');
    const key = seriesKey(labels);
    this.#touch(labels, +1);
    this.#opened.inc(labels);
    this.#sent.inc(labels, 0);
    this.#received.inc(labels, 0);
    this.#open.inc({ reporter: labels.reporter });
    const c = new OpenConnection(key, r, this.#clock.now());
    if (live) c.trackBytes(live);
    this.#conns.add(c);
    this.#access.debug(this.#fields(r), 'connection opened');
    return c;
  }

  /**
   * A connection that completed (it was opened); logs the one access line.
   * Pass the handle opened() returned so bytes already counted live are not
   * counted twice; without it the outcome's bytes are added in full.
   */
  closed(r: ConnectionRecord, o: ConnectionOutcome, conn?: OpenConnection): void {
    const opened = this.labels(r, '-');
    const key = seriesKey(opened);
    // Without a handle: the connection opened with this very record, else one of its series without a live source.
    const c = conn ?? this.#find(r, key) ?? new OpenConnection(key, r, this.#clock.now());
    const wasOpen = this.#conns.delete(c);
    const series = this.#series.get(c.key);
    const l = series?.labels ?? opened;
    this.#closed.inc(l);
    this.#report(c, { sent: o.bytesSent, recv: o.bytesRecv });
    if (o.responseFlags !== '-') {
      const flagged = { ...l, response_flags: o.responseFlags };
      this.#failed.inc(flagged);
      this.#touch(flagged, 0);
    }
    this.#touch(l, wasOpen ? -1 : 0);
    this.#open.dec({ reporter: l.reporter });
    this.#active--;
    const line = {
      ...this.#fields(r),
      bytes_sent: o.bytesSent,
      bytes_recv: o.bytesRecv,
      duration: `${Math.round(o.durationMs)}ms`,
      ...(o.responseFlags !== '-' ? { response_flags: o.responseFlags } : {}),
      ...(o.relay ? { relay: o.relay } : {}),
      ...(o.error ? { error: o.error } : {}),
    };
    if (o.error) this.#access.error(line, 'connection complete');
    else this.#access.info(line, 'connection complete');
  }

  #find(r: ConnectionRecord, key: string): OpenConnection | undefined {
    let byKey: OpenConnection | undefined;
    for (const c of this.#conns) {
      if (c.record === r) return c;
      if (!byKey && c.key === key && !c.live) byKey = c;
    }
    return byKey;
  }

  /** A connection that failed before it was established (never opened). */
  failed(r: ConnectionRecord, responseFlags: string, error: string): void {
    const labels = this.labels(r, responseFlags);
    this.#touch(labels, 0);
    this.#failed.inc(labels);
    this.#access.warn({ ...this.#fields(r), response_flags: responseFlags, error }, 'connection failed');
  }

  /** Open connections' bytes so far, per connection (for a status view). */
  openConnections(): Array<{ record: ConnectionRecord; openedAt: number; bytes: ByteCounts }> {
    return [...this.#conns].map((c) => ({ record: c.record, openedAt: c.openedAt, bytes: { ...c.reported } }));
  }

  /** Stops the periodic flush (after a last one). Counting continues; nothing is flushed on a timer anymore. */
  close(): void {
    this.flush();
    this.#closedDown = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }
}
