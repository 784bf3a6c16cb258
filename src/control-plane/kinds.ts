/**
 * The open table of resource kinds the control plane understands: for each
 * apiVersion group + kind, a validator that turns the raw object into a
 * normalized, typed `spec`, and which outputs it feeds (addresses,
 * authorizations). Unknown kinds are ignored (logged at debug by the
 * sources); new kinds are added with registerKind() without touching the
 * rest of the pipeline. The L7 kinds (HTTPRoute, GRPCRoute, VirtualService,
 * DestinationRule, RequestAuthentication) are parsed in kinds-gateway-api.ts,
 * kinds-istio-networking.ts and kinds-l7.ts and feed
 * the waypoints' L7 config (translate-l7.ts).
 */
import { isIP } from 'node:net';
import { parseGRPCRoute, parseHTTPRoute, type GRPCRouteSpec, type HTTPRouteSpec } from './kinds-gateway-api.js';
import { parseDestinationRule, parseVirtualService, type DestinationRuleSpec, type VirtualServiceSpec } from './kinds-istio-networking.js';
import { parseRequestAuthentication, type RequestAuthenticationSpec } from './kinds-l7.js';
import { FieldReader, InvalidField, isObj, type ConfigIssue } from './validation.js';

/** What a kind feeds: node agents' addresses/authorizations, or the waypoints' L7 config. */
export type Feeds = 'addresses' | 'authorizations' | 'waypoints';

/** Metadata common to every resource. */
export interface ResourceMeta {
  /** `Kind` for the core group, else `Kind.group` (e.g. `Gateway.gateway.networking.k8s.io`). */
  readonly kindId: string;
  readonly kind: string;
  readonly apiVersion: string;
  /** Empty for cluster-scoped kinds. */
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** Where it came from: a file path, or `kube`. */
  readonly source: string;
}

export interface Resource<S = unknown> extends ResourceMeta {
  readonly spec: S;
}

export interface KindSpec<S = unknown> {
  readonly group: string;
  readonly versions: readonly string[];
  readonly kind: string;
  readonly namespaced: boolean;
  readonly feeds: readonly Feeds[];
  /** Reads the object (metadata already read); throws InvalidField on the first bad field. */
  parse(obj: FieldReader, meta: ResourceMeta): S;
}

// ---- normalized specs ----

export type NamespaceSpec = Record<string, never>;
export type NodeSpec = Record<string, never>;
export type ServiceAccountSpec = Record<string, never>;

export interface PodSpec {
  readonly nodeName: string;
  readonly serviceAccount: string;
  readonly podIPs: readonly string[];
  /** Ready condition; pods without conditions (lab manifests) count as ready unless their phase says otherwise. */
  readonly ready: boolean;
  readonly hostNetwork: boolean;
  readonly containerPorts: ReadonlyArray<{ readonly name?: string; readonly port: number; readonly protocol: string }>;
  /** Lab convention: annotation `ambit.dev/netns`, the pod's netns path, passed to the lab enroller. */
  readonly netns?: string;
}

export interface ServicePortSpec {
  readonly name?: string;
  readonly port: number;
  /** A number, or a named container port. */
  readonly targetPort: number | string;
  readonly protocol: string;
  readonly appProtocol?: string;
}

export interface ServiceSpec {
  readonly type: string;
  /** VIPs (spec.clusterIPs / clusterIP), without 'None'. */
  readonly clusterIPs: readonly string[];
  readonly headless: boolean;
  readonly ports: readonly ServicePortSpec[];
  /** undefined: no selector (endpoints come from EndpointSlices). */
  readonly selector?: Readonly<Record<string, string>>;
}

export interface EndpointSliceSpec {
  readonly serviceName: string;
  readonly addressType: string;
  readonly endpoints: ReadonlyArray<{
    readonly addresses: readonly string[];
    readonly ready: boolean;
    readonly nodeName?: string;
    readonly targetRef?: { readonly kind: string; readonly name: string; readonly namespace: string };
  }>;
  readonly ports: ReadonlyArray<{ readonly name?: string; readonly port: number; readonly protocol: string }>;
}

