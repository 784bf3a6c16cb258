/**
 * From scraped samples to the service graph's edges: pure functions, so the
 * graph logic is unit-tested without a lab.
 *
 * Agents report every connection twice (reporter="source" on the client's
 * node, reporter="destination" on the server's), so per (source workload,
 * destination workload) pair one reporter is used: the destination when it
 * reported the pair (it saw the peer certificate and made the authorization
 * decision), else the source (e.g. a destination outside the mesh). Waypoint
 * request metrics (istio_requests_total, the duration histogram) add L7
 * numbers to the same pairs.
 *
 * Edges are then expanded through service nodes: client -> service carries
 * everything the pair did (including denials); service -> workload carries
 * what reached the workload (denied connections never did). A waypoint's
 * upstream connections are drawn waypoint -> workload (through the service
 * they would make a loop).
 */
import type { PromSample } from '../cli/prom-text.js';

export type NodeKind = 'workload' | 'service' | 'waypoint' | 'external';

export interface GraphNodeInfo {
  id: string;
  kind: NodeKind;
  namespace: string;
  name: string;
  app?: string;
  version?: string;
  /** The lab node a workload runs on. */
  node?: string;
}

/** Cumulative counters of one edge (sums of Prometheus counters; they only grow, except on agent restarts). */
export interface EdgeCounters {
  opened: number;
  closed: number;
  /** Connections that failed, any response flag. */
  failed: number;
  /** Of those, refused by authorization (response_flags="DENY"). */
  denied: number;
  sent: number;
  recv: number;
  /** Connections (opened or failed) labelled connection_security_policy="mutual_tls", and the others. */
  mtls: number;
  plain: number;
  /** L7, from waypoints. */
  requests: number;
  requestErrors: number;
  /** Request duration histogram (ms): upper bound -> cumulative count. */
  buckets: Record<string, number>;
}

export interface EdgeObservation {
  id: string;
  source: string;
  target: string;
  /** The Kubernetes service hostname the traffic was addressed to, when known. */
  service?: string;
  protocol: 'tcp' | 'http';
  counters: EdgeCounters;
}

export interface Inventory {
  workloads: ReadonlyArray<{ namespace: string; name: string; node?: string; app?: string; version?: string; waypoint?: boolean }>;
  services: ReadonlyArray<{ namespace: string; name: string; hostname: string }>;
}

export function emptyCounters(): EdgeCounters {
  return { opened: 0, closed: 0, failed: 0, denied: 0, sent: 0, recv: 0, mtls: 0, plain: 0, requests: 0, requestErrors: 0, buckets: {} };
}

function add(into: EdgeCounters, from: EdgeCounters, withDenials = true): void {
  into.opened += from.opened;
  into.closed += from.closed;
  into.failed += withDenials ? from.failed : from.failed - from.denied;
  into.denied += withDenials ? from.denied : 0;
  into.sent += from.sent;
  into.recv += from.recv;
  into.mtls += from.mtls;
  into.plain += from.plain;
  into.requests += from.requests;
  into.requestErrors += from.requestErrors;
  for (const [le, n] of Object.entries(from.buckets)) into.buckets[le] = (into.buckets[le] ?? 0) + n;
}

const known = (v: string | undefined): v is string => v !== undefined && v !== '' && v !== 'unknown';

export const workloadId = (namespace: string, name: string): string => `wl:${namespace}/${name}`;
export const serviceId = (namespace: string, name: string): string => `svc:${namespace}/${name}`;
export const edgeId = (source: string, target: string): string => `${source}>${target}`;

/** The id of a service hostname (`name.namespace.svc.<domain>`), via the inventory when it is listed. */
export function serviceIdOf(hostname: string, inv: Inventory): string {
  const s = inv.services.find((x) => x.hostname === hostname);
  if (s) return serviceId(s.namespace, s.name);
  const [name, namespace] = hostname.split('.');
  return known(name) && known(namespace) ? serviceId(namespace, name) : `ext:${hostname}`;
}

/** One (source workload, destination workload) pair of a round with its cumulative counters. */
export interface PairAcc {
  source: string;
  target: string;
  service?: string;
  counters: EdgeCounters;
}

function sourceOf(l: Record<string, string>): string {
  return known(l.source_workload) && known(l.source_workload_namespace) ? workloadId(l.source_workload_namespace, l.source_workload) : 'ext:unknown';
}

