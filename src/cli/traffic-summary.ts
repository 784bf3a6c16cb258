/**
 * Connections per destination from a scrape of the agent's Istio TCP
 * metrics: opened, closed, still open, failed, bytes each way; one row per
 * reporter, source workload and destination (service when known).
 */
import { humanBytes, paint, table } from './format.js';
import type { PromSample } from './prom-text.js';

export interface TrafficRow {
  reporter: string;
  source: string;
  destination: string;
  opened: number;
  closed: number;
  failed: number;
  sent: number;
  recv: number;
}

const METRIC_FIELD: Record<string, keyof Pick<TrafficRow, 'opened' | 'closed' | 'failed' | 'sent' | 'recv'>> = {
  istio_tcp_connections_opened_total: 'opened',
  istio_tcp_connections_closed_total: 'closed',
  istio_tcp_connections_failed_total: 'failed',
  istio_tcp_sent_bytes_total: 'sent',
  istio_tcp_received_bytes_total: 'recv',
};

function who(ns: string | undefined, name: string | undefined): string {
  if (!name || name === 'unknown') return 'unknown';
  return ns && ns !== 'unknown' ? `${ns}/${name}` : name;
}

export function summarizeTraffic(samples: PromSample[]): TrafficRow[] {
  const rows = new Map<string, TrafficRow>();
  for (const s of samples) {
    const field = METRIC_FIELD[s.name];
    if (!field) continue;
    const l = s.labels;
    const source = who(l.source_workload_namespace, l.source_workload);
    const svc = l.destination_service && l.destination_service !== 'unknown' ? l.destination_service : undefined;
    const wl = who(l.destination_workload_namespace, l.destination_workload);
    const destination = svc ? (wl !== 'unknown' ? `${svc} (${wl})` : svc) : wl;
    const reporter = l.reporter ?? '-';
    const key = `${reporter}\u0000${source}\u0000${destination}`;
    let r = rows.get(key);
    if (!r) {
      r = { reporter, source, destination, opened: 0, closed: 0, failed: 0, sent: 0, recv: 0 };
      rows.set(key, r);
    }
    r[field] += s.value;
  }
  return [...rows.values()].sort((a, b) => a.reporter.localeCompare(b.reporter) || a.destination.localeCompare(b.destination) || a.source.localeCompare(b.source));
}

export function trafficTable(rows: TrafficRow[], colour: boolean): string {
  return table(
    ['REPORTER', 'SOURCE', 'DESTINATION', 'OPENED', 'CLOSED', 'ACTIVE', 'FAILED', 'SENT', 'RECEIVED'],
    rows.map((r) => [
      r.reporter,
      r.source,
      r.destination,
      String(r.opened),
      String(r.closed),
      String(Math.max(0, r.opened - r.closed)),
      r.failed > 0 ? paint(colour, 'red', String(r.failed)) : '0',
      humanBytes(r.sent),
      humanBytes(r.recv),
    ]),
    colour,
  );
}
