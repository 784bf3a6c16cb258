/**
 * Pure translation from a resource snapshot to what the node agents are
 * served: `istio.workload.Address` (workloads and services, named by uid and
 * `namespace/hostname`) and `istio.security.Authorization` (named
 * `namespace/name`), following what istiod does for ambient mode:
 *
 * - Pod -> Workload uid `<clusterId>//Pod/<ns>/<name>`; HBONE when the pod is
 *   in the mesh (namespace label istio.io/dataplane-mode=ambient, unless the
 *   pod opts out with dataplane-mode=none; or the pod opts in), else NONE.
 *   Pods without an IP are skipped (noted). Status from the Ready condition.
 * - Service -> Service `<name>.<ns>.svc.<clusterDomain>`; endpoints from the
 *   EndpointSlices of the service when there are any, else from its selector.
 * - ServiceEntry -> one Service per host; inline endpoints become workloads
 *   `<clusterId>/networking.istio.io/ServiceEntry/<ns>/<name>/<address>`;
 *   WorkloadEntry -> `<clusterId>/networking.istio.io/WorkloadEntry/<ns>/<name>`.
 * - istio.io/use-waypoint (object label, else namespace label; `none` turns
 *   it off; istio.io/use-waypoint-namespace for another namespace) names a
 *   Gateway of class istio-waypoint; it applies to services and/or workloads
 *   per the Gateway's istio.io/waypoint-for label (default `service`).
 *   waypointIndex() exports these binding rules for the waypoints' own L7
 *   config (translate-l7.ts).
 * - AuthorizationPolicy (ALLOW/DENY, not attached to a waypoint by
 *   targetRefs) -> Authorization; scope GLOBAL for the root namespace without
 *   selector, WORKLOAD_SELECTOR with a selector, else NAMESPACE. Rules with
 *   L7-only attributes: an ALLOW rule is dropped (allows less), a DENY rule
 *   loses the L7 parts (denies more). AUDIT and CUSTOM are not for node agents.
 * - PeerAuthentication: workloads whose effective mode is STRICT list
 *   `<root>/istio_converted_static_strict`, a WORKLOAD_SELECTOR DENY of
 *   connections without a peer identity (not_principals: presence); a
 *   workload policy with portLevelMtls becomes
 *   `<ns>/converted_peer_authentication_<name>` with per-port matches.
 */
import { isIP } from 'node:net';
import type {
  Address,
  AppProtocol,
  Authorization,
  Clause,
  CidrAddress,
  GatewayAddress,
  Locality,
  Match,
  NetworkAddress,
  Port,
  PortList,
  Rule,
  Service,
  StringMatch,
  Workload,
} from '../workload-api/types.js';
import { ipToBytes } from '../workload-api/ip.js';
import type {
  AuthorizationPolicySpec,
  AuthzCondition,
  AuthzOperation,
  AuthzSource,
  EndpointSliceSpec,
  GatewaySpec,
  MtlsMode,
  PeerAuthenticationSpec,
  PodSpec,
  Resource,
  ServiceEntrySpec,
  ServiceSpec,
  WorkloadEntrySpec,
} from './kinds.js';
import type { ResourceSnapshot } from './resource-store.js';

export interface TranslateOptions {
  /** Cluster id in uids and Workload.cluster_id; istiod's default is `Kubernetes`. */
  readonly clusterId: string;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** Policies here without a selector are GLOBAL; istiod's default is `istio-system`. */
  readonly rootNamespace: string;
  readonly network: string;
  /**
   * Fallback for pods without status.podIP (the lab plans pod IPs itself and
   * can answer here); without it such pods are skipped with a note.
   */
  readonly resolvePodIp?: (namespace: string, name: string) => string | undefined;
}

export const DEFAULT_TRANSLATE_OPTIONS: TranslateOptions = {
  clusterId: 'Kubernetes',
  trustDomain: 'cluster.local',
  clusterDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  network: '',
};

export const STATIC_STRICT_POLICY_NAME = 'istio_converted_static_strict';
export const CONVERTED_PEER_AUTHENTICATION_PREFIX = 'converted_peer_authentication_';
export const WAYPOINT_CLASS = 'istio-waypoint';
export const HBONE_PORT = 15008;