export interface AuthzSource {
  readonly principals: readonly string[];
  readonly notPrincipals: readonly string[];
  readonly requestPrincipals: readonly string[];
  readonly notRequestPrincipals: readonly string[];
  readonly namespaces: readonly string[];
  readonly notNamespaces: readonly string[];
  readonly ipBlocks: readonly string[];
  readonly notIpBlocks: readonly string[];
  readonly remoteIpBlocks: readonly string[];
  readonly notRemoteIpBlocks: readonly string[];
}

export interface AuthzOperation {
  readonly ports: readonly number[];
  readonly notPorts: readonly number[];
  readonly hosts: readonly string[];
  readonly notHosts: readonly string[];
  readonly methods: readonly string[];
  readonly notMethods: readonly string[];
  readonly paths: readonly string[];
  readonly notPaths: readonly string[];
}

export interface AuthzCondition {
  readonly key: string;
  readonly values: readonly string[];
  readonly notValues: readonly string[];
}

export interface AuthzRule {
  readonly from: readonly AuthzSource[];
  readonly to: readonly AuthzOperation[];
  readonly when: readonly AuthzCondition[];
}

export const AUTHZ_ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;

export interface AuthorizationPolicySpec {
  readonly selector?: Readonly<Record<string, string>>;
  /** Policies attached to a waypoint (targetRef/targetRefs) are enforced there, not by node agents. */
  readonly targetRefs: ReadonlyArray<{ readonly group: string; readonly kind: string; readonly name: string }>;
  readonly action: (typeof AUTHZ_ACTIONS)[number];
  readonly rules: readonly AuthzRule[];
}

export const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;
export type MtlsMode = (typeof MTLS_MODES)[number];

export interface PeerAuthenticationSpec {
  readonly selector?: Readonly<Record<string, string>>;
  readonly mode: MtlsMode;
  readonly portLevelMtls: ReadonlyMap<number, MtlsMode>;
}

export interface WorkloadEntrySpec {
  readonly address: string;
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly network: string;
  readonly locality: string;
  readonly weight?: number;
  readonly serviceAccount: string;
}

export interface ServiceEntrySpec {
  readonly hosts: readonly string[];
  readonly addresses: readonly string[];
  readonly ports: ReadonlyArray<{ readonly number: number; readonly name: string; readonly protocol: string; readonly targetPort?: number }>;
  readonly location: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  readonly resolution: 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN';
  readonly endpoints: readonly WorkloadEntrySpec[];
  readonly workloadSelector?: Readonly<Record<string, string>>;
}

export interface GatewaySpec {
  readonly gatewayClassName: string;
  readonly listeners: ReadonlyArray<{ readonly name: string; readonly port: number; readonly protocol: string }>;
  /** IPs from spec.addresses and status.addresses. */
  readonly addresses: readonly string[];
}

// ---- validators ----

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function selectorOf(r: FieldReader, key: string): Record<string, string> | undefined {
  if (!r.has(key)) return undefined;
  return r.child(key).stringMap('matchLabels');
}

function parsePod(r: FieldReader, meta: ResourceMeta): PodSpec {
  const spec = r.child('spec', true);
  const status = r.child('status');
  const nodeName = spec.optString('nodeName') ?? '';
  const ips = new Set<string>();
  const primary = status.optString('podIP');
  if (primary !== undefined && primary !== '') ips.add(checkIp(status, 'podIP', primary));
  status.list('podIPs').forEach((p) => ips.add(checkIp(p, 'ip', p.string('ip'))));
  let ready: boolean;
  const cond = status.list('conditions').find((c) => c.optString('type') === 'Ready');
  const phase = status.optString('phase');
  if (cond) ready = cond.optString('status') === 'True';
  else ready = phase === undefined || phase === 'Running';
  const ports = spec.list('containers').flatMap((c) =>
    c.list('ports').map((p) => {
      const name = p.optString('name');
      return { ...(name ? { name } : {}), port: p.port('containerPort'), protocol: p.optString('protocol') ?? 'TCP' };
    }),
  );
  const netns = meta.annotations['ambit.dev/netns'];
  return {
    nodeName,
    serviceAccount: spec.optString('serviceAccountName') || spec.optString('serviceAccount') || 'default',
    podIPs: [...ips],
    ready,
    hostNetwork: spec.bool('hostNetwork', false),
    containerPorts: ports,
    ...(netns ? { netns } : {}),
  };
}

function checkIp(r: FieldReader, key: string, v: string): string {
  if (!ipOk(v)) r.fail(key, `must be an IP address; got '${v}'`);
  return v;
}