function targetOf(l: Record<string, string>, inv: Inventory): string {
  if (known(l.destination_workload) && known(l.destination_workload_namespace)) return workloadId(l.destination_workload_namespace, l.destination_workload);
  if (known(l.destination_service)) return serviceIdOf(l.destination_service, inv);
  return 'ext:unknown';
}

function pairAcc(map: Map<string, PairAcc>, l: Record<string, string>, inv: Inventory): PairAcc {
  const source = sourceOf(l);
  const target = targetOf(l, inv);
  const key = edgeId(source, target);
  let acc = map.get(key);
  if (!acc) {
    acc = { source, target, counters: emptyCounters() };
    map.set(key, acc);
  }
  if (!acc.service && known(l.destination_service)) acc.service = l.destination_service;
  return acc;
}

/** Adds one L4 sample (istio_tcp_*) to its pair. */
function addTcp(acc: PairAcc, s: PromSample): void {
  const c = acc.counters;
  const v = Number.isFinite(s.value) ? s.value : 0;
  const secure = s.labels.connection_security_policy === 'mutual_tls';
  switch (s.name) {
    case 'istio_tcp_connections_opened_total':
      c.opened += v;
      if (secure) c.mtls += v;
      else c.plain += v;
      break;
    case 'istio_tcp_connections_closed_total':
      c.closed += v;
      break;
    case 'istio_tcp_connections_failed_total':
      c.failed += v;
      if (s.labels.response_flags === 'DENY') c.denied += v;
      if (secure) c.mtls += v;
      else c.plain += v;
      break;
    case 'istio_tcp_sent_bytes_total':
      c.sent += v;
      break;
    case 'istio_tcp_received_bytes_total':
      c.recv += v;
      break;
  }
}

const TCP = new Set(['istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total', 'istio_tcp_connections_failed_total', 'istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total']);

/** Adds one waypoint sample (istio_requests_total, istio_request_duration_milliseconds_bucket). */
function addHttp(acc: PairAcc, s: PromSample): void {
  const c = acc.counters;
  const v = Number.isFinite(s.value) ? s.value : 0;
  if (s.name === 'istio_requests_total') {
    c.requests += v;
    // An edge known only from a waypoint (a long-lived gRPC connection opened before the window) still shows its mTLS.
    if (s.labels.connection_security_policy === 'mutual_tls') c.mtls += v;
    else if (s.labels.connection_security_policy !== undefined) c.plain += v;
    const code = Number(s.labels.response_code);
    if (code >= 500 || code === 0 || (s.labels.response_flags !== undefined && s.labels.response_flags !== '-' && s.labels.response_flags !== '')) c.requestErrors += v;
    if (code === 403 || s.labels.response_flags === 'RBAC' || s.labels.response_flags === 'DENY') c.denied += v;
  } else if (s.name === 'istio_request_duration_milliseconds_bucket' && s.labels.le !== undefined) {
    c.buckets[s.labels.le] = (c.buckets[s.labels.le] ?? 0) + v;
  }
}

/**
 * The workload-to-workload pairs of one scrape round: L4 samples from every
 * agent (one reporter per pair, see the header), L7 samples from every
 * waypoint.
 */
export function pairsFromSamples(agentSamples: readonly PromSample[], waypointSamples: readonly PromSample[], inv: Inventory): PairAcc[] {
  const byReporter = { source: new Map<string, PairAcc>(), destination: new Map<string, PairAcc>() };
  for (const s of agentSamples) {
    if (!TCP.has(s.name)) continue;
    const r = s.labels.reporter === 'destination' ? 'destination' : 'source';
    addTcp(pairAcc(byReporter[r], s.labels, inv), s);
  }
  const pairs = new Map<string, PairAcc>();
  for (const [key, acc] of byReporter.destination) pairs.set(key, acc);
  for (const [key, acc] of byReporter.source) {
    const d = pairs.get(key);
    if (!d) pairs.set(key, acc);
    else if (!d.service && acc.service) d.service = acc.service;
  }
  const l7 = new Map<string, PairAcc>();
  for (const s of waypointSamples) {
    if (s.name !== 'istio_requests_total' && s.name !== 'istio_request_duration_milliseconds_bucket') continue;
    addHttp(pairAcc(l7, s.labels, inv), s);
  }
  for (const [key, acc] of l7) {
    const p = pairs.get(key);
    if (!p) pairs.set(key, acc);
    else {
      add(p.counters, { ...emptyCounters(), requests: acc.counters.requests, requestErrors: acc.counters.requestErrors, denied: acc.counters.denied, buckets: acc.counters.buckets });
      if (!p.service && acc.service) p.service = acc.service;
    }
  }
  return [...pairs.values()];
}

