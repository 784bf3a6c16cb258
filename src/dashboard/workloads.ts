/**
 * Per-workload golden signals (rate, errors, latency, saturation) from the
 * same scraped pairs the graph is built from, so the page can draw a row of
 * sparklines per workload. Pure logic, unit-tested without a lab.
 *
 * Every round the (source workload, destination workload) pairs of
 * pairsFromSamples are differenced per pair (a counter that went down is an
 * agent restart, a pair missing from a round adds nothing) and the deltas are
 * summed per workload, in two directions: `in` (pairs where the workload is
 * the destination: what it served) and `out` (pairs where it is the source:
 * what it called). Differencing per pair before summing keeps an expired
 * series from looking like a counter reset of the whole workload.
 *
 * A call is a request where a waypoint saw the pair (L7: istio_requests_total)
 * and a connection attempt (opened + failed) elsewhere. Connections between
 * a workload and a waypoint are not counted as calls of that workload: the
 * waypoint's request metrics already count those calls, end to end (the
 * waypoint's own row still counts them). Errors are failed connections
 * (denials included) or, for L7 pairs, 5xx/flagged or denied requests;
 * latency is the p99 of the waypoint's request duration histogram (L7 only);
 * saturation is the connections open at the round (opened - closed, both
 * directions, waypoint connections included).
 */
import { histogramQuantile, type EdgeCounters, type GraphNodeInfo, type PairAcc } from './edges.js';
import { diffCounters } from './history.js';

/** The sums of one direction of one workload over one round or a window. */
interface DirTotals {
  calls: number;
  errors: number;
  denied: number;
  buckets: Record<string, number>;
  /** Some counted pair carried L7 requests. */
  l7: boolean;
}

interface Round {
  t: number;
  dt: number;
  in: DirTotals;
  out: DirTotals;
  active: number;
}

/** One direction's signals over the window (rates per second). */
export interface DirectionSignals {
  /** Requests (L7 pairs) plus connection attempts (L4 pairs) per second. */
  callsPerSec: number;
  /** Failed connections and failed or denied requests per second. */
  errorsPerSec: number;
  /** Of those, refused by authorization. */
  deniedPerSec: number;
  /** errors / calls (0..1), 0 without calls. */
  errorShare: number;
  /** p99 request latency (ms), only where a waypoint measured the calls. */
  p99Ms?: number;
  /** Whether some of the calls were seen at L7 (requests, via a waypoint). */
  l7: boolean;
}

/** One sparkline point per round. */
export interface WorkloadPoint {
  t: number;
  inCalls: number;
  outCalls: number;
  inErrors: number;
  outErrors: number;
  inP99?: number;
  outP99?: number;
  /** Open connections (both directions) at the round. */
  active: number;
}

export interface WorkloadSignals {
  id: string;
  kind: 'workload' | 'waypoint';
  namespace: string;
  name: string;
  app?: string;
  version?: string;
  node?: string;
  in: DirectionSignals;
  out: DirectionSignals;
  active: number;
  /** Oldest first. */
  points: WorkloadPoint[];
}

function emptyDir(): DirTotals {
  return { calls: 0, errors: 0, denied: 0, buckets: {}, l7: false };
}

/** What one pair's counter delta adds to a direction: calls, errors and denials (see the header). */
export function pairCalls(d: EdgeCounters, l7: boolean): { calls: number; errors: number; denied: number } {
  if (l7) return { calls: d.requests, errors: Math.min(d.requests, d.requestErrors + d.denied), denied: d.denied };
  return { calls: d.opened + d.failed, errors: d.failed, denied: d.denied };
}

function addDir(into: DirTotals, from: DirTotals): void {
  into.calls += from.calls;
  into.errors += from.errors;
  into.denied += from.denied;
  into.l7 ||= from.l7;
  for (const [le, n] of Object.entries(from.buckets)) into.buckets[le] = (into.buckets[le] ?? 0) + n;
}

function signalsOf(d: DirTotals, dt: number): DirectionSignals {
  const per = (n: number): number => (dt > 0 ? n / dt : 0);
  const p99 = histogramQuantile(0.99, d.buckets);
  return {
    callsPerSec: per(d.calls),
    errorsPerSec: per(d.errors),
    deniedPerSec: per(d.denied),
    errorShare: d.calls > 0 ? Math.min(1, d.errors / d.calls) : 0,
    ...(p99 !== undefined ? { p99Ms: p99 } : {}),
    l7: d.l7,
  };
}

