/**
 * The waypoints' L7 config: for each Gateway of class istio-waypoint
 * `<ns>/<name>`, one compileL7Config input (served as one
 * ambit.l7.v1.L7Config resource named `<ns>/<name>`).
 *
 * - services: every Service / ServiceEntry host bound to the waypoint for
 *   `service` traffic (istio.io/use-waypoint, as for node agents), one
 *   entry per TCP port, protocol grpc / tcp / http from appProtocol or the
 *   port name.
 * - routes, in this order of preference: Gateway API routes attached to the
 *   service (parentRef Service/ServiceEntry in the service's namespace, or
 *   the waypoint Gateway itself, filtered by hostnames), else the first
 *   VirtualService whose hosts cover the service, else one default route to
 *   the service's own cluster. Both an HTTPRoute and a VirtualService for one
 *   service: the HTTPRoute wins, noted (Istio leaves mixing undefined).
 *   `tcp` ports always get the default route.
 * - clusters: built on demand by the routes (l7-destination-rule.ts).
 * - authorization / requestAuthentication: policies attached by targetRefs.
 * - workloads: pods and WorkloadEntries bound to the waypoint for
 *   `workload` traffic (waypoint-for workload|all).
 *
 * Each config is checked with the waypoint's own compileL7Config; one that
 * does not compile is reported in `rejected` (and a note) so the server
 * keeps serving the previous one. Everything unsupported is a note, never
 * an exception.
 */
import { compileL7Config } from '../waypoint/config.js';
import { WaypointConfigError } from '../waypoint/errors.js';
import type { Resource } from './kinds.js';
import type { GRPCRouteSpec, GwParentRef, HTTPRouteSpec } from './kinds-gateway-api.js';
import type { VirtualServiceSpec } from './kinds-istio-networking.js';
import { L7Catalog, serviceProtocol, type CatalogService } from './l7-catalog.js';
import { ClusterBuilder } from './l7-destination-rule.js';
import { gatewayApiRoutes, type AttachedRoute, type L7Context } from './l7-gateway-api.js';
import type { L7ConfigInput, RouteInput, ServiceInput, WorkloadInput } from './l7-input.js';
import { securityFor, unattachedPolicyNotes } from './l7-security.js';
import { virtualServiceRoutes } from './l7-virtual-service.js';
import type { ResourceSnapshot } from './resource-store.js';
import { DEFAULT_TRANSLATE_OPTIONS, waypointIndex, type TranslateOptions, type Translation, type WaypointInfo } from './translate.js';
import { bytesToIp } from '../workload-api/ip.js';

export interface L7Translation {
  /** compileL7Config input by waypoint `<ns>/<name>`, only for configs that compile. */
  readonly configs: Map<string, L7ConfigInput>;
  /** Waypoints whose generated config does not compile, with the reason (serve the previous one). */
  readonly rejected: Map<string, string>;
  /** Non-fatal notes (unsupported fields, unresolvable references...). */
  readonly notes: string[];
}

const GATEWAY_GROUP = 'gateway.networking.k8s.io';

function isServiceParent(p: GwParentRef): boolean {
  return (p.group === '' || p.group === 'core') && p.kind === 'Service';
}
function isServiceEntryParent(p: GwParentRef): boolean {
  return p.group === 'networking.istio.io' && p.kind === 'ServiceEntry';
}
function isGatewayParent(p: GwParentRef): boolean {
  return p.group === GATEWAY_GROUP && p.kind === 'Gateway';
}

