/**
 * Validators for Gateway API HTTPRoute and GRPCRoute (v1): parentRefs,
 * hostnames, rules with matches, filters, backendRefs, timeouts and retry,
 * with the API's defaults (parent group/kind Gateway, PathPrefix "/",
 * Exact header matches, weight 1, redirect 302, mirror 100 %). Registered
 * in kinds.ts.
 */
import { HEADER_NAME, headerName, type HeaderModifier } from './kinds-l7.js';
import type { FieldReader } from './validation.js';

export interface GwParentRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace: string;
  readonly port?: number;
  readonly sectionName?: string;
}

export interface GwObjectRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace: string;
  readonly port?: number;
}

export interface GwBackendRef extends GwObjectRef {
  readonly weight: number;
  readonly filters: readonly GwFilter[];
}

export type GwPathModifier = { readonly type: 'ReplaceFullPath'; readonly value: string } | { readonly type: 'ReplacePrefixMatch'; readonly value: string };

export type GwFilter =
  | { readonly type: 'RequestHeaderModifier' | 'ResponseHeaderModifier'; readonly headers: HeaderModifier }
  | { readonly type: 'RequestRedirect'; readonly scheme?: string; readonly hostname?: string; readonly port?: number; readonly path?: GwPathModifier; readonly statusCode: number }
  | { readonly type: 'URLRewrite'; readonly hostname?: string; readonly path?: GwPathModifier }
  | { readonly type: 'RequestMirror'; readonly backendRef: GwObjectRef; readonly percent: number }
  | { readonly type: 'Unsupported'; readonly name: string };

export interface GwValueMatch {
  readonly type: 'Exact' | 'RegularExpression';
  readonly name: string;
  readonly value: string;
}

export interface GwHttpMatch {
  readonly path: { readonly type: 'Exact' | 'PathPrefix' | 'RegularExpression'; readonly value: string };
  readonly headers: readonly GwValueMatch[];
  readonly queryParams: readonly GwValueMatch[];
  readonly method?: string;
}

export interface GwHttpRule {
  readonly name?: string;
  /** Never empty: a rule without matches gets the API default (PathPrefix /). */
  readonly matches: readonly GwHttpMatch[];
  readonly filters: readonly GwFilter[];
  readonly backendRefs: readonly GwBackendRef[];
  readonly timeouts: { readonly requestMs?: number; readonly backendRequestMs?: number };
  readonly retry?: { readonly attempts?: number; readonly codes: readonly number[]; readonly backoffMs?: number };
}

export interface HTTPRouteSpec {
  readonly parentRefs: readonly GwParentRef[];
  readonly hostnames: readonly string[];
  readonly rules: readonly GwHttpRule[];
}

export interface GwGrpcMatch {
  readonly method?: { readonly type: 'Exact' | 'RegularExpression'; readonly service?: string; readonly method?: string };
  readonly headers: readonly GwValueMatch[];
}

export interface GwGrpcRule {
  readonly name?: string;
  /** Empty matches every request. */
  readonly matches: readonly GwGrpcMatch[];
  readonly filters: readonly GwFilter[];
  readonly backendRefs: readonly GwBackendRef[];
}

export interface GRPCRouteSpec {
  readonly parentRefs: readonly GwParentRef[];
  readonly hostnames: readonly string[];
  readonly rules: readonly GwGrpcRule[];
}

const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

function parentRefs(spec: FieldReader, ns: string): GwParentRef[] {
  const refs = spec.list('parentRefs').map((p) => {
    const port = p.optInt('port', 1, 65535);
    const sectionName = p.optString('sectionName');
    return {
      group: p.optString('group') ?? GATEWAY_GROUP,
      kind: p.optString('kind') ?? 'Gateway',
      name: p.string('name'),
      namespace: p.optString('namespace') ?? ns,
      ...(port !== undefined ? { port } : {}),
      ...(sectionName ? { sectionName } : {}),
    };
  });
  if (refs.length === 0) spec.fail('parentRefs', 'must name at least one parent (the waypoint Gateway or a Service)');
  return refs;
}

function objectRef(r: FieldReader, ns: string): GwObjectRef {
  const port = r.optInt('port', 1, 65535);
  return { group: r.optString('group') ?? '', kind: r.optString('kind') ?? 'Service', name: r.string('name'), namespace: r.optString('namespace') ?? ns, ...(port !== undefined ? { port } : {}) };
}

function gwHeaderModifier(r: FieldReader): HeaderModifier {
  const pairs = (key: string): Record<string, string> => {
    const out: Record<string, string> = {};
    r.list(key).forEach((h, i) => {
      out[headerName(r, `${key}[${i}].name`, h.string('name'))] = h.optString('value') ?? '';
    });
    return out;
  };
  return { set: pairs('set'), add: pairs('add'), remove: r.strings('remove').map((n, i) => headerName(r, `remove[${i}]`, n)) };
}

