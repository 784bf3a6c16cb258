/**
 * The agent's HTTP endpoints, on ztunnel's ports (ztunnel.md §2):
 *   15021 GET /healthz/ready   200 "ready" once startup tasks finished, else 500 listing them (JSON if asked)
 *   15020 GET /metrics, /stats/prometheus   Prometheus text, or OpenMetrics when asked by Accept
 *   15000 (localhost only)
 *         GET  /               the list of endpoints
 *         GET  /config_dump    workloads, services, certificates, ... (JSON, from the agent)
 *         POST /logging        current levels; ?level=debug or ?level=access=debug,agent=warn; ?reset; ?format=json|pretty
 *         POST /quitquitquit   graceful shutdown
 * Handlers are plain functions of (req, res) so tests serve them on ephemeral ports.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { parseLogLevel, type LogControl, type LogLevel } from '../common/logger.js';
import { OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, openMetricsText, prometheusText } from '../common/metrics.js';

export interface Readiness {
  pending(): string[];
}

export interface AdminDeps {
  registry: Registry;
  readiness: Readiness;
  configDump(): unknown;
  quit(): void;
  /** Run-time log levels (logControlFor(logger)); without it POST /logging answers 501. */
  logging?: LogControl;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function split(url: string | undefined): { path: string; query: URLSearchParams } {
  const u = new URL(url ?? '/', 'http://localhost');
  return { path: u.pathname, query: u.searchParams };
}

export function readinessHandler(r: Readiness): Handler {
  return (req, res) => {
    if (split(req.url).path !== '/healthz/ready') return send(res, 404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    const pending = r.pending();
    // Text as ztunnel answers; JSON on request, for tools that list the tasks (ambit status).
    if ((req.headers.accept ?? '').includes('application/json')) return send(res, pending.length === 0 ? 200 : 500, JSON.stringify({ ready: pending.length === 0, pending }) + '\n', 'application/json');
    if (pending.length === 0) return send(res, 200, 'ready\n');
    send(res, 500, `not ready, pending: ${pending.join(', ')}\n`);
  };
}

/** True when an Accept header asks for OpenMetrics (as Prometheus does when it prefers it). */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  return (accept ?? '').split(',').some((part) => {
    const [type, ...params] = part.split(';').map((s) => s.trim());
    if (type !== 'application/openmetrics-text') return false;
    const q = params.find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

export function metricsHandler(registry: Registry): Handler {
  return async (req, res) => {
    const { path } = split(req.url);
    if (path !== '/metrics' && path !== '/stats/prometheus') return send(res, 404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    if (wantsOpenMetrics(req.headers.accept)) return send(res, 200, await openMetricsText(registry), OPENMETRICS_CONTENT_TYPE);
    send(res, 200, await prometheusText(registry), PROMETHEUS_CONTENT_TYPE);
  };
}

/** The admin endpoints, as `/` lists them. */
export const ADMIN_ENDPOINTS: ReadonlyArray<{ method: string; path: string; help: string }> = [
  { method: 'GET', path: '/', help: 'this list' },
  { method: 'GET', path: '/config_dump', help: 'workloads, services, certificates, in-pod workload states and the effective config (JSON)' },
  { method: 'POST', path: '/logging', help: 'show the log levels; ?level=<lvl> sets all, ?level=<component>=<lvl>,... sets components, ?reset restores, ?format=json|pretty' },
  { method: 'POST', path: '/quitquitquit', help: 'drain and exit' },
];

function indexText(): string {
  return ['ambit agent admin endpoints:', ...ADMIN_ENDPOINTS.map((e) => `  ${e.method.padEnd(5)} ${e.path.padEnd(14)} ${e.help}`), ''].join('\n');
}

function levelsText(c: LogControl): string {
  const l = c.levels();
  return [
    `current log level is ${l.default}`,
    ...Object.entries(l.components).map(([k, v]) => `  ${k}: ${v}`),
    ...(c.format !== undefined ? [`log format is ${c.format}`] : []),
    '',
  ].join('\n');
}

/** `level=debug` or `level=access=debug,agent=warn` (ztunnel/Envoy style); undefined entries are errors. */
export function parseLevelSpec(spec: string): { ok: true; value: Array<{ component?: string; level: LogLevel }> } | { ok: false; error: string } {
  const out: Array<{ component?: string; level: LogLevel }> = [];
  for (const part of spec.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const eq = part.indexOf('=');
    const component = eq >= 0 ? part.slice(0, eq).trim() : undefined;
    const raw = eq >= 0 ? part.slice(eq + 1) : part;
    const level = parseLogLevel(raw);
    if (!level) return { ok: false, error: `unknown log level '${raw}'; use one of off, fatal, error, warn, info, debug, trace` };
    if (component === '') return { ok: false, error: `empty component name in '${part}'` };
    out.push(component === undefined ? { level } : { component, level });
  }
  if (out.length === 0) return { ok: false, error: 'empty level; use ?level=debug or ?level=<component>=debug' };
  return { ok: true, value: out };
}

function logging(d: AdminDeps, query: URLSearchParams, res: ServerResponse): void {
  const c = d.logging;
  if (!c) return send(res, 501, 'log level control is not available in this agent\n');
  if (query.has('reset')) {
    c.reset();
    return send(res, 200, levelsText(c));
  }
  const format = query.get('format');
  if (format !== null) {
    if (format !== 'json' && format !== 'pretty') return send(res, 400, `unknown log format '${format}'; use json or pretty\n`);
    if (!c.setFormat(format)) return send(res, 501, 'the log format of this agent cannot change at run time\n');
  }
  const spec = query.get('level');
  if (spec === null) return send(res, 200, levelsText(c));
  const parsed = parseLevelSpec(spec);
  if (!parsed.ok) return send(res, 400, `${parsed.error}\n`);
  // A plain level first (it clears overrides), then the per-component ones.
  for (const e of [...parsed.value].sort((a, b) => Number(a.component !== undefined) - Number(b.component !== undefined))) c.setLevel(e.level, e.component);
  send(res, 200, levelsText(c));
}

function isLoopback(addr: string | undefined): boolean {
  if (addr === undefined) return true;
  const a = addr.replace(/^::ffff:/, '');
  return a === '::1' || a.startsWith('127.');
}

export function adminHandler(d: AdminDeps): Handler {
  return (req, res) => {
    // Bound to 127.0.0.1 by the agent; refused here as well, should it ever be bound wider.
    if (!isLoopback(req.socket.remoteAddress)) return send(res, 403, 'the admin endpoint only answers on localhost\n');
    const { path, query } = split(req.url);
    if (path === '/') {
      if (req.method !== 'GET') return send(res, 405, 'method not allowed\n');
      return send(res, 200, indexText());
    }
    if (path === '/config_dump') {
      if (req.method !== 'GET') return send(res, 405, 'method not allowed\n');
      return send(res, 200, JSON.stringify(d.configDump(), null, 2) + '\n', 'application/json');
    }
    if (path === '/logging') {
      if (req.method !== 'POST') return send(res, 405, 'method not allowed\n');
      return logging(d, query, res);
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
    // A handler that throws (synchronously or not) answers 500; the server keeps serving.
    new Promise<void>((resolve) => resolve(handler(req, res))).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, `error: ${String(err)}\n`);
      else res.destroy();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