function ipOk(v: string): boolean {
  return isIP(v) !== 0;
}

function parseService(r: FieldReader): ServiceSpec {
  const spec = r.child('spec', true);
  const type = spec.oneOf('type', ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'], 'ClusterIP');
  const single = spec.optString('clusterIP');
  const list = spec.strings('clusterIPs');
  const all = [...new Set([...(single !== undefined && single !== '' ? [single] : []), ...list])];
  const headless = all.includes('None');
  const clusterIPs = all.filter((ip) => ip !== 'None');
  clusterIPs.forEach((ip) => {
    if (!ipOk(ip)) spec.fail(single === ip ? 'clusterIP' : 'clusterIPs', `must be an IP address or 'None'; got '${ip}'`);
  });
  const seen = new Set<string>();
  const ports = spec.list('ports').map((p): ServicePortSpec => {
    const port = p.port('port');
    const protocol = p.oneOf('protocol', ['TCP', 'UDP', 'SCTP'], 'TCP');
    if (seen.has(`${protocol}/${port}`)) p.fail('port', `${port}/${protocol} is listed twice`);
    seen.add(`${protocol}/${port}`);
    const raw = p.obj.targetPort;
    let targetPort: number | string = port;
    if (typeof raw === 'string' && raw !== '') targetPort = /^\d+$/.test(raw) ? Number(raw) : raw;
    else if (raw !== undefined && raw !== null) targetPort = p.port('targetPort');
    if (typeof targetPort === 'number' && (targetPort < 1 || targetPort > 65535)) p.fail('targetPort', `must be a port from 1 to 65535; got ${targetPort}`);
    const name = p.optString('name');
    const appProtocol = p.optString('appProtocol');
    return { ...(name ? { name } : {}), port, targetPort, protocol, ...(appProtocol ? { appProtocol } : {}) };
  });
  const selector = spec.optStringMap('selector');
  return { type, clusterIPs, headless, ports, ...(selector && Object.keys(selector).length > 0 ? { selector } : {}) };
}

function parseEndpointSlice(r: FieldReader, meta: ResourceMeta): EndpointSliceSpec {
  const serviceName = meta.labels['kubernetes.io/service-name'];
  if (serviceName === undefined || serviceName === '') r.fail('metadata.labels', "'kubernetes.io/service-name' is required (it names the Service)");
  const addressType = r.oneOf('addressType', ['IPv4', 'IPv6', 'FQDN']);
  const endpoints = r.list('endpoints').map((e) => {
    const addresses = addressType === 'FQDN' ? e.strings('addresses') : e.ips('addresses');
    const cond = e.child('conditions');
    const nodeName = e.optString('nodeName');
    const ref = e.has('targetRef') ? e.child('targetRef') : undefined;
    return {
      addresses,
      ready: cond.bool('ready', true),
      ...(nodeName ? { nodeName } : {}),
      ...(ref ? { targetRef: { kind: ref.string('kind'), name: ref.string('name'), namespace: ref.optString('namespace') ?? meta.namespace } } : {}),
    };
  });
  const ports = r.list('ports').map((p) => {
    const name = p.optString('name');
    return { ...(name ? { name } : {}), port: p.port('port'), protocol: p.optString('protocol') ?? 'TCP' };
  });
  return { serviceName, addressType, endpoints, ports };
}

function portStrings(r: FieldReader, key: string): number[] {
  return r.strings(key).map((s, i) => {
    if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 65535) r.fail(`${key}[${i}]`, `must be a port number from 1 to 65535 (as a string); got '${s}'`);
    return Number(s);
  });
}

function portsLenient(r: FieldReader, key: string): number[] {
  // Istio's schema says strings, but YAML users often write numbers.
  const v = r.obj[key];
  if (Array.isArray(v)) return portStrings(new FieldReader({ [key]: v.map((x) => (typeof x === 'number' ? String(x) : x)) }, r.path), key);
  return portStrings(r, key);
}

