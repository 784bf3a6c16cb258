/**
 * Gateway API HTTPRoute / GRPCRoute rules -> waypoint routes for one
 * service port.
 *
 * Each (rule, match) pair becomes one route, then the routes are ordered by
 * Gateway API precedence as Istio implements it: exact path, then regular
 * expression, then path prefix (within each, the longer value first; a
 * match without a path last), then having a method, then more header
 * matches, then more query matches; ties keep the order of the routes
 * (service-attached first, then waypoint-attached, each by namespace/name)
 * and of rules and matches within a route. GRPCRoute
 * method matches become paths (`/<service>/<method>` exact, `/<service>/`
 * prefix, or a regular expression).
 *
 * backendRefs name Services (or Istio ServiceEntries) in the route's
 * namespace; a backend need not be bound to the waypoint (its cluster is
 * built anyway). A backendRef that cannot be resolved is left out with a
 * note; a rule left without backends (and without a redirect) answers 500,
 * as the Gateway API asks. Cross-namespace backendRefs need a
 * ReferenceGrant, which is not read yet: they count as unresolvable.
 */
import type { Resource } from './kinds.js';
import type { GRPCRouteSpec, GwBackendRef, GwFilter, GwObjectRef, HTTPRouteSpec } from './kinds-gateway-api.js';
import type { CatalogService, L7Catalog } from './l7-catalog.js';
import type { ClusterBuilder } from './l7-destination-rule.js';
import { compact, headerOps, mergeHeaderOps, type BackendInput, type MatchInput, type RouteInput } from './l7-input.js';

export interface L7Context {
  readonly catalog: L7Catalog;
  readonly clusters: ClusterBuilder;
  readonly notes: string[];
}

export type AttachedRoute = { readonly kind: 'HTTPRoute'; readonly resource: Resource<HTTPRouteSpec> } | { readonly kind: 'GRPCRoute'; readonly resource: Resource<GRPCRouteSpec> };

interface Ranked {
  readonly route: RouteInput;
  readonly rank: readonly number[];
  readonly order: number;
}

/** Sort key (smaller first) for one match: Gateway API precedence, approximated (see header). */
function precedence(m: MatchInput): number[] {
  const p = m.path;
  const pathRank = p?.exact !== undefined ? 0 : p?.regex !== undefined ? 1 : p?.prefix !== undefined ? 2 : 3;
  const len = -(p?.exact ?? p?.regex ?? p?.prefix ?? '').length;
  return [pathRank, len, m.method ? 0 : 1, -(m.headers?.length ?? 0), -(m.queryParams?.length ?? 0)];
}

