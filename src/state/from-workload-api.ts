/**
 * The workload API (xDS) state as the cluster view the data plane reads.
 * The agent's routing, inbound and telemetry code was written against
 * ClusterState; this keeps it unchanged whether the view comes from a file
 * or from the control plane. Runs on every applied xDS change: O(workloads +
 * services), which is fine at lab scale and measured by the control-plane
 * bench at 10,000 pods.
 *
 * What the wire does not carry comes from `local`: the network namespace of
 * each pod (known to the CNI / the lab, never sent by istiod) and the nodes.
 */
import { bytesToIp } from '../workload-api/ip.js';
import type { GatewayAddress, LoadBalancing, Service, Workload } from '../workload-api/types.js';
import type { WorkloadStoreSnapshot } from '../workload-api/store.js';
import type { LocalClusterConfig, LocalEndpoint, LocalGatewayAddress, LocalityScope, LocalLoadBalancing, LocalNode, LocalService, LocalWorkload } from './local-config.js';

export interface LocalFacts {
  readonly trustDomain: string;
  readonly clusterDomain: string;
  readonly nodes: readonly LocalNode[];
  /** `namespace/name` -> netns path, for the pods this node's CNI knows. */
  readonly netnsByPod: ReadonlyMap<string, string>;
}

function serviceKey(s: Service): string {
  return `${s.namespace ?? ''}/${s.hostname ?? ''}`;
}

function toLoadBalancing(lb: LoadBalancing): LocalLoadBalancing {
  const scopes = (lb.routingPreference ?? []).filter((p): p is LocalityScope => p !== 'UNSPECIFIED_SCOPE');
  const mode = lb.mode === 'STRICT' || lb.mode === 'FAILOVER' || lb.mode === 'PASSTHROUGH' ? lb.mode : 'UNSPECIFIED';
  return { routingPreference: scopes, mode, healthPolicy: lb.healthPolicy === 'ALLOW_ALL' ? 'ALLOW_ALL' : 'ONLY_HEALTHY' };
}

/** GatewayAddress -> the local form; undefined when neither an address nor a hostname is usable. */
export function toGatewayAddress(g: GatewayAddress | undefined): LocalGatewayAddress | undefined {
  if (!g) return undefined;
  const hboneMtlsPort = g.hboneMtlsPort || 15008;
  if (g.address?.address) {
    const ip = bytesToIp(g.address.address);
    return ip ? { kind: 'address', ip, hboneMtlsPort } : undefined;
  }
  if (g.hostname?.hostname) return { kind: 'hostname', namespace: g.hostname.namespace ?? '', hostname: g.hostname.hostname, hboneMtlsPort };
  return undefined;
}

function toWorkload(w: Workload, facts: LocalFacts): LocalWorkload | undefined {
  const first = w.addresses?.[0];
  const ip = first ? bytesToIp(first) : undefined;
  if (!ip || !w.uid || !w.name || !w.namespace) return undefined;
  const netns = facts.netnsByPod.get(`${w.namespace}/${w.name}`);
  const waypoint = toGatewayAddress(w.waypoint);
  // Istio sends no pod labels; telemetry's canonical service and version come from these.
  const labels: Record<string, string> = {};
  if (w.canonicalName) labels.app = w.canonicalName;
  if (w.canonicalRevision) labels.version = w.canonicalRevision;
  return {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    serviceAccount: w.serviceAccount || 'default',
    node: w.node ?? '',
    ip,
    labels,
    tunnelProtocol: w.tunnelProtocol === 'HBONE' ? 'HBONE' : 'NONE',
    ...(w.capacity?.value !== undefined ? { capacity: w.capacity.value } : {}),
    ...(w.locality ? { locality: { region: w.locality.region ?? '', zone: w.locality.zone ?? '', subzone: w.locality.subzone ?? '' } } : {}),
    ...(w.authorizationPolicies && w.authorizationPolicies.length > 0 ? { authorizationPolicies: [...w.authorizationPolicies] } : {}),
    ...(netns !== undefined ? { netns } : {}),
    ...(waypoint ? { waypoint } : {}),
  };
}

export function clusterConfigFromWorkloadApi(snap: WorkloadStoreSnapshot, facts: LocalFacts): LocalClusterConfig {
  const workloads: LocalWorkload[] = [];
  const endpoints = new Map<string, LocalEndpoint[]>();
  for (const w of snap.workloads) {
    const lw = toWorkload(w, facts);
    if (!lw) continue;
    workloads.push(lw);
    for (const [key, list] of Object.entries(w.services ?? {})) {
      const ports: Record<number, number> = {};
      for (const p of list.ports ?? []) if (p.servicePort) ports[p.servicePort] = p.targetPort ?? 0;
      let eps = endpoints.get(key);
      if (!eps) endpoints.set(key, (eps = []));
      eps.push({ uid: lw.uid, ports, healthy: w.status !== 'UNHEALTHY' });
    }
  }
  const services: LocalService[] = snap.services.map((s) => {
    const waypoint = toGatewayAddress(s.waypoint);
    return {
      name: s.name ?? '',
      namespace: s.namespace ?? '',
      hostname: s.hostname ?? '',
      vips: (s.addresses ?? []).map((a) => (a.address ? bytesToIp(a.address) : undefined)).filter((ip): ip is string => ip !== undefined),
      ports: (s.ports ?? []).map((p) => ({ port: p.servicePort ?? 0, targetPort: p.targetPort || p.servicePort || 0, protocol: 'TCP' as const })),
      selector: {},
      endpoints: endpoints.get(serviceKey(s)) ?? [],
      ...(s.loadBalancing ? { loadBalancing: toLoadBalancing(s.loadBalancing) } : {}),
      ...(waypoint ? { waypoint } : {}),
    };
  });
  return { trustDomain: facts.trustDomain, clusterDomain: facts.clusterDomain, nodes: facts.nodes, workloads, services, policies: snap.policies };
}