function parseAuthorizationPolicy(r: FieldReader): AuthorizationPolicySpec {
  const spec = r.child('spec');
  const selector = selectorOf(spec, 'selector');
  const refs = [...(spec.has('targetRef') ? [spec.child('targetRef')] : []), ...spec.list('targetRefs')].map((t) => ({
    group: t.optString('group') ?? '',
    kind: t.string('kind'),
    name: t.string('name'),
  }));
  const action = spec.oneOf('action', AUTHZ_ACTIONS, 'ALLOW');
  const rules = spec.list('rules').map(
    (rule): AuthzRule => ({
      from: rule.list('from').map((f) => {
        const s = f.child('source', true);
        return {
          principals: s.strings('principals'),
          notPrincipals: s.strings('notPrincipals'),
          requestPrincipals: s.strings('requestPrincipals'),
          notRequestPrincipals: s.strings('notRequestPrincipals'),
          namespaces: s.strings('namespaces'),
          notNamespaces: s.strings('notNamespaces'),
          ipBlocks: s.cidrs('ipBlocks'),
          notIpBlocks: s.cidrs('notIpBlocks'),
          remoteIpBlocks: s.cidrs('remoteIpBlocks'),
          notRemoteIpBlocks: s.cidrs('notRemoteIpBlocks'),
        };
      }),
      to: rule.list('to').map((t) => {
        const o = t.child('operation', true);
        return {
          ports: portsLenient(o, 'ports'),
          notPorts: portsLenient(o, 'notPorts'),
          hosts: o.strings('hosts'),
          notHosts: o.strings('notHosts'),
          methods: o.strings('methods'),
          notMethods: o.strings('notMethods'),
          paths: o.strings('paths'),
          notPaths: o.strings('notPaths'),
        };
      }),
      when: rule.list('when').map((c) => {
        const key = c.string('key');
        // The L4 keys node agents evaluate get their values checked here, so translation never sees bad ones.
        const check = key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip' ? c.cidrs.bind(c) : key === 'destination.port' ? (k: string) => portsLenient(c, k).map(String) : c.strings.bind(c);
        return { key, values: check('values'), notValues: check('notValues') };
      }),
    }),
  );
  return { ...(selector ? { selector } : {}), targetRefs: refs, action, rules };
}

function parsePeerAuthentication(r: FieldReader): PeerAuthenticationSpec {
  const spec = r.child('spec');
  const selector = selectorOf(spec, 'selector');
  const mode = spec.child('mtls').oneOf('mode', MTLS_MODES, 'UNSET');
  const portLevel = new Map<number, MtlsMode>();
  const pl = spec.child('portLevelMtls');
  for (const key of Object.keys(pl.obj)) {
    if (!/^\d+$/.test(key) || Number(key) < 1 || Number(key) > 65535) pl.fail(key, 'must be keyed by a port number from 1 to 65535');
    portLevel.set(Number(key), pl.child(key).oneOf('mode', MTLS_MODES, 'UNSET'));
  }
  if (portLevel.size > 0 && !selector) spec.fail('portLevelMtls', 'requires a selector (istio rejects port-level mTLS on namespace-wide policies)');
  return { ...(selector ? { selector } : {}), mode, portLevelMtls: portLevel };
}

function parseWorkloadEntryFields(w: FieldReader): WorkloadEntrySpec {
  const address = w.string('address');
  const ports: Record<string, number> = {};
  const p = w.child('ports');
  for (const k of Object.keys(p.obj)) ports[k] = p.port(k);
  const weight = w.optInt('weight', 0, 4294967295);
  return {
    address,
    ports,
    labels: w.stringMap('labels'),
    network: w.optString('network') ?? '',
    locality: w.optString('locality') ?? '',
    ...(weight !== undefined ? { weight } : {}),
    serviceAccount: w.optString('serviceAccount') ?? '',
  };
}

function parseServiceEntry(r: FieldReader): ServiceEntrySpec {
  const spec = r.child('spec', true);
  const hosts = spec.strings('hosts');
  if (hosts.length === 0) spec.fail('hosts', 'must list at least one host');
  const ports = spec.list('ports').map((p) => {
    const targetPort = p.optInt('targetPort', 1, 65535);
    return { number: p.port('number'), name: p.optString('name') ?? '', protocol: p.optString('protocol') ?? 'TCP', ...(targetPort !== undefined ? { targetPort } : {}) };
  });
  const ws = spec.has('workloadSelector') ? spec.child('workloadSelector').stringMap('labels') : undefined;
  const endpoints = spec.list('endpoints').map(parseWorkloadEntryFields);
  if (ws && endpoints.length > 0) spec.fail('workloadSelector', 'cannot be combined with endpoints');
  return {
    hosts,
    addresses: spec.cidrs('addresses'),
    ports,
    location: spec.oneOf('location', ['MESH_EXTERNAL', 'MESH_INTERNAL'], 'MESH_EXTERNAL'),
    resolution: spec.oneOf('resolution', ['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN'], 'NONE'),
    endpoints,
    ...(ws ? { workloadSelector: ws } : {}),
  };
}