/** Things a lab enroller needs that are not on the wire. */
export interface WorkloadMeta {
  readonly kind: 'Pod' | 'WorkloadEntry' | 'ServiceEntry' | 'EndpointSlice';
  readonly labels: Readonly<Record<string, string>>;
  /** Pod annotation `ambit.dev/netns`. */
  readonly netns?: string;
}

export interface Translation {
  /** By resource name: workload uid or `namespace/hostname`. */
  readonly addresses: Map<string, Address>;
  /** By `namespace/name`. */
  readonly authorizations: Map<string, Authorization>;
  /** By workload uid. */
  readonly workloadMeta: Map<string, WorkloadMeta>;
  /** Non-fatal notes (skipped pods, dropped rules...), for status and debug logs. */
  readonly notes: string[];
}

type Labels = Readonly<Record<string, string>>;

function matches(selector: Labels, labels: Labels): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

interface Candidate {
  uid: string;
  namespace: string;
  labels: Labels;
  /** Resolves a service target port (number or name) for this workload; undefined when it does not expose it. */
  resolvePort(target: number | string): number | undefined;
  workload: Workload;
}

export function translate(snap: ResourceSnapshot, options: Partial<TranslateOptions> = {}): Translation {
  const o: TranslateOptions = { ...DEFAULT_TRANSLATE_OPTIONS, ...options };
  const out: Translation = { addresses: new Map(), authorizations: new Map(), workloadMeta: new Map(), notes: [] };
  const nsLabels = new Map(snap.list('Namespace').map((n) => [n.name, n.labels]));
  const nodeLocality = new Map(snap.list('Node').map((n) => [n.name, localityFromLabels(n.labels)]));
  const svcHost = (name: string, ns: string): string => `${name}.${ns}.svc.${o.clusterDomain}`;
  const netAddr = (ip: string, length?: number): NetworkAddress => ({ network: o.network, address: ipToBytes(ip) as Uint8Array, ...(length !== undefined ? { length } : {}) });

  // Waypoints.
  const waypoints = waypointIndex(snap, o);
  const waypointFor = (labels: Labels, namespace: string, kind: 'service' | 'workload', what: string): GatewayAddress | undefined => {
    const b = waypoints.bindingFor(labels, namespace);
    if (b.missing !== undefined) {
      out.notes.push(`${what}: waypoint ${b.missing} (istio.io/use-waypoint) is not a Gateway of class ${WAYPOINT_CLASS}; no waypoint is set`);
      return undefined;
    }
    // A namespace-wide label only covers the kinds the waypoint is for; an explicit object label too.
    return b.waypoint?.forKinds.has(kind) ? b.waypoint.address : undefined;
  };
  const inMesh = (labels: Labels, namespace: string): boolean => {
    const own = labels['istio.io/dataplane-mode'];
    if (own === 'none') return false;
    if (own === 'ambient') return true;
    return (nsLabels.get(namespace) ?? {})['istio.io/dataplane-mode'] === 'ambient';
  };

  // Workload candidates: pods, workload entries, service entry endpoints.
  const candidates: Candidate[] = [];
  for (const pod of snap.list<PodSpec>('Pod')) {
    const what = `Pod ${pod.namespace}/${pod.name}`;
    const fallbackIp = pod.spec.podIPs.length === 0 ? o.resolvePodIp?.(pod.namespace, pod.name) : undefined;
    const podIPs = fallbackIp !== undefined && ipToBytes(fallbackIp) !== undefined ? [fallbackIp] : pod.spec.podIPs;
    if (podIPs.length === 0) {
      out.notes.push(`${what}: no status.podIP yet; not served until it has one`);
      continue;
    }
    const uid = `${o.clusterId}//Pod/${pod.namespace}/${pod.name}`;
    const isWaypointPod = pod.labels['gateway.networking.k8s.io/gateway-name'] !== undefined;
    const wp = isWaypointPod ? undefined : waypointFor(pod.labels, pod.namespace, 'workload', what);
    const locality = nodeLocality.get(pod.spec.nodeName);
    const w: Workload = {
      uid,
      name: pod.name,
      namespace: pod.namespace,
      addresses: podIPs.map((ip) => ipToBytes(ip) as Uint8Array),
      network: o.network,
      tunnelProtocol: inMesh(pod.labels, pod.namespace) ? 'HBONE' : 'NONE',
      trustDomain: o.trustDomain,
      serviceAccount: pod.spec.serviceAccount,
      ...(wp ? { waypoint: wp } : {}),
      node: pod.spec.nodeName,
      canonicalName: pod.labels['service.istio.io/canonical-name'] ?? pod.labels['app.kubernetes.io/name'] ?? pod.labels.app ?? pod.name,
      canonicalRevision: pod.labels['service.istio.io/canonical-revision'] ?? pod.labels['app.kubernetes.io/version'] ?? pod.labels.version ?? 'latest',
      workloadType: 'POD',
      workloadName: pod.name,
      services: {},
      authorizationPolicies: [],
      status: pod.spec.ready ? 'HEALTHY' : 'UNHEALTHY',
      clusterId: o.clusterId,
      ...(locality ? { locality } : {}),
      networkMode: pod.spec.hostNetwork ? 'HOST_NETWORK' : 'STANDARD',
    };
    candidates.push({
      uid,
      namespace: pod.namespace,
      labels: pod.labels,
      workload: w,
      resolvePort: (t) => (typeof t === 'number' ? t : pod.spec.containerPorts.find((p) => p.name === t)?.port),
    });
    out.workloadMeta.set(uid, { kind: 'Pod', labels: pod.labels, ...(pod.spec.netns ? { netns: pod.spec.netns } : {}) });
  }
  const entryWorkload = (uid: string, name: string, namespace: string, e: WorkloadEntrySpec, what: string, kind: WorkloadMeta['kind']): Candidate => {
    const isIp = isIP(e.address) !== 0;
    const locality = e.locality ? localityFromString(e.locality) : undefined;
    const wp = waypointFor(e.labels, namespace, 'workload', what);
    const w: Workload = {
      uid,
      name,
      namespace,
      ...(isIp ? { addresses: [ipToBytes(e.address) as Uint8Array] } : { hostname: e.address }),
      network: e.network || o.network,
      tunnelProtocol: inMesh(e.labels, namespace) ? 'HBONE' : 'NONE',
      trustDomain: o.trustDomain,
      serviceAccount: e.serviceAccount || 'default',
      ...(wp ? { waypoint: wp } : {}),
      canonicalName: e.labels['service.istio.io/canonical-name'] ?? e.labels.app ?? name,
      canonicalRevision: e.labels['service.istio.io/canonical-revision'] ?? e.labels.version ?? 'latest',
      workloadName: name,
      services: {},
      authorizationPolicies: [],
      status: 'HEALTHY',
      clusterId: o.clusterId,
      ...(locality ? { locality } : {}),
      ...(e.weight !== undefined && e.weight > 1 ? { capacity: { value: e.weight } } : {}),
    };
    out.workloadMeta.set(uid, { kind, labels: e.labels });
    return { uid, namespace, labels: e.labels, workload: w, resolvePort: (t) => (typeof t === 'number' ? t : e.ports[t]) };
  };
  for (const we of snap.list<WorkloadEntrySpec>('WorkloadEntry.networking.istio.io')) {
    const uid = `${o.clusterId}/networking.istio.io/WorkloadEntry/${we.namespace}/${we.name}`;
    candidates.push(entryWorkload(uid, we.name, we.namespace, { ...we.spec, labels: { ...we.labels, ...we.spec.labels } }, `WorkloadEntry ${we.namespace}/${we.name}`, 'WorkloadEntry'));
  }

  const addService = (key: string, s: Service): void => {
    out.addresses.set(key, { type: 'service', service: s });
  };
  const bind = (c: Candidate, serviceKey: string, ports: Port[]): void => {
    const services = c.workload.services as Record<string, PortList>;
    const existing = services[serviceKey]?.ports ?? [];
    services[serviceKey] = { ports: [...existing, ...ports.filter((p) => !existing.some((e) => e.servicePort === p.servicePort))] };
  };

  // Kubernetes services.
  const slicesBySvc = new Map<string, Resource<EndpointSliceSpec>[]>();
  for (const s of snap.list<EndpointSliceSpec>('EndpointSlice.discovery.k8s.io')) {
    const k = `${s.namespace}/${s.spec.serviceName}`;
    slicesBySvc.set(k, [...(slicesBySvc.get(k) ?? []), s]);
  }
  const byUid = new Map(candidates.map((c) => [c.uid, c]));
  // Candidates by namespace (pods and workload entries known so far).
  const byNamespace = new Map<string, Candidate[]>();
  for (const c of candidates) {
    let l = byNamespace.get(c.namespace);
    if (!l) byNamespace.set(c.namespace, (l = []));
    l.push(c);
  }
  const candidatesIn = (ns: string): readonly Candidate[] => byNamespace.get(ns) ?? [];
  for (const svc of snap.list<ServiceSpec>('Service')) {
    if (svc.spec.type === 'ExternalName') continue;
    const hostname = svcHost(svc.name, svc.namespace);
    const key = `${svc.namespace}/${hostname}`;
    const what = `Service ${svc.namespace}/${svc.name}`;
    const wp = waypointFor(svc.labels, svc.namespace, 'service', what);
    const families = new Set(svc.spec.clusterIPs.map((ip) => isIP(ip)));
    const lb = loadBalancingOf(svc.annotations);
    addService(key, {
      name: svc.name,
      namespace: svc.namespace,
      hostname,
      addresses: svc.spec.clusterIPs.map((ip) => netAddr(ip)),
      ports: svc.spec.ports.filter((p) => p.protocol === 'TCP').map((p) => ({ servicePort: p.port, targetPort: typeof p.targetPort === 'number' ? p.targetPort : 0, appProtocol: appProtocolOf(p.appProtocol, p.name) })),
      ...(wp ? { waypoint: wp } : {}),
      ...(lb ? { loadBalancing: lb } : {}),
      ipFamilies: families.size === 2 ? 'DUAL' : families.has(6) ? 'IPV6_ONLY' : families.has(4) ? 'IPV4_ONLY' : 'AUTOMATIC',
    });
    const tcpPorts = svc.spec.ports.filter((p) => p.protocol === 'TCP');
    const slices = slicesBySvc.get(`${svc.namespace}/${svc.name}`);
    if (slices && slices.length > 0) {
      for (const slice of slices) {
        if (slice.spec.addressType === 'FQDN') continue;
        const ports = (c: Candidate | undefined): Port[] =>
          tcpPorts.flatMap((sp) => {
            const slicePort = slice.spec.ports.find((x) => (x.name ?? '') === (sp.name ?? '')) ?? (slice.spec.ports.length === 1 && tcpPorts.length === 1 ? slice.spec.ports[0] : undefined);
            const target = slicePort?.port ?? c?.resolvePort(sp.targetPort) ?? (typeof sp.targetPort === 'number' ? sp.targetPort : undefined);
            return target === undefined ? [] : [{ servicePort: sp.port, targetPort: target }];
          });
        for (const ep of slice.spec.endpoints) {
          const ref = ep.targetRef;
          const c = ref && ref.kind === 'Pod' ? byUid.get(`${o.clusterId}//Pod/${ref.namespace}/${ref.name}`) : undefined;
          if (c) {
            bind(c, key, ports(c));
            continue;
          }
          for (const ip of ep.addresses) {
            // An endpoint that is not a known pod (a selector-less service pointing at IPs).
            const uid = `${o.clusterId}/discovery.k8s.io/EndpointSlice/${slice.namespace}/${slice.name}/${ip}`;
            let cand = byUid.get(uid);
            if (!cand) {
              cand = entryWorkload(uid, slice.name, slice.namespace, { address: ip, ports: {}, labels: {}, network: '', locality: '', serviceAccount: '' }, `EndpointSlice ${slice.namespace}/${slice.name}`, 'EndpointSlice');
              cand.workload.status = ep.ready ? 'HEALTHY' : 'UNHEALTHY';
              if (ep.nodeName) cand.workload.node = ep.nodeName;
              candidates.push(cand);
              byUid.set(uid, cand);
            }
            bind(cand, key, ports(undefined));
          }
        }
      }
    } else if (svc.spec.selector) {
      const sel = svc.spec.selector;
      // Only the service's namespace can match: indexed, so services x pods stays linear at scale.
      for (const c of candidatesIn(svc.namespace)) {
        if (c.namespace !== svc.namespace || !matches(sel, c.labels) || c.uid.includes('/ServiceEntry/')) continue;
        const ports = tcpPorts.flatMap((sp) => {
          const t = c.resolvePort(sp.targetPort);
          return t === undefined ? [] : [{ servicePort: sp.port, targetPort: t }];
        });
        bind(c, key, ports);
      }
    }
  }

  // Service entries.
  for (const se of snap.list<ServiceEntrySpec>('ServiceEntry.networking.istio.io')) {
    const what = `ServiceEntry ${se.namespace}/${se.name}`;
    const wp = waypointFor(se.labels, se.namespace, 'service', what);
    const vips = se.spec.addresses.map((a) => {
      const [ip, len] = a.split('/') as [string, string | undefined];
      return netAddr(ip, len !== undefined ? Number(len) : undefined);
    });
    const svcPorts: Port[] = se.spec.ports.map((p) => ({ servicePort: p.number, targetPort: p.targetPort ?? 0, appProtocol: appProtocolOf(p.protocol.toLowerCase(), p.name) }));
    const keys = se.spec.hosts.map((h) => `${se.namespace}/${h}`);
    se.spec.hosts.forEach((host, i) =>
      addService(keys[i] as string, { name: se.name, namespace: se.namespace, hostname: host, addresses: vips, ports: svcPorts, ...(wp ? { waypoint: wp } : {}) }),
    );
    const portsFor = (c: Candidate, named: Readonly<Record<string, number>>): Port[] =>
      se.spec.ports.map((p) => ({ servicePort: p.number, targetPort: named[p.name] ?? c.resolvePort(p.name) ?? p.targetPort ?? p.number }));
    se.spec.endpoints.forEach((ep, i) => {
      const uid = `${o.clusterId}/networking.istio.io/ServiceEntry/${se.namespace}/${se.name}/${ep.address || String(i)}`;
      const c = entryWorkload(uid, se.name, se.namespace, ep, what, 'ServiceEntry');
      candidates.push(c);
      for (const k of keys) bind(c, k, portsFor(c, ep.ports));
    });
    if (se.spec.workloadSelector) {
      for (const c of candidates) {
        if (c.namespace !== se.namespace || !matches(se.spec.workloadSelector, c.labels) || c.uid.includes('/ServiceEntry/')) continue;
        for (const k of keys) bind(c, k, portsFor(c, {}));
      }
    }
  }

  // Authorization policies.
  const selectorPolicies: Array<{ key: string; namespace: string; selector: Labels }> = [];
  for (const ap of snap.list<AuthorizationPolicySpec>('AuthorizationPolicy.security.istio.io')) {
    const what = `AuthorizationPolicy ${ap.namespace}/${ap.name}`;
    if (ap.spec.targetRefs.length > 0) {
      out.notes.push(`${what}: attached by targetRefs (enforced by a waypoint, not by node agents)`);
      continue;
    }
    if (ap.spec.action !== 'ALLOW' && ap.spec.action !== 'DENY') {
      out.notes.push(`${what}: action ${ap.spec.action} is not enforced by node agents`);
      continue;
    }
    const scope = ap.spec.selector ? 'WORKLOAD_SELECTOR' : ap.namespace === o.rootNamespace ? 'GLOBAL' : 'NAMESPACE';
    const rules: Rule[] = [];
    ap.spec.rules.forEach((r, i) => {
      const rule = convertRule(r.from, r.to, r.when, ap.spec.action === 'DENY');
      if (rule === undefined) out.notes.push(`${what}: rules[${i}] uses L7 attributes only a waypoint can check; it is left out of the ALLOW policy`);
      else rules.push(rule);
    });
    const key = `${ap.namespace}/${ap.name}`;
    out.authorizations.set(key, {
      name: ap.name,
      namespace: ap.namespace,
      scope,
      action: ap.spec.action,
      rules,
      dryRun: ap.annotations['istio.io/dry-run'] === 'true',
    });
    if (ap.spec.selector) selectorPolicies.push({ key, namespace: ap.namespace, selector: ap.spec.selector });
  }

  // Peer authentication.
  const pas = snap.list<PeerAuthenticationSpec>('PeerAuthentication.security.istio.io');
  const meshPa = pas.find((p) => p.namespace === o.rootNamespace && !p.spec.selector);
  const nsPa = new Map<string, Resource<PeerAuthenticationSpec>>();
  for (const p of pas) if (!p.spec.selector && p.namespace !== o.rootNamespace && !nsPa.has(p.namespace)) nsPa.set(p.namespace, p);
  const staticStrictKey = `${o.rootNamespace}/${STATIC_STRICT_POLICY_NAME}`;
  const peerAuthFor = (c: Candidate): string[] => {
    const wpa = pas.find((p) => p.spec.selector && p.namespace === c.namespace && matches(p.spec.selector, c.labels));
    let base: MtlsMode = 'PERMISSIVE';
    for (const p of [meshPa, nsPa.get(c.namespace), wpa]) if (p && p.spec.mode !== 'UNSET') base = p.spec.mode;
    if (!wpa || wpa.spec.portLevelMtls.size === 0) return base === 'STRICT' ? [staticStrictKey] : [];
    const name = `${CONVERTED_PEER_AUTHENTICATION_PREFIX}${wpa.name}`;
    const key = `${wpa.namespace}/${name}`;
    if (!out.authorizations.has(key)) {
      const strictPorts = [...wpa.spec.portLevelMtls].filter(([, m]) => m === 'STRICT').map(([p]) => p);
      const relaxedPorts = [...wpa.spec.portLevelMtls].filter(([, m]) => m === 'PERMISSIVE' || m === 'DISABLE').map(([p]) => p);
      const noIdentity: StringMatch[] = [{ presence: {} }];
      const m: Match =
        base === 'STRICT'
          ? { notPrincipals: noIdentity, ...(relaxedPorts.length > 0 ? { notDestinationPorts: relaxedPorts } : {}) }
          : { notPrincipals: noIdentity, destinationPorts: strictPorts };
      const rules: Rule[] = base !== 'STRICT' && strictPorts.length === 0 ? [] : [{ clauses: [{ matches: [m] }] }];
      out.authorizations.set(key, { name, namespace: wpa.namespace, scope: 'WORKLOAD_SELECTOR', action: 'DENY', rules });
    }
    return [key];
  };

  // Per-workload policy lists, then emit workloads.
  const policiesByNs = new Map<string, typeof selectorPolicies>();
  for (const p of selectorPolicies) {
    let l = policiesByNs.get(p.namespace);
    if (!l) policiesByNs.set(p.namespace, (l = []));
    l.push(p);
  }
  const rootPolicies = policiesByNs.get(o.rootNamespace) ?? [];
  for (const c of candidates) {
    const list = c.workload.authorizationPolicies as string[];
    const inScope = c.namespace === o.rootNamespace ? rootPolicies : [...(policiesByNs.get(c.namespace) ?? []), ...rootPolicies];
    for (const p of inScope) {
      if (matches(p.selector, c.labels)) list.push(p.key);
    }
    list.push(...peerAuthFor(c));
    if (list.includes(staticStrictKey) && !out.authorizations.has(staticStrictKey)) {
      out.authorizations.set(staticStrictKey, {
        name: STATIC_STRICT_POLICY_NAME,
        namespace: o.rootNamespace,
        scope: 'WORKLOAD_SELECTOR',
        action: 'DENY',
        rules: [{ clauses: [{ matches: [{ notPrincipals: [{ presence: {} }] }] }] }],
      });
    }
    list.sort();
    out.addresses.set(c.uid, { type: 'workload', workload: c.workload });
  }
  return out;
}

