/**
 * Outbound routing: where a connection from a local workload to `host:port`
 * goes. Pure (randomness injected) so every branch is unit-tested.
 *   mesh workload IP          ─► HBONE to <pod ip>:15008, authority <pod ip>:<port>
 *   service VIP / name + port ─► pick an endpoint ─► as above (or passthrough
 *                                 when the endpoint is not in the mesh)
 *   anything else             ─► passthrough (plain TCP to the original destination)
 * Waypoints (ztunnel.md §1 row 7): a service with a waypoint sends its
 * service-addressed traffic to a waypoint pod (authority stays VIP:port);
 * a workload with a waypoint, reached by pod IP or picked as a service
 * endpoint, gets it through its waypoint (authority podIP:port). Traffic
 * from a waypoint pod, or to the waypoint's own service or pods, is never
 * re-routed. No ready waypoint pod refuses the connection (fail closed).
 */
import { isIP } from 'node:net';
import { formatAuthority } from '../hbone/authority.js';
import { HBONE_PORT } from '../hbone/settings.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { LocalGatewayAddress, LocalService, LocalWorkload } from '../state/local-config.js';
import { isWaypointMember, resolveWaypoint } from '../state/waypoint.js';
import { NoHealthyUpstreamError, UnresolvableHostError, WaypointUnavailableError } from './errors.js';
import { eligibleEndpoints, pickWeighted } from './load-balance.js';

export type OutboundRoute =
  | {
      kind: 'hbone';
      /** The peer's HBONE endpoint. */
      hboneHost: string;
      hbonePort: number;
      /** CONNECT :authority, the final target ip:port. */
      authority: string;
      dstIdentity: string;
      dstWorkload: LocalWorkload;
      service?: LocalService;
      /** Set when the hop is a waypoint: its `namespace/name` (dstWorkload is then the waypoint pod). */
      waypoint?: string;
    }
  | { kind: 'passthrough'; host: string; port: number; dstWorkload?: LocalWorkload; service?: LocalService }
  | { kind: 'refuse'; error: Error; waypoint?: string };

export function routeOutbound(state: ClusterState, src: LocalWorkload, host: string, port: number, random: () => number = Math.random): OutboundRoute {
  let service: LocalService | undefined;
  let dst: { workload?: LocalWorkload; ip: string; port: number };
  if (isIP(host) === 0) {
    service = state.serviceByName(host, src.namespace);
    if (service?.waypoint) {
      const vip = service.vips[0];
      const via = viaWaypoint(state, src, service.waypoint, vip !== undefined ? formatAuthority(vip, port) : `${service.hostname}:${port}`, service, service, random);
      if (via) return via;
    }
    if (!service) {
      const w = state.config.workloads.find((x) => x.name === host && x.namespace === src.namespace);
      if (!w) return { kind: 'refuse', error: new UnresolvableHostError(host) };
      dst = { workload: w, ip: w.ip, port };
    } else {
      const picked = pickEndpoint(state, service, port, src, random);
      if (picked instanceof Error) return { kind: 'refuse', error: picked };
      dst = picked;
    }
  } else {
    service = state.serviceByVip(host);
    if (service?.waypoint) {
      const via = viaWaypoint(state, src, service.waypoint, formatAuthority(host, port), service, service, random);
      if (via) return via;
    }
    if (service?.loadBalancing?.mode === 'PASSTHROUGH') {
      // No balancing by the mesh: the connection goes to the address it was sent to.
      return { kind: 'passthrough', host, port, service };
    }
    if (service) {
      const picked = pickEndpoint(state, service, port, src, random);
      if (picked instanceof Error) return { kind: 'refuse', error: picked };
      dst = picked;
    } else {
      const workload = state.workloadByIp(host);
      dst = { ...(workload ? { workload } : {}), ip: host, port };
    }
  }
  const w = dst.workload;
  if (w?.waypoint) {
    // Pod-addressed, or the endpoint a service without a waypoint picked: the workload's own waypoint.
    const via = viaWaypoint(state, src, w.waypoint, formatAuthority(w.ip, dst.port), w, service, random);
    if (via) return via;
  }
  if (!w || w.tunnelProtocol === 'NONE') {
    return { kind: 'passthrough', host: dst.ip, port: dst.port, ...(w ? { dstWorkload: w } : {}), ...(service ? { service } : {}) };
  }
  return {
    kind: 'hbone',
    hboneHost: w.ip,
    hbonePort: HBONE_PORT,
    authority: formatAuthority(w.ip, dst.port),
    dstIdentity: state.identityOf(w),
    dstWorkload: w,
    ...(service ? { service } : {}),
  };
}

/**
 * The route through a waypoint, or undefined when this traffic must not be
 * re-routed: it comes from the waypoint, or goes to the waypoint itself.
 */
function viaWaypoint(
  state: ClusterState,
  src: LocalWorkload,
  ref: LocalGatewayAddress,
  authority: string,
  target: LocalService | LocalWorkload,
  service: LocalService | undefined,
  random: () => number,
): OutboundRoute | undefined {
  const wp = resolveWaypoint(state, ref);
  if (isWaypointMember(wp, src)) return undefined;
  if ('vips' in target ? wp.service === target || target.vips.some((v) => wp.addresses.has(v)) : wp.addresses.has(target.ip)) return undefined;
  const ep = pickWeighted(eligibleEndpoints(wp.endpoints, src, wp.service?.loadBalancing), random);
  if (!ep) return { kind: 'refuse', error: new WaypointUnavailableError(wp.name, wp.endpoints.length), waypoint: wp.name };
  return {
    kind: 'hbone',
    hboneHost: ep.workload.ip,
    hbonePort: wp.hboneMtlsPort,
    authority,
    dstIdentity: state.identityOf(ep.workload),
    dstWorkload: ep.workload,
    ...(service ? { service } : {}),
    waypoint: wp.name,
  };
}

function pickEndpoint(state: ClusterState, svc: LocalService, port: number, src: LocalWorkload, random: () => number): { workload: LocalWorkload; ip: string; port: number } | Error {
  const svcPort = svc.ports.find((p) => p.port === port && p.protocol === 'TCP');
  if (!svcPort) return new NoHealthyUpstreamError(`${svc.hostname}:${port}`);
  const all = state.endpoints(svc, svcPort, { includeUnhealthy: true });
  const ep = pickWeighted(eligibleEndpoints(all, src, svc.loadBalancing), random);
  if (!ep) return new NoHealthyUpstreamError(`${svc.hostname}:${port}`, all.length);
  return { workload: ep.workload, ip: ep.workload.ip, port: ep.port };
}
