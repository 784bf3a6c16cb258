/**
 * The JSON shape the control plane produces for one waypoint: exactly the
 * input of the waypoint's compileL7Config (src/waypoint/config.ts), which
 * encodeL7Config (src/waypoint/l7-codec.ts) puts on the wire as
 * ambit.l7.v1.L7Config. Only what a resource sets is written; the waypoint
 * fills Istio's defaults for the rest (retries, pool limits, ...), so a
 * field left out here means "the Istio default". Durations are
 * milliseconds.
 */

export interface HeaderOpsInput {
  set?: Record<string, string>;
  add?: Record<string, string>;
  remove?: string[];
}

export interface HeaderMatchInput {
  name: string;
  exact?: string;
  prefix?: string;
  regex?: string;
  present?: boolean;
  invert?: boolean;
}

export interface MatchInput {
  path?: { exact?: string; prefix?: string; regex?: string };
  method?: string;
  headers?: HeaderMatchInput[];
  queryParams?: HeaderMatchInput[];
}

export interface BackendInput {
  cluster: string;
  weight?: number;
  requestHeaders?: HeaderOpsInput;
  responseHeaders?: HeaderOpsInput;
}

export interface RetryInput {
  attempts?: number;
  perTryTimeout?: number;
  /** Comma-separated Envoy retry-on conditions. */
  retryOn?: string;
  retriableStatusCodes?: number[];
  backoff?: number;
  budget?: { percent?: number; minRetryConcurrency?: number };
}

export interface FaultInput {
  delay?: { fixedDelay: number; percentage?: number };
  abort?: { httpStatus?: number; grpcStatus?: string; percentage?: number };
}

export interface RouteInput {
  name: string;
  matches?: MatchInput[];
  backends?: BackendInput[];
  redirect?: { scheme?: string; host?: string; port?: number; path?: string; prefix?: string; status?: number };
  directResponse?: { status: number; body?: string };
  rewrite?: { uriPrefix?: string; uriRegex?: { pattern: string; substitution: string }; authority?: string };
  requestHeaders?: HeaderOpsInput;
  responseHeaders?: HeaderOpsInput;
  mirrors?: Array<{ cluster: string; percentage?: number }>;
  timeout?: number;
  retries?: RetryInput;
  fault?: FaultInput;
}

export interface AuthzPolicyInput {
  name: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  dryRun?: boolean;
  rules: Array<{
    from?: Array<{ source: Record<string, string[]> }>;
    to?: Array<{ operation: Record<string, string[]> }>;
    when?: Array<{ key: string; values?: string[]; notValues?: string[] }>;
  }>;
}

export interface JwtRuleInput {
  issuer: string;
  audiences?: string[];
  jwksUri?: string;
  jwks?: string;
  fromHeaders?: Array<{ name: string; prefix?: string }>;
  forwardOriginalToken?: boolean;
}

export type ServiceProtocol = 'http' | 'grpc' | 'tcp';

export interface ServiceInput {
  hostname: string;
  namespace: string;
  addresses: string[];
  port: number;
  protocol: ServiceProtocol;
  routes: RouteInput[];
  authorization: AuthzPolicyInput[];
  requestAuthentication: JwtRuleInput[];
}

export interface EndpointInput {
  address: string;
  port: number;
  labels: Record<string, string>;
  workload: string;
  namespace: string;
  principal: string;
}

export interface ClusterInput {
  name: string;
  protocol: 'http1' | 'h2c';
  endpoints: EndpointInput[];
  connectionPool?: {
    maxConnections?: number;
    maxPendingRequests?: number;
    maxRequests?: number;
    maxRequestsPerConnection?: number;
    maxRetries?: number;
    connectTimeout?: number;
  };
  outlierDetection?: { consecutive5xxErrors?: number; consecutiveGatewayErrors?: number; interval?: number; baseEjectionTime?: number; maxEjectionPercent?: number };
  loadBalancer?: { simple?: 'LEAST_REQUEST' | 'ROUND_ROBIN' | 'RANDOM'; consistentHash?: { httpHeaderName?: string; httpCookie?: { name: string }; useSourceIp?: boolean; httpQueryParameterName?: string } };
}

export interface WorkloadInput {
  address: string;
  principal: string;
  namespace: string;
  name: string;
}

/** One waypoint's config: the compileL7Config / encodeL7Config input. */
export interface L7ConfigInput {
  services: ServiceInput[];
  clusters: ClusterInput[];
  workloads: WorkloadInput[];
}

/** Drops undefined values and empty objects/lists so the JSON only says what a resource set. */
export function compact<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0) continue;
    out[k] = v;
  }
  return out as T;
}

/** Header ops in the JSON shape, or undefined when they do nothing. */
export function headerOps(m: { set: Readonly<Record<string, string>>; add: Readonly<Record<string, string>>; remove: readonly string[] } | undefined): HeaderOpsInput | undefined {
  if (!m) return undefined;
  const out = compact<HeaderOpsInput>({ set: { ...m.set }, add: { ...m.add }, remove: [...m.remove] });
  return Object.keys(out).length === 0 ? undefined : out;
}

/** Merges header ops (later wins for set; add and remove accumulate). */
export function mergeHeaderOps(a: HeaderOpsInput | undefined, b: HeaderOpsInput | undefined): HeaderOpsInput | undefined {
  if (!a) return b;
  if (!b) return a;
  return compact<HeaderOpsInput>({ set: { ...a.set, ...b.set }, add: { ...a.add, ...b.add }, remove: [...new Set([...(a.remove ?? []), ...(b.remove ?? [])])] });
}
