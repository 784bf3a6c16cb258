/**
 * Validators for Istio VirtualService and DestinationRule
 * (networking.istio.io v1/v1beta1/v1alpha3): http routes with match,
 * route, redirect, directResponse, rewrite, timeout, retries, fault, mirror
 * and headers; traffic policies with connectionPool, outlierDetection,
 * loadBalancer, retryBudget, tls mode, portLevelSettings and subsets.
 * Sections the waypoint does not read (tcp, tls, corsPolicy, ...) are kept
 * as names in `unsupported`. Registered in kinds.ts.
 */
import { GRPC_CODES } from '../waypoint/config.js';
import { EMPTY_MODIFIER, HEADER_NAME, headerName, type HeaderModifier } from './kinds-l7.js';
import type { FieldReader } from './validation.js';

export type IstioStringMatch = { readonly exact: string } | { readonly prefix: string } | { readonly regex: string } | { readonly present: true };

function istioStringMatch(r: FieldReader, allowEmpty: boolean): IstioStringMatch {
  const set = (['exact', 'prefix', 'regex'] as const).filter((k) => r.has(k));
  if (set.length === 0 && allowEmpty) return { present: true };
  if (set.length !== 1) r.fail(set[1] ?? 'exact', 'must set exactly one of exact, prefix, regex');
  const k = set[0] as 'exact' | 'prefix' | 'regex';
  if (k === 'regex') return { regex: r.optRegex('regex') ?? '' };
  const v = r.optString(k) ?? '';
  return k === 'exact' ? { exact: v } : { prefix: v };
}

function stringMatchMap(r: FieldReader, key: string, headers: boolean): Record<string, IstioStringMatch> {
  const m = r.child(key);
  const out: Record<string, IstioStringMatch> = {};
  for (const name of Object.keys(m.obj)) {
    if (headers && !HEADER_NAME.test(name)) m.fail(name, `must be an HTTP header name; got '${name}'`);
    out[headers ? name.toLowerCase() : name] = istioStringMatch(m.child(name, true), true);
  }
  return out;
}

export interface VsDestination {
  readonly host: string;
  readonly port?: number;
  readonly subset?: string;
}

export interface VsHeaders {
  readonly request: HeaderModifier;
  readonly response: HeaderModifier;
}

export interface VsMatch {
  readonly name?: string;
  readonly uri?: IstioStringMatch;
  readonly method?: IstioStringMatch;
  readonly authority?: IstioStringMatch;
  readonly headers: Readonly<Record<string, IstioStringMatch>>;
  readonly queryParams: Readonly<Record<string, IstioStringMatch>>;
  readonly withoutHeaders: Readonly<Record<string, IstioStringMatch>>;
  readonly port?: number;
  /** Fields present that the waypoint cannot evaluate (sourceLabels, gateways, ...). */
  readonly unsupported: readonly string[];
}

export interface VsFault {
  readonly delay?: { readonly fixedDelayMs: number; readonly percentage?: number };
  readonly abort?: { readonly httpStatus?: number; readonly grpcStatus?: string; readonly percentage?: number };
}

export interface VsHttpRoute {
  readonly name?: string;
  readonly match: readonly VsMatch[];
  readonly route: ReadonlyArray<{ readonly destination: VsDestination; readonly weight?: number; readonly headers: VsHeaders }>;
  readonly redirect?: { readonly uri?: string; readonly authority?: string; readonly port?: number; readonly scheme?: string; readonly redirectCode: number };
  readonly directResponse?: { readonly status: number; readonly body?: string };
  readonly rewrite?: { readonly uri?: string; readonly authority?: string; readonly uriRegexRewrite?: { readonly match: string; readonly rewrite: string } };
  readonly timeoutMs?: number;
  readonly retries?: { readonly attempts?: number; readonly perTryTimeoutMs?: number; readonly retryOn?: string };
  readonly fault?: VsFault;
  readonly mirrors: ReadonlyArray<{ readonly destination: VsDestination; readonly percentage?: number }>;
  readonly headers: VsHeaders;
  readonly unsupported: readonly string[];
}

export interface VirtualServiceSpec {
  readonly hosts: readonly string[];
  readonly gateways: readonly string[];
  readonly http: readonly VsHttpRoute[];
  /** Sections other than http (tcp, tls) that the waypoint does not read. */
  readonly unsupported: readonly string[];
}

