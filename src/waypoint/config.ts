/**
 * The waypoint's L7 config model (the future `ambit.l7.v1` proto, see
 * proto/ambit/l7/v1/l7.proto) and its one-time validation.
 *
 * `compileL7Config(input)` checks a plain JSON-like object once, fills in
 * Istio/Envoy defaults where the input is silent (reference
 * waypoint-and-l7.md §2), and returns a deeply frozen `L7Config`. Nothing at
 * request time re-validates. A bad field throws WaypointConfigError naming the
 * field path (e.g. `services[0].routes[1].retries.attempts`).
 *
 * Durations are milliseconds (number) or strings like "100ms", "1.5s", "2m".
 */
import { WaypointConfigError } from './errors.js';

export type StringMatchKind = 'exact' | 'prefix' | 'regex' | 'present';
export interface HeaderMatch { readonly name: string; readonly kind: StringMatchKind; readonly value: string; readonly regex?: RegExp; readonly invert: boolean }
export interface PathMatch { readonly kind: 'exact' | 'prefix' | 'regex'; readonly value: string; readonly regex?: RegExp }
export interface RouteMatch { readonly path?: PathMatch; readonly method?: string; readonly headers: readonly HeaderMatch[]; readonly queryParams: readonly HeaderMatch[] }
export interface HeaderOps { readonly set: readonly (readonly [string, string])[]; readonly add: readonly (readonly [string, string])[]; readonly remove: readonly string[] }
export interface WeightedBackend { readonly cluster: string; readonly weight: number; readonly requestHeaders: HeaderOps; readonly responseHeaders: HeaderOps }
export interface Redirect { readonly scheme?: string; readonly host?: string; readonly port?: number; readonly path?: string; readonly prefix?: string; readonly status: number }
export interface Rewrite { readonly uriPrefix?: string; readonly uriRegex?: { readonly pattern: RegExp; readonly substitution: string }; readonly authority?: string }
export interface Mirror { readonly cluster: string; readonly percentage: number }
export interface DirectResponse { readonly status: number; readonly body: string }

export const RETRY_CONDITIONS = [
  '5xx', 'gateway-error', 'reset', 'connect-failure', 'refused-stream', 'retriable-4xx', 'retriable-status-codes',
  'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
] as const;
export type RetryCondition = (typeof RETRY_CONDITIONS)[number];

export interface RetryBudget { readonly percent: number; readonly minRetryConcurrency: number }
export interface RetryPolicy {
  /** Extra tries: total = 1 + attempts. 0 disables retries. */
  readonly attempts: number;
  /** 0 = the route timeout bounds each try. */
  readonly perTryTimeoutMs: number;
  readonly retryOn: ReadonlySet<RetryCondition>;
  readonly retriableStatusCodes: ReadonlySet<number>;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly retryIgnorePreviousHosts: boolean;
  readonly budget?: RetryBudget;
}
export interface Fault {
  readonly delay?: { readonly fixedDelayMs: number; readonly percentage: number };
  readonly abort?: { readonly httpStatus?: number; readonly grpcStatus?: number; readonly percentage: number };
}
export interface RouteConfig {
  readonly name: string;
  /** OR of matches; empty matches everything. */
  readonly matches: readonly RouteMatch[];
  readonly backends: readonly WeightedBackend[];
  readonly redirect?: Redirect;
  readonly directResponse?: DirectResponse;
  readonly rewrite?: Rewrite;
  readonly requestHeaders: HeaderOps;
  readonly responseHeaders: HeaderOps;
  readonly mirrors: readonly Mirror[];
  /** Whole-request timeout including retries; 0 = none (Istio default). */
  readonly timeoutMs: number;
  readonly retries: RetryPolicy;
  readonly fault?: Fault;
}

export interface StringMatcher { readonly kind: 'exact' | 'prefix' | 'suffix' | 'any'; readonly value: string }
export interface AuthzSource {
  readonly principals: readonly StringMatcher[]; readonly notPrincipals: readonly StringMatcher[];
  readonly namespaces: readonly StringMatcher[]; readonly notNamespaces: readonly StringMatcher[];
  readonly requestPrincipals: readonly StringMatcher[]; readonly notRequestPrincipals: readonly StringMatcher[];
}
export interface AuthzOperation {
  readonly hosts: readonly StringMatcher[]; readonly notHosts: readonly StringMatcher[];
  readonly methods: readonly StringMatcher[]; readonly notMethods: readonly StringMatcher[];
  readonly paths: readonly StringMatcher[]; readonly notPaths: readonly StringMatcher[];
}
export interface AuthzCondition { readonly key: string; readonly values: readonly StringMatcher[]; readonly notValues: readonly StringMatcher[] }
export interface AuthzRule { readonly from: readonly AuthzSource[]; readonly to: readonly AuthzOperation[]; readonly when: readonly AuthzCondition[] }
export interface AuthzPolicy { readonly name: string; readonly action: 'ALLOW' | 'DENY' | 'AUDIT'; readonly dryRun: boolean; readonly rules: readonly AuthzRule[] }

export interface JwtRule {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly jwksUri?: string;
  readonly jwksFile?: string;
  readonly jwks?: string;
  /** Where tokens are read; default `Authorization: Bearer <token>`. */
  readonly fromHeaders: readonly { readonly name: string; readonly prefix: string }[];
  readonly forwardOriginalToken: boolean;
  /** JWKS cache lifetime for jwksUri (Istio/Envoy default 5 min). */
  readonly jwksCacheMs: number;
}

