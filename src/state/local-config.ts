/**
 * The local cluster view: the workloads and services an agent knows about
 * when it runs without a control plane (ztunnel's LOCAL_XDS_PATH analogue).
 * The lab writes it from the manifests; the agent reads it. Parsed and
 * validated once, then deep-frozen. Every error names the field.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../common/errors.js';
import type { Authorization } from '../workload-api/types.js';

export interface LocalWorkload {
  /** Stable id, `<namespace>/<name>` for lab pods. */
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** Node the workload runs on (Pod spec.nodeName). */
  readonly node: string;
  /** Pod IP (status.podIP). */
  readonly ip: string;
  /** Path of the pod's network namespace, e.g. /var/run/netns/ambit-p-default-client. */
  readonly netns?: string;
  readonly labels: Readonly<Record<string, string>>;
  /** HBONE (the default) when the workload is in the mesh (its namespace is ambient); NONE otherwise. */
  readonly tunnelProtocol?: 'HBONE' | 'NONE';
  /** Relative weight for load balancing (Workload.capacity; default 1). */
  readonly capacity?: number;
  /** Where it runs, for locality-aware load balancing. */
  readonly locality?: { readonly region: string; readonly zone: string; readonly subzone: string };
  /** `namespace/name` of the WORKLOAD_SELECTOR policies that select it (from xDS). */
  readonly authorizationPolicies?: readonly string[];
  /** Workload.waypoint: pod-addressed traffic goes through it (waypoint-for workload|all). */
  readonly waypoint?: LocalGatewayAddress;
}

/**
 * A waypoint reference (istio.workload.GatewayAddress): the waypoint
 * Service's VIP (or a workload IP), or a Service by namespace and hostname,
 * plus the port its HBONE listener takes.
 */
export type LocalGatewayAddress =
  | { readonly kind: 'address'; readonly ip: string; readonly hboneMtlsPort: number }
  | { readonly kind: 'hostname'; readonly namespace: string; readonly hostname: string; readonly hboneMtlsPort: number };

export interface LocalServicePort {
  readonly name?: string;
  readonly port: number;
  readonly targetPort: number;
  readonly protocol: 'TCP' | 'UDP' | 'SCTP';
}

export interface LocalService {
  readonly name: string;
  readonly namespace: string;
  /** `<name>.<namespace>.svc.<clusterDomain>` */
  readonly hostname: string;
  readonly vips: readonly string[];
  readonly ports: readonly LocalServicePort[];
  readonly selector: Readonly<Record<string, string>>;
  /**
   * Explicit endpoints (from xDS: the workloads whose `services` map names
   * this service), each with its service port -> target port mapping. When
   * present they replace the selector.
   */
  readonly endpoints?: readonly LocalEndpoint[];
  /** Service.load_balancing (from xDS). */
  readonly loadBalancing?: LocalLoadBalancing;
  /** Service.waypoint: service-addressed traffic goes through it. */
  readonly waypoint?: LocalGatewayAddress;
}

export type LocalityScope = 'REGION' | 'ZONE' | 'SUBZONE' | 'NODE' | 'CLUSTER' | 'NETWORK';

export interface LocalLoadBalancing {
  /** Scopes in order of preference. */
  readonly routingPreference: readonly LocalityScope[];
  /** STRICT: only endpoints matching every scope; FAILOVER: the best-matching tier; PASSTHROUGH: no balancing, the original destination. */
  readonly mode: 'UNSPECIFIED' | 'STRICT' | 'FAILOVER' | 'PASSTHROUGH';
  readonly healthPolicy: 'ONLY_HEALTHY' | 'ALLOW_ALL';
}

export interface LocalEndpoint {
  readonly uid: string;
  /** Service port -> workload port; a missing or 0 entry means the service's targetPort. */
  readonly ports: Readonly<Record<number, number>>;
  readonly healthy: boolean;
}

export interface LocalNode {
  readonly name: string;
  /** The node's own (underlay) address in the lab. */
  readonly ip: string;
  /** Path of the node's network namespace. */
  readonly netns?: string;
}