function vsHeaderModifier(r: FieldReader): HeaderModifier {
  const pairs = (key: string): Record<string, string> => {
    const m = r.stringMap(key);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(m)) out[headerName(r, `${key}.${k}`, k)] = v;
    return out;
  };
  return { set: pairs('set'), add: pairs('add'), remove: r.strings('remove').map((n, i) => headerName(r, `remove[${i}]`, n)) };
}

function vsHeaders(r: FieldReader): VsHeaders {
  const h = r.child('headers');
  return { request: h.has('request') ? vsHeaderModifier(h.child('request')) : EMPTY_MODIFIER, response: h.has('response') ? vsHeaderModifier(h.child('response')) : EMPTY_MODIFIER };
}

function destination(r: FieldReader): VsDestination {
  const host = r.string('host');
  const port = r.has('port') ? r.child('port').port('number') : undefined;
  const subset = r.optString('subset');
  return { host, ...(port !== undefined ? { port } : {}), ...(subset ? { subset } : {}) };
}

/** Istio `percentage: {value: <double>}` (or the deprecated integer `percent`). */
function percentage(r: FieldReader): number | undefined {
  if (r.has('percentage')) return r.child('percentage').optNumber('value', 0, 100) ?? 0;
  return r.optInt('percent', 0, 100);
}

const VS_MATCH_UNSUPPORTED = ['sourceLabels', 'gateways', 'sourceNamespace', 'ignoreUriCase', 'scheme', 'statPrefix'];
const VS_ROUTE_UNSUPPORTED = ['corsPolicy', 'delegate', 'mirror_percent'];