export interface ServiceConfig {
  /** FQDN, e.g. reviews.default.svc.cluster.local; also the destination_service label. */
  readonly hostname: string;
  readonly namespace: string;
  /** VIPs the CONNECT authority may name (HBONE-in). */
  readonly addresses: readonly string[];
  readonly port: number;
  /** 'tcp' = opaque TCP service: no HTTP parsing, bytes go to the first route's first backend cluster. */
  readonly protocol: 'http' | 'grpc' | 'tcp';
  readonly routes: readonly RouteConfig[];
  readonly authorization: readonly AuthzPolicy[];
  readonly requestAuthentication: readonly JwtRule[];
}

export interface Endpoint {
  readonly address: string;
  readonly port: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly workload: string;
  readonly namespace: string;
  readonly principal: string;
}
export interface ConnectionPool {
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  /** 0 = unlimited. */
  readonly maxRequestsPerConnection: number;
  readonly maxRetries: number;
  readonly connectTimeoutMs: number;
}
export interface OutlierDetection {
  readonly consecutive5xx: number;
  readonly consecutiveGatewayErrors: number;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
}
export type LoadBalancer =
  | { readonly kind: 'LEAST_REQUEST' | 'ROUND_ROBIN' | 'RANDOM' }
  | { readonly kind: 'CONSISTENT_HASH'; readonly header?: string; readonly cookie?: string; readonly sourceIp?: boolean; readonly queryParam?: string };
export interface ClusterConfig {
  readonly name: string;
  readonly protocol: 'http1' | 'h2c';
  readonly endpoints: readonly Endpoint[];
  readonly connectionPool: ConnectionPool;
  readonly outlierDetection?: OutlierDetection;
  readonly loadBalancer: LoadBalancer;
}

/** A pod whose own traffic is bound to this waypoint (istio.io/waypoint-for workload|all). */
export interface WorkloadConfig {
  readonly address: string;
  /** SPIFFE id expected from the workload's node agent ('unknown' = not checked). */
  readonly principal: string;
  readonly namespace: string;
  readonly name: string;
}

export interface L7Config {
  readonly version: string;
  readonly services: readonly ServiceConfig[];
  readonly clusters: ReadonlyMap<string, ClusterConfig>;
  /** CONNECT authorities naming one of these addresses (any port) pass through as TCP. */
  readonly workloads: readonly WorkloadConfig[];
}

/** Istio/Envoy defaults where the resource is silent (reference §2). */
export const DEFAULTS = Object.freeze({
  retryAttempts: 2,
  // Istio's mesh default; since 1.24 503 is not in it (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY).
  retryOn: Object.freeze(['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'] as RetryCondition[]),
  retriableStatusCodes: Object.freeze([] as number[]),
  backoffBaseMs: 25,
  retryIgnorePreviousHosts: true,
  retryBudgetPercent: 20,
  retryBudgetMinConcurrency: 3,
  maxConnections: 2 ** 32 - 1,
  maxPendingRequests: 2 ** 32 - 1,
  maxRequests: 2 ** 32 - 1,
  maxRetries: 2 ** 32 - 1,
  connectTimeoutMs: 10_000,
  consecutive5xx: 5,
  consecutiveGatewayErrors: 0,
  outlierIntervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 10,
  jwksCacheMs: 5 * 60_000,
  redirectStatus: 301,
});

// ---------------------------------------------------------------- helpers

type Obj = Record<string, unknown>;
const fail = (field: string, problem: string): never => {
  throw new WaypointConfigError(field, problem);
};
function obj(v: unknown, f: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(f, 'must be an object');
  return v as Obj;
}
function optObj(v: unknown, f: string): Obj | undefined {
  return v === undefined ? undefined : obj(v, f);
}
function str(v: unknown, f: string, opts: { empty?: boolean } = {}): string {
  if (typeof v !== 'string') return fail(f, 'must be a string');
  if (!opts.empty && v.length === 0) fail(f, 'must not be empty');
  return v;
}
function optStr(v: unknown, f: string): string | undefined {
  return v === undefined ? undefined : str(v, f);
}
function int(v: unknown, f: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) return fail(f, 'must be an integer');
  if (v < min || v > max) fail(f, `must be between ${min} and ${max}`);
  return v;
}
function optInt(v: unknown, f: string, min: number, max: number, dflt: number): number {
  return v === undefined ? dflt : int(v, f, min, max);
}
function pct(v: unknown, f: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 100) fail(f, 'must be a percentage between 0 and 100');
  return v as number;
}
function bool(v: unknown, f: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') fail(f, 'must be true or false');
  return v as boolean;
}
function arr(v: unknown, f: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) return fail(f, 'must be a list');
  return v;
}
function oneOf<T extends string>(v: unknown, f: string, allowed: readonly T[], dflt?: T): T {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'string' || !allowed.includes(v as T)) return fail(f, `must be one of ${allowed.join(', ')}`);
  return v as T;
}
function regex(v: string, f: string): RegExp {
  try {
    // RE2-style full match, as Envoy's safe_regex
    return new RegExp(`^(?:${v})$`);
  } catch (err) {
    return fail(f, `is not a valid regular expression (${(err as Error).message})`);
  }
}
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** Milliseconds from a number or "250ms" / "1.5s" / "2m" / "1h". */
export function parseDuration(v: unknown, f: string): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) fail(f, 'must be a non-negative duration');
    return v;
  }
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    // google.protobuf.Duration as decoded by protobufjs: { seconds, nanos }
    const d = v as { seconds?: unknown; nanos?: unknown };
    const secs = Number(d.seconds ?? 0);
    const nanos = Number(d.nanos ?? 0);
    if (!Number.isFinite(secs) || !Number.isFinite(nanos) || secs < 0 || nanos < 0) fail(f, 'must be a non-negative duration');
    return secs * 1000 + nanos / 1e6;
  }
  if (typeof v !== 'string') return fail(f, 'must be a duration (milliseconds, a string like "100ms", "1s", or {seconds, nanos})');
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v.trim());
  if (!m) return fail(f, `has a bad duration '${v}' (use e.g. "100ms", "1.5s", "2m")`);
  return Number(m[1]) * (UNITS[m[2] as string] as number);
}
function optDuration(v: unknown, f: string, dflt: number): number {
  return v === undefined ? dflt : parseDuration(v, f);
}
/** Proto enums arrive upper case (HTTP1, GRPC); JSON config uses lower case. */
const lower = (v: unknown): unknown => (typeof v === 'string' ? v.toLowerCase() : v);
function allowKeys(o: Obj, f: string, keys: readonly string[]): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) fail(`${f}.${k}`, `is not a known field (known: ${keys.join(', ')})`);
}