/**
 * Display edges: a pair addressed to a service becomes source -> service
 * (everything) and service -> workload (without denials); a pair without a
 * known service stays a direct edge. Edges sharing an id are summed.
 */
export function displayEdges(pairs: readonly PairAcc[], inv: Inventory): Map<string, EdgeObservation> {
  const out = new Map<string, EdgeObservation>();
  const put = (source: string, target: string, c: EdgeCounters, service: string | undefined, withDenials: boolean): void => {
    if (source === target) return;
    const id = edgeId(source, target);
    let e = out.get(id);
    if (!e) {
      e = { id, source, target, protocol: 'tcp', counters: emptyCounters(), ...(service ? { service } : {}) };
      out.set(id, e);
    }
    add(e.counters, c, withDenials);
    if (e.counters.requests > 0) e.protocol = 'http';
  };
  const waypoints = new Set(inv.workloads.filter((w) => w.waypoint).map((w) => workloadId(w.namespace, w.name)));
  for (const p of pairs) {
    const svc = p.service ? serviceIdOf(p.service, inv) : undefined;
    // A waypoint's own upstream connections go straight to the workload: drawn through the service they would loop back (service -> waypoint -> service).
    if (svc && svc !== p.target && !waypoints.has(p.source)) {
      put(p.source, svc, p.counters, p.service, true);
      put(svc, p.target, p.counters, p.service, false);
    } else {
      put(p.source, p.target, p.counters, p.service, true);
    }
  }
  return out;
}

/** Node descriptions for every id seen in edges plus every workload and service of the inventory. */
export function graphNodes(edges: Iterable<EdgeObservation>, inv: Inventory): GraphNodeInfo[] {
  const nodes = new Map<string, GraphNodeInfo>();
  for (const w of inv.workloads) {
    const id = workloadId(w.namespace, w.name);
    nodes.set(id, {
      id,
      kind: w.waypoint ? 'waypoint' : 'workload',
      namespace: w.namespace,
      name: w.name,
      ...(w.app ? { app: w.app } : {}),
      ...(w.version ? { version: w.version } : {}),
      ...(w.node ? { node: w.node } : {}),
    });
  }
  for (const s of inv.services) nodes.set(serviceId(s.namespace, s.name), { id: serviceId(s.namespace, s.name), kind: 'service', namespace: s.namespace, name: s.name });
  for (const e of edges) {
    for (const id of [e.source, e.target]) {
      if (nodes.has(id)) continue;
      const [kind, rest = ''] = id.split(':', 2) as [string, string | undefined];
      const slash = rest.indexOf('/');
      const namespace = slash >= 0 ? rest.slice(0, slash) : '';
      const name = slash >= 0 ? rest.slice(slash + 1) : rest;
      nodes.set(id, { id, kind: kind === 'wl' ? 'workload' : kind === 'svc' ? 'service' : 'external', namespace, name });
    }
  }
  return [...nodes.values()];
}

/** The q-quantile (0..1) of a cumulative histogram given as upper bound -> count (Prometheus histogram_quantile). */
export function histogramQuantile(q: number, buckets: Readonly<Record<string, number>>): number | undefined {
  const rows = Object.entries(buckets)
    .map(([le, n]) => ({ le: le === '+Inf' ? Infinity : Number(le), n }))
    .filter((r) => !Number.isNaN(r.le))
    .sort((a, b) => a.le - b.le);
  const total = rows.at(-1)?.n ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevN = 0;
  for (const r of rows) {
    if (r.n >= rank) {
      if (r.le === Infinity) return prevLe;
      const inBucket = r.n - prevN;
      return inBucket <= 0 ? r.le : prevLe + (r.le - prevLe) * ((rank - prevN) / inBucket);
    }
    prevLe = r.le;
    prevN = r.n;
  }
  return prevLe;
}