export interface LocalClusterConfig {
  readonly trustDomain: string;
  readonly clusterDomain: string;
  readonly nodes: readonly LocalNode[];
  readonly workloads: readonly LocalWorkload[];
  readonly services: readonly LocalService[];
  /** L4 authorization policies (istio.security.Authorization), from xDS. */
  readonly policies?: readonly Authorization[];
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Obj, key: string, where: string, optional = false): string {
  const v = o[key];
  if (v === undefined && optional) return '';
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${where}.${key} must be a non-empty string`);
  return v;
}

function ip(o: Obj, key: string, where: string): string {
  const v = str(o, key, where);
  if (isIP(v) === 0) throw new ConfigError(`${where}.${key} must be an IP address, got '${v}'`);
  return v;
}

function labels(v: unknown, where: string): Record<string, string> {
  if (v === undefined) return {};
  if (!isObj(v)) throw new ConfigError(`${where} must be a map of strings`);
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw new ConfigError(`${where}.${k} must be a string`);
  }
  // a copy: freezing the result must not freeze the caller's objects
  return { ...v } as Record<string, string>;
}

function list(o: Obj, key: string, where: string): unknown[] {
  const v = o[key];
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new ConfigError(`${where}.${key} must be a list`);
  return v;
}

function port(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw new ConfigError(`${where} must be a port number from 1 to 65535`);
  }
  return v;
}

function tunnelProtocol(v: unknown, where: string): 'HBONE' | 'NONE' {
  if (v === undefined) return 'HBONE';
  if (v !== 'HBONE' && v !== 'NONE') throw new ConfigError(`${where} must be HBONE or NONE`);
  return v;
}

/** `waypoint: {address: <ip>} | {namespace, hostname}`, with `hboneMtlsPort` (default 15008). */
function gatewayAddress(v: unknown, where: string): LocalGatewayAddress | undefined {
  if (v === undefined) return undefined;
  if (!isObj(v)) throw new ConfigError(`${where} must be a mapping with 'address' or 'namespace' and 'hostname'`);
  const hboneMtlsPort = v.hboneMtlsPort === undefined ? 15008 : port(v.hboneMtlsPort, `${where}.hboneMtlsPort`);
  if (v.address !== undefined) return { kind: 'address', ip: ip(v, 'address', where), hboneMtlsPort };
  return { kind: 'hostname', namespace: str(v, 'namespace', where), hostname: str(v, 'hostname', where), hboneMtlsPort };
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

/** Validates an already-decoded document (JSON or YAML). `source` names it in errors. */
export function parseLocalClusterConfig(doc: unknown, source = 'cluster config'): LocalClusterConfig {
  if (!isObj(doc)) throw new ConfigError(`${source}: the document must be a mapping`);
  const trustDomain = doc.trustDomain === undefined ? 'cluster.local' : str(doc, 'trustDomain', source);
  const clusterDomain = doc.clusterDomain === undefined ? 'cluster.local' : str(doc, 'clusterDomain', source);
  const nodes = list(doc, 'nodes', source).map((n, i): LocalNode => {
    const where = `${source}: nodes[${i}]`;
    if (!isObj(n)) throw new ConfigError(`${where} must be a mapping`);
    const netns = str(n, 'netns', where, true);
    return { name: str(n, 'name', where), ip: ip(n, 'ip', where), ...(netns ? { netns } : {}) };
  });
  const seenIps = new Map<string, string>();
  const workloads = list(doc, 'workloads', source).map((w, i): LocalWorkload => {
    const where = `${source}: workloads[${i}]`;
    if (!isObj(w)) throw new ConfigError(`${where} must be a mapping`);
    const name = str(w, 'name', where);
    const namespace = str(w, 'namespace', where);
    const addr = ip(w, 'ip', where);
    const uid = w.uid === undefined ? `${namespace}/${name}` : str(w, 'uid', where);
    const prev = seenIps.get(addr);
    if (prev) throw new ConfigError(`${where}.ip ${addr} is already used by workload ${prev}`);
    seenIps.set(addr, uid);
    const netns = str(w, 'netns', where, true);
    const waypoint = gatewayAddress(w.waypoint, `${where}.waypoint`);
    return {
      uid,
      name,
      namespace,
      serviceAccount: w.serviceAccount === undefined ? 'default' : str(w, 'serviceAccount', where),
      node: str(w, 'node', where),
      ip: addr,
      ...(netns ? { netns } : {}),
      labels: labels(w.labels, `${where}.labels`),
      tunnelProtocol: tunnelProtocol(w.tunnelProtocol, `${where}.tunnelProtocol`),
      ...(waypoint ? { waypoint } : {}),
    };
  });
  const services = list(doc, 'services', source).map((s, i): LocalService => {
    const where = `${source}: services[${i}]`;
    if (!isObj(s)) throw new ConfigError(`${where} must be a mapping`);
    const name = str(s, 'name', where);
    const namespace = str(s, 'namespace', where);
    const vips = list(s, 'vips', where).map((v, j) => {
      if (typeof v !== 'string' || isIP(v) === 0) throw new ConfigError(`${where}.vips[${j}] must be an IP address`);
      return v;
    });
    const ports = list(s, 'ports', where).map((p, j): LocalServicePort => {
      const pw = `${where}.ports[${j}]`;
      if (!isObj(p)) throw new ConfigError(`${pw} must be a mapping`);
      const protocol = p.protocol === undefined ? 'TCP' : str(p, 'protocol', pw);
      if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') throw new ConfigError(`${pw}.protocol must be TCP, UDP or SCTP`);
      const portNum = port(p.port, `${pw}.port`);
      const pname = str(p, 'name', pw, true);
      return {
        ...(pname ? { name: pname } : {}),
        port: portNum,
        targetPort: p.targetPort === undefined ? portNum : port(p.targetPort, `${pw}.targetPort`),
        protocol,
      };
    });
    const waypoint = gatewayAddress(s.waypoint, `${where}.waypoint`);
    return {
      name,
      namespace,
      hostname: s.hostname === undefined ? `${name}.${namespace}.svc.${clusterDomain}` : str(s, 'hostname', where),
      vips,
      ports,
      selector: labels(s.selector, `${where}.selector`),
      ...(waypoint ? { waypoint } : {}),
    };
  });
  return deepFreeze({ trustDomain, clusterDomain, nodes, workloads, services });
}
