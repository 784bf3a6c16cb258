/**
 * Upstream HTTP: HTTP/1.1 and h2c (prior knowledge) over byte streams that an
 * injected UpstreamDialer provides. Tests dial plain TCP to loopback; the
 * agent integration passes a dialer that opens HBONE tunnels from its pool,
 * so the waypoint re-originates HBONE without this module knowing.
 *
 * HTTP/1.1: one keep-alive http.Agent per endpoint whose sockets come from the
 * dialer; a connection is retired after maxRequestsPerConnection requests.
 * h2c: one session per endpoint, replaced when it closes, goes away, or has
 * carried maxRequestsPerConnection streams.
 *
 * Every failure before response headers is a WaypointUpstreamError with a
 * kind (connect_failure, reset, refused_stream, timeout) that the retry loop
 * and the error table understand.
 */
import { Agent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { connect as h2connect, constants as h2c, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect, Socket } from 'node:net';
import { Duplex, type Readable } from 'node:stream';
import type { AbortLike } from './abort.js';
import type { Endpoint } from './config.js';
import { WaypointUpstreamError } from './errors.js';
import type { RequestBody } from './request-body.js';

export type UpstreamProtocol = 'http1' | 'h2c';
/** What is known about the downstream of an opaque TCP connection (HBONE dialers send it as forwarded/baggage). */
export interface DialContext {
  readonly sourceAddress: string;
  readonly baggage?: ReadonlyMap<string, string>;
  /** The service the client addressed, when any. */
  readonly serviceHost?: string;
}
/**
 * Opens a byte stream to an endpoint (TCP, or an HBONE tunnel). Rejects on
 * connect failure. `protocol` is 'tcp' for opaque passthrough, which also
 * passes `ctx` (pooled HTTP connections are shared, so they carry none).
 */
export type UpstreamDialer = (endpoint: Endpoint, protocol: UpstreamProtocol | 'tcp', ctx?: DialContext) => Promise<Duplex>;

/** Plain TCP dialer with a connect timeout (the test/default dialer). */
export function tcpDialer(connectTimeoutMs = 10_000): UpstreamDialer {
  return (ep) =>
    new Promise((resolve, reject) => {
      const s = netConnect({ host: ep.address, port: ep.port, noDelay: true });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect timed out after ${connectTimeoutMs}ms`));
      }, connectTimeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
}

export interface UpstreamRequest {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Streams live on the first attempt; retries replay the kept copy. */
  readonly body: RequestBody;
  /** Aborts this attempt (per-try timeout, overall timeout, client gone). */
  readonly signal: AbortLike;
}

export interface UpstreamResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[]>;
  readonly body: Readable;
  /** Resolves with the trailers (possibly empty) when the body ends. */
  readonly trailers: Promise<Record<string, string>>;
  /** Drops the response (e.g. when retrying). */
  discard(): void;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'http2-settings', 'host']);

function isSocket(s: unknown): s is Socket {
  return s instanceof Socket;
}

class DialerAgent extends Agent {
  readonly #uses = new WeakMap<object, number>();
  constructor(private readonly ep: Endpoint, private readonly dialer: UpstreamDialer, private readonly maxPerConn: number) {
    super({ keepAlive: true, maxSockets: Infinity, scheduling: 'lifo' });
  }
  override createConnection(_opts: unknown, cb: (err: Error | null, s?: Duplex) => void): undefined {
    this.dialer(this.ep, 'http1').then(
      (s) => cb(null, isSocket(s) ? s : byteShim(s)),
      (err: unknown) => cb(new WaypointUpstreamError('connect_failure', `${this.ep.address}:${this.ep.port}`, err)),
    );
    return undefined;
  }
  countUse(s: object): void {
    this.#uses.set(s, (this.#uses.get(s) ?? 0) + 1);
  }
  // Node's Agent uses the boolean result (false = destroy the socket); @types/node declares void.
  override keepSocketAlive(s: Duplex): void {
    const keep = (): boolean => {
      if (this.maxPerConn > 0 && (this.#uses.get(s) ?? 0) >= this.maxPerConn) return false;
      if (isSocket(s)) return super.keepSocketAlive(s) as unknown as boolean;
      return true;
    };
    return keep() as unknown as void;
  }
  // sockets and ByteShims alike: Node's implementation removes its idle-socket error listener here
  override reuseSocket(s: Duplex, req: ClientRequest): void {
    super.reuseSocket(s as Socket, req);
  }
}

interface H2Entry { session: ClientHttp2Session; streams: number }

export class UpstreamPool {
  readonly #dialer: UpstreamDialer;
  readonly #agents = new Map<string, DialerAgent>();
  readonly #h2 = new Map<string, H2Entry | Promise<H2Entry>>();
  #closed = false;

  constructor(dialer: UpstreamDialer) {
    this.#dialer = dialer;
  }

  request(ep: Endpoint, protocol: UpstreamProtocol, req: UpstreamRequest, maxRequestsPerConnection: number): Promise<UpstreamResponse> {
    return protocol === 'h2c' ? this.#h2Request(ep, req, maxRequestsPerConnection) : this.#h1Request(ep, req, maxRequestsPerConnection);
  }

  #h1Request(ep: Endpoint, req: UpstreamRequest, maxPerConn: number): Promise<UpstreamResponse> {
    const key = `${ep.address}:${ep.port}`;
    let agent = this.#agents.get(key);
    if (!agent) {
      agent = new DialerAgent(ep, this.#dialer, maxPerConn);
      this.#agents.set(key, agent);
    }
    const a = agent;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && !k.startsWith(':')) headers[k] = v;
      headers.host = req.authority;
      const known = req.body.length ?? req.body.buffered()?.length;
      if (known !== undefined && !(known === 0 && (req.method === 'GET' || req.method === 'HEAD'))) headers['content-length'] = String(known);
      let settled = false;
      const cr = httpRequest({ agent: a, method: req.method, path: req.path, headers, host: ep.address, port: ep.port, setHost: false });
      const onAbort = (): void => {
        cr.destroy(new WaypointUpstreamError('timeout', key));
      };
      req.signal.addEventListener('abort', onAbort, { once: true });
      cr.on('socket', (s) => a.countUse(s));
      cr.on('error', (err) => {
        req.body.detach(cr);
        req.signal.removeEventListener('abort', onAbort);
        if (settled) return;
        settled = true;
        reject(err instanceof WaypointUpstreamError ? err : new WaypointUpstreamError('reset', key, err));
      });
      cr.on('response', (res: IncomingMessage) => {
        settled = true;
        const trailers = new Promise<Record<string, string>>((r) => {
          res.once('end', () => r({ ...(res.trailers as Record<string, string>) }));
          res.once('close', () => r({ ...(res.trailers as Record<string, string>) }));
        });
        res.once('end', () => req.signal.removeEventListener('abort', onAbort));
        res.on('error', () => undefined);
        resolve({
          status: res.statusCode ?? 502,
          headers: stripHop(res.headers as Record<string, string | string[]>),
          body: res,
          trailers,
          discard: () => {
            req.signal.removeEventListener('abort', onAbort);
            res.resume();
          },
        });
      });
      try {
        req.body.pipeTo(cr);
      } catch (err) {
        cr.destroy(new WaypointUpstreamError('reset', key, err));
      }
    });
  }

  async #session(ep: Endpoint, maxPerConn: number): Promise<H2Entry> {
    const key = `${ep.address}:${ep.port}`;
    const cur = this.#h2.get(key);
    if (cur instanceof Promise) return cur;
    if (cur && !cur.session.closed && !cur.session.destroyed && (maxPerConn === 0 || cur.streams < maxPerConn)) return cur;
    if (cur) {
      this.#h2.delete(key);
      cur.session.close();
    }
    const p = (async (): Promise<H2Entry> => {
      let sock: Duplex;
      try {
        sock = await this.#dialer(ep, 'h2c');
      } catch (err) {
        throw new WaypointUpstreamError('connect_failure', key, err);
      }
      const session = h2connect(`http://${key}`, { createConnection: () => sock, settings: { enablePush: false } });
      const entry: H2Entry = { session, streams: 0 };
      const drop = (): void => {
        if (this.#h2.get(key) === entry) this.#h2.delete(key);
      };
      session.on('error', () => undefined);
      session.once('close', drop);
      session.once('goaway', drop);
      return entry;
    })();
    this.#h2.set(key, p);
    try {
      const e = await p;
      if (this.#closed) e.session.destroy();
      this.#h2.set(key, e);
      return e;
    } catch (err) {
      this.#h2.delete(key);
      throw err;
    }
  }

  async #h2Request(ep: Endpoint, req: UpstreamRequest, maxPerConn: number): Promise<UpstreamResponse> {
    const key = `${ep.address}:${ep.port}`;
    const entry = await this.#session(ep, maxPerConn);
    entry.streams++;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && !k.startsWith(':')) headers[k] = v;
      let stream;
      try {
        stream = entry.session.request({ ...headers, ':method': req.method, ':path': req.path, ':authority': req.authority, ':scheme': 'http' }, { endStream: false });
      } catch (err) {
        reject(new WaypointUpstreamError('reset', key, err));
        return;
      }
      const s = stream;
      let settled = false;
      const onAbort = (): void => {
        s.close(h2c.NGHTTP2_CANCEL);
        if (!settled) {
          settled = true;
          reject(new WaypointUpstreamError('timeout', key));
        }
      };
      req.signal.addEventListener('abort', onAbort, { once: true });
      let trailerHeaders: Record<string, string> = {};
      s.on('trailers', (t: IncomingHttpHeaders) => (trailerHeaders = flat(t)));
      const trailers = new Promise<Record<string, string>>((r) => s.once('close', () => r(trailerHeaders)));
      s.once('close', () => {
        req.body.detach(s);
        req.signal.removeEventListener('abort', onAbort);
        if (!settled) {
          settled = true;
          const refused = s.rstCode === h2c.NGHTTP2_REFUSED_STREAM;
          reject(new WaypointUpstreamError(refused ? 'refused_stream' : 'reset', key));
        }
      });
      s.on('error', () => undefined);
      s.on('response', (h: IncomingHttpHeaders) => {
        if (settled) return;
        settled = true;
        const status = Number(h[':status'] ?? 502);
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(h)) if (!k.startsWith(':') && v !== undefined) out[k] = v;
        resolve({ status, headers: stripHop(out), body: s, trailers, discard: () => s.close(h2c.NGHTTP2_CANCEL) });
      });
      try {
        req.body.pipeTo(s);
      } catch (err) {
        s.close(h2c.NGHTTP2_CANCEL);
        if (!settled) {
          settled = true;
          reject(new WaypointUpstreamError('reset', key, err));
        }
      }
    });
  }

  close(): void {
    this.#closed = true;
    for (const a of this.#agents.values()) a.destroy();
    this.#agents.clear();
    for (const e of this.#h2.values()) if (!(e instanceof Promise)) e.session.destroy();
    this.#h2.clear();
  }
}

/**
 * Passes bytes to and from a non-socket stream (e.g. an HBONE tunnel, an
 * HTTP/2 stream). The HTTP/1.1 client corks and writes latin1 strings; an
 * Http2Stream's writev then sent corrupted bytes for the first chunk (seen
 * with Node 20), so strings become Buffers here, in order. A corked batch
 * (request head + body) is joined into one Buffer: one DATA frame instead of
 * one per chunk.
 *
 * ref()/unref() are no-ops so Node's Agent can treat the shim like a socket:
 * its reuseSocket() removes the idle-socket error listener it added when the
 * connection went back to the pool; skipping it (as an earlier version did
 * for non-sockets) leaked one 'error' listener per reused request.
 */
class ByteShim extends Duplex {
  readonly #inner: Duplex;

  constructor(inner: Duplex) {
    // allowHalfOpen false: when the tunnel's read side ends (the backend or its
    // agent went away), the shim ends and closes too. Node's Agent only drops an
    // idle pooled connection on 'close'; a half-open shim would be reused and
    // the next request would hang on a dead tunnel.
    super({ allowHalfOpen: false });
    this.#inner = inner;
    inner.on('data', (c: Buffer) => {
      if (!this.push(c)) inner.pause();
    });
    inner.once('end', () => this.push(null));
    inner.once('close', () => this.destroy());
    inner.on('error', (e: Error) => this.destroy(e));
  }

  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }

  override _read(): void {
    this.#inner.resume();
  }

  override _write(chunk: Buffer | string, enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#inner.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, enc), cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer | string; encoding: BufferEncoding }>, cb: (err?: Error | null) => void): void {
    const bufs = chunks.map((c) => (Buffer.isBuffer(c.chunk) ? c.chunk : Buffer.from(c.chunk, c.encoding)));
    this.#inner.write(bufs.length === 1 ? bufs[0] : Buffer.concat(bufs), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#inner.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.#inner.destroy(err ?? undefined);
    cb(err);
  }
}

function byteShim(inner: Duplex): Duplex {
  return new ByteShim(inner);
}

function flat(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !k.startsWith(':')) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

function stripHop(h: Record<string, string | string[]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
  return out;
}
