/**
 * The dashboard's HTTP server (the Kiali role in the demo). Loopback only by
 * default. Serves the page (one HTML file with its script and styles, no
 * external resources, so it works offline) and a JSON API the page polls:
 *
 *   GET /                      the page
 *   GET /app.js, /app.css      its script and styles
 *   GET /vendor/uplot.{js,css} the chart library (uPlot, from its npm package)
 *   GET /api/snapshot          { graph, health, events } in one answer (what the page polls)
 *   GET /api/graph             nodes and edges with rates over the window
 *   GET /api/series?edge=<id>  the edge's time series (one point per scrape round)
 *   GET /api/health            agents, waypoints, control plane, policies, certificates
 *   GET /api/events?since=<seq>&limit=<n>  access-log lines and noticed changes
 *   GET /api/stream            Server-Sent Events: a `snapshot` event after every scrape round
 *   GET /healthz               "ok" once the first round ran
 *
 * Only GET/HEAD; anything else is 405. Bad query values answer 400.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../common/logger.js';
import type { Collector } from './collector.js';
import { DashboardBindError } from './errors.js';
import { APP_CSS, APP_JS, INDEX_HTML } from './ui.js';
import { vendorAsset, type VendorAsset } from './vendor.js';

export const DEFAULT_DASHBOARD_PORT = 20001;
export const DEFAULT_DASHBOARD_ADDRESS = '127.0.0.1';

export interface DashboardServerOptions {
  collector: Collector;
  port?: number;
  address?: string;
  logger?: Logger;
  /** Shown in the page header (e.g. the lab name). */
  title?: string;
}

export interface DashboardServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: string, type: string, head = false): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(head ? undefined : body);
}

function json(res: ServerResponse, v: unknown, head: boolean, status = 200): void {
  send(res, status, JSON.stringify(v), 'application/json; charset=utf-8', head);
}

export function snapshot(c: Collector, since = 0): unknown {
  return { graph: c.graph(), health: c.health(), events: c.events(since, 100) };
}

function intParam(q: URLSearchParams, name: string, def: number): number | undefined {
  const raw = q.get(name);
  if (raw === null || raw === '') return def;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

export function dashboardHandler(c: Collector, title = 'Ambit'): (req: IncomingMessage, res: ServerResponse) => void {
  const sse = new Set<ServerResponse>();
  c.onRound(() => {
    if (sse.size === 0) return;
    const data = `event: snapshot\ndata: ${JSON.stringify(snapshot(c))}\n\n`;
    for (const r of sse) r.write(data);
  });
  const page = INDEX_HTML.replaceAll('__TITLE__', title.replace(/[<>&"]/g, ''));
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) return send(res, 405, 'method not allowed\n', 'text/plain; charset=utf-8');
    const q = url.searchParams;
    switch (url.pathname) {
      case '/':
      case '/index.html':
        return send(res, 200, page, 'text/html; charset=utf-8', head);
      case '/app.js':
        return send(res, 200, APP_JS, 'text/javascript; charset=utf-8', head);
      case '/app.css':
        return send(res, 200, APP_CSS, 'text/css; charset=utf-8', head);
      case '/vendor/uplot.js':
      case '/vendor/uplot.css': {
        const a = vendorAsset(url.pathname) as VendorAsset;
        return send(res, 200, a.body, a.type, head);
      }
      case '/healthz':
        return send(res, c.graph().rounds > 0 ? 200 : 503, c.graph().rounds > 0 ? 'ok\n' : 'no scrape yet\n', 'text/plain; charset=utf-8', head);
      case '/api/snapshot': {
        const since = intParam(q, 'since', 0);
        if (since === undefined) return json(res, { error: 'since must be a non-negative integer' }, head, 400);
        return json(res, snapshot(c, since), head);
      }
      case '/api/graph':
        return json(res, c.graph(), head);
      case '/api/health':
        return json(res, c.health(), head);
      case '/api/events': {
        const since = intParam(q, 'since', 0);
        const limit = intParam(q, 'limit', 100);
        if (since === undefined || limit === undefined) return json(res, { error: 'since and limit must be non-negative integers' }, head, 400);
        return json(res, { events: c.events(since, Math.min(limit, 1000)) }, head);
      }
      case '/api/series': {
        const id = q.get('edge');
        if (!id) return json(res, { error: 'edge=<id> is required (ids are in /api/graph)' }, head, 400);
        const points = c.series(id);
        if (!points) return json(res, { error: `no edge ${id}` }, head, 404);
        return json(res, { edge: id, intervalMs: c.intervalMs, points }, head);
      }
      case '/api/stream': {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        if (head) return void res.end();
        res.write(`retry: 2000\nevent: snapshot\ndata: ${JSON.stringify(snapshot(c))}\n\n`);
        sse.add(res);
        req.on('close', () => sse.delete(res));
        return;
      }
      default:
        return send(res, 404, 'not found; see / and /api/snapshot\n', 'text/plain; charset=utf-8', head);
    }
  };
}

/** Listens; rejects with DashboardBindError when the address/port cannot be used. */
export async function startDashboardServer(o: DashboardServerOptions): Promise<DashboardServer> {
  const handler = dashboardHandler(o.collector, o.title);
  const server: Server = createServer((req, res) => {
    try {
      handler(req, res);
    } catch (err) {
      o.logger?.error({ err: (err as Error).message, url: req.url }, 'dashboard handler failed');
      if (!res.headersSent) send(res, 500, 'internal error\n', 'text/plain; charset=utf-8');
      else res.destroy();
    }
  });
  const address = o.address ?? DEFAULT_DASHBOARD_ADDRESS;
  const port = o.port ?? DEFAULT_DASHBOARD_PORT;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new DashboardBindError(`the dashboard cannot listen on ${address}:${port} (${err.code ?? err.message}); choose another port or address`, { cause: err })));
    server.listen(port, address, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  const host = address.includes(':') ? `[${address}]` : address === '0.0.0.0' ? '127.0.0.1' : address;
  return {
    url: `http://${host}:${bound}/`,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
