/**
 * Istio VirtualService `http` routes -> waypoint routes for one service
 * port, in order (first match wins, as in Istio).
 *
 * Each `match` entry becomes its own route (same action), so a prefix
 * match keeps Istio's plain string-prefix meaning (a regular expression
 * when the prefix does not end in '/': the waypoint's prefix is
 * path-element-wise like the Gateway API's) and `rewrite.uri` replaces
 * exactly what that entry matched. A match entry naming another port, or
 * using sourceLabels/gateways/sourceNamespace/authority or a non-exact
 * method (which the waypoint cannot evaluate), is left out with a note; a route left without entries is
 * skipped. Destinations resolve in the VirtualService's namespace; an
 * unknown host still gets its (empty) cluster, so requests fail 503 as in
 * Istio. retryOn is split into Envoy conditions and status codes.
 */
import type { Resource } from './kinds.js';
import type { IstioStringMatch, VirtualServiceSpec, VsDestination, VsHttpRoute, VsMatch } from './kinds-istio-networking.js';
import type { CatalogService } from './l7-catalog.js';
import type { L7Context } from './l7-gateway-api.js';
import { compact, headerOps, type BackendInput, type FaultInput, type HeaderMatchInput, type MatchInput, type RetryInput, type RouteInput } from './l7-input.js';

/** Retry conditions the waypoint implements (src/waypoint/config.ts RETRY_CONDITIONS). */
const RETRY_ON = new Set(['5xx', 'gateway-error', 'reset', 'connect-failure', 'refused-stream', 'retriable-4xx', 'retriable-status-codes', 'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable']);

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const escapeSubst = (s: string): string => s.replace(/\$/g, '$$$$');

/** RE2 substitution (`\1`) -> JavaScript (`$1`), other `$` escaped. */
export function re2Substitution(s: string): string {
  return escapeSubst(s).replace(/\\(\d)/g, '$$$1');
}

function headerMatch(name: string, m: IstioStringMatch, invert: boolean): HeaderMatchInput {
  const base = { name, ...(invert ? { invert: true } : {}) };
  if ('exact' in m) return { ...base, exact: m.exact };
  if ('prefix' in m) return { ...base, prefix: m.prefix };
  if ('regex' in m) return { ...base, regex: m.regex };
  return { ...base, present: true };
}

/** One VS match entry -> a waypoint match plus how `rewrite.uri` must be expressed for it. */
function convertMatch(m: VsMatch): { match: MatchInput; rewriteFor: (uri: string) => NonNullable<RouteInput['rewrite']> } {
  let path: MatchInput['path'];
  let rewriteFor = (uri: string): NonNullable<RouteInput['rewrite']> => ({ uriRegex: { pattern: '^/', substitution: escapeSubst(uri) } });
  const u = m.uri;
  if (u && 'exact' in u) {
    path = { exact: u.exact };
    rewriteFor = (uri) => ({ uriRegex: { pattern: '^.*$', substitution: escapeSubst(uri) } });
  } else if (u && 'prefix' in u) {
    path = u.prefix === '' || u.prefix.endsWith('/') ? { prefix: u.prefix || '/' } : { regex: `${escapeRe(u.prefix)}.*` };
    rewriteFor = (uri) => ({ uriRegex: { pattern: `^${escapeRe(u.prefix)}`, substitution: escapeSubst(uri) } });
  } else if (u && 'regex' in u) {
    path = { regex: u.regex };
    rewriteFor = (uri) => ({ uriRegex: { pattern: '^.*$', substitution: escapeSubst(uri) } });
  }
  const method = m.method && 'exact' in m.method ? m.method.exact.toUpperCase() : undefined;
  const headers: HeaderMatchInput[] = [];
  for (const [n, v] of Object.entries(m.headers)) headers.push(headerMatch(n, v, false));
  for (const [n, v] of Object.entries(m.withoutHeaders)) headers.push(headerMatch(n, v, true));
  const queryParams = Object.entries(m.queryParams).map(([n, v]) => headerMatch(n, v, false));
  return { match: compact({ path, method, headers, queryParams }), rewriteFor };
}

