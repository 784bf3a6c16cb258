/**
 * The agent's HTTP endpoints, on ztunnel's ports in the agent's own netns:
 *   15021 GET /healthz/ready   200 "ready" once startup tasks finished, else 500
 *   15020 GET /metrics, /stats/prometheus   Prometheus text (or OpenMetrics)
 *   15000 (localhost) GET /config_dump, POST /quitquitquit
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

export interface Readiness {
  pending(): string[];
}

export interface AdminDeps {
  registry: Registry;
  readiness: Readiness;
  configDump(): unknown;
  quit(): void;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function readinessHandler(r: Readiness): Handler {
  return (req, res) => {
    if (req.url !== '/healthz/ready') return send(res, 404, 'not found\n');
    if (req.method !== 'GET') return send(res, 405, 'method not allowed\n');
    const pending = r.pending();
    if (pending.length === 0) return send(res, 200, 'ready\n');
    send(res, 500, `not ready, pending: ${pending.join(', ')}\n`);
  };
}

export function metricsHandler(registry: Registry): Handler {
  return async (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' && path !== '/stats/prometheus') return send(res, 404, 'not found\n');
    const openMetrics = (req.headers.accept ?? '').includes('application/openmetrics-text');
    if (openMetrics) registry.setContentType('application/openmetrics-text; version=1.0.0; charset=utf-8' as never);
    else registry.setContentType('text/plain; version=0.0.4; charset=utf-8' as never);
    send(res, 200, await registry.metrics(), registry.contentType);
  };
}

export function adminHandler(d: AdminDeps): Handler {
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/config_dump') {
      if (req.method !== 'GET') return send(res, 405, 'method not allowed\n');
      return send(res, 200, JSON.stringify(d.configDump(), null, 2) + '\n', 'application/json');
    }
    if (path === '/quitquitquit') {
      if (req.method !== 'POST') return send(res, 405, 'method not allowed\n');
      send(res, 200, 'shutting down\n');
      d.quit();
      return;
    }
    send(res, 404, 'not found\n');
  };
}

export function listenHttp(handler: Handler, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    Promise.resolve(handler(req, res)).catch((err: unknown) => send(res, 500, `error: ${String(err)}\n`));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