// ---------------------------------------------------------------- pieces

function headerMatch(v: unknown, f: string): HeaderMatch {
  const o = obj(v, f);
  allowKeys(o, f, ['name', 'exact', 'prefix', 'regex', 'present', 'invert']);
  const name = str(o.name, `${f}.name`).toLowerCase();
  const invert = bool(o.invert, `${f}.invert`, false);
  const kinds = (['exact', 'prefix', 'regex', 'present'] as const).filter((k) => o[k] !== undefined);
  if (kinds.length !== 1) fail(f, 'must set exactly one of exact, prefix, regex, present');
  const kind = kinds[0] as StringMatchKind;
  if (kind === 'present') {
    bool(o.present, `${f}.present`, true);
    return { name, kind, value: '', invert: invert || o.present === false };
  }
  const value = str(o[kind], `${f}.${kind}`, { empty: true });
  return kind === 'regex' ? { name, kind, value, regex: regex(value, `${f}.regex`), invert } : { name, kind, value, invert };
}

function routeMatch(v: unknown, f: string): RouteMatch {
  const o = obj(v, f);
  allowKeys(o, f, ['path', 'method', 'headers', 'queryParams']);
  let path: PathMatch | undefined;
  if (o.path !== undefined) {
    const p = obj(o.path, `${f}.path`);
    allowKeys(p, `${f}.path`, ['exact', 'prefix', 'regex']);
    const kinds = (['exact', 'prefix', 'regex'] as const).filter((k) => p[k] !== undefined);
    if (kinds.length !== 1) fail(`${f}.path`, 'must set exactly one of exact, prefix, regex');
    const kind = kinds[0] as PathMatch['kind'];
    const value = str(p[kind], `${f}.path.${kind}`);
    if (kind !== 'regex' && !value.startsWith('/')) fail(`${f}.path.${kind}`, "must start with '/'");
    path = kind === 'regex' ? { kind, value, regex: regex(value, `${f}.path.regex`) } : { kind, value };
  }
  const method = o.method === undefined ? undefined : str(o.method, `${f}.method`).toUpperCase();
  return {
    ...(path ? { path } : {}),
    ...(method ? { method } : {}),
    headers: arr(o.headers, `${f}.headers`).map((h, i) => headerMatch(h, `${f}.headers[${i}]`)),
    queryParams: arr(o.queryParams, `${f}.queryParams`).map((h, i) => headerMatch(h, `${f}.queryParams[${i}]`)),
  };
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-zA-Z]+$/;
function headerOps(v: unknown, f: string): HeaderOps {
  const o = optObj(v, f) ?? {};
  allowKeys(o, f, ['set', 'add', 'remove']);
  const pairs = (x: unknown, ff: string): [string, string][] => {
    const m = optObj(x, ff) ?? {};
    return Object.entries(m).map(([k, val]) => {
      if (!HEADER_NAME.test(k)) fail(`${ff}.${k}`, 'is not a valid header name');
      if (k.startsWith(':') || k.toLowerCase() === 'host') fail(`${ff}.${k}`, 'cannot be modified (use rewrite.authority)');
      return [k.toLowerCase(), str(val, `${ff}.${k}`, { empty: true })];
    });
  };
  return {
    set: pairs(o.set, `${f}.set`),
    add: pairs(o.add, `${f}.add`),
    remove: arr(o.remove, `${f}.remove`).map((r, i) => str(r, `${f}.remove[${i}]`).toLowerCase()),
  };
}