function retries(ctx: L7Context, r: VsHttpRoute, what: string): RetryInput | undefined {
  if (!r.retries) return undefined;
  const out: RetryInput = {};
  if (r.retries.attempts !== undefined) out.attempts = r.retries.attempts;
  if (r.retries.perTryTimeoutMs !== undefined) out.perTryTimeout = r.retries.perTryTimeoutMs;
  if (r.retries.retryOn !== undefined) {
    const conds: string[] = [];
    const codes: number[] = [];
    for (const raw of r.retries.retryOn.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
      if (/^\d{3}$/.test(raw)) codes.push(Number(raw));
      else if (RETRY_ON.has(raw)) conds.push(raw);
      else ctx.notes.push(`${what}: retries.retryOn '${raw}' is not supported by the waypoint; ignored`);
    }
    if (codes.length > 0) {
      out.retriableStatusCodes = codes;
      if (!conds.includes('retriable-status-codes')) conds.push('retriable-status-codes');
    }
    if (conds.length > 0) out.retryOn = conds.join(',');
  }
  return out;
}

function fault(r: VsHttpRoute): FaultInput | undefined {
  if (!r.fault) return undefined;
  const f: FaultInput = {};
  if (r.fault.delay) f.delay = compact({ fixedDelay: r.fault.delay.fixedDelayMs, percentage: r.fault.delay.percentage });
  if (r.fault.abort) f.abort = compact({ httpStatus: r.fault.abort.httpStatus, grpcStatus: r.fault.abort.grpcStatus, percentage: r.fault.abort.percentage });
  return f;
}

/**
 * A VS destination -> cluster name. An unknown host or subset gets an empty
 * cluster (Istio also routes to a cluster without endpoints): requests
 * sent there fail 503, in their share of the weights.
 */
function destinationCluster(ctx: L7Context, d: VsDestination, vsNs: string, self: { svc: CatalogService; port: number }, what: string): string {
  const svc = ctx.catalog.resolveHost(d.host, vsNs);
  const subset = d.subset ?? '';
  if (!svc) {
    ctx.notes.push(`${what}: destination host ${d.host} is not a known service; requests to it fail (503)`);
    return ctx.clusters.emptyCluster(d.port ?? self.port, subset, ctx.catalog.fqdn(d.host, vsNs));
  }
  const port = d.port ?? (svc === self.svc ? self.port : svc.ports.length === 1 ? (svc.ports[0] as { port: number }).port : self.port);
  if (!svc.ports.some((p) => p.port === port)) {
    ctx.notes.push(`${what}: destination ${svc.hostname} has no port ${port}; requests to it fail (503)`);
    return ctx.clusters.emptyCluster(port, subset, svc.hostname);
  }
  const c = ctx.clusters.clusterFor(svc, port, subset);
  if ('error' in c) {
    ctx.notes.push(`${what}: ${c.error}; requests to it fail (503)`);
    return ctx.clusters.emptyCluster(port, subset, svc.hostname);
  }
  return c.name;
}