/** A Gateway of class istio-waypoint, as the bindings see it. */
export interface WaypointInfo {
  /** `<namespace>/<name>`; also the name of its L7 config resource. */
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly address: GatewayAddress;
  /** From the Gateway label istio.io/waypoint-for (default `service`; `all` is both; `none` neither). */
  readonly forKinds: ReadonlySet<'service' | 'workload'>;
}

export interface WaypointIndex {
  readonly waypoints: ReadonlyMap<string, WaypointInfo>;
  /**
   * The waypoint an object with `labels` in `namespace` names (its own
   * istio.io/use-waypoint label, else its namespace's; `none` opts out).
   * `missing` is `<ns>/<name>` when the label names no istio-waypoint
   * Gateway. Whether it applies depends on `waypoint.forKinds`.
   */
  bindingFor(labels: Readonly<Record<string, string>>, namespace: string): { waypoint?: WaypointInfo; missing?: string };
}

/** The istio-waypoint Gateways of a snapshot and the istio.io/use-waypoint binding rules. */
export function waypointIndex(snap: ResourceSnapshot, options: Partial<TranslateOptions> = {}): WaypointIndex {
  const o: TranslateOptions = { ...DEFAULT_TRANSLATE_OPTIONS, ...options };
  const nsLabels = new Map(snap.list('Namespace').map((n) => [n.name, n.labels]));
  const waypoints = new Map<string, WaypointInfo>();
  for (const gw of snap.list<GatewaySpec>('Gateway.gateway.networking.k8s.io')) {
    if (gw.spec.gatewayClassName !== WAYPOINT_CLASS) continue;
    const svc = snap.get<ServiceSpec>('Service', gw.namespace, gw.name);
    const ip = svc?.spec.clusterIPs[0] ?? gw.spec.addresses[0];
    const address: GatewayAddress =
      ip !== undefined
        ? { address: { network: o.network, address: ipToBytes(ip) as Uint8Array }, hboneMtlsPort: HBONE_PORT }
        : { hostname: { namespace: gw.namespace, hostname: `${gw.name}.${gw.namespace}.svc.${o.clusterDomain}` }, hboneMtlsPort: HBONE_PORT };
    const f = gw.labels['istio.io/waypoint-for'] ?? 'service';
    const forKinds = new Set<'service' | 'workload'>(f === 'all' ? ['service', 'workload'] : f === 'service' ? ['service'] : f === 'workload' ? ['workload'] : []);
    const key = `${gw.namespace}/${gw.name}`;
    waypoints.set(key, { key, namespace: gw.namespace, name: gw.name, address, forKinds });
  }
  return {
    waypoints,
    bindingFor(labels, namespace) {
      const ns = nsLabels.get(namespace) ?? {};
      const own = labels['istio.io/use-waypoint'];
      const name = own ?? ns['istio.io/use-waypoint'];
      if (name === undefined || name === '' || name === 'none') return {};
      const wpNs = (own !== undefined ? labels['istio.io/use-waypoint-namespace'] : ns['istio.io/use-waypoint-namespace']) ?? namespace;
      const waypoint = waypoints.get(`${wpNs}/${name}`);
      return waypoint ? { waypoint } : { missing: `${wpNs}/${name}` };
    },
  };
}