function retryPolicy(v: unknown, f: string): RetryPolicy {
  const o = optObj(v, f);
  if (!o) {
    return {
      attempts: DEFAULTS.retryAttempts, perTryTimeoutMs: 0, retryOn: new Set(DEFAULTS.retryOn), retriableStatusCodes: new Set(DEFAULTS.retriableStatusCodes),
      backoffBaseMs: DEFAULTS.backoffBaseMs, backoffMaxMs: DEFAULTS.backoffBaseMs * 10, retryIgnorePreviousHosts: DEFAULTS.retryIgnorePreviousHosts,
    };
  }
  allowKeys(o, f, ['attempts', 'perTryTimeout', 'retryOn', 'retriableStatusCodes', 'backoff', 'maxBackoff', 'retryIgnorePreviousHosts', 'budget']);
  const retryOn = new Set<RetryCondition>();
  const codes = new Set<number>(arr(o.retriableStatusCodes, `${f}.retriableStatusCodes`).map((c, i) => int(c, `${f}.retriableStatusCodes[${i}]`, 100, 599)));
  if (o.retryOn === undefined) DEFAULTS.retryOn.forEach((c) => retryOn.add(c));
  else {
    const list = typeof o.retryOn === 'string' ? o.retryOn.split(',') : arr(o.retryOn, `${f}.retryOn`);
    list.forEach((raw, i) => {
      const c = str(raw, `${f}.retryOn[${i}]`).trim();
      if (/^\d{3}$/.test(c)) {
        codes.add(int(Number(c), `${f}.retryOn[${i}]`, 100, 599));
        retryOn.add('retriable-status-codes');
      } else retryOn.add(oneOf(c, `${f}.retryOn[${i}]`, RETRY_CONDITIONS));
    });
  }
  if (codes.size > 0) retryOn.add('retriable-status-codes');
  const backoffBaseMs = optDuration(o.backoff, `${f}.backoff`, DEFAULTS.backoffBaseMs);
  if (backoffBaseMs <= 0 && o.backoff !== undefined) fail(`${f}.backoff`, 'must be greater than 0');
  let budget: RetryBudget | undefined;
  if (o.budget !== undefined) {
    const b = obj(o.budget, `${f}.budget`);
    allowKeys(b, `${f}.budget`, ['percent', 'minRetryConcurrency']);
    budget = { percent: pct(b.percent, `${f}.budget.percent`, DEFAULTS.retryBudgetPercent), minRetryConcurrency: optInt(b.minRetryConcurrency, `${f}.budget.minRetryConcurrency`, 0, 2 ** 32 - 1, DEFAULTS.retryBudgetMinConcurrency) };
  }
  return {
    attempts: optInt(o.attempts, `${f}.attempts`, 0, 100, DEFAULTS.retryAttempts),
    perTryTimeoutMs: optDuration(o.perTryTimeout, `${f}.perTryTimeout`, 0),
    retryOn,
    retriableStatusCodes: codes,
    backoffBaseMs,
    backoffMaxMs: optDuration(o.maxBackoff, `${f}.maxBackoff`, backoffBaseMs * 10),
    retryIgnorePreviousHosts: bool(o.retryIgnorePreviousHosts, `${f}.retryIgnorePreviousHosts`, DEFAULTS.retryIgnorePreviousHosts),
    ...(budget ? { budget } : {}),
  };
}

function fault(v: unknown, f: string): Fault | undefined {
  const o = optObj(v, f);
  if (!o) return undefined;
  allowKeys(o, f, ['delay', 'abort']);
  const out: { delay?: Fault['delay']; abort?: Fault['abort'] } = {};
  if (o.delay !== undefined) {
    const d = obj(o.delay, `${f}.delay`);
    allowKeys(d, `${f}.delay`, ['fixedDelay', 'percentage']);
    const fixedDelayMs = parseDuration(d.fixedDelay, `${f}.delay.fixedDelay`);
    if (fixedDelayMs < 1) fail(`${f}.delay.fixedDelay`, 'must be at least 1ms');
    // Istio: no delay when percentage is unset
    out.delay = { fixedDelayMs, percentage: pct(d.percentage, `${f}.delay.percentage`, 0) };
  }
  if (o.abort !== undefined) {
    const a = obj(o.abort, `${f}.abort`);
    allowKeys(a, `${f}.abort`, ['httpStatus', 'grpcStatus', 'percentage']);
    if ((a.httpStatus === undefined) === (a.grpcStatus === undefined)) fail(`${f}.abort`, 'must set exactly one of httpStatus, grpcStatus');
    out.abort = {
      ...(a.httpStatus !== undefined ? { httpStatus: int(a.httpStatus, `${f}.abort.httpStatus`, 200, 599) } : {}),
      ...(a.grpcStatus !== undefined ? { grpcStatus: grpcCode(a.grpcStatus, `${f}.abort.grpcStatus`) } : {}),
      percentage: pct(a.percentage, `${f}.abort.percentage`, 0),
    };
  }
  return out;
}

export const GRPC_CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'] as const;
function grpcCode(v: unknown, f: string): number {
  if (typeof v === 'number') return int(v, f, 0, 16);
  const i = GRPC_CODES.indexOf(str(v, f).toUpperCase() as (typeof GRPC_CODES)[number]);
  if (i < 0) fail(f, `must be a grpc status code name (${GRPC_CODES.join(', ')}) or number`);
  return i;
}