function routeAction(ctx: L7Context, r: VsHttpRoute, vs: Resource<VirtualServiceSpec>, self: { svc: CatalogService; port: number }, what: string): Omit<RouteInput, 'name' | 'matches'> {
  const base: Omit<RouteInput, 'name' | 'matches'> = compact({
    requestHeaders: headerOps(r.headers.request),
    responseHeaders: headerOps(r.headers.response),
    timeout: r.timeoutMs,
    retries: retries(ctx, r, what),
    fault: fault(r),
  });
  if (r.directResponse) return { ...base, directResponse: compact({ status: r.directResponse.status, body: r.directResponse.body }) };
  if (r.redirect) {
    return { ...base, redirect: compact({ scheme: r.redirect.scheme, host: r.redirect.authority, port: r.redirect.port, path: r.redirect.uri, status: r.redirect.redirectCode }) };
  }
  const backends: BackendInput[] = [];
  r.route.forEach((d, i) => {
    const cluster = destinationCluster(ctx, d.destination, vs.namespace, self, `${what} route[${i}]`);
    // Istio: a single destination gets all traffic; weights are shares of their sum.
    const weight = r.route.length === 1 ? 1 : (d.weight ?? 0);
    backends.push(compact({ cluster, weight, requestHeaders: headerOps(d.headers.request), responseHeaders: headerOps(d.headers.response) }));
  });
  // Istio: all weights zero sends nothing anywhere.
  if (backends.every((b) => (b.weight ?? 1) === 0)) return { ...base, directResponse: { status: 503, body: 'no healthy upstream' } };
  const mirrors = r.mirrors.map((m, i) => compact({ cluster: destinationCluster(ctx, m.destination, vs.namespace, self, `${what} mirrors[${i}]`), percentage: m.percentage }));
  const out: Omit<RouteInput, 'name' | 'matches'> = { ...base, backends, ...(mirrors.length > 0 ? { mirrors } : {}) };
  const budget = ctx.clusters.budgetOf(backends[0]?.cluster ?? '');
  if (budget) out.retries = { ...out.retries, budget };
  return out;
}

/** Routes for one service port from one VirtualService. */
export function virtualServiceRoutes(ctx: L7Context, vs: Resource<VirtualServiceSpec>, svc: CatalogService, port: number): RouteInput[] {
  const out: RouteInput[] = [];
  const self = { svc, port };
  vs.spec.http.forEach((r, i) => {
    const what = `VirtualService ${vs.namespace}/${vs.name} http[${i}]`;
    if (r.unsupported.length > 0) ctx.notes.push(`${what}: ${r.unsupported.join(', ')} not supported by the waypoint; ignored`);
    const entries = r.match.length === 0 ? [undefined] : r.match;
    const action = routeAction(ctx, r, vs, self, what);
    entries.forEach((m, j) => {
      const name = `${vs.namespace}/${vs.name}/${r.name ?? `http-${i}`}${m ? `/match-${m.name ?? j}` : ''}`;
      if (!m) {
        const rw = r.rewrite;
        const rewrite = rw ? compact({ ...(rw.uri !== undefined ? { uriRegex: { pattern: '^/', substitution: escapeSubst(rw.uri) } } : {}), ...(rw.uriRegexRewrite ? { uriRegex: { pattern: rw.uriRegexRewrite.match, substitution: re2Substitution(rw.uriRegexRewrite.rewrite) } } : {}), authority: rw.authority }) : undefined;
        out.push({ name, ...action, ...(rewrite && Object.keys(rewrite).length > 0 && !action.redirect ? { rewrite } : {}) });
        return;
      }
      if (m.port !== undefined && m.port !== port) return;
      const unsupported = [...m.unsupported, ...(m.authority ? ['authority'] : []), ...(m.method && !('exact' in m.method) ? ['a non-exact method'] : [])];
      if (unsupported.length > 0) {
        ctx.notes.push(`${what} match[${j}]: ${unsupported.join(', ')} cannot be evaluated by the waypoint; this match is left out`);
        return;
      }
      const { match, rewriteFor } = convertMatch(m);
      const rw = r.rewrite;
      let rewrite: RouteInput['rewrite'];
      if (rw && !action.redirect && !action.directResponse) {
        rewrite = compact({
          ...(rw.uri !== undefined ? rewriteFor(rw.uri) : {}),
          ...(rw.uriRegexRewrite ? { uriRegex: { pattern: rw.uriRegexRewrite.match, substitution: re2Substitution(rw.uriRegexRewrite.rewrite) } } : {}),
          authority: rw.authority,
        });
      }
      out.push({ name, matches: [match], ...action, ...(rewrite && Object.keys(rewrite).length > 0 ? { rewrite } : {}) });
    });
  });
  return out;
}
