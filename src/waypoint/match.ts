/**
 * Pure request matching and rewriting: route selection (first match wins,
 * as Istio/Envoy), weighted backend choice, header set/add/remove, URI
 * rewrite and redirect targets. No I/O, so it is unit-tested directly.
 */
import type { HeaderMatch, HeaderOps, Redirect, Rewrite, RouteConfig, RouteMatch, ServiceConfig, WeightedBackend } from './config.js';

/** Request headers: lowercase names, multiple values joined with ", ". */
export type HeaderMap = Record<string, string>;

export interface MatchInput {
  readonly method: string;
  /** Path with query string, as received. */
  readonly path: string;
  readonly headers: HeaderMap;
}

export function splitPath(p: string): { path: string; query: URLSearchParams } {
  const q = p.indexOf('?');
  return q < 0 ? { path: p, query: new URLSearchParams() } : { path: p.slice(0, q), query: new URLSearchParams(p.slice(q + 1)) };
}

function valueMatches(m: HeaderMatch, value: string | undefined): boolean {
  let hit: boolean;
  if (value === undefined) hit = false;
  else if (m.kind === 'present') hit = true;
  else if (m.kind === 'exact') hit = value === m.value;
  else if (m.kind === 'prefix') hit = value.startsWith(m.value);
  else hit = (m.regex as RegExp).test(value);
  return m.invert ? !hit : hit;
}

export function matchesRoute(m: RouteMatch, req: MatchInput): boolean {
  const { path, query } = splitPath(req.path);
  if (m.path) {
    if (m.path.kind === 'exact' && path !== m.path.value) return false;
    if (m.path.kind === 'prefix' && !prefixMatch(path, m.path.value)) return false;
    if (m.path.kind === 'regex' && !(m.path.regex as RegExp).test(path)) return false;
  }
  if (m.method && req.method.toUpperCase() !== m.method) return false;
  for (const h of m.headers) if (!valueMatches(h, req.headers[h.name])) return false;
  for (const q of m.queryParams) if (!valueMatches(q, query.get(q.name) ?? undefined)) return false;
  return true;
}

/** Gateway API PathPrefix semantics: element-wise ("/api" matches "/api" and "/api/x", not "/apix"); "/" matches all. */
export function prefixMatch(path: string, prefix: string): boolean {
  if (prefix === '/' || prefix.endsWith('/')) return path.startsWith(prefix);
  return path === prefix || path.startsWith(`${prefix}/`);
}

/** The first route whose matches (OR) accept the request; undefined = no route (404 NR). */
export function selectRoute(svc: ServiceConfig, req: MatchInput): RouteConfig | undefined {
  return svc.routes.find((r) => r.matches.length === 0 || r.matches.some((m) => matchesRoute(m, req)));
}

/** Weighted choice; `rand` in [0, 1). */
export function pickBackend(backends: readonly WeightedBackend[], rand: number): WeightedBackend | undefined {
  const total = backends.reduce((s, b) => s + b.weight, 0);
  if (total <= 0) return undefined;
  let x = rand * total;
  for (const b of backends) {
    if (b.weight === 0) continue;
    if (x < b.weight) return b;
    x -= b.weight;
  }
  return backends.filter((b) => b.weight > 0).at(-1);
}

/** Applies remove, then set, then add (Envoy order) to a header record. */
export function applyHeaderOps(headers: Record<string, string | string[] | undefined>, ops: HeaderOps): void {
  for (const name of ops.remove) delete headers[name];
  for (const [name, value] of ops.set) headers[name] = value;
  for (const [name, value] of ops.add) {
    const cur = headers[name];
    headers[name] = cur === undefined ? value : Array.isArray(cur) ? [...cur, value] : name === 'set-cookie' ? [cur, value] : `${cur},${value}`;
  }
}

/** The rewritten path (with query) and authority. */
export function applyRewrite(rw: Rewrite, route: RouteConfig, req: MatchInput, authority: string): { path: string; authority: string } {
  const { path } = splitPath(req.path);
  const q = req.path.slice(path.length);
  let out = path;
  if (rw.uriRegex) out = path.replace(rw.uriRegex.pattern, rw.uriRegex.substitution);
  else if (rw.uriPrefix !== undefined) {
    const m = route.matches.find((x) => matchesRoute(x, req));
    if (m?.path?.kind === 'prefix') {
      const rest = path.slice(m.path.value.length);
      out = joinPrefix(rw.uriPrefix, rest);
    } else out = rw.uriPrefix || '/';
  }
  return { path: out + q, authority: rw.authority ?? authority };
}

function joinPrefix(prefix: string, rest: string): string {
  if (rest === '') return prefix || '/';
  if (prefix.endsWith('/') && rest.startsWith('/')) return prefix + rest.slice(1);
  if (!prefix.endsWith('/') && !rest.startsWith('/')) return `${prefix}/${rest}`;
  return prefix + rest || '/';
}

/** The Location header for a redirect route. */
export function redirectLocation(rd: Redirect, route: RouteConfig, req: MatchInput, authority: string): string {
  const { path } = splitPath(req.path);
  const q = req.path.slice(path.length);
  const [host0, port0] = splitHostPort(authority);
  const host = rd.host ?? host0;
  // Gateway API: a changed scheme without a port uses that scheme's well-known port
  const port = rd.port ?? (rd.scheme ? undefined : port0);
  let p = path;
  if (rd.path !== undefined) p = rd.path;
  else if (rd.prefix !== undefined) {
    const m = route.matches.find((x) => matchesRoute(x, req));
    p = m?.path?.kind === 'prefix' ? joinPrefix(rd.prefix, path.slice(m.path.value.length)) : rd.prefix;
  }
  const scheme = rd.scheme ?? 'http';
  const defaultPort = scheme === 'https' ? 443 : 80;
  return `${scheme}://${host}${port !== undefined && port !== defaultPort ? `:${port}` : ''}${p}${q}`;
}

export function splitHostPort(authority: string): [string, number | undefined] {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(authority);
  if (!m) return [authority, undefined];
  return [m[1] as string, m[2] === undefined ? undefined : Number(m[2])];
}
