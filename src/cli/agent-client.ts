/**
 * Plain HTTP to a running agent's endpoints (admin 15000, metrics 15020,
 * readiness 15021) for the operator commands. In the lab these run in the
 * node's netns (`ambit lab exec --node n -- ambit status`), so localhost is
 * the agent. Failing to connect is an AgentUnreachableError that says which
 * endpoint and what to check.
 */
import { request } from 'node:http';
import { ConfigError } from '../common/errors.js';
import { AgentResponseError, AgentUnreachableError } from './errors.js';

export interface Endpoint {
  host: string;
  port: number;
  /** What it is, for messages: "admin", "metrics", "readiness". */
  role: string;
}

export interface HttpAnswer {
  status: number;
  contentType: string;
  body: string;
}

/** `host:port`, `:port` (host defaults), `[v6]:port`, or a bare port. */
export function parseAddress(raw: string, role: string, defaultHost = '127.0.0.1'): Endpoint {
  const s = raw.trim();
  let host = defaultHost;
  let port: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(s);
  if (v6) {
    host = v6[1] as string;
    port = v6[2] as string;
  } else if (/^\d+$/.test(s)) {
    port = s;
  } else {
    const i = s.lastIndexOf(':');
    if (i < 0) throw new ConfigError(`--address must be host:port, got '${raw}'`);
    host = s.slice(0, i) || defaultHost;
    port = s.slice(i + 1);
  }
  const n = Number(port);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ConfigError(`--address port must be 1-65535, got '${raw}'`);
  return { host, port: n, role };
}

export function formatEndpoint(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

export function unreachableMessage(e: Endpoint, err: Error): string {
  const code = (err as { code?: string }).code;
  const what = code ? `${(err as { syscall?: string }).syscall ?? 'connect'} ${code}` : err.message;
  return `cannot reach the agent ${e.role} endpoint at ${formatEndpoint(e)}: ${what}; is the agent running on this node?`;
}

/** One request; resolves for any HTTP status, rejects only when nothing answered. */
export function fetchEndpoint(e: Endpoint, path: string, opts: { method?: string; accept?: string; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: e.host, port: e.port, path, method: opts.method ?? 'GET', headers: opts.accept ? { accept: opts.accept } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => reject(new AgentUnreachableError(unreachableMessage(e, err), { cause: err })));
    });
    req.setTimeout(opts.timeoutMs ?? 5000, () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT', syscall: 'request' })));
    req.on('error', (err) => reject(new AgentUnreachableError(unreachableMessage(e, err), { cause: err })));
    req.end();
  });
}

/** GET that must answer 200. */
export async function fetchOk(e: Endpoint, path: string, opts: { accept?: string; timeoutMs?: number } = {}): Promise<string> {
  const a = await fetchEndpoint(e, path, opts);
  if (a.status !== 200) throw new AgentResponseError(`the agent ${e.role} endpoint at ${formatEndpoint(e)} answered ${a.status} for ${path}: ${a.body.trim().slice(0, 200)}`);
  return a.body;
}

export async function fetchJson(e: Endpoint, path: string): Promise<unknown> {
  const body = await fetchOk(e, path);
  try {
    return JSON.parse(body) as unknown;
  } catch (err) {
    throw new AgentResponseError(`the agent ${e.role} endpoint at ${formatEndpoint(e)} returned invalid JSON for ${path}`, { cause: err });
  }
}
