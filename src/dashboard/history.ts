/**
 * A short time series per edge: every scrape round adds one point per edge
 * with the counter deltas since the previous round (a counter that went down
 * is an agent restart: its new value is the delta). Rates over a window of
 * recent points feed the graph; the points themselves feed the per-edge
 * charts. Bounded: `maxPoints` per edge, and edges idle for the whole
 * history are dropped.
 */
import { emptyCounters, histogramQuantile, type EdgeCounters, type EdgeObservation } from './edges.js';

export interface SeriesPoint {
  /** Unix ms of the round. */
  t: number;
  /** Connections opened per second. */
  cps: number;
  bytesPerSec: number;
  /** Open connections at the time of the round (opened - closed). */
  active: number;
  failedPerSec: number;
  deniedPerSec: number;
  /** L7 (waypoint) requests per second and their error share; p99 request latency (ms) in this interval. */
  rps: number;
  errorRate: number;
  p99Ms?: number;
}

interface Delta {
  t: number;
  dt: number;
  d: EdgeCounters;
  active: number;
}

export interface EdgeStats {
  id: string;
  source: string;
  target: string;
  service?: string;
  protocol: 'tcp' | 'http';
  /** Rates over the window. */
  cps: number;
  bytesPerSec: number;
  failedPerSec: number;
  deniedPerSec: number;
  rps: number;
  errorRate: number;
  p99Ms?: number;
  active: number;
  /** Totals since the agents started. */
  openedTotal: number;
  /** HTTP requests (from waypoints' istio_requests_total) since they started. */
  requestsTotal: number;
  deniedTotal: number;
  failedTotal: number;
  bytesTotal: number;
  /** Share of connections (opened or failed) with mutual TLS: 'full', 'partial', 'none', or 'unknown' without any. */
  mtls: 'full' | 'partial' | 'none' | 'unknown';
  status: 'ok' | 'denied' | 'error' | 'idle';
}

/** A counter's growth since `prev` (undefined: everything); a counter that went down restarted, so its value is the growth. */
export function counterDelta(cur: number, prev: number | undefined): number {
  if (prev === undefined) return cur;
  return cur >= prev ? cur - prev : cur;
}

/** Per-field counterDelta of two rounds' counters (histogram buckets included). */
export function diffCounters(cur: EdgeCounters, prev: EdgeCounters | undefined): EdgeCounters {
  const d = emptyCounters();
  for (const k of ['opened', 'closed', 'failed', 'denied', 'sent', 'recv', 'mtls', 'plain', 'requests', 'requestErrors'] as const) d[k] = counterDelta(cur[k], prev?.[k]);
  for (const [le, n] of Object.entries(cur.buckets)) d.buckets[le] = counterDelta(n, prev?.buckets[le]);
  return d;
}

/** The field-wise sum of counters (deltas of several rounds or pairs). */
export function sumCounters(ds: readonly EdgeCounters[]): EdgeCounters {
  const s = emptyCounters();
  for (const d of ds) {
    for (const k of ['opened', 'closed', 'failed', 'denied', 'sent', 'recv', 'mtls', 'plain', 'requests', 'requestErrors'] as const) s[k] += d[k];
    for (const [le, n] of Object.entries(d.buckets)) s.buckets[le] = (s.buckets[le] ?? 0) + n;
  }
  return s;
}

interface EdgeTrack {
  obs: EdgeObservation;
  last: EdgeCounters;
  deltas: Delta[];
}

export class EdgeHistory {
  readonly #edges = new Map<string, EdgeTrack>();
  #rounds = 0;
  #lastT: number | undefined;

  constructor(
    readonly maxPoints = 150,
    /** Points the graph's rates average over. */
    readonly windowPoints = 5,
  ) {}