export function translateL7(snap: ResourceSnapshot, t: Translation, options: Partial<TranslateOptions> = {}): L7Translation {
  const o: TranslateOptions = { ...DEFAULT_TRANSLATE_OPTIONS, ...options };
  const notes: string[] = [];
  const waypoints = waypointIndex(snap, o);
  const catalog = new L7Catalog(snap, t, o, waypoints);
  const httpRoutes = snap.list<HTTPRouteSpec>('HTTPRoute.gateway.networking.k8s.io');
  const grpcRoutes = snap.list<GRPCRouteSpec>('GRPCRoute.gateway.networking.k8s.io');
  const routes: AttachedRoute[] = [...httpRoutes.map((resource) => ({ kind: 'HTTPRoute' as const, resource })), ...grpcRoutes.map((resource) => ({ kind: 'GRPCRoute' as const, resource }))];
  const virtualServices = snap.list<VirtualServiceSpec>('VirtualService.networking.istio.io').filter((vs) => vs.spec.gateways.length === 0 || vs.spec.gateways.includes('mesh'));

  notes.push(...routeParentNotes(routes, catalog, waypoints.waypoints), ...unattachedPolicyNotes(snap));
  for (const vs of virtualServices) if (vs.spec.unsupported.length > 0) notes.push(`VirtualService ${vs.namespace}/${vs.name}: ${vs.spec.unsupported.join(', ')} routes are not applied by the waypoint (http only)`);

  const workloads = workloadsByWaypoint(t, waypoints, o.trustDomain);
  const configs = new Map<string, L7ConfigInput>();
  const rejected = new Map<string, string>();
  for (const wp of [...waypoints.waypoints.values()].sort((a, b) => (a.key < b.key ? -1 : 1))) {
    const clusters = new ClusterBuilder(snap, catalog, o.rootNamespace, notes);
    const ctx: L7Context = { catalog, clusters, notes };
    const services: ServiceInput[] = [];
    for (const svc of catalog.services.filter((s) => s.waypoint === wp.key)) {
      for (const p of svc.ports) {
        const protocol = serviceProtocol(p);
        const own = clusters.clusterFor(svc, p.port);
        const ownName = 'name' in own ? own.name : '';
        const defaultRoute: RouteInput = { name: 'default', backends: [{ cluster: ownName, weight: 1 }] };
        const attached = routes.filter((r) => attaches(r, svc, p.port, wp, catalog));
        const vs = virtualServices.filter((v) => v.spec.hosts.some((h) => catalog.hostCovers(h, v.namespace, svc)));
        const where = `${svc.hostname}:${p.port}`;
        let svcRoutes: RouteInput[];
        if (protocol === 'tcp') {
          if (attached.length > 0 || vs.length > 0) notes.push(`${where} is a TCP port (appProtocol or port name); HTTP routes for it are not applied`);
          svcRoutes = [defaultRoute];
        } else if (attached.length > 0) {
          if (vs.length > 0) notes.push(`${where}: both Gateway API routes and VirtualService ${vs.map((v) => `${v.namespace}/${v.name}`).join(', ')} apply; the Gateway API routes are used (mixing is undefined in Istio)`);
          svcRoutes = gatewayApiRoutes(ctx, svc, p.port, attached);
        } else if (vs.length > 0) {
          const chosen = vs[0] as Resource<VirtualServiceSpec>;
          if (vs.length > 1) notes.push(`${where}: several VirtualServices apply (${vs.map((v) => `${v.namespace}/${v.name}`).join(', ')}); only ${chosen.namespace}/${chosen.name} is used`);
          svcRoutes = virtualServiceRoutes(ctx, chosen, svc, p.port);
        } else svcRoutes = [defaultRoute];
        const sec = securityFor(snap, wp, svc, p.port, o.rootNamespace, notes);
        services.push({
          hostname: svc.hostname,
          namespace: svc.namespace,
          addresses: [...svc.addresses],
          port: p.port,
          protocol,
          routes: svcRoutes,
          authorization: sec.authorization,
          requestAuthentication: sec.requestAuthentication,
        });
      }
    }
    const config: L7ConfigInput = { services, clusters: clusters.list(), workloads: workloads.get(wp.key) ?? [] };
    try {
      compileL7Config(config);
      configs.set(wp.key, config);
    } catch (err) {
      if (!(err instanceof WaypointConfigError)) throw err;
      const reason = err.message;
      rejected.set(wp.key, reason);
      notes.push(`waypoint ${wp.key}: the generated L7 config is invalid (${reason}); the previous config stays served`);
    }
  }
  return { configs, rejected, notes: [...new Set(notes)] };
}