function route(v: unknown, f: string, clusters: ReadonlySet<string>, i: number): RouteConfig {
  const o = obj(v, f);
  allowKeys(o, f, ['name', 'matches', 'backends', 'redirect', 'directResponse', 'rewrite', 'requestHeaders', 'responseHeaders', 'mirrors', 'timeout', 'retries', 'fault']);
  const backends = arr(o.backends, `${f}.backends`).map((b, j): WeightedBackend => {
    const bf = `${f}.backends[${j}]`;
    const bo = obj(b, bf);
    allowKeys(bo, bf, ['cluster', 'weight', 'requestHeaders', 'responseHeaders']);
    const cluster = str(bo.cluster, `${bf}.cluster`);
    if (!clusters.has(cluster)) fail(`${bf}.cluster`, `names unknown cluster '${cluster}'`);
    return { cluster, weight: optInt(bo.weight, `${bf}.weight`, 0, 1_000_000, 1), requestHeaders: headerOps(bo.requestHeaders, `${bf}.requestHeaders`), responseHeaders: headerOps(bo.responseHeaders, `${bf}.responseHeaders`) };
  });
  let redirect: Redirect | undefined;
  if (o.redirect !== undefined) {
    const r = obj(o.redirect, `${f}.redirect`);
    allowKeys(r, `${f}.redirect`, ['scheme', 'host', 'port', 'path', 'prefix', 'status']);
    if (r.path !== undefined && r.prefix !== undefined) fail(`${f}.redirect`, 'must not set both path and prefix');
    const scheme = r.scheme === undefined ? undefined : oneOf(r.scheme, `${f}.redirect.scheme`, ['http', 'https']);
    const host = optStr(r.host, `${f}.redirect.host`);
    const path = optStr(r.path, `${f}.redirect.path`);
    const prefix = optStr(r.prefix, `${f}.redirect.prefix`);
    redirect = {
      ...(scheme ? { scheme } : {}), ...(host ? { host } : {}), ...(path ? { path } : {}), ...(prefix ? { prefix } : {}),
      ...(r.port !== undefined ? { port: int(r.port, `${f}.redirect.port`, 1, 65535) } : {}),
      status: r.status === undefined ? DEFAULTS.redirectStatus : (oneOf(String(r.status), `${f}.redirect.status`, ['301', '302', '303', '307', '308']), Number(r.status)),
    };
  }
  let directResponse: DirectResponse | undefined;
  if (o.directResponse !== undefined) {
    const d = obj(o.directResponse, `${f}.directResponse`);
    allowKeys(d, `${f}.directResponse`, ['status', 'body']);
    directResponse = { status: int(d.status, `${f}.directResponse.status`, 200, 599), body: d.body === undefined ? '' : str(d.body, `${f}.directResponse.body`, { empty: true }) };
  }
  const actions = [backends.length > 0, redirect !== undefined, directResponse !== undefined].filter(Boolean).length;
  if (actions !== 1) fail(f, 'must set exactly one of backends, redirect, directResponse');
  if (backends.length > 0 && backends.every((b) => b.weight === 0)) fail(`${f}.backends`, 'must have at least one backend with weight > 0');
  let rewrite: Rewrite | undefined;
  if (o.rewrite !== undefined) {
    const r = obj(o.rewrite, `${f}.rewrite`);
    allowKeys(r, `${f}.rewrite`, ['uriPrefix', 'uriRegex', 'authority']);
    if (r.uriPrefix !== undefined && r.uriRegex !== undefined) fail(`${f}.rewrite`, 'must not set both uriPrefix and uriRegex');
    let uriRegex: Rewrite['uriRegex'];
    if (r.uriRegex !== undefined) {
      const x = obj(r.uriRegex, `${f}.rewrite.uriRegex`);
      const pattern = str(x.pattern, `${f}.rewrite.uriRegex.pattern`);
      try {
        uriRegex = { pattern: new RegExp(pattern), substitution: str(x.substitution, `${f}.rewrite.uriRegex.substitution`, { empty: true }) };
      } catch (err) {
        fail(`${f}.rewrite.uriRegex.pattern`, `is not a valid regular expression (${(err as Error).message})`);
      }
    }
    const uriPrefix = r.uriPrefix === undefined ? undefined : str(r.uriPrefix, `${f}.rewrite.uriPrefix`, { empty: true });
    const authority = optStr(r.authority, `${f}.rewrite.authority`);
    rewrite = { ...(uriPrefix !== undefined ? { uriPrefix } : {}), ...(uriRegex ? { uriRegex } : {}), ...(authority ? { authority } : {}) };
  }
  const mirrors = arr(o.mirrors, `${f}.mirrors`).map((m, j): Mirror => {
    const mf = `${f}.mirrors[${j}]`;
    const mo = obj(m, mf);
    allowKeys(mo, mf, ['cluster', 'percentage']);
    const cluster = str(mo.cluster, `${mf}.cluster`);
    if (!clusters.has(cluster)) fail(`${mf}.cluster`, `names unknown cluster '${cluster}'`);
    // Istio: absent mirrorPercentage = 100 %
    return { cluster, percentage: pct(mo.percentage, `${mf}.percentage`, 100) };
  });
  const flt = fault(o.fault, `${f}.fault`);
  return {
    name: o.name === undefined ? `route-${i}` : str(o.name, `${f}.name`),
    matches: arr(o.matches, `${f}.matches`).map((m, j) => routeMatch(m, `${f}.matches[${j}]`)),
    backends,
    ...(redirect ? { redirect } : {}),
    ...(directResponse ? { directResponse } : {}),
    ...(rewrite ? { rewrite } : {}),
    requestHeaders: headerOps(o.requestHeaders, `${f}.requestHeaders`),
    responseHeaders: headerOps(o.responseHeaders, `${f}.responseHeaders`),
    mirrors,
    timeoutMs: optDuration(o.timeout, `${f}.timeout`, 0),
    retries: retryPolicy(o.retries, `${f}.retries`),
    ...(flt ? { fault: flt } : {}),
  };
}

