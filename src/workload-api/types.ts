/**
 * TypeScript shapes of the ambient workload API resources
 * (proto/istio/workload/workload.proto, proto/istio/security/authorization.proto).
 *
 * Representation (the protobufjs object shape, normalized):
 * - field names are camelCase (`serviceAccount`, `hboneMtlsPort`);
 * - enums are their STRING names ('HBONE', 'UNHEALTHY'); a decoded number that
 *   the enum does not define is rejected by the codec, never passed on;
 * - `bytes` are Uint8Array (Buffer after decoding); IPs are raw 4/16 bytes;
 * - after decoding every scalar, repeated and map field is present with its
 *   proto3 default; message fields that were absent are `undefined`;
 * - when building a value to encode, every field may be left out (proto3
 *   defaults are not put on the wire);
 * - a oneof is the member that is set (`Address` also carries `type`).
 * These are plain data: structured-clone safe, so they can go to worker threads.
 */

export const TUNNEL_PROTOCOLS = ['NONE', 'HBONE', 'LEGACY_ISTIO_MTLS'] as const;
export type TunnelProtocol = (typeof TUNNEL_PROTOCOLS)[number];
export const WORKLOAD_TYPES = ['DEPLOYMENT', 'CRONJOB', 'POD', 'JOB'] as const;
export type WorkloadType = (typeof WORKLOAD_TYPES)[number];
export const WORKLOAD_STATUSES = ['HEALTHY', 'UNHEALTHY'] as const;
export type WorkloadStatus = (typeof WORKLOAD_STATUSES)[number];
export type NetworkMode = 'STANDARD' | 'HOST_NETWORK';
export const APP_PROTOCOLS = ['UNKNOWN', 'HTTP11', 'HTTP2', 'GRPC', 'TCP', 'TLS'] as const;
export type AppProtocol = (typeof APP_PROTOCOLS)[number];
export type IPFamilies = 'AUTOMATIC' | 'IPV4_ONLY' | 'IPV6_ONLY' | 'DUAL';
export type ApplicationTunnelProtocol = 'NONE' | 'PROXY';
export const LB_SCOPES = ['UNSPECIFIED_SCOPE', 'REGION', 'ZONE', 'SUBZONE', 'NODE', 'CLUSTER', 'NETWORK'] as const;
export type LoadBalancingScope = (typeof LB_SCOPES)[number];
export const LB_MODES = ['UNSPECIFIED_MODE', 'STRICT', 'FAILOVER', 'PASSTHROUGH'] as const;
export type LoadBalancingMode = (typeof LB_MODES)[number];
export type LoadBalancingHealthPolicy = 'ONLY_HEALTHY' | 'ALLOW_ALL';
export type ServiceVisibility = 'PUBLIC' | 'NAMESPACE';

export interface NetworkAddress {
  network?: string;
  address?: Uint8Array;
  /** CIDR prefix length; absent means one host. */
  length?: number;
}

export interface NamespacedHostname {
  namespace?: string;
  hostname?: string;
}

/** oneof destination: set `hostname` or `address`. */
export interface GatewayAddress {
  hostname?: NamespacedHostname;
  address?: NetworkAddress;
  hboneMtlsPort?: number;
}

export interface WeightedWaypoint {
  destination?: GatewayAddress;
  weight?: number;
}

export interface Port {
  servicePort?: number;
  /** 0 means the endpoint's own port. */
  targetPort?: number;
  appProtocol?: AppProtocol;
}

export interface PortList {
  ports?: Port[];
}

export interface Locality {
  region?: string;
  zone?: string;
  subzone?: string;
}

export interface ApplicationTunnel {
  protocol?: ApplicationTunnelProtocol;
  port?: number;
}

/** google.protobuf.Any as protobufjs shapes it. */
export interface AnyValue {
  typeUrl?: string;
  value?: Uint8Array;
}

export interface Extension {
  name?: string;
  config?: AnyValue;
}

export interface LoadBalancing {
  routingPreference?: LoadBalancingScope[];
  mode?: LoadBalancingMode;
  healthPolicy?: LoadBalancingHealthPolicy;
}

export interface Workload {
  uid?: string;
  name?: string;
  namespace?: string;
  addresses?: Uint8Array[];
  hostname?: string;
  network?: string;
  tunnelProtocol?: TunnelProtocol;
  trustDomain?: string;
  serviceAccount?: string;
  waypoint?: GatewayAddress;
  networkGateway?: GatewayAddress;
  node?: string;
  canonicalName?: string;
  canonicalRevision?: string;
  workloadType?: WorkloadType;
  workloadName?: string;
  nativeTunnel?: boolean;
  applicationTunnel?: ApplicationTunnel;
  /** Key `namespace/hostname`. */
  services?: Record<string, PortList>;
  /** `namespace/name` of selector policies. */
  authorizationPolicies?: string[];
  status?: WorkloadStatus;
  clusterId?: string;
  locality?: Locality;
  networkMode?: NetworkMode;
  extensions?: Extension[];
  /** google.protobuf.UInt32Value; unset means 1. */
  capacity?: { value?: number };
}

export interface Service {
  name?: string;
  namespace?: string;
  hostname?: string;
  addresses?: NetworkAddress[];
  ports?: Port[];
  subjectAltNames?: string[];
  waypoint?: GatewayAddress;
  loadBalancing?: LoadBalancing;
  ipFamilies?: IPFamilies;
  extensions?: Extension[];
  canonical?: boolean;
  ingressUseWaypoint?: boolean;
  weightedWaypoints?: WeightedWaypoint[];
  visibility?: ServiceVisibility;
}

/** istio.workload.Address: oneof type { workload = 1; service = 2 }. */
export type Address = { type: 'workload'; workload: Workload } | { type: 'service'; service: Service };

// istio.security

export type AuthorizationScope = 'GLOBAL' | 'NAMESPACE' | 'WORKLOAD_SELECTOR';
export type AuthorizationAction = 'ALLOW' | 'DENY';

/** oneof match_type; `presence` is google.protobuf.Empty (`{}`). */
export type StringMatch = { exact: string } | { prefix: string } | { suffix: string } | { presence: Record<string, never> };

export interface ServiceAccountMatch {
  namespace?: string;
  serviceAccount?: string;
}

/** istio.security.Address: a CIDR (`length` is the prefix length). */
export interface CidrAddress {
  address?: Uint8Array;
  length?: number;
}

export interface Match {
  namespaces?: StringMatch[];
  notNamespaces?: StringMatch[];
  serviceAccounts?: ServiceAccountMatch[];
  notServiceAccounts?: ServiceAccountMatch[];
  principals?: StringMatch[];
  notPrincipals?: StringMatch[];
  sourceIps?: CidrAddress[];
  notSourceIps?: CidrAddress[];
  destinationIps?: CidrAddress[];
  notDestinationIps?: CidrAddress[];
  destinationPorts?: number[];
  notDestinationPorts?: number[];
  extensions?: Extension[];
}

export interface Clause {
  matches?: Match[];
}

export interface Rule {
  clauses?: Clause[];
}

export interface Authorization {
  name?: string;
  namespace?: string;
  scope?: AuthorizationScope;
  action?: AuthorizationAction;
  rules?: Rule[];
  dryRun?: boolean;
  extensions?: Extension[];
}

export const ADDRESS_TYPE_URL = 'type.googleapis.com/istio.workload.Address';
export const AUTHORIZATION_TYPE_URL = 'type.googleapis.com/istio.security.Authorization';