function localityFromLabels(l: Labels): Locality | undefined {
  const region = l['topology.kubernetes.io/region'] ?? '';
  const zone = l['topology.kubernetes.io/zone'] ?? '';
  const subzone = l['topology.istio.io/subzone'] ?? '';
  return region || zone || subzone ? { region, zone, subzone } : undefined;
}

function localityFromString(s: string): Locality | undefined {
  const [region = '', zone = '', subzone = ''] = s.split('/');
  return region || zone || subzone ? { region, zone, subzone } : undefined;
}

function loadBalancingOf(annotations: Labels): Service['loadBalancing'] | undefined {
  const td = annotations['networking.istio.io/traffic-distribution'];
  if (td === 'PreferClose') return { routingPreference: ['NETWORK', 'REGION', 'ZONE', 'SUBZONE'], mode: 'FAILOVER' };
  return undefined;
}

function appProtocolOf(appProtocol: string | undefined, portName: string | undefined): AppProtocol {
  const p = (appProtocol ?? (portName ?? '').split('-')[0] ?? '').toLowerCase();
  if (p === 'http') return 'HTTP11';
  if (p === 'http2' || p === 'h2c' || p === 'kubernetes.io/h2c') return 'HTTP2';
  if (p === 'grpc') return 'GRPC';
  return 'UNKNOWN';
}