function pointOf(r: Round): WorkloadPoint {
  const i = signalsOf(r.in, r.dt);
  const o = signalsOf(r.out, r.dt);
  return {
    t: r.t,
    inCalls: i.callsPerSec,
    outCalls: o.callsPerSec,
    inErrors: i.errorsPerSec,
    outErrors: o.errorsPerSec,
    ...(i.p99Ms !== undefined ? { inP99: i.p99Ms } : {}),
    ...(o.p99Ms !== undefined ? { outP99: o.p99Ms } : {}),
    active: r.active,
  };
}

const isWorkload = (id: string): boolean => id.startsWith('wl:');

export class WorkloadHistory {
  readonly #pairs = new Map<string, { last: EdgeCounters; seen: number }>();
  readonly #rounds = new Map<string, Round[]>();
  #count = 0;
  #lastT: number | undefined;

  constructor(
    readonly maxPoints = 150,
    /** Rounds the window signals sum over. */
    readonly windowPoints = 5,
  ) {}

  get rounds(): number {
    return this.#count;
  }

  /**
   * Adds a round of pairs (cumulative counters). `waypoints` are the ids of
   * waypoint workloads (their connections are not calls of the workloads
   * they connect). The first round is a baseline: no rates yet.
   */
  push(t: number, pairs: readonly PairAcc[], waypoints: ReadonlySet<string>): void {
    const first = this.#count === 0;
    const dt = this.#lastT === undefined ? 0 : Math.max(0.001, (t - this.#lastT) / 1000);
    this.#count++;
    this.#lastT = t;
    const acc = new Map<string, Round>();
    const get = (id: string): Round => {
      let r = acc.get(id);
      if (!r) {
        r = { t, dt, in: emptyDir(), out: emptyDir(), active: 0 };
        acc.set(id, r);
      }
      return r;
    };
    for (const p of pairs) {
      const key = `${p.source}>${p.target}`;
      const known = this.#pairs.get(key);
      const c = p.counters;
      const d = diffCounters(c, known?.last ?? (first ? c : undefined));
      this.#pairs.set(key, { last: c, seen: this.#count });
      const l7 = c.requests > 0;
      const ends: Array<[string, 'in' | 'out', string]> = [
        [p.source, 'out', p.target],
        [p.target, 'in', p.source],
      ];
      for (const [w, dir, other] of ends) {
        if (!isWorkload(w) || w === other) continue;
        const r = get(w);
        r.active += Math.max(0, c.opened - c.closed);
        if (waypoints.has(other) && !waypoints.has(w)) continue;
        const n = pairCalls(d, l7);
        addDir(r[dir], { ...n, buckets: d.buckets, l7 });
      }
    }
    // Pairs gone for a whole history are forgotten (their counters would only matter after a reset anyway).
    for (const [key, v] of this.#pairs) if (this.#count - v.seen > this.maxPoints) this.#pairs.delete(key);
    for (const id of new Set([...this.#rounds.keys(), ...acc.keys()])) {
      let list = this.#rounds.get(id);
      if (!list) {
        list = [];
        this.#rounds.set(id, list);
      }
      list.push(acc.get(id) ?? { t, dt, in: emptyDir(), out: emptyDir(), active: 0 });
      if (list.length > this.maxPoints) list.shift();
    }
  }

  /** The signals of every workload and waypoint node (idle ones with zeros), points limited to the newest `points`. */
  view(nodes: readonly GraphNodeInfo[], points = this.maxPoints): WorkloadSignals[] {
    const out: WorkloadSignals[] = [];
    for (const n of nodes) {
      if (n.kind !== 'workload' && n.kind !== 'waypoint') continue;
      const list = this.#rounds.get(n.id) ?? [];
      const w = list.slice(-this.windowPoints);
      const dt = w.reduce((a, r) => a + r.dt, 0);
      const inSum = emptyDir();
      const outSum = emptyDir();
      for (const r of w) {
        addDir(inSum, r.in);
        addDir(outSum, r.out);
      }
      out.push({
        id: n.id,
        kind: n.kind,
        namespace: n.namespace,
        name: n.name,
        ...(n.app ? { app: n.app } : {}),
        ...(n.version ? { version: n.version } : {}),
        ...(n.node ? { node: n.node } : {}),
        in: signalsOf(inSum, dt),
        out: signalsOf(outSum, dt),
        active: list.at(-1)?.active ?? 0,
        points: (points > 0 ? list.slice(-points) : []).map(pointOf),
      });
    }
    return out;
  }
}