/** Istio string match: "abc" exact, "abc*" prefix, "*abc" suffix, "*" any. */
export function stringMatcher(v: unknown, f: string): StringMatcher {
  const s = str(v, f);
  if (s === '*') return { kind: 'any', value: '' };
  if (s.endsWith('*')) return { kind: 'prefix', value: s.slice(0, -1) };
  if (s.startsWith('*')) return { kind: 'suffix', value: s.slice(1) };
  return { kind: 'exact', value: s };
}
const matchers = (v: unknown, f: string, upper = false): StringMatcher[] =>
  arr(v, f).map((x, i) => {
    const m = stringMatcher(x, `${f}[${i}]`);
    return upper ? { ...m, value: m.value.toUpperCase() } : m;
  });

function authzPolicy(v: unknown, f: string): AuthzPolicy {
  const o = obj(v, f);
  allowKeys(o, f, ['name', 'action', 'dryRun', 'rules']);
  return {
    name: str(o.name, `${f}.name`),
    action: oneOf(o.action, `${f}.action`, ['ALLOW', 'DENY', 'AUDIT'], 'ALLOW'),
    dryRun: bool(o.dryRun, `${f}.dryRun`, false),
    rules: arr(o.rules, `${f}.rules`).map((r, i) => {
      const rf = `${f}.rules[${i}]`;
      const ro = obj(r, rf);
      allowKeys(ro, rf, ['from', 'to', 'when']);
      return {
        from: arr(ro.from, `${rf}.from`).map((s, j) => {
          const sf = `${rf}.from[${j}]`;
          const so = obj(obj(s, sf).source, `${sf}.source`);
          allowKeys(so, `${sf}.source`, ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'requestPrincipals', 'notRequestPrincipals']);
          return {
            principals: matchers(so.principals, `${sf}.source.principals`), notPrincipals: matchers(so.notPrincipals, `${sf}.source.notPrincipals`),
            namespaces: matchers(so.namespaces, `${sf}.source.namespaces`), notNamespaces: matchers(so.notNamespaces, `${sf}.source.notNamespaces`),
            requestPrincipals: matchers(so.requestPrincipals, `${sf}.source.requestPrincipals`), notRequestPrincipals: matchers(so.notRequestPrincipals, `${sf}.source.notRequestPrincipals`),
          };
        }),
        to: arr(ro.to, `${rf}.to`).map((t, j) => {
          const tf = `${rf}.to[${j}]`;
          const op = obj(obj(t, tf).operation, `${tf}.operation`);
          allowKeys(op, `${tf}.operation`, ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths']);
          return {
            hosts: matchers(op.hosts, `${tf}.operation.hosts`), notHosts: matchers(op.notHosts, `${tf}.operation.notHosts`),
            methods: matchers(op.methods, `${tf}.operation.methods`, true), notMethods: matchers(op.notMethods, `${tf}.operation.notMethods`, true),
            paths: matchers(op.paths, `${tf}.operation.paths`), notPaths: matchers(op.notPaths, `${tf}.operation.notPaths`),
          };
        }),
        when: arr(ro.when, `${rf}.when`).map((c, j) => {
          const cf = `${rf}.when[${j}]`;
          const co = obj(c, cf);
          allowKeys(co, cf, ['key', 'values', 'notValues']);
          const key = str(co.key, `${cf}.key`);
          if (!/^(request\.headers\[[^\]]+\]|request\.auth\.claims(\[[^\]]+\])+|request\.auth\.principal|request\.auth\.audiences|request\.auth\.presenter|source\.principal|source\.namespace|source\.ip|destination\.port|connection\.sni)$/.test(key)) {
            fail(`${cf}.key`, `'${key}' is not a supported condition key`);
          }
          return { key, values: matchers(co.values, `${cf}.values`), notValues: matchers(co.notValues, `${cf}.notValues`) };
        }),
      };
    }),
  };
}