/** `*` -> presence, `x*` -> prefix, `*x` -> suffix, else exact (Istio's string match rules). */
export function stringMatchOf(v: string): StringMatch {
  if (v === '*') return { presence: {} };
  if (v.endsWith('*')) return { prefix: v.slice(0, -1) };
  if (v.startsWith('*')) return { suffix: v.slice(1) };
  return { exact: v };
}

/** `10.0.0.0/8` or `10.0.0.1` -> istio.security.Address. */
export function cidrOf(c: string): CidrAddress {
  const [ip, len] = c.split('/') as [string, string | undefined];
  const address = ipToBytes(ip) as Uint8Array;
  return { address, length: len !== undefined ? Number(len) : address.length * 8 };
}

const L4_CONDITIONS: Record<string, keyof Match> = {
  'source.ip': 'sourceIps',
  'remote.ip': 'sourceIps',
  'source.namespace': 'namespaces',
  'source.principal': 'principals',
  'destination.ip': 'destinationIps',
  'destination.port': 'destinationPorts',
};
const NOT: Partial<Record<keyof Match, keyof Match>> = {
  sourceIps: 'notSourceIps',
  namespaces: 'notNamespaces',
  principals: 'notPrincipals',
  destinationIps: 'notDestinationIps',
  destinationPorts: 'notDestinationPorts',
};