function vsHttpRoute(h: FieldReader): VsHttpRoute {
  const match = h.list('match').map((m): VsMatch => {
    const name = m.optString('name');
    const port = m.optInt('port', 1, 65535);
    const uri = m.has('uri') ? istioStringMatch(m.child('uri'), false) : undefined;
    const method = m.has('method') ? istioStringMatch(m.child('method'), false) : undefined;
    const authority = m.has('authority') ? istioStringMatch(m.child('authority'), false) : undefined;
    if (uri && 'regex' in uri === false && 'present' in uri === false) {
      const v = 'exact' in uri ? uri.exact : 'prefix' in uri ? uri.prefix : '/';
      if (!v.startsWith('/')) m.fail('uri', `must start with '/'; got '${v}'`);
    }
    return {
      ...(name ? { name } : {}),
      ...(uri ? { uri } : {}),
      ...(method ? { method } : {}),
      ...(authority ? { authority } : {}),
      headers: stringMatchMap(m, 'headers', true),
      queryParams: stringMatchMap(m, 'queryParams', false),
      withoutHeaders: stringMatchMap(m, 'withoutHeaders', true),
      ...(port !== undefined ? { port } : {}),
      unsupported: VS_MATCH_UNSUPPORTED.filter((k) => m.has(k) && !(k === 'ignoreUriCase' && m.obj[k] === false)),
    };
  });
  const route = h.list('route').map((d) => {
    const weight = d.optInt('weight', 0, 100);
    return { destination: destination(d.child('destination', true)), ...(weight !== undefined ? { weight } : {}), headers: vsHeaders(d) };
  });
  let redirect: VsHttpRoute['redirect'];
  if (h.has('redirect')) {
    const r = h.child('redirect');
    const port = r.optInt('port', 1, 65535);
    const scheme = r.has('scheme') ? r.oneOf('scheme', ['http', 'https'] as const) : undefined;
    const uri = r.optString('uri');
    const authority = r.optString('authority');
    const code = r.optInt('redirectCode', 300, 399) ?? 301;
    if (![301, 302, 303, 307, 308].includes(code)) r.fail('redirectCode', `must be one of 301, 302, 303, 307, 308; got ${code}`);
    redirect = { ...(uri ? { uri } : {}), ...(authority ? { authority } : {}), ...(port !== undefined ? { port } : {}), ...(scheme ? { scheme } : {}), redirectCode: code };
  }
  let directResponse: VsHttpRoute['directResponse'];
  if (h.has('directResponse')) {
    const d = h.child('directResponse');
    const status = d.optInt('status', 200, 599) ?? d.fail('status', 'is required');
    const body = d.child('body');
    const text = body.optString('string') ?? (body.has('bytes') ? Buffer.from(body.string('bytes'), 'base64').toString('utf8') : undefined);
    directResponse = { status, ...(text !== undefined ? { body: text } : {}) };
  }
  const actions = [route.length > 0, redirect !== undefined, directResponse !== undefined].filter(Boolean).length;
  if (actions !== 1) h.fail('route', 'exactly one of route, redirect, directResponse must be set');
  let rewrite: VsHttpRoute['rewrite'];
  if (h.has('rewrite')) {
    const rw = h.child('rewrite');
    const uri = rw.optString('uri');
    const authority = rw.optString('authority');
    let uriRegexRewrite: { match: string; rewrite: string } | undefined;
    if (rw.has('uriRegexRewrite')) {
      const x = rw.child('uriRegexRewrite');
      uriRegexRewrite = { match: x.optRegex('match') ?? x.fail('match', 'is required'), rewrite: x.optString('rewrite') ?? '' };
    }
    if (uri !== undefined && uriRegexRewrite) rw.fail('uriRegexRewrite', 'cannot be combined with uri');
    rewrite = { ...(uri !== undefined ? { uri } : {}), ...(authority ? { authority } : {}), ...(uriRegexRewrite ? { uriRegexRewrite } : {}) };
  }
  let retries: VsHttpRoute['retries'];
  if (h.has('retries')) {
    const rt = h.child('retries');
    const attempts = rt.optInt('attempts', 0, 100);
    const perTryTimeoutMs = rt.optDurationMs('perTryTimeout');
    const retryOn = rt.optString('retryOn');
    retries = { ...(attempts !== undefined ? { attempts } : {}), ...(perTryTimeoutMs !== undefined ? { perTryTimeoutMs } : {}), ...(retryOn ? { retryOn } : {}) };
  }
  let fault: VsFault | undefined;
  if (h.has('fault')) {
    const f = h.child('fault');
    let delay: VsFault['delay'];
    if (f.has('delay')) {
      const d = f.child('delay');
      const fixedDelayMs = d.optDurationMs('fixedDelay') ?? d.fail('fixedDelay', 'is required (exponentialDelay is not supported)');
      if (fixedDelayMs < 1) d.fail('fixedDelay', 'must be at least 1ms');
      const pct = percentage(d);
      delay = { fixedDelayMs, ...(pct !== undefined ? { percentage: pct } : {}) };
    }
    let abort: VsFault['abort'];
    if (f.has('abort')) {
      const a = f.child('abort');
      const httpStatus = a.optInt('httpStatus', 200, 599);
      const grpcStatus = a.has('grpcStatus') ? a.oneOf('grpcStatus', GRPC_CODES) : undefined;
      if ((httpStatus === undefined) === (grpcStatus === undefined)) a.fail('httpStatus', 'exactly one of httpStatus, grpcStatus must be set');
      const pct = percentage(a);
      abort = { ...(httpStatus !== undefined ? { httpStatus } : {}), ...(grpcStatus !== undefined ? { grpcStatus } : {}), ...(pct !== undefined ? { percentage: pct } : {}) };
    }
    fault = { ...(delay ? { delay } : {}), ...(abort ? { abort } : {}) };
  }
  const mirrors: Array<{ destination: VsDestination; percentage?: number }> = [];
  if (h.has('mirror')) {
    const pct = h.has('mirrorPercentage') ? (h.child('mirrorPercentage').optNumber('value', 0, 100) ?? 0) : h.optInt('mirrorPercent', 0, 100);
    mirrors.push({ destination: destination(h.child('mirror')), ...(pct !== undefined ? { percentage: pct } : {}) });
  }
  for (const m of h.list('mirrors')) {
    const pct = m.has('percentage') ? (m.child('percentage').optNumber('value', 0, 100) ?? 0) : undefined;
    mirrors.push({ destination: destination(m.child('destination', true)), ...(pct !== undefined ? { percentage: pct } : {}) });
  }
  const name = h.optString('name');
  const timeoutMs = h.optDurationMs('timeout');
  return {
    ...(name ? { name } : {}),
    match,
    route,
    ...(redirect ? { redirect } : {}),
    ...(directResponse ? { directResponse } : {}),
    ...(rewrite ? { rewrite } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(retries ? { retries } : {}),
    ...(fault ? { fault } : {}),
    mirrors,
    headers: vsHeaders(h),
    unsupported: VS_ROUTE_UNSUPPORTED.filter((k) => h.has(k)),
  };
}

export function parseVirtualService(r: FieldReader): VirtualServiceSpec {
  const spec = r.child('spec', true);
  const hosts = spec.strings('hosts');
  if (hosts.length === 0) spec.fail('hosts', 'must list at least one host');
  return {
    hosts,
    gateways: spec.strings('gateways'),
    http: spec.list('http').map(vsHttpRoute),
    unsupported: ['tcp', 'tls'].filter((k) => spec.has(k)),
  };
}

export interface TrafficPolicySpec {
  readonly connectionPool?: {
    readonly maxConnections?: number;
    readonly connectTimeoutMs?: number;
    readonly http1MaxPendingRequests?: number;
    readonly http2MaxRequests?: number;
    readonly maxRequestsPerConnection?: number;
    readonly maxRetries?: number;
  };
  readonly outlierDetection?: {
    readonly consecutive5xxErrors?: number;
    readonly consecutiveGatewayErrors?: number;
    readonly intervalMs?: number;
    readonly baseEjectionTimeMs?: number;
    readonly maxEjectionPercent?: number;
  };
  readonly loadBalancer?:
    | { readonly simple: 'LEAST_REQUEST' | 'ROUND_ROBIN' | 'RANDOM' | 'PASSTHROUGH' | 'UNSPECIFIED' }
    | { readonly consistentHash: { readonly httpHeaderName?: string; readonly httpCookie?: string; readonly useSourceIp?: boolean; readonly httpQueryParameterName?: string } };
  readonly retryBudget?: { readonly percent?: number; readonly minRetryConcurrency?: number };
  readonly tlsMode?: string;
  readonly portLevelSettings: ReadonlyArray<{ readonly port: number; readonly policy: TrafficPolicySpec }>;
  /** Fields present that the waypoint does not apply. */
  readonly unsupported: readonly string[];
}

export interface DestinationRuleSpec {
  readonly host: string;
  readonly trafficPolicy?: TrafficPolicySpec;
  readonly subsets: ReadonlyArray<{ readonly name: string; readonly labels: Readonly<Record<string, string>>; readonly trafficPolicy?: TrafficPolicySpec }>;
  readonly workloadSelector?: Readonly<Record<string, string>>;
}

const U32 = 4294967295;

function trafficPolicy(t: FieldReader, portLevel: boolean): TrafficPolicySpec {
  const unsupported: string[] = [];
  let connectionPool: TrafficPolicySpec['connectionPool'];
  if (t.has('connectionPool')) {
    const cp = t.child('connectionPool');
    const tcp = cp.child('tcp');
    const http = cp.child('http');
    const v = {
      maxConnections: tcp.optInt('maxConnections', 0, U32),
      connectTimeoutMs: tcp.optDurationMs('connectTimeout'),
      http1MaxPendingRequests: http.optInt('http1MaxPendingRequests', 0, U32),
      http2MaxRequests: http.optInt('http2MaxRequests', 0, U32),
      maxRequestsPerConnection: http.optInt('maxRequestsPerConnection', 0, U32),
      maxRetries: http.optInt('maxRetries', 0, U32),
    };
    connectionPool = Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined));
    for (const k of ['tcpKeepalive', 'maxConnectionDuration', 'idleTimeout']) if (tcp.has(k)) unsupported.push(`connectionPool.tcp.${k}`);
    for (const k of ['idleTimeout', 'h2UpgradePolicy', 'useClientProtocol', 'maxConcurrentStreams']) if (http.has(k)) unsupported.push(`connectionPool.http.${k}`);
  }
  let outlierDetection: TrafficPolicySpec['outlierDetection'];
  if (t.has('outlierDetection')) {
    const od = t.child('outlierDetection');
    const v = {
      consecutive5xxErrors: od.optInt('consecutive5xxErrors', 0, U32) ?? od.optInt('consecutiveErrors', 0, U32),
      consecutiveGatewayErrors: od.optInt('consecutiveGatewayErrors', 0, U32),
      intervalMs: od.optDurationMs('interval'),
      baseEjectionTimeMs: od.optDurationMs('baseEjectionTime'),
      maxEjectionPercent: od.optInt('maxEjectionPercent', 0, 100),
    };
    outlierDetection = Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined));
    for (const k of ['minHealthPercent', 'splitExternalLocalOriginErrors', 'consecutiveLocalOriginFailures']) if (od.has(k)) unsupported.push(`outlierDetection.${k}`);
  }
  let loadBalancer: TrafficPolicySpec['loadBalancer'];
  if (t.has('loadBalancer')) {
    const lb = t.child('loadBalancer');
    if (lb.has('simple') && lb.has('consistentHash')) lb.fail('consistentHash', 'cannot be combined with simple');
    if (lb.has('consistentHash')) {
      const ch = lb.child('consistentHash');
      const keys = ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'].filter((k) => ch.has(k));
      if (keys.length !== 1) ch.fail(keys[1] ?? 'httpHeaderName', 'exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName must be set');
      const header = ch.optString('httpHeaderName');
      if (header !== undefined && !HEADER_NAME.test(header)) ch.fail('httpHeaderName', `must be an HTTP header name; got '${header}'`);
      const cookie = ch.has('httpCookie') ? ch.child('httpCookie').string('name') : undefined;
      const q = ch.optString('httpQueryParameterName');
      const ip = ch.has('useSourceIp') ? ch.bool('useSourceIp', true) : undefined;
      loadBalancer = { consistentHash: { ...(header ? { httpHeaderName: header } : {}), ...(cookie ? { httpCookie: cookie } : {}), ...(q ? { httpQueryParameterName: q } : {}), ...(ip !== undefined ? { useSourceIp: ip } : {}) } };
      for (const k of ['ringHash', 'maglev', 'minimumRingSize']) if (ch.has(k)) unsupported.push(`loadBalancer.consistentHash.${k}`);
    } else if (lb.has('simple')) {
      const s = lb.oneOf('simple', ['UNSPECIFIED', 'LEAST_CONN', 'LEAST_REQUEST', 'ROUND_ROBIN', 'RANDOM', 'PASSTHROUGH'] as const);
      loadBalancer = { simple: s === 'LEAST_CONN' ? 'LEAST_REQUEST' : s };
    }
    for (const k of ['localityLbSetting', 'warmupDurationSecs', 'warmup']) if (lb.has(k)) unsupported.push(`loadBalancer.${k}`);
  }
  let retryBudget: TrafficPolicySpec['retryBudget'];
  if (t.has('retryBudget')) {
    const rb = t.child('retryBudget');
    const pv = rb.obj.percent;
    const percent = pv !== null && typeof pv === 'object' ? rb.child('percent').optNumber('value', 0, 100) : rb.optNumber('percent', 0, 100);
    const minRetryConcurrency = rb.optInt('minRetryConcurrency', 0, U32);
    retryBudget = { ...(percent !== undefined ? { percent } : {}), ...(minRetryConcurrency !== undefined ? { minRetryConcurrency } : {}) };
  }
  const tlsMode = t.has('tls') ? t.child('tls').oneOf('mode', ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'] as const, 'DISABLE') : undefined;
  for (const k of ['tunnel', 'proxyProtocol']) if (t.has(k)) unsupported.push(k);
  const portLevelSettings = portLevel
    ? []
    : t.list('portLevelSettings').map((p) => {
        const port = p.child('port', true).port('number');
        return { port, policy: trafficPolicy(p, true) };
      });
  return {
    ...(connectionPool ? { connectionPool } : {}),
    ...(outlierDetection ? { outlierDetection } : {}),
    ...(loadBalancer ? { loadBalancer } : {}),
    ...(retryBudget ? { retryBudget } : {}),
    ...(tlsMode ? { tlsMode } : {}),
    portLevelSettings,
    unsupported,
  };
}

export function parseDestinationRule(r: FieldReader): DestinationRuleSpec {
  const spec = r.child('spec', true);
  const host = spec.string('host');
  const seen = new Set<string>();
  const subsets = spec.list('subsets').map((s, i) => {
    const name = s.string('name');
    if (seen.has(name)) spec.fail(`subsets[${i}].name`, `'${name}' is listed twice`);
    seen.add(name);
    return { name, labels: s.stringMap('labels'), ...(s.has('trafficPolicy') ? { trafficPolicy: trafficPolicy(s.child('trafficPolicy'), false) } : {}) };
  });
  const ws = spec.has('workloadSelector') ? spec.child('workloadSelector').stringMap('matchLabels') : undefined;
  return { host, ...(spec.has('trafficPolicy') ? { trafficPolicy: trafficPolicy(spec.child('trafficPolicy'), false) } : {}), subsets, ...(ws ? { workloadSelector: ws } : {}) };
}