function pathModifier(r: FieldReader): GwPathModifier | undefined {
  if (!r.has('path')) return undefined;
  const p = r.child('path');
  const type = p.oneOf('type', ['ReplaceFullPath', 'ReplacePrefixMatch'] as const);
  const value = type === 'ReplaceFullPath' ? p.string('replaceFullPath') : (p.optString('replacePrefixMatch') ?? '/');
  if (!value.startsWith('/')) p.fail(type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch', `must start with '/'; got '${value}'`);
  return { type, value };
}

const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function gwFilter(f: FieldReader, ns: string, allowed: readonly string[]): GwFilter {
  const type = f.string('type');
  if (!allowed.includes(type)) {
    if (['ExtensionRef', 'CORS', 'ExternalAuth'].includes(type)) return { type: 'Unsupported', name: type };
    f.fail('type', `must be one of ${[...allowed, 'ExtensionRef'].join(', ')}; got '${type}'`);
  }
  switch (type) {
    case 'RequestHeaderModifier':
      return { type, headers: gwHeaderModifier(f.child('requestHeaderModifier', true)) };
    case 'ResponseHeaderModifier':
      return { type, headers: gwHeaderModifier(f.child('responseHeaderModifier', true)) };
    case 'RequestRedirect': {
      const r = f.child('requestRedirect', true);
      const scheme = r.has('scheme') ? r.oneOf('scheme', ['http', 'https'] as const) : undefined;
      const hostname = r.optString('hostname');
      if (hostname !== undefined && !HOSTNAME.test(hostname)) r.fail('hostname', `must be a DNS name; got '${hostname}'`);
      const port = r.optInt('port', 1, 65535);
      const path = pathModifier(r);
      const code = r.optInt('statusCode', 300, 399) ?? 302; // Gateway API default
      if (![301, 302, 303, 307, 308].includes(code)) r.fail('statusCode', `must be one of 301, 302, 303, 307, 308; got ${code}`);
      return { type, ...(scheme ? { scheme } : {}), ...(hostname ? { hostname } : {}), ...(port !== undefined ? { port } : {}), ...(path ? { path } : {}), statusCode: code };
    }
    case 'URLRewrite': {
      const r = f.child('urlRewrite', true);
      const hostname = r.optString('hostname');
      if (hostname !== undefined && !HOSTNAME.test(hostname)) r.fail('hostname', `must be a DNS name; got '${hostname}'`);
      const path = pathModifier(r);
      return { type, ...(hostname ? { hostname } : {}), ...(path ? { path } : {}) };
    }
    case 'RequestMirror': {
      const r = f.child('requestMirror', true);
      const backendRef = objectRef(r.child('backendRef', true), ns);
      let percent = r.optInt('percent', 0, 100);
      if (r.has('fraction')) {
        if (percent !== undefined) r.fail('fraction', 'cannot be set together with percent');
        const fr = r.child('fraction');
        const num = fr.optInt('numerator', 0, 1_000_000) ?? 0;
        const den = fr.optInt('denominator', 1, 1_000_000) ?? 100;
        if (num > den) fr.fail('numerator', `must not exceed the denominator (${den}); got ${num}`);
        percent = (num / den) * 100;
      }
      return { type, backendRef, percent: percent ?? 100 };
    }
    default:
      return f.fail('type', `'${type}' is not supported`);
  }
}

function valueMatches(r: FieldReader, key: string, what: 'header' | 'query'): GwValueMatch[] {
  return r.list(key).map((h) => {
    const type = h.oneOf('type', ['Exact', 'RegularExpression'] as const, 'Exact');
    const name = h.string('name');
    if (what === 'header' && !HEADER_NAME.test(name)) h.fail('name', `must be an HTTP header name; got '${name}'`);
    const value = type === 'RegularExpression' ? (h.optRegex('value') ?? '') : (h.optString('value') ?? '');
    return { type, name: what === 'header' ? name.toLowerCase() : name, value };
  });
}

function backendRefs(rule: FieldReader, ns: string, filterTypes: readonly string[]): GwBackendRef[] {
  return rule.list('backendRefs').map((b) => ({
    ...objectRef(b, ns),
    weight: b.optInt('weight', 0, 1_000_000) ?? 1,
    filters: b.list('filters').map((f) => gwFilter(f, ns, filterTypes)),
  }));
}

function hostnames(spec: FieldReader): string[] {
  return spec.strings('hostnames').map((h, i) => {
    if (!HOSTNAME.test(h)) spec.fail(`hostnames[${i}]`, `must be a DNS name, optionally starting with '*.'; got '${h}'`);
    return h;
  });
}

const HTTP_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror'] as const;
const GRPC_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'] as const;

export function parseHTTPRoute(r: FieldReader, ns: string): HTTPRouteSpec {
  const spec = r.child('spec', true);
  const rules = spec.list('rules').map((rule): GwHttpRule => {
    const matches = rule.list('matches').map((m): GwHttpMatch => {
      const p = m.child('path');
      const type = p.oneOf('type', ['Exact', 'PathPrefix', 'RegularExpression'] as const, 'PathPrefix');
      const value = type === 'RegularExpression' ? (p.optRegex('value') ?? '/') : (p.optString('value') ?? '/');
      if (type !== 'RegularExpression' && !value.startsWith('/')) p.fail('value', `must start with '/'; got '${value}'`);
      const method = m.has('method') ? m.oneOf('method', HTTP_METHODS) : undefined;
      return { path: { type, value }, headers: valueMatches(m, 'headers', 'header'), queryParams: valueMatches(m, 'queryParams', 'query'), ...(method ? { method } : {}) };
    });
    const filters = rule.list('filters').map((f) => gwFilter(f, ns, HTTP_FILTERS));
    const t = rule.child('timeouts');
    const requestMs = t.optDurationMs('request');
    const backendRequestMs = t.optDurationMs('backendRequest');
    if (requestMs !== undefined && backendRequestMs !== undefined && requestMs > 0 && backendRequestMs > requestMs) {
      t.fail('backendRequest', `must not be longer than timeouts.request (${requestMs}ms); got ${backendRequestMs}ms`);
    }
    let retry: GwHttpRule['retry'];
    if (rule.has('retry')) {
      const rt = rule.child('retry');
      const attempts = rt.optInt('attempts', 0, 100);
      const backoffMs = rt.optDurationMs('backoff');
      const codes = (Array.isArray(rt.obj.codes) ? rt.obj.codes : rt.has('codes') ? rt.fail('codes', 'must be a list of HTTP status codes') : []).map((c: unknown, i: number) => {
        if (typeof c !== 'number' || !Number.isInteger(c) || c < 400 || c > 599) rt.fail(`codes[${i}]`, `must be an HTTP status code from 400 to 599; got ${JSON.stringify(c)}`);
        return c as number;
      });
      retry = { ...(attempts !== undefined ? { attempts } : {}), codes, ...(backoffMs !== undefined ? { backoffMs } : {}) };
    }
    const name = rule.optString('name');
    const refs = backendRefs(rule, ns, HTTP_FILTERS);
    const hasRedirect = filters.some((f) => f.type === 'RequestRedirect');
    if (hasRedirect && refs.length > 0) rule.fail('filters', 'a RequestRedirect filter cannot be combined with backendRefs');
    if (hasRedirect && filters.some((f) => f.type === 'URLRewrite')) rule.fail('filters', 'RequestRedirect and URLRewrite cannot be used together');
    matches.forEach((m, i) => {
      for (const f of filters) {
        const pm = f.type === 'RequestRedirect' || f.type === 'URLRewrite' ? f.path : undefined;
        if (pm?.type === 'ReplacePrefixMatch' && m.path.type !== 'PathPrefix') rule.fail(`matches[${i}].path.type`, 'must be PathPrefix when a filter uses ReplacePrefixMatch');
      }
    });
    return {
      ...(name ? { name } : {}),
      matches: matches.length > 0 ? matches : [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }],
      filters,
      backendRefs: refs,
      timeouts: { ...(requestMs !== undefined ? { requestMs } : {}), ...(backendRequestMs !== undefined ? { backendRequestMs } : {}) },
      ...(retry ? { retry } : {}),
    };
  });
  return { parentRefs: parentRefs(spec, ns), hostnames: hostnames(spec), rules };
}