  /** Adds a round. The first round is a baseline: everything before it counts as history, not as a rate. */
  push(t: number, edges: ReadonlyMap<string, EdgeObservation>): void {
    const first = this.#rounds === 0;
    const dt = this.#lastT === undefined ? 0 : Math.max(0.001, (t - this.#lastT) / 1000);
    this.#rounds++;
    this.#lastT = t;
    for (const [id, obs] of edges) {
      let tr = this.#edges.get(id);
      const prev = tr?.last ?? (first ? obs.counters : undefined);
      const d = diffCounters(obs.counters, prev);
      const active = Math.max(0, obs.counters.opened - obs.counters.closed);
      if (!tr) {
        tr = { obs, last: obs.counters, deltas: [] };
        this.#edges.set(id, tr);
      }
      tr.obs = obs;
      tr.last = obs.counters;
      tr.deltas.push({ t, dt, d, active });
      if (tr.deltas.length > this.maxPoints) tr.deltas.shift();
    }
    // Edges not in this round (a series that expired, an agent that did not answer): a zero point, counters kept.
    for (const [id, tr] of this.#edges) {
      if (edges.has(id)) continue;
      tr.deltas.push({ t, dt, d: emptyCounters(), active: tr.deltas.at(-1)?.active ?? 0 });
      if (tr.deltas.length > this.maxPoints) tr.deltas.shift();
      if (tr.deltas.every((x) => x.d.opened + x.d.failed + x.d.sent + x.d.recv + x.d.requests === 0) && tr.deltas.length >= this.maxPoints) this.#edges.delete(id);
    }
  }

  get rounds(): number {
    return this.#rounds;
  }

  ids(): string[] {
    return [...this.#edges.keys()];
  }

  observations(): EdgeObservation[] {
    return [...this.#edges.values()].map((t) => t.obs);
  }

  /** The chart points of one edge (oldest first), or undefined for an unknown edge. */
  series(id: string): SeriesPoint[] | undefined {
    const tr = this.#edges.get(id);
    if (!tr) return undefined;
    return tr.deltas.map((x) => pointOf(x.t, x.dt, x.d, x.active));
  }

  stats(): EdgeStats[] {
    return [...this.#edges.values()].map((tr) => statsOf(tr, this.windowPoints));
  }
}

function pointOf(t: number, dt: number, d: EdgeCounters, active: number): SeriesPoint {
  const per = (n: number): number => (dt > 0 ? n / dt : 0);
  const p99 = histogramQuantile(0.99, d.buckets);
  return {
    t,
    cps: per(d.opened),
    bytesPerSec: per(d.sent + d.recv),
    active,
    failedPerSec: per(d.failed),
    deniedPerSec: per(d.denied),
    rps: per(d.requests),
    errorRate: d.requests > 0 ? d.requestErrors / d.requests : 0,
    ...(p99 !== undefined ? { p99Ms: p99 } : {}),
  };
}

function statsOf(tr: EdgeTrack, windowPoints: number): EdgeStats {
  const w = tr.deltas.slice(-windowPoints);
  const dt = w.reduce((a, x) => a + x.dt, 0);
  const p = pointOf(tr.deltas.at(-1)?.t ?? 0, dt, sumCounters(w.map((x) => x.d)), tr.deltas.at(-1)?.active ?? 0);
  const c = tr.last;
  const secured = c.mtls + c.plain;
  const mtls = secured === 0 ? 'unknown' : c.plain === 0 ? 'full' : c.mtls === 0 ? 'none' : 'partial';
  const moving = p.cps > 0 || p.bytesPerSec > 0 || p.rps > 0 || p.active > 0 || p.failedPerSec > 0;
  const status = p.deniedPerSec > 0 ? 'denied' : p.failedPerSec > 0 || p.errorRate > 0 ? 'error' : moving ? 'ok' : 'idle';
  return {
    id: tr.obs.id,
    source: tr.obs.source,
    target: tr.obs.target,
    ...(tr.obs.service ? { service: tr.obs.service } : {}),
    protocol: tr.obs.protocol,
    cps: p.cps,
    bytesPerSec: p.bytesPerSec,
    failedPerSec: p.failedPerSec,
    deniedPerSec: p.deniedPerSec,
    rps: p.rps,
    errorRate: p.errorRate,
    ...(p.p99Ms !== undefined ? { p99Ms: p.p99Ms } : {}),
    active: p.active,
    openedTotal: c.opened,
    requestsTotal: c.requests,
    deniedTotal: c.denied,
    failedTotal: c.failed,
    bytesTotal: c.sent + c.recv,
    mtls,
    status,
  };
}
