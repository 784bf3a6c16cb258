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
 *   GET /api/workloads?points=<n>  per-workload golden signals with sparkline points (default 60)
 *   GET /api/health            agents, waypoints, control plane, policies, certificates
 *   GET /api/events?since=<seq>&limit=<n>  access-log lines and noticed changes
 *   GET /api/stream            Server-Sent Events: a `snapshot` event after every scrape round
 *   GET /healthz               "ok" once the first round ran
 *
 * Only GET/HEAD; anything else is 405. Bad query values answer 400.
 *
 * With `netns`, the listening socket is created inside that network namespace
 * by the native addon (setns in, socket/bind/listen, setns back, one call) and
 * Node's HTTP server adopts the fd: that is how the control plane, which runs
 * in a lab node's netns, serves the page on the host's 127.0.0.1.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { NativeBinding } from '../native/binding.js';
import { loadNativeBinding } from '../native/load.js';
import type { Collector } from './collector.js';
import { DashboardBindError, DashboardNetnsError } from './errors.js';
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
  /** Listen inside this netns (a path such as /proc/<pid>/ns/net); undefined: the process's own netns. */
  netns?: string;
  /** The native addon for `netns` (tests inject one); loaded on demand. */
  binding?: NativeBinding;
  /** The `server` header of every answer, e.g. `ambit-control-plane/<pid>` (who serves the page). */
  serverName?: string;
}

export interface DashboardServer {
  readonly url: string;
  readonly port: number;
  /** The address the socket is bound to. */
  readonly address: string;
  /** The netns the socket lives in (undefined: the process's own). */
  readonly netns: string | undefined;
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
      case '/api/workloads': {
        const points = intParam(q, 'points', 60);
        if (points === undefined) return json(res, { error: 'points must be a non-negative integer' }, head, 400);
        return json(res, c.workloads(Math.min(points, c.maxPoints)), head);
      }
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

/**
 * The error for a failed native listen in `netns`: entering the netns
 * (open/setns) is DashboardNetnsError, the socket itself (bind/listen)
 * DashboardBindError. Both lowercase, naming the errno.
 */
export function nativeListenError(err: unknown, netns: string, address: string, port: number): DashboardBindError | DashboardNetnsError {
  const e = err as { code?: unknown; syscall?: unknown };
  const code = typeof e.code === 'string' ? e.code : toError(err).message;
  const syscall = typeof e.syscall === 'string' ? e.syscall : '';
  if (syscall === 'open' || syscall === 'setns' || syscall === 'ioctl') {
    const why =
      code === 'ENOENT'
        ? 'it does not exist; if it is /proc/<pid>/ns/net, that process has exited'
        : code === 'EPERM' || code === 'EACCES'
          ? 'entering a netns needs root (CAP_SYS_ADMIN)'
          : 'it is not a network namespace';
    return new DashboardNetnsError(`the dashboard cannot listen in netns ${netns} (${code} at ${syscall}): ${why}`, { cause: err });
  }
  return new DashboardBindError(`the dashboard cannot listen on ${hostPort(address, port)} in netns ${netns} (${code}${syscall ? ` at ${syscall}` : ''}); choose another port or address`, { cause: err });
}

function hostPort(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/** A listening fd made inside `netns` by the addon; throws DashboardNetnsError / DashboardBindError. */
function listenFdInNetns(o: { netns: string; address: string; port: number; binding?: NativeBinding }): number {
  if (isIP(o.address) === 0) throw new DashboardBindError(`the dashboard address must be an IP literal when it listens in netns ${o.netns}, got '${o.address}'`);
  let binding: NativeBinding;
  try {
    binding = o.binding ?? loadNativeBinding();
  } catch (err) {
    throw new DashboardNetnsError(`the dashboard cannot listen in netns ${o.netns}: the native addon is not available (${toError(err).message})`, { cause: err });
  }
  try {
    return binding.listenTcpInNetns(o.netns, o.address, o.port);
  } catch (err) {
    throw nativeListenError(err, o.netns, o.address, o.port);
  }
}

/** Listens; rejects with DashboardBindError (or DashboardNetnsError) when the address/port/netns cannot be used. */
export async function startDashboardServer(o: DashboardServerOptions): Promise<DashboardServer> {
  const handler = dashboardHandler(o.collector, o.title);
  const server: Server = createServer((req, res) => {
    if (o.serverName) res.setHeader('server', o.serverName);
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
  const fd = o.netns !== undefined ? listenFdInNetns({ netns: o.netns, address, port, ...(o.binding ? { binding: o.binding } : {}) }) : undefined;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      // An adopted fd that Node could not use is closed with the server.
      server.close();
      reject(new DashboardBindError(`the dashboard cannot listen on ${hostPort(address, port)}${o.netns ? ` in netns ${o.netns}` : ''} (${err.code ?? err.message}); choose another port or address`, { cause: err }));
    });
    if (fd !== undefined) server.listen({ fd }, () => resolve());
    else server.listen(port, address, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  const host = address.includes(':') ? `[${address}]` : address === '0.0.0.0' ? '127.0.0.1' : address;
  return {
    url: `http://${host}:${bound}/`,
    port: bound,
    address,
    netns: o.netns,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
