/**
 * Opaque TCP through the waypoint: for a 'tcp' service (or an 'http' service
 * whose first bytes are not HTTP) the bytes go to an endpoint of the first
 * route's backend cluster (weighted pick among that route's backends,
 * cluster load balancer, outlier-ejected endpoints skipped, one retry on
 * another endpoint after a connect failure); for a workload bound to the
 * waypoint they go to the CONNECT target itself. Bytes are piped both ways
 * with half-close, counted into Istio's TCP metrics.
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import type { ClusterState, EndpointState } from './cluster.js';
import type { Endpoint, ServiceConfig, WorkloadConfig } from './config.js';
import type { ConnectionMeta } from './connection-meta.js';
import { sourceFromBaggage } from './source-baggage.js';
import { tcpLabels, type WaypointTcpTelemetry } from './tcp-telemetry.js';
import type { UpstreamDialer } from './upstream.js';

export type TcpTarget =
  | { readonly kind: 'service'; readonly service: ServiceConfig }
  | { readonly kind: 'workload'; readonly workload: WorkloadConfig; readonly port: number };

export interface TcpProxyDeps {
  readonly dialer: UpstreamDialer;
  readonly cluster: (name: string) => ClusterState | undefined;
  readonly telemetry: WaypointTcpTelemetry;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly random: () => number;
  readonly clusterId: string;
}

const MAX_CONNECT_ATTEMPTS = 2;

export class TcpProxy {
  readonly #d: TcpProxyDeps;
  constructor(deps: TcpProxyDeps) {
    this.#d = deps;
  }

  /** Proxies `down` (whose first bytes `head` were already read) to the target. Never throws. */
  async serve(down: Duplex, head: Buffer, meta: ConnectionMeta, target: TcpTarget): Promise<void> {
    down.pause();
    const sw = meta.baggage ? sourceFromBaggage(meta.baggage) : undefined;
    const service = target.kind === 'service' ? target.service : undefined;
    const base = { ...(meta.peerIdentity ? { sourcePrincipal: meta.peerIdentity } : {}), ...(sw ? { sourceWorkload: sw } : {}), ...(service ? { service } : {}), clusterId: this.#d.clusterId };
    const fail = (flags: string, reason: string, endpoint?: Endpoint): void => {
      this.#d.telemetry.failed(tcpLabels({ ...base, ...(endpoint ? { endpoint } : {}), responseFlags: flags }), { src: meta.sourceAddress, reason });
      down.destroy();
    };
    const ctx = { sourceAddress: meta.sourceAddress, ...(meta.baggage ? { baggage: meta.baggage } : {}), ...(service ? { serviceHost: service.hostname } : {}) };
    let up: Duplex | undefined;
    let endpoint: Endpoint | undefined;
    let state: EndpointState | undefined;
    let cluster: ClusterState | undefined;
    if (target.kind === 'workload') {
      const w = target.workload;
      endpoint = { address: w.address, port: target.port, labels: {}, workload: w.name, namespace: w.namespace, principal: w.principal };
      try {
        up = await this.#d.dialer(endpoint, 'tcp', ctx);
      } catch (err) {
        fail('UF', `connect to ${w.address}:${target.port} failed: ${(err as Error).message}`, endpoint);
        return;
      }
    } else {
      const route = target.service.routes.find((r) => r.backends.some((b) => b.weight > 0));
      const backend = route ? this.#pickBackend(route.backends) : undefined;
      cluster = backend ? this.#d.cluster(backend) : undefined;
      if (!cluster) {
        fail('NR', `service ${target.service.hostname}:${target.service.port} has no route with a backend cluster`);
        return;
      }
      const avoid = new Set<string>();
      for (let i = 0; i < MAX_CONNECT_ATTEMPTS && !up; i++) {
        const ep = cluster.pick({ headers: {}, sourceIp: meta.sourceAddress, query: new URLSearchParams() }, avoid);
        if (!ep) break;
        avoid.add(ep.key);
        endpoint = ep.endpoint;
        try {
          up = await withTimeout(this.#d.dialer(ep.endpoint, 'tcp', ctx), cluster.config.connectionPool.connectTimeoutMs);
          state = ep;
          cluster.record(ep, 200);
        } catch (err) {
          cluster.record(ep, 'connect_failure');
          this.#d.logger.debug({ err, upstream: ep.key }, 'waypoint tcp connect failed');
        }
      }
      if (!up) {
        fail(endpoint ? 'UF' : 'UH', endpoint ? `connect to ${endpoint.address}:${endpoint.port} failed` : `no healthy endpoint in cluster ${cluster.config.name}`, endpoint);
        return;
      }
    }
    if (down.destroyed) {
      up.destroy();
      return;
    }
    if (state) state.active++;
    const counters = this.#d.telemetry.opened(tcpLabels({ ...base, ...(endpoint ? { endpoint } : {}), responseFlags: '-' }), { src: meta.sourceAddress, upstream: endpoint ? `${endpoint.address}:${endpoint.port}` : '-' });
    const finished = once(() => {
      if (state) state.active--;
      counters.closed();
    });
    pipeCounting(down, up, head, counters.received, counters.sent, finished);
  }

  #pickBackend(backends: ServiceConfig['routes'][number]['backends']): string | undefined {
    const total = backends.reduce((n, b) => n + b.weight, 0);
    let x = this.#d.random() * total;
    for (const b of backends) {
      if (b.weight <= 0) continue;
      x -= b.weight;
      if (x < 0) return b.cluster;
    }
    return backends.find((b) => b.weight > 0)?.cluster;
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

function withTimeout<T extends Duplex>(p: Promise<T>, ms: number): Promise<T> {
  if (!(ms > 0) || !Number.isFinite(ms)) return p;
  return new Promise((resolve, reject) => {
    let late = false;
    const t = setTimeout(() => {
      late = true;
      reject(new Error(`connect timed out after ${ms}ms`));
    }, ms);
    p.then((s) => {
      clearTimeout(t);
      if (late) s.destroy();
      else resolve(s);
    }, (err: unknown) => {
      clearTimeout(t);
      reject(err instanceof Error ? err : new Error(String(err)));
    });
  });
}

/** Both directions with half-close; `done` once both sides are closed (or one failed). */
function pipeCounting(down: Duplex, up: Duplex, head: Buffer, received: (n: number) => void, sent: (n: number) => void, done: () => void): void {
  let closed = 0;
  const onClose = (): void => {
    if (++closed === 2) done();
  };
  const kill = (): void => {
    down.destroy();
    up.destroy();
  };
  down.on('error', kill);
  up.on('error', kill);
  down.once('close', () => {
    if (!down.readableEnded) up.destroy();
    onClose();
  });
  up.once('close', () => {
    if (!up.readableEnded) down.destroy();
    onClose();
  });
  const pump = (from: Duplex, to: Duplex, count: (n: number) => void): void => {
    from.on('data', (c: Buffer) => {
      count(c.length);
      if (!to.write(c)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.once('end', () => to.end());
  };
  if (head.length > 0) {
    received(head.length);
    up.write(head);
  }
  pump(down, up, received);
  pump(up, down, sent);
  down.resume();
  up.resume();
}
