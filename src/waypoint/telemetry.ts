/**
 * Istio standard HTTP metrics with reporter="waypoint" and one pino access-log
 * line per request, both from the same RequestRecord so they never disagree.
 * Buckets: request duration uses Istio's default buckets (ms); body sizes
 * use decades 1 B … 1 GB (Envoy's istio stats byte buckets).
 */
import { Counter, type Registry } from 'prom-client';
import { SeriesCounter, SeriesHistogram } from './series-metrics.js';
import type { Logger } from '../common/logger.js';

export const ISTIO_HTTP_LABELS = [
  'reporter',
  'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version', 'source_cluster',
  'source_canonical_service', 'source_canonical_revision',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_service', 'destination_service_name', 'destination_service_namespace', 'destination_cluster',
  'destination_canonical_service', 'destination_canonical_revision',
  'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy',
] as const;
export type IstioHttpLabel = (typeof ISTIO_HTTP_LABELS)[number];

export const DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
export const BYTES_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];

/** Everything known about one finished request. */
export interface RequestRecord {
  readonly labels: Record<IstioHttpLabel, string>;
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly route: string;
  readonly upstream: string;
  readonly durationMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly attempts: number;
  readonly traceId: string;
  readonly requestId: string;
  readonly sourceAddress: string;
  readonly userAgent: string;
  readonly authzPolicy?: string;
  readonly error?: string;
}

export class WaypointTelemetry {
  readonly #requests: SeriesCounter;
  readonly #duration: SeriesHistogram;
  readonly #reqBytes: SeriesHistogram;
  readonly #respBytes: SeriesHistogram;
  readonly retries: Counter<'destination_service' | 'cluster'>;
  readonly #log: Logger;

  constructor(registry: Registry, logger: Logger) {
    // per-series fast path (series-metrics.ts): prom-client would validate and hash 25 labels four times per request
    this.#requests = new SeriesCounter({ name: 'istio_requests_total', help: 'Requests handled by the waypoint', registry });
    this.#duration = new SeriesHistogram({ name: 'istio_request_duration_milliseconds', help: 'Request duration in milliseconds', buckets: DURATION_BUCKETS_MS, registry });
    this.#reqBytes = new SeriesHistogram({ name: 'istio_request_bytes', help: 'Request body size in bytes', buckets: BYTES_BUCKETS, registry });
    this.#respBytes = new SeriesHistogram({ name: 'istio_response_bytes', help: 'Response body size in bytes', buckets: BYTES_BUCKETS, registry });
    this.retries = new Counter({ name: 'ambit_waypoint_upstream_retries_total', help: 'Upstream retry attempts (not counting the first try)', labelNames: ['destination_service', 'cluster'], registers: [registry] });
    this.#log = logger.child({ component: 'waypoint-access' });
  }

  record(r: RequestRecord): void {
    // length-prefixed values: unambiguous whatever the values contain
    const l = r.labels;
    let key = '';
    for (const n of ISTIO_HTTP_LABELS) key += `${l[n].length}:${l[n]}`;
    this.#requests.seriesFor(key, l).value++;
    this.#duration.observe(this.#duration.seriesFor(key, l), r.durationMs);
    this.#reqBytes.observe(this.#reqBytes.seriesFor(key, l), r.requestBytes);
    this.#respBytes.observe(this.#respBytes.seriesFor(key, l), r.responseBytes);
    this.#log.info({
      method: r.method, path: r.path, authority: r.authority, protocol: r.labels.request_protocol,
      response_code: Number(r.labels.response_code), grpc_status: r.labels.grpc_response_status, response_flags: r.labels.response_flags,
      route: r.route, upstream: r.upstream, duration_ms: Math.round(r.durationMs * 1000) / 1000, bytes_received: r.requestBytes, bytes_sent: r.responseBytes,
      attempts: r.attempts, trace_id: r.traceId, request_id: r.requestId, src_addr: r.sourceAddress, src_principal: r.labels.source_principal,
      dst_service: r.labels.destination_service, dst_workload: r.labels.destination_workload, user_agent: r.userAgent,
      ...(r.authzPolicy ? { authz_policy: r.authzPolicy } : {}), ...(r.error ? { error: r.error } : {}),
    }, 'request');
  }
}