function conditionMatch(c: AuthzCondition): Match | undefined {
  const field = L4_CONDITIONS[c.key];
  if (!field) return undefined;
  const conv = (vs: readonly string[]): unknown[] =>
    field === 'sourceIps' || field === 'destinationIps' ? vs.map(cidrOf) : field === 'destinationPorts' ? vs.map(Number) : vs.map(stringMatchOf);
  const m: Record<string, unknown> = {};
  if (c.values.length > 0) m[field] = conv(c.values);
  if (c.notValues.length > 0) m[NOT[field] as string] = conv(c.notValues);
  return m as Match;
}

function sourceMatch(s: AuthzSource): { match: Match; l7: boolean } {
  const m: Match = {};
  if (s.principals.length) m.principals = s.principals.map(stringMatchOf);
  if (s.notPrincipals.length) m.notPrincipals = s.notPrincipals.map(stringMatchOf);
  if (s.namespaces.length) m.namespaces = s.namespaces.map(stringMatchOf);
  if (s.notNamespaces.length) m.notNamespaces = s.notNamespaces.map(stringMatchOf);
  const ips = [...s.ipBlocks, ...s.remoteIpBlocks];
  const notIps = [...s.notIpBlocks, ...s.notRemoteIpBlocks];
  if (ips.length) m.sourceIps = ips.map(cidrOf);
  if (notIps.length) m.notSourceIps = notIps.map(cidrOf);
  return { match: m, l7: s.requestPrincipals.length > 0 || s.notRequestPrincipals.length > 0 };
}