function jwtRule(v: unknown, f: string): JwtRule {
  const o = obj(v, f);
  allowKeys(o, f, ['issuer', 'audiences', 'jwksUri', 'jwksFile', 'jwks', 'fromHeaders', 'forwardOriginalToken', 'jwksCache']);
  const sources = ['jwksUri', 'jwksFile', 'jwks'].filter((k) => o[k] !== undefined);
  if (sources.length !== 1) fail(f, 'must set exactly one of jwksUri, jwksFile, jwks');
  if (o.jwksUri !== undefined) {
    const u = str(o.jwksUri, `${f}.jwksUri`);
    if (!/^https?:\/\//.test(u)) fail(`${f}.jwksUri`, 'must be an http or https URL');
  }
  const fromHeaders = arr(o.fromHeaders, `${f}.fromHeaders`).map((h, i) => {
    const ho = obj(h, `${f}.fromHeaders[${i}]`);
    return { name: str(ho.name, `${f}.fromHeaders[${i}].name`).toLowerCase(), prefix: ho.prefix === undefined ? '' : str(ho.prefix, `${f}.fromHeaders[${i}].prefix`, { empty: true }) };
  });
  const jwksUri = optStr(o.jwksUri, `${f}.jwksUri`);
  const jwksFile = optStr(o.jwksFile, `${f}.jwksFile`);
  const jwks = optStr(o.jwks, `${f}.jwks`);
  return {
    issuer: str(o.issuer, `${f}.issuer`),
    audiences: arr(o.audiences, `${f}.audiences`).map((a, i) => str(a, `${f}.audiences[${i}]`)),
    ...(jwksUri ? { jwksUri } : {}), ...(jwksFile ? { jwksFile } : {}), ...(jwks ? { jwks } : {}),
    fromHeaders: fromHeaders.length > 0 ? fromHeaders : [{ name: 'authorization', prefix: 'Bearer ' }],
    forwardOriginalToken: bool(o.forwardOriginalToken, `${f}.forwardOriginalToken`, false),
    jwksCacheMs: optDuration(o.jwksCache, `${f}.jwksCache`, DEFAULTS.jwksCacheMs),
  };
}

function cluster(v: unknown, f: string): ClusterConfig {
  const o = obj(v, f);
  allowKeys(o, f, ['name', 'protocol', 'endpoints', 'connectionPool', 'outlierDetection', 'loadBalancer']);
  const cp = optObj(o.connectionPool, `${f}.connectionPool`) ?? {};
  allowKeys(cp, `${f}.connectionPool`, ['maxConnections', 'maxPendingRequests', 'maxRequests', 'maxRequestsPerConnection', 'maxRetries', 'connectTimeout']);
  const U32 = 2 ** 32 - 1;
  let outlierDetection: OutlierDetection | undefined;
  if (o.outlierDetection !== undefined) {
    const od = obj(o.outlierDetection, `${f}.outlierDetection`);
    allowKeys(od, `${f}.outlierDetection`, ['consecutive5xxErrors', 'consecutiveGatewayErrors', 'interval', 'baseEjectionTime', 'maxEjectionPercent']);
    outlierDetection = {
      consecutive5xx: optInt(od.consecutive5xxErrors, `${f}.outlierDetection.consecutive5xxErrors`, 0, U32, DEFAULTS.consecutive5xx),
      consecutiveGatewayErrors: optInt(od.consecutiveGatewayErrors, `${f}.outlierDetection.consecutiveGatewayErrors`, 0, U32, DEFAULTS.consecutiveGatewayErrors),
      intervalMs: optDuration(od.interval, `${f}.outlierDetection.interval`, DEFAULTS.outlierIntervalMs),
      baseEjectionTimeMs: optDuration(od.baseEjectionTime, `${f}.outlierDetection.baseEjectionTime`, DEFAULTS.baseEjectionTimeMs),
      maxEjectionPercent: pct(od.maxEjectionPercent, `${f}.outlierDetection.maxEjectionPercent`, DEFAULTS.maxEjectionPercent),
    };
  }
  const lbo = optObj(o.loadBalancer, `${f}.loadBalancer`) ?? {};
  allowKeys(lbo, `${f}.loadBalancer`, ['simple', 'consistentHash']);
  let loadBalancer: LoadBalancer;
  if (lbo.consistentHash !== undefined) {
    if (lbo.simple !== undefined) fail(`${f}.loadBalancer`, 'must not set both simple and consistentHash');
    const ch = obj(lbo.consistentHash, `${f}.loadBalancer.consistentHash`);
    allowKeys(ch, `${f}.loadBalancer.consistentHash`, ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName']);
    const set = ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'].filter((k) => ch[k] !== undefined);
    if (set.length !== 1) fail(`${f}.loadBalancer.consistentHash`, 'must set exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName');
    const header = ch.httpHeaderName === undefined ? undefined : str(ch.httpHeaderName, `${f}.loadBalancer.consistentHash.httpHeaderName`).toLowerCase();
    const cookie = ch.httpCookie === undefined ? undefined : str(obj(ch.httpCookie, `${f}.loadBalancer.consistentHash.httpCookie`).name, `${f}.loadBalancer.consistentHash.httpCookie.name`);
    const queryParam = optStr(ch.httpQueryParameterName, `${f}.loadBalancer.consistentHash.httpQueryParameterName`);
    loadBalancer = { kind: 'CONSISTENT_HASH', ...(header ? { header } : {}), ...(cookie ? { cookie } : {}), ...(queryParam ? { queryParam } : {}), ...(ch.useSourceIp !== undefined ? { sourceIp: bool(ch.useSourceIp, `${f}.loadBalancer.consistentHash.useSourceIp`, true) } : {}) };
  } else {
    loadBalancer = { kind: oneOf(lbo.simple, `${f}.loadBalancer.simple`, ['LEAST_REQUEST', 'ROUND_ROBIN', 'RANDOM'], 'LEAST_REQUEST') };
  }
  return {
    name: str(o.name, `${f}.name`),
    protocol: oneOf(lower(o.protocol), `${f}.protocol`, ['http1', 'h2c'], 'http1'),
    endpoints: arr(o.endpoints, `${f}.endpoints`).map((e, i): Endpoint => {
      const ef = `${f}.endpoints[${i}]`;
      const eo = obj(e, ef);
      allowKeys(eo, ef, ['address', 'port', 'labels', 'workload', 'namespace', 'principal']);
      const labels = optObj(eo.labels, `${ef}.labels`) ?? {};
      for (const [k, lv] of Object.entries(labels)) str(lv, `${ef}.labels.${k}`, { empty: true });
      return {
        address: str(eo.address, `${ef}.address`), port: int(eo.port, `${ef}.port`, 1, 65535), labels: labels as Record<string, string>,
        workload: eo.workload === undefined ? 'unknown' : str(eo.workload, `${ef}.workload`),
        namespace: eo.namespace === undefined ? 'unknown' : str(eo.namespace, `${ef}.namespace`),
        principal: eo.principal === undefined ? 'unknown' : str(eo.principal, `${ef}.principal`),
      };
    }),
    connectionPool: {
      maxConnections: optInt(cp.maxConnections, `${f}.connectionPool.maxConnections`, 1, U32, DEFAULTS.maxConnections),
      maxPendingRequests: optInt(cp.maxPendingRequests, `${f}.connectionPool.maxPendingRequests`, 0, U32, DEFAULTS.maxPendingRequests),
      maxRequests: optInt(cp.maxRequests, `${f}.connectionPool.maxRequests`, 1, U32, DEFAULTS.maxRequests),
      maxRequestsPerConnection: optInt(cp.maxRequestsPerConnection, `${f}.connectionPool.maxRequestsPerConnection`, 0, U32, 0),
      maxRetries: optInt(cp.maxRetries, `${f}.connectionPool.maxRetries`, 0, U32, DEFAULTS.maxRetries),
      connectTimeoutMs: optDuration(cp.connectTimeout, `${f}.connectionPool.connectTimeout`, DEFAULTS.connectTimeoutMs),
    },
    ...(outlierDetection ? { outlierDetection } : {}),
    loadBalancer,
  };
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v) && !(v instanceof RegExp)) {
    if (v instanceof Map) v.forEach((x) => deepFreeze(x));
    else if (v instanceof Set) {
      // sets are exposed as ReadonlySet; nothing inside needs freezing
    } else Object.values(v).forEach((x) => deepFreeze(x));
    Object.freeze(v);
  }
  return v;
}