const GRPC_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;

export function parseGRPCRoute(r: FieldReader, ns: string): GRPCRouteSpec {
  const spec = r.child('spec', true);
  const rules = spec.list('rules').map((rule): GwGrpcRule => {
    const matches = rule.list('matches').map((m): GwGrpcMatch => {
      let method: GwGrpcMatch['method'];
      if (m.has('method')) {
        const mm = m.child('method');
        const type = mm.oneOf('type', ['Exact', 'RegularExpression'] as const, 'Exact');
        const service = type === 'Exact' ? mm.optString('service') : mm.optRegex('service');
        const name = type === 'Exact' ? mm.optString('method') : mm.optRegex('method');
        if (service === undefined && name === undefined) mm.fail('service', 'one of service or method is required');
        if (type === 'Exact') {
          if (service !== undefined && !GRPC_NAME.test(service)) mm.fail('service', `must be a gRPC service name such as 'pkg.Service'; got '${service}'`);
          if (name !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) mm.fail('method', `must be a gRPC method name; got '${name}'`);
        }
        method = { type, ...(service !== undefined ? { service } : {}), ...(name !== undefined ? { method: name } : {}) };
      }
      return { ...(method ? { method } : {}), headers: valueMatches(m, 'headers', 'header') };
    });
    const name = rule.optString('name');
    return { ...(name ? { name } : {}), matches, filters: rule.list('filters').map((f) => gwFilter(f, ns, GRPC_FILTERS)), backendRefs: backendRefs(rule, ns, GRPC_FILTERS) };
  });
  return { parentRefs: parentRefs(spec, ns), hostnames: hostnames(spec), rules };
}