/** Whether route `r` applies to service `svc` port `port` on waypoint `wp`. */
function attaches(r: AttachedRoute, svc: CatalogService, port: number, wp: WaypointInfo, catalog: L7Catalog): boolean {
  const res = r.resource;
  return res.spec.parentRefs.some((p) => {
    if (isServiceParent(p) || isServiceEntryParent(p)) {
      const kind = isServiceParent(p) ? 'Service' : 'ServiceEntry';
      return svc.kind === kind && p.name === svc.name && p.namespace === svc.namespace && res.namespace === svc.namespace && (p.port === undefined || p.port === port);
    }
    if (isGatewayParent(p) && p.name === wp.name && p.namespace === wp.namespace && res.namespace === wp.namespace) {
      const hosts = res.spec.hostnames;
      return hosts.length === 0 || hosts.some((h) => h === svc.hostname || (h.startsWith('*.') && svc.hostname.endsWith(h.slice(1))) || catalog.resolveHost(h, svc.namespace) === svc);
    }
    return false;
  });
}

/** Notes for routes whose parents cannot take effect on a waypoint. */
function routeParentNotes(routes: readonly AttachedRoute[], catalog: L7Catalog, waypoints: ReadonlyMap<string, WaypointInfo>): string[] {
  const out: string[] = [];
  for (const r of routes) {
    const res = r.resource;
    res.spec.parentRefs.forEach((p, i) => {
      const what = `${r.kind} ${res.namespace}/${res.name} parentRefs[${i}]`;
      if (isServiceParent(p) || isServiceEntryParent(p)) {
        const svcs = catalog.byObject(isServiceParent(p) ? 'Service' : 'ServiceEntry', p.namespace, p.name);
        if (svcs.length === 0) out.push(`${what}: ${p.kind} ${p.namespace}/${p.name} does not exist`);
        else if (p.namespace !== res.namespace) out.push(`${what}: a route for a ${p.kind} in another namespace (a "consumer" route) is not applied by waypoints`);
        else if (svcs.every((s) => s.waypoint === undefined)) out.push(`${what}: ${p.kind} ${p.namespace}/${p.name} is not bound to a waypoint (istio.io/use-waypoint); the route has no effect`);
      } else if (isGatewayParent(p)) {
        const wp = waypoints.get(`${p.namespace}/${p.name}`);
        if (!wp) return; // an ingress Gateway's route: not ours
        if (p.namespace !== res.namespace) out.push(`${what}: a route in another namespace than waypoint ${wp.key} is not applied (Gateway allowedRoutes are not evaluated; only Same)`);
      } else out.push(`${what}: parent kind ${p.kind}.${p.group} is not supported`);
    });
  }
  return out;
}

/** Pods and WorkloadEntries bound to each waypoint for `workload` traffic. */
function workloadsByWaypoint(t: Translation, idx: ReturnType<typeof waypointIndex>, trustDomain: string): Map<string, WorkloadInput[]> {
  const out = new Map<string, WorkloadInput[]>();
  const seen = new Set<string>();
  for (const [uid, a] of [...t.addresses].sort(([x], [y]) => (x < y ? -1 : 1))) {
    if (a.type !== 'workload') continue;
    const meta = t.workloadMeta.get(uid);
    if (!meta || (meta.kind !== 'Pod' && meta.kind !== 'WorkloadEntry')) continue;
    if (meta.labels['gateway.networking.k8s.io/gateway-name'] !== undefined) continue;
    const w = a.workload;
    const wp = idx.bindingFor(meta.labels, w.namespace ?? '').waypoint;
    if (!wp || !wp.forKinds.has('workload')) continue;
    let list = out.get(wp.key);
    if (!list) out.set(wp.key, (list = []));
    for (const raw of w.addresses ?? []) {
      const address = bytesToIp(raw);
      if (address === undefined || seen.has(`${wp.key}/${address}`)) continue;
      seen.add(`${wp.key}/${address}`);
      list.push({ address, principal: `spiffe://${w.trustDomain || trustDomain}/ns/${w.namespace ?? ''}/sa/${w.serviceAccount || 'default'}`, namespace: w.namespace ?? '', name: w.name ?? '' });
    }
  }
  return out;
}