function compareRank(a: Ranked, b: Ranked): number {
  for (let i = 0; i < a.rank.length; i++) {
    const d = (a.rank[i] as number) - (b.rank[i] as number);
    if (d !== 0) return d;
  }
  return a.order - b.order;
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const escapeSubst = (s: string): string => s.replace(/\$/g, '$$$$');

/**
 * Resolves a backendRef (or mirror ref) to a cluster. `self` is the service
 * the route is for: a ref to it without a port uses the request's port.
 */
export function resolveObjectRef(ctx: L7Context, ref: GwObjectRef, routeNs: string, what: string, self?: { svc: CatalogService; port: number }): { cluster: string } | { error: string } {
  if (ref.namespace !== routeNs) return { error: `${what}: backend ${ref.kind} ${ref.namespace}/${ref.name} is in another namespace; that needs a ReferenceGrant, which is not supported yet` };
  let svc: CatalogService | undefined;
  if ((ref.group === '' || ref.group === 'core') && ref.kind === 'Service') svc = ctx.catalog.byObject('Service', ref.namespace, ref.name)[0];
  else if (ref.group === 'networking.istio.io' && ref.kind === 'ServiceEntry') svc = ctx.catalog.byObject('ServiceEntry', ref.namespace, ref.name)[0];
  else if (ref.group === 'networking.istio.io' && ref.kind === 'Hostname') svc = ctx.catalog.byHostname(ref.name);
  else return { error: `${what}: backend kind ${ref.group ? `${ref.kind}.${ref.group}` : ref.kind} is not supported (Service, networking.istio.io ServiceEntry or Hostname)` };
  if (!svc) return { error: `${what}: backend ${ref.kind} ${ref.namespace}/${ref.name} does not exist` };
  let port = ref.port;
  if (port === undefined) {
    if (self && self.svc === svc) port = self.port;
    else if (svc.ports.length === 1) port = (svc.ports[0] as { port: number }).port;
    else return { error: `${what}: backend ${ref.kind} ${ref.namespace}/${ref.name} has several ports; backendRef.port is required` };
  }
  if (!svc.ports.some((p) => p.port === port)) return { error: `${what}: backend ${ref.kind} ${ref.namespace}/${ref.name} has no port ${port}` };
  const c = ctx.clusters.clusterFor(svc, port);
  return 'error' in c ? { error: `${what}: ${c.error}` } : { cluster: c.name };
}

interface RuleCommon {
  readonly filters: readonly GwFilter[];
  readonly backendRefs: readonly GwBackendRef[];
}

/** Filters and backends of one rule -> the non-match part of a route. */
function ruleAction(ctx: L7Context, rule: RuleCommon, ns: string, what: string, self: { svc: CatalogService; port: number }): Omit<RouteInput, 'name' | 'matches'> {
  const out: Omit<RouteInput, 'name' | 'matches'> = {};
  const mirrors: NonNullable<RouteInput['mirrors']> = [];
  let broken: string | undefined;
  for (const f of rule.filters) {
    switch (f.type) {
      case 'RequestHeaderModifier':
        out.requestHeaders = mergeHeaderOps(out.requestHeaders, headerOps(f.headers));
        break;
      case 'ResponseHeaderModifier':
        out.responseHeaders = mergeHeaderOps(out.responseHeaders, headerOps(f.headers));
        break;
      case 'RequestRedirect':
        out.redirect = compact({
          scheme: f.scheme,
          host: f.hostname,
          port: f.port,
          ...(f.path?.type === 'ReplaceFullPath' ? { path: f.path.value } : f.path ? { prefix: f.path.value } : {}),
          status: f.statusCode,
        });
        break;
      case 'URLRewrite':
        out.rewrite = compact({
          authority: f.hostname,
          ...(f.path?.type === 'ReplacePrefixMatch' ? { uriPrefix: f.path.value } : f.path ? { uriRegex: { pattern: '^.*$', substitution: escapeSubst(f.path.value) } } : {}),
        });
        break;
      case 'RequestMirror': {
        const c = resolveObjectRef(ctx, f.backendRef, ns, `${what} RequestMirror`);
        if ('error' in c) ctx.notes.push(`${c.error}; the mirror is left out`);
        else mirrors.push({ cluster: c.cluster, ...(f.percent !== 100 ? { percentage: f.percent } : {}) });
        break;
      }
      case 'Unsupported':
        broken = `${what}: filter ${f.name} is not supported; the rule answers 500`;
        break;
    }
  }
  if (mirrors.length > 0) out.mirrors = mirrors;
  if (broken) {
    ctx.notes.push(broken);
    return { directResponse: { status: 500, body: 'route filter not supported by the waypoint' } };
  }
  if (out.redirect) return out;
  const backends: BackendInput[] = [];
  rule.backendRefs.forEach((b, i) => {
    const c = resolveObjectRef(ctx, b, ns, `${what} backendRefs[${i}]`, self);
    if ('error' in c) {
      ctx.notes.push(`${c.error}; left out of the route`);
      return;
    }
    let req: BackendInput['requestHeaders'];
    let res: BackendInput['responseHeaders'];
    for (const f of b.filters) {
      if (f.type === 'RequestHeaderModifier') req = mergeHeaderOps(req, headerOps(f.headers));
      else if (f.type === 'ResponseHeaderModifier') res = mergeHeaderOps(res, headerOps(f.headers));
      else ctx.notes.push(`${what} backendRefs[${i}]: filter ${f.type === 'Unsupported' ? f.name : f.type} on a backend is not supported; ignored`);
    }
    backends.push(compact({ cluster: c.cluster, weight: b.weight, requestHeaders: req, responseHeaders: res }));
  });
  if (backends.length === 0 || backends.every((b) => b.weight === 0)) {
    if (rule.backendRefs.length > 0 && backends.length === 0) ctx.notes.push(`${what}: no usable backend; the rule answers 500`);
    return { directResponse: { status: 500, body: 'no valid backend for this route' } };
  }
  out.backends = backends;
  return out;
}

function withBudget(ctx: L7Context, r: Omit<RouteInput, 'name' | 'matches'>): Omit<RouteInput, 'name' | 'matches'> {
  const first = r.backends?.[0]?.cluster;
  const budget = first ? ctx.clusters.budgetOf(first) : undefined;
  return budget ? { ...r, retries: { ...r.retries, budget } } : r;
}

function httpRouteRoutes(ctx: L7Context, r: Resource<HTTPRouteSpec>, self: { svc: CatalogService; port: number }): RouteInput[] {
  const out: RouteInput[] = [];
  r.spec.rules.forEach((rule, i) => {
    const what = `HTTPRoute ${r.namespace}/${r.name} rules[${i}]`;
    let action = ruleAction(ctx, rule, r.namespace, what, self);
    if (action.backends) {
      const t = rule.timeouts;
      if (t.requestMs !== undefined) action.timeout = t.requestMs;
      const retries = compact({
        attempts: rule.retry?.attempts,
        retriableStatusCodes: rule.retry?.codes ? [...rule.retry.codes] : undefined,
        backoff: rule.retry?.backoffMs,
        perTryTimeout: t.backendRequestMs,
      });
      if (Object.keys(retries).length > 0) action.retries = retries;
      action = withBudget(ctx, action);
    }
    rule.matches.forEach((m, j) => {
      const match: MatchInput = compact({
        path: m.path.type === 'Exact' ? { exact: m.path.value } : m.path.type === 'PathPrefix' ? { prefix: m.path.value } : { regex: m.path.value },
        method: m.method,
        headers: m.headers.map((h) => (h.type === 'Exact' ? { name: h.name, exact: h.value } : { name: h.name, regex: h.value })),
        queryParams: m.queryParams.map((h) => (h.type === 'Exact' ? { name: h.name, exact: h.value } : { name: h.name, regex: h.value })),
      });
      out.push({ name: `${r.namespace}/${r.name}/rule-${rule.name ?? i}/match-${j}`, matches: [match], ...action });
    });
  });
  return out;
}

function grpcMethodPath(m: NonNullable<GRPCRouteSpec['rules'][number]['matches'][number]['method']>): MatchInput['path'] {
  if (m.type === 'Exact') {
    if (m.service !== undefined && m.method !== undefined) return { exact: `/${m.service}/${m.method}` };
    if (m.service !== undefined) return { prefix: `/${m.service}/` };
    return { regex: `/[^/]+/${escapeRe(m.method ?? '')}` };
  }
  return { regex: `/${m.service ?? '[^/]+'}/${m.method ?? '[^/]+'}` };
}

function grpcRouteRoutes(ctx: L7Context, r: Resource<GRPCRouteSpec>, self: { svc: CatalogService; port: number }): RouteInput[] {
  const out: RouteInput[] = [];
  r.spec.rules.forEach((rule, i) => {
    const what = `GRPCRoute ${r.namespace}/${r.name} rules[${i}]`;
    const action = withBudget(ctx, ruleAction(ctx, rule, r.namespace, what, self));
    const matches = rule.matches.length > 0 ? rule.matches : [{ headers: [] }];
    matches.forEach((m, j) => {
      const match: MatchInput = compact({
        path: m.method ? grpcMethodPath(m.method) : undefined,
        headers: m.headers.map((h) => (h.type === 'Exact' ? { name: h.name, exact: h.value } : { name: h.name, regex: h.value })),
      });
      out.push({ name: `${r.namespace}/${r.name}/rule-${rule.name ?? i}/match-${j}`, ...(Object.keys(match).length > 0 ? { matches: [match] } : {}), ...action });
    });
  });
  return out;
}

/** Routes for one service port from the routes attached to it, in precedence order. */
export function gatewayApiRoutes(ctx: L7Context, svc: CatalogService, port: number, attached: readonly AttachedRoute[]): RouteInput[] {
  const ranked: Ranked[] = [];
  const self = { svc, port };
  for (const a of attached) {
    const routes = a.kind === 'HTTPRoute' ? httpRouteRoutes(ctx, a.resource, self) : grpcRouteRoutes(ctx, a.resource, self);
    for (const route of routes) ranked.push({ route, rank: precedence(route.matches?.[0] ?? {}), order: ranked.length });
  }
  return ranked.sort(compareRank).map((x) => x.route);
}