function parseGateway(r: FieldReader): GatewaySpec {
  const spec = r.child('spec', true);
  const gatewayClassName = spec.string('gatewayClassName');
  const listeners = spec.list('listeners').map((l) => ({ name: l.string('name'), port: l.port('port'), protocol: l.string('protocol') }));
  const addrs = [...spec.list('addresses'), ...r.child('status').list('addresses')]
    .filter((a) => (a.optString('type') ?? 'IPAddress') === 'IPAddress')
    .map((a) => a.string('value'))
    .filter(ipOk);
  return { gatewayClassName, listeners, addresses: [...new Set(addrs)] };
}

const none = (): Record<string, never> => ({});

const kinds = new Map<string, KindSpec>();

/** Adds (or replaces) a kind. The table is open: L7 kinds are registered the same way. */
export function registerKind<S>(k: KindSpec<S>): void {
  kinds.set(kindIdOf(k.group, k.kind), k as KindSpec);
}

export function kindIdOf(group: string, kind: string): string {
  return group === '' ? kind : `${kind}.${group}`;
}

/** The KindSpec for an apiVersion (`v1`, `security.istio.io/v1`) and kind, if known and the version is served. */
export function lookupKind(apiVersion: string, kind: string): KindSpec | undefined {
  const slash = apiVersion.lastIndexOf('/');
  const group = slash < 0 ? '' : apiVersion.slice(0, slash);
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  const k = kinds.get(kindIdOf(group, kind));
  return k && k.versions.includes(version) ? k : undefined;
}

export function knownKinds(): KindSpec[] {
  return [...kinds.values()];
}

registerKind<NamespaceSpec>({ group: '', versions: ['v1'], kind: 'Namespace', namespaced: false, feeds: ['addresses', 'authorizations'], parse: none });
registerKind<NodeSpec>({ group: '', versions: ['v1'], kind: 'Node', namespaced: false, feeds: ['addresses'], parse: none });
registerKind<PodSpec>({ group: '', versions: ['v1'], kind: 'Pod', namespaced: true, feeds: ['addresses'], parse: parsePod });
registerKind<ServiceSpec>({ group: '', versions: ['v1'], kind: 'Service', namespaced: true, feeds: ['addresses'], parse: parseService });
registerKind<ServiceAccountSpec>({ group: '', versions: ['v1'], kind: 'ServiceAccount', namespaced: true, feeds: [], parse: none });
registerKind<EndpointSliceSpec>({ group: 'discovery.k8s.io', versions: ['v1'], kind: 'EndpointSlice', namespaced: true, feeds: ['addresses'], parse: parseEndpointSlice });
registerKind<AuthorizationPolicySpec>({
  group: 'security.istio.io',
  versions: ['v1', 'v1beta1'],
  kind: 'AuthorizationPolicy',
  namespaced: true,
  feeds: ['authorizations', 'addresses', 'waypoints'],
  parse: parseAuthorizationPolicy,
});
registerKind<PeerAuthenticationSpec>({
  group: 'security.istio.io',
  versions: ['v1', 'v1beta1'],
  kind: 'PeerAuthentication',
  namespaced: true,
  feeds: ['authorizations', 'addresses'],
  parse: parsePeerAuthentication,
});
registerKind<ServiceEntrySpec>({ group: 'networking.istio.io', versions: ['v1', 'v1beta1', 'v1alpha3'], kind: 'ServiceEntry', namespaced: true, feeds: ['addresses'], parse: parseServiceEntry });
registerKind<WorkloadEntrySpec>({
  group: 'networking.istio.io',
  versions: ['v1', 'v1beta1', 'v1alpha3'],
  kind: 'WorkloadEntry',
  namespaced: true,
  feeds: ['addresses'],
  parse: (r) => parseWorkloadEntryFields(r.child('spec', true)),
});
registerKind<GatewaySpec>({ group: 'gateway.networking.k8s.io', versions: ['v1', 'v1beta1'], kind: 'Gateway', namespaced: true, feeds: ['addresses'], parse: parseGateway });
registerKind<HTTPRouteSpec>({ group: 'gateway.networking.k8s.io', versions: ['v1', 'v1beta1'], kind: 'HTTPRoute', namespaced: true, feeds: ['waypoints'], parse: (r, m) => parseHTTPRoute(r, m.namespace) });
registerKind<GRPCRouteSpec>({ group: 'gateway.networking.k8s.io', versions: ['v1', 'v1alpha2'], kind: 'GRPCRoute', namespaced: true, feeds: ['waypoints'], parse: (r, m) => parseGRPCRoute(r, m.namespace) });
registerKind<VirtualServiceSpec>({ group: 'networking.istio.io', versions: ['v1', 'v1beta1', 'v1alpha3'], kind: 'VirtualService', namespaced: true, feeds: ['waypoints'], parse: parseVirtualService });
registerKind<DestinationRuleSpec>({ group: 'networking.istio.io', versions: ['v1', 'v1beta1', 'v1alpha3'], kind: 'DestinationRule', namespaced: true, feeds: ['waypoints'], parse: parseDestinationRule });
registerKind<RequestAuthenticationSpec>({
  group: 'security.istio.io',
  versions: ['v1', 'v1beta1'],
  kind: 'RequestAuthentication',
  namespaced: true,
  feeds: ['waypoints'],
  parse: parseRequestAuthentication,
});