function operationMatch(op: AuthzOperation): { match: Match; l7: boolean } {
  const m: Match = {};
  if (op.ports.length) m.destinationPorts = [...op.ports];
  if (op.notPorts.length) m.notDestinationPorts = [...op.notPorts];
  const l7 = [op.hosts, op.notHosts, op.methods, op.notMethods, op.paths, op.notPaths].some((l) => l.length > 0);
  return { match: m, l7 };
}

const isEmpty = (m: Match): boolean => Object.keys(m).length === 0;

/**
 * One AuthorizationPolicy rule -> Rule: `from` is one clause (its sources
 * ORed), `to` one clause, each `when` condition one clause; clauses ANDed.
 * Returns undefined when an ALLOW rule needs L7 attributes. For DENY, L7
 * parts are removed: a clause that becomes match-all is dropped.
 */
function convertRule(from: readonly AuthzSource[], to: readonly AuthzOperation[], when: readonly AuthzCondition[], deny: boolean): Rule | undefined {
  const clauses: Clause[] = [];
  for (const group of [from.map(sourceMatch), to.map(operationMatch)]) {
    if (group.length === 0) continue;
    if (group.some((g) => g.l7)) {
      if (!deny) return undefined;
      // A match that loses its L7 part may become match-all, which makes the whole OR true.
      if (group.some((g) => g.l7 && isEmpty(g.match))) continue;
    }
    if (group.some((g) => isEmpty(g.match))) continue; // an empty source/operation matches anything
    clauses.push({ matches: group.map((g) => g.match) });
  }
  for (const c of when) {
    const m = conditionMatch(c);
    if (!m) {
      if (!deny) return undefined;
      continue;
    }
    clauses.push({ matches: [m] });
  }
  return { clauses };
}
