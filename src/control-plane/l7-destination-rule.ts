/**
 * Clusters of one waypoint config, Envoy-named `outbound|<port>|<subset>|<host>`,
 * with the DestinationRule traffic policy of their host applied:
 * connectionPool, outlierDetection, loadBalancer (simple / consistentHash),
 * portLevelSettings and subsets (labels filter the endpoints; a subset's
 * policy overrides the top-level one field by field, as in Istio), and the
 * retryBudget, which the waypoint keeps on the routes that use the cluster.
 *
 * DestinationRule lookup for a host: one in the service's namespace, else
 * in the root namespace, else in any namespace (exportTo is not
 * evaluated); exact host before a wildcard. Rules with a workloadSelector
 * are for sidecars and are skipped.
 */
import type { Resource } from './kinds.js';
import type { DestinationRuleSpec, TrafficPolicySpec } from './kinds-istio-networking.js';
import { clusterProtocol, type CatalogService, type L7Catalog } from './l7-catalog.js';
import type { ClusterInput, RetryInput } from './l7-input.js';
import type { ResourceSnapshot } from './resource-store.js';

export type ClusterResult = { readonly name: string } | { readonly error: string };

export function clusterName(port: number, subset: string, hostname: string): string {
  return `outbound|${port}|${subset}|${hostname}`;
}

interface EffectivePolicy {
  connectionPool?: TrafficPolicySpec['connectionPool'];
  outlierDetection?: TrafficPolicySpec['outlierDetection'];
  loadBalancer?: TrafficPolicySpec['loadBalancer'];
  retryBudget?: TrafficPolicySpec['retryBudget'];
}

/** Istio merges at the level of these fields: the more specific policy's field replaces the general one. */
function overlay(base: EffectivePolicy, p: TrafficPolicySpec | undefined, port: number): EffectivePolicy {
  if (!p) return base;
  const pick = (x: TrafficPolicySpec | EffectivePolicy, into: EffectivePolicy): EffectivePolicy => ({
    ...into,
    ...(x.connectionPool ? { connectionPool: x.connectionPool } : {}),
    ...(x.outlierDetection ? { outlierDetection: x.outlierDetection } : {}),
    ...(x.loadBalancer ? { loadBalancer: x.loadBalancer } : {}),
    ...(x.retryBudget ? { retryBudget: x.retryBudget } : {}),
  });
  const top = pick(p, base);
  const pl = p.portLevelSettings.find((s) => s.port === port);
  return pl ? pick(pl.policy, top) : top;
}

export class ClusterBuilder {
  readonly #clusters = new Map<string, ClusterInput>();
  readonly #budgets = new Map<string, NonNullable<RetryInput['budget']>>();
  readonly #noted = new Set<string>();
  readonly #drs: Resource<DestinationRuleSpec>[];

  constructor(
    snap: ResourceSnapshot,
    private readonly catalog: L7Catalog,
    private readonly rootNamespace: string,
    private readonly notes: string[],
  ) {
    this.#drs = snap.list<DestinationRuleSpec>('DestinationRule.networking.istio.io');
  }