export type ParseOutcome = { type: 'resource'; resource: Resource } | { type: 'issue'; issue: ConfigIssue } | { type: 'ignored'; kind: string; apiVersion: string; namespace: string; name: string };

/**
 * Validates one raw Kubernetes object. `source` is the file (or `kube`);
 * the issue carries `file` only when the source is a file.
 */
export function parseObject(raw: unknown, source: string, opts: { file?: string; defaultNamespace?: string } = {}): ParseOutcome {
  const file = opts.file;
  const base = { ...(file !== undefined ? { file } : {}) };
  if (!isObj(raw)) return { type: 'issue', issue: { ...base, kind: '', namespace: '', name: '', field: 'the document', message: 'must be a mapping (a Kubernetes object)' } };
  const kind = typeof raw.kind === 'string' ? raw.kind : '';
  const apiVersion = typeof raw.apiVersion === 'string' ? raw.apiVersion : '';
  const metaObj = isObj(raw.metadata) ? raw.metadata : {};
  const name = typeof metaObj.name === 'string' ? metaObj.name : '';
  const rawNs = typeof metaObj.namespace === 'string' ? metaObj.namespace : '';
  const issue = (field: string, message: string, namespace = rawNs): ParseOutcome => ({ type: 'issue', issue: { ...base, kind: kind || '(no kind)', namespace, name, field, message } });
  if (kind === '') return issue('kind', 'is required');
  if (apiVersion === '') return issue('apiVersion', 'is required');
  const spec = lookupKind(apiVersion, kind);
  if (!spec) return { type: 'ignored', kind, apiVersion, namespace: rawNs, name };
  const namespace = spec.namespaced ? rawNs || (opts.defaultNamespace ?? 'default') : '';
  try {
    const r = new FieldReader(raw, '');
    const m = r.child('metadata', true);
    const nm = m.string('name');
    if (!DNS_LABEL.test(nm.replace(/\./g, '-')) || nm.length > 253) m.fail('name', `must be a DNS-1123 name (lowercase letters, digits, '-', '.'); got '${nm}'`);
    if (spec.namespaced && !DNS_LABEL.test(namespace)) m.fail('namespace', `must be a DNS-1123 label; got '${namespace}'`);
    const meta: ResourceMeta = {
      kindId: kindIdOf(spec.group, spec.kind),
      kind: spec.kind,
      apiVersion,
      namespace,
      name: nm,
      labels: m.stringMap('labels'),
      annotations: m.stringMap('annotations'),
      source,
    };
    return { type: 'resource', resource: { ...meta, spec: spec.parse(r, meta) } };
  } catch (err) {
    if (err instanceof InvalidField) return issue(err.field, err.problem, namespace);
    throw err;
  }
}
