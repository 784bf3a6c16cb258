/**
 * Run-time state of one upstream cluster: per-endpoint active requests and
 * outlier-detection counters, the load balancer, and the circuit breakers
 * (admission: max active requests, HTTP/1 connections, pending queue).
 *
 * Circuit breaking (Envoy semantics, simplified): a request needs an active
 * slot; slots = min(maxRequests, maxConnections for http1 since one HTTP/1
 * connection carries one request at a time). Without a free slot it waits in
 * the pending queue; when the queue holds maxPendingRequests already, it is
 * refused at once with overflow (503, flag UO).
 *
 * Outlier detection: consecutive 5xx (any 5xx and connect failures) or
 * consecutive gateway errors (502/503/504) eject an endpoint for
 * baseEjectionTime × times-ejected, while at most maxEjectionPercent of the
 * endpoints (but always at least one, as Envoy) are ejected. Ejections end
 * lazily when the endpoint is next considered (equivalent to Envoy's sweep at
 * `interval` granularity, minus the delay).
 *
 * Load balancing: LEAST_REQUEST is power-of-two-choices on active requests
 * (Envoy), ROUND_ROBIN, RANDOM, and CONSISTENT_HASH uses rendezvous hashing
 * over healthy endpoints (same affinity property as a ring: only ~1/N keys
 * move when membership changes).
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../common/clock.js';
import type { AbortLike } from './abort.js';
import type { ClusterConfig, Endpoint } from './config.js';

export interface EndpointState {
  readonly endpoint: Endpoint;
  readonly key: string;
  active: number;
  consecutive5xx: number;
  consecutiveGateway: number;
  ejectedUntil: number;
  ejections: number;
}

export interface HashInput { readonly headers: Readonly<Record<string, string>>; readonly sourceIp: string; readonly query: URLSearchParams }

export type Admission = { ok: true; release: () => void } | { ok: false; reason: 'overflow' };

export class ClusterState {
  readonly config: ClusterConfig;
  readonly endpoints: EndpointState[];
  readonly #clock: Clock;
  readonly #random: () => number;
  #rr = 0;
  #active = 0;
  readonly #pending: Array<() => void> = [];
  activeRetries = 0;

  constructor(config: ClusterConfig, clock: Clock, random: () => number) {
    this.config = config;
    this.#clock = clock;
    this.#random = random;
    this.endpoints = config.endpoints.map((e) => ({ endpoint: e, key: `${e.address}:${e.port}`, active: 0, consecutive5xx: 0, consecutiveGateway: 0, ejectedUntil: 0, ejections: 0 }));
  }

  get active(): number {
    return this.#active;
  }
  get pending(): number {
    return this.#pending.length;
  }

  #slots(): number {
    const cp = this.config.connectionPool;
    return this.config.protocol === 'http1' ? Math.min(cp.maxRequests, cp.maxConnections) : cp.maxRequests;
  }

  /** Takes an active slot, waiting in the pending queue; refuses at once on overflow. Abort removes a waiter. */
  admit(signal?: AbortLike): Promise<Admission> {
    const release = (): void => {
      const next = this.#pending.shift();
      if (next) next();
      else this.#active--;
    };
    if (this.#active < this.#slots()) {
      this.#active++;
      return Promise.resolve({ ok: true, release: once(release) });
    }
    if (this.#pending.length >= this.config.connectionPool.maxPendingRequests) return Promise.resolve({ ok: false, reason: 'overflow' });
    return new Promise((resolve) => {
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve({ ok: true, release: once(release) });
      };
      const onAbort = (): void => {
        const i = this.#pending.indexOf(grant);
        if (i >= 0) this.#pending.splice(i, 1);
        resolve({ ok: false, reason: 'overflow' });
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.push(grant);
    });
  }

  #healthy(): EndpointState[] {
    const now = this.#clock.now();
    return this.endpoints.filter((e) => e.ejectedUntil <= now);
  }

  /** Picks an endpoint, avoiding `avoid` when another choice exists. Undefined = no healthy upstream. */
  pick(input: HashInput, avoid: ReadonlySet<string> = new Set()): EndpointState | undefined {
    const healthy = this.#healthy();
    if (healthy.length === 0) return undefined;
    const fresh = healthy.filter((e) => !avoid.has(e.key));
    const set = fresh.length > 0 ? fresh : healthy;
    const lb = this.config.loadBalancer;
    switch (lb.kind) {
      case 'ROUND_ROBIN':
        return set[this.#rr++ % set.length];
      case 'RANDOM':
        return set[Math.floor(this.#random() * set.length)];
      case 'CONSISTENT_HASH': {
        const key = lb.header !== undefined ? input.headers[lb.header]
          : lb.cookie !== undefined ? cookie(input.headers.cookie, lb.cookie)
          : lb.queryParam !== undefined ? (input.query.get(lb.queryParam) ?? undefined)
          : input.sourceIp;
        if (key === undefined) return set[Math.floor(this.#random() * set.length)];
        let best: EndpointState | undefined;
        let bestScore = '';
        for (const e of set) {
          const score = createHash('sha1').update(`${key}|${e.key}`).digest('hex');
          if (score > bestScore) [best, bestScore] = [e, score];
        }
        return best;
      }
      default: {
        const a = set[Math.floor(this.#random() * set.length)] as EndpointState;
        if (set.length === 1) return a;
        let b = set[Math.floor(this.#random() * set.length)] as EndpointState;
        if (b === a) b = set[(set.indexOf(a) + 1) % set.length] as EndpointState;
        return b.active < a.active ? b : a;
      }
    }
  }

  /**
   * Feeds one attempt's outcome to outlier detection: an HTTP status, or
   * 'connect_failure' / 'reset' / 'timeout' (counted as gateway errors).
   */
  record(ep: EndpointState, outcome: number | 'connect_failure' | 'reset' | 'timeout'): void {
    const od = this.config.outlierDetection;
    if (!od) return;
    const is5xx = typeof outcome !== 'number' || outcome >= 500;
    const isGateway = typeof outcome !== 'number' || outcome === 502 || outcome === 503 || outcome === 504;
    ep.consecutive5xx = is5xx ? ep.consecutive5xx + 1 : 0;
    ep.consecutiveGateway = isGateway ? ep.consecutiveGateway + 1 : 0;
    const trip = (od.consecutive5xx > 0 && ep.consecutive5xx >= od.consecutive5xx) || (od.consecutiveGatewayErrors > 0 && ep.consecutiveGateway >= od.consecutiveGatewayErrors);
    if (!trip) return;
    const now = this.#clock.now();
    if (ep.ejectedUntil > now) return;
    const ejected = this.endpoints.filter((e) => e.ejectedUntil > now).length;
    const max = Math.max(1, Math.floor((this.endpoints.length * od.maxEjectionPercent) / 100));
    if (ejected >= max) return;
    ep.ejections++;
    ep.ejectedUntil = now + od.baseEjectionTimeMs * ep.ejections;
    ep.consecutive5xx = 0;
    ep.consecutiveGateway = 0;
  }

  ejectedCount(): number {
    const now = this.#clock.now();
    return this.endpoints.filter((e) => e.ejectedUntil > now).length;
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (!done) {
      done = true;
      fn();
    }
  };
}

function cookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}
