/**
 * Waypoint lookups over one cluster view (reference ztunnel.md §1 row 7,
 * waypoint-and-l7.md §1.2). A GatewayAddress names a waypoint by its
 * Service VIP (or a workload IP) or by namespace/hostname; this resolves it
 * to the waypoint's workloads (the pods that may be dialled, with health),
 * their SPIFFE identities (the only peers a waypoint-protected destination
 * accepts) and every address that belongs to it (so traffic to the waypoint
 * itself is never re-routed). Views are immutable, so results are cached
 * per view and per reference.
 */
import type { ClusterState, Endpoint } from './cluster-state.js';
import type { LocalGatewayAddress, LocalService, LocalWorkload } from './local-config.js';

export interface ResolvedWaypoint {
  /** `namespace/name` for logs, metrics and refusals. */
  readonly name: string;
  readonly hboneMtlsPort: number;
  /** The waypoint's Service, when the reference names one. */
  readonly service?: LocalService;
  /** Every waypoint workload (healthy or not); `port` is the HBONE port. */
  readonly endpoints: readonly Endpoint[];
  /** SPIFFE ids of the waypoint workloads. */
  readonly identities: ReadonlySet<string>;
  /** VIPs and pod IPs of the waypoint. */
  readonly addresses: ReadonlySet<string>;
}

const cache = new WeakMap<ClusterState, Map<string, ResolvedWaypoint>>();
const waypointPods = new WeakMap<ClusterState, ReadonlyMap<string, string>>();

function keyOf(g: LocalGatewayAddress): string {
  return g.kind === 'address' ? `a|${g.ip}|${g.hboneMtlsPort}` : `h|${g.namespace}|${g.hostname}|${g.hboneMtlsPort}`;
}

function serviceWorkloads(state: ClusterState, svc: LocalService, hbonePort: number): Endpoint[] {
  if (svc.endpoints) {
    const out: Endpoint[] = [];
    for (const ep of svc.endpoints) {
      const workload = state.workloadByUid(ep.uid);
      if (workload) out.push({ workload, port: hbonePort, healthy: ep.healthy });
    }
    return out;
  }
  return state.endpoints(svc, { port: hbonePort, targetPort: hbonePort, protocol: 'TCP' });
}

/** What a GatewayAddress points at in this view; an unknown reference gives a waypoint with no endpoints. */
export function resolveWaypoint(state: ClusterState, g: LocalGatewayAddress): ResolvedWaypoint {
  let perView = cache.get(state);
  if (!perView) cache.set(state, (perView = new Map()));
  const key = keyOf(g);
  const hit = perView.get(key);
  if (hit) return hit;
  let service: LocalService | undefined;
  let endpoints: Endpoint[] = [];
  let name: string;
  if (g.kind === 'address') {
    service = state.serviceByVip(g.ip);
    const w = service ? undefined : state.workloadByIp(g.ip);
    if (w) endpoints = [{ workload: w, port: g.hboneMtlsPort, healthy: true }];
    name = service ? `${service.namespace}/${service.name}` : w ? `${w.namespace}/${w.name}` : g.ip;
  } else {
    service = state.serviceByHostname(g.namespace, g.hostname);
    name = service ? `${service.namespace}/${service.name}` : `${g.namespace}/${g.hostname.split('.')[0] ?? g.hostname}`;
  }
  if (service) endpoints = serviceWorkloads(state, service, g.hboneMtlsPort);
  const resolved: ResolvedWaypoint = {
    name,
    hboneMtlsPort: g.hboneMtlsPort,
    ...(service ? { service } : {}),
    endpoints,
    identities: new Set(endpoints.map((e) => state.identityOf(e.workload))),
    addresses: new Set([...(service?.vips ?? []), ...(g.kind === 'address' ? [g.ip] : []), ...endpoints.map((e) => e.workload.ip)]),
  };
  perView.set(key, resolved);
  return resolved;
}

/** True when `w` is one of the waypoint's own workloads. */
export function isWaypointMember(wp: ResolvedWaypoint, w: LocalWorkload): boolean {
  return wp.endpoints.some((e) => e.workload.uid === w.uid);
}

/** Every workload serving as a waypoint for something in this view: uid -> the waypoint's `namespace/name`. */
export function waypointWorkloads(state: ClusterState): ReadonlyMap<string, string> {
  const hit = waypointPods.get(state);
  if (hit) return hit;
  const refs = new Map<string, LocalGatewayAddress>();
  for (const w of state.config.workloads) if (w.waypoint) refs.set(keyOf(w.waypoint), w.waypoint);
  for (const s of state.config.services) if (s.waypoint) refs.set(keyOf(s.waypoint), s.waypoint);
  const out = new Map<string, string>();
  for (const g of refs.values()) {
    const wp = resolveWaypoint(state, g);
    for (const e of wp.endpoints) out.set(e.workload.uid, wp.name);
  }
  waypointPods.set(state, out);
  return out;
}

/** Why a destination must be reached through a waypoint, and which one. */
export interface WaypointRequirement {
  readonly waypoint: ResolvedWaypoint;
  readonly because: 'workload' | 'service-authority';
}

/**
 * Whether inbound traffic to local workload `w` (CONNECT authority host
 * `authorityHost`, when HBONE) must come from a waypoint:
 * - `w` has a workload waypoint (waypoint-for workload|all), unless `w` is
 *   itself one of that waypoint's pods;
 * - or the authority is a Service VIP whose Service has a waypoint (a client
 *   crafting the VIP to skip the waypoint).
 * A service-only waypoint does not cover pod-IP traffic (as in Istio).
 */
export function waypointRequirement(state: ClusterState, w: LocalWorkload, authorityHost?: string): WaypointRequirement | undefined {
  if (w.waypoint) {
    const wp = resolveWaypoint(state, w.waypoint);
    if (!isWaypointMember(wp, w)) return { waypoint: wp, because: 'workload' };
  }
  if (authorityHost !== undefined && authorityHost !== w.ip) {
    const svc = state.serviceByVip(authorityHost);
    if (svc?.waypoint) {
      const wp = resolveWaypoint(state, svc.waypoint);
      if (!isWaypointMember(wp, w) && !(wp.service && wp.service === svc)) return { waypoint: wp, because: 'service-authority' };
    }
  }
  return undefined;
}