  #note(n: string): void {
    if (!this.#noted.has(n)) {
      this.#noted.add(n);
      this.notes.push(n);
    }
  }

  /** The DestinationRule that applies to `svc`, if any (see file header for the lookup order). */
  destinationRuleFor(svc: CatalogService): Resource<DestinationRuleSpec> | undefined {
    const covering = this.#drs.filter((d) => {
      if (d.spec.workloadSelector) {
        this.#note(`DestinationRule ${d.namespace}/${d.name}: has a workloadSelector (sidecar-only); waypoints ignore it`);
        return false;
      }
      return this.catalog.hostCovers(d.spec.host, d.namespace, svc);
    });
    if (covering.length === 0) return undefined;
    const exact = (d: Resource<DestinationRuleSpec>): boolean => !d.spec.host.includes('*');
    const rank = (d: Resource<DestinationRuleSpec>): number => (exact(d) ? 0 : 3) + (d.namespace === svc.namespace ? 0 : d.namespace === this.rootNamespace ? 1 : 2);
    const sorted = [...covering].sort((a, b) => rank(a) - rank(b));
    const chosen = sorted[0] as Resource<DestinationRuleSpec>;
    for (const other of sorted.slice(1)) {
      if (rank(other) === rank(chosen)) this.#note(`DestinationRule ${other.namespace}/${other.name}: ${svc.hostname} is also covered by ${chosen.namespace}/${chosen.name}, which is used (rules are not merged)`);
    }
    return chosen;
  }

  /**
   * The cluster for `svc` port `port` (subset `subset`), built on first
   * use. An unknown subset is an error (the caller notes it and answers
   * the route locally).
   */
  clusterFor(svc: CatalogService, port: number, subset = ''): ClusterResult {
    const name = clusterName(port, subset, svc.hostname);
    if (this.#clusters.has(name)) return { name };
    const dr = this.destinationRuleFor(svc);
    const what = dr ? `DestinationRule ${dr.namespace}/${dr.name}` : '';
    let endpoints = this.catalog.endpoints(svc, port);
    let policy = overlay({}, dr?.spec.trafficPolicy, port);
    if (subset !== '') {
      const ss = dr?.spec.subsets.find((s) => s.name === subset);
      if (!ss) return { error: dr ? `${what} has no subset '${subset}' for ${svc.hostname}` : `no DestinationRule defines subset '${subset}' for ${svc.hostname}` };
      endpoints = endpoints.filter((e) => Object.entries(ss.labels).every(([k, v]) => e.labels[k] === v));
      policy = overlay(policy, ss.trafficPolicy, port);
    }
    if (dr) this.#noteUnsupported(what, dr.spec);
    const cp = policy.connectionPool;
    const od = policy.outlierDetection;
    const lb = policy.loadBalancer;
    const cluster: ClusterInput = {
      name,
      protocol: clusterProtocol(svc.ports.find((p) => p.port === port)),
      endpoints,
    };
    if (cp) {
      // 0 is proto3's "unset": Istio's default (unlimited) applies.
      const pos = (v: number | undefined): number | undefined => (v !== undefined && v > 0 ? v : undefined);
      const pool = {
        maxConnections: pos(cp.maxConnections),
        maxPendingRequests: pos(cp.http1MaxPendingRequests),
        maxRequests: pos(cp.http2MaxRequests),
        maxRequestsPerConnection: pos(cp.maxRequestsPerConnection),
        maxRetries: pos(cp.maxRetries),
        connectTimeout: pos(cp.connectTimeoutMs),
      };
      const set = Object.fromEntries(Object.entries(pool).filter(([, v]) => v !== undefined));
      if (Object.keys(set).length > 0) cluster.connectionPool = set;
    }
    if (od) {
      cluster.outlierDetection = Object.fromEntries(
        Object.entries({
          consecutive5xxErrors: od.consecutive5xxErrors,
          consecutiveGatewayErrors: od.consecutiveGatewayErrors,
          interval: od.intervalMs,
          baseEjectionTime: od.baseEjectionTimeMs,
          maxEjectionPercent: od.maxEjectionPercent,
        }).filter(([, v]) => v !== undefined),
      );
    }
    if (lb) {
      if ('simple' in lb) {
        if (lb.simple === 'PASSTHROUGH') this.#note(`${what}: loadBalancer.simple PASSTHROUGH is not supported by the waypoint; LEAST_REQUEST is used for ${svc.hostname}`);
        else if (lb.simple !== 'UNSPECIFIED') cluster.loadBalancer = { simple: lb.simple };
      } else {
        const ch = lb.consistentHash;
        cluster.loadBalancer = {
          consistentHash: {
            ...(ch.httpHeaderName !== undefined ? { httpHeaderName: ch.httpHeaderName } : {}),
            ...(ch.httpCookie !== undefined ? { httpCookie: { name: ch.httpCookie } } : {}),
            ...(ch.useSourceIp !== undefined ? { useSourceIp: ch.useSourceIp } : {}),
            ...(ch.httpQueryParameterName !== undefined ? { httpQueryParameterName: ch.httpQueryParameterName } : {}),
          },
        };
      }
    }
    if (policy.retryBudget) {
      const rb = policy.retryBudget;
      this.#budgets.set(name, { ...(rb.percent !== undefined ? { percent: rb.percent } : {}), ...(rb.minRetryConcurrency !== undefined ? { minRetryConcurrency: rb.minRetryConcurrency } : {}) });
    }
    this.#clusters.set(name, cluster);
    return { name };
  }

  /** A cluster without endpoints (a destination Istio would also send to nowhere): requests to it fail 503 at the waypoint. */
  emptyCluster(port: number, subset: string, hostname: string, protocol: ClusterInput['protocol'] = 'http1'): string {
    const name = clusterName(port, subset, hostname);
    if (!this.#clusters.has(name)) this.#clusters.set(name, { name, protocol, endpoints: [] });
    return name;
  }

  #noteUnsupported(what: string, spec: DestinationRuleSpec): void {
    const all = [spec.trafficPolicy, ...spec.subsets.map((s) => s.trafficPolicy)].filter((p): p is TrafficPolicySpec => p !== undefined);
    const fields = new Set<string>();
    for (const p of [...all, ...all.flatMap((x) => x.portLevelSettings.map((s) => s.policy))]) {
      p.unsupported.forEach((u) => fields.add(u));
      if (p.tlsMode !== undefined && p.tlsMode !== 'ISTIO_MUTUAL') fields.add(`tls.mode ${p.tlsMode}`);
    }
    if (fields.size > 0) this.#note(`${what}: not applied by the waypoint: ${[...fields].sort().join(', ')}`);
  }

  /** The DestinationRule retryBudget of a cluster, for the retry policy of routes that use it. */
  budgetOf(cluster: string): RetryInput['budget'] | undefined {
    return this.#budgets.get(cluster);
  }

  list(): ClusterInput[] {
    return [...this.#clusters.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