/** Validates `input` once, applies defaults, and returns a deeply frozen config. Throws WaypointConfigError. */
export function compileL7Config(input: unknown): L7Config {
  const o = obj(input, 'config');
  allowKeys(o, 'config', ['version', 'services', 'clusters', 'workloads']);
  const clusterList = arr(o.clusters, 'clusters').map((c, i) => cluster(c, `clusters[${i}]`));
  const clusters = new Map<string, ClusterConfig>();
  clusterList.forEach((c, i) => {
    if (clusters.has(c.name)) fail(`clusters[${i}].name`, `duplicates cluster '${c.name}'`);
    clusters.set(c.name, c);
  });
  const names = new Set(clusters.keys());
  const seen = new Set<string>();
  const services = arr(o.services, 'services').map((s, i): ServiceConfig => {
    const f = `services[${i}]`;
    const so = obj(s, f);
    allowKeys(so, f, ['hostname', 'namespace', 'addresses', 'port', 'protocol', 'routes', 'authorization', 'requestAuthentication']);
    const hostname = str(so.hostname, `${f}.hostname`).toLowerCase();
    const port = int(so.port, `${f}.port`, 1, 65535);
    if (seen.has(`${hostname}:${port}`)) fail(`${f}`, `duplicates service ${hostname}:${port}`);
    seen.add(`${hostname}:${port}`);
    return {
      hostname,
      namespace: so.namespace === undefined ? (hostname.split('.')[1] ?? 'unknown') : str(so.namespace, `${f}.namespace`),
      addresses: arr(so.addresses, `${f}.addresses`).map((a, j) => str(a, `${f}.addresses[${j}]`)),
      port,
      protocol: oneOf(lower(so.protocol), `${f}.protocol`, ['http', 'grpc', 'tcp'], 'http'),
      routes: arr(so.routes, `${f}.routes`).map((r, j) => route(r, `${f}.routes[${j}]`, names, j)),
      authorization: arr(so.authorization, `${f}.authorization`).map((p, j) => authzPolicy(p, `${f}.authorization[${j}]`)),
      requestAuthentication: arr(so.requestAuthentication, `${f}.requestAuthentication`).map((p, j) => jwtRule(p, `${f}.requestAuthentication[${j}]`)),
    };
  });
  const seenWl = new Set<string>();
  const workloads = arr(o.workloads, 'workloads').map((w, i): WorkloadConfig => {
    const f = `workloads[${i}]`;
    const wo = obj(w, f);
    allowKeys(wo, f, ['address', 'principal', 'namespace', 'name']);
    const address = str(wo.address, `${f}.address`);
    if (seenWl.has(address)) fail(`${f}.address`, `duplicates workload address ${address}`);
    seenWl.add(address);
    return {
      address,
      principal: wo.principal === undefined ? 'unknown' : str(wo.principal, `${f}.principal`, { empty: true }) || 'unknown',
      namespace: wo.namespace === undefined ? 'unknown' : str(wo.namespace, `${f}.namespace`, { empty: true }) || 'unknown',
      name: wo.name === undefined ? 'unknown' : str(wo.name, `${f}.name`, { empty: true }) || 'unknown',
    };
  });
  return deepFreeze({ version: o.version === undefined ? '' : str(o.version, 'version', { empty: true }), services, clusters, workloads });
}
