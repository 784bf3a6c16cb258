/**
 * The waypoint's two small HTTP endpoints, as an Istio waypoint pod has:
 *   metrics port (15020): GET /stats/prometheus and /metrics → Prometheus text
 *   status port (15021):  GET /healthz/ready → 200 once ready, else 503
 * Anything else is 404. Port 0 picks a free port (tests); ports() reports them.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { PROMETHEUS_CONTENT_TYPE } from '../common/metrics.js';

export interface AdminServerOptions {
  readonly host: string;
  readonly metricsPort: number;
  readonly statusPort: number;
  readonly registry: Registry;
  /** Why the proxy is not ready, or undefined when it is. */
  readonly notReadyReason: () => string | undefined;
}

export class AdminServer {
  readonly #o: AdminServerOptions;
  readonly #servers: Server[] = [];
  #ports = { metrics: 0, status: 0 };

  constructor(o: AdminServerOptions) {
    this.#o = o;
  }

  get ports(): { metrics: number; status: number } {
    return this.#ports;
  }

  async listen(): Promise<void> {
    const metrics = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' || (path !== '/stats/prometheus' && path !== '/metrics')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      this.#o.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(err)}\n`),
      );
    });
    const status = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' || path !== '/healthz/ready') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      const why = this.#o.notReadyReason();
      if (why === undefined) res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
      else res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready: ${why}\n`);
    });
    this.#ports = { metrics: await listenOn(metrics, this.#o.metricsPort, this.#o.host), status: await listenOn(status, this.#o.statusPort, this.#o.host) };
    this.#servers.push(metrics, status);
  }

  close(): void {
    for (const s of this.#servers) {
      s.close();
      s.closeAllConnections();
    }
  }
}

function listenOn(s: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, host, () => {
      s.off('error', reject);
      resolve((s.address() as AddressInfo).port);
    });
  });
}
