/**
 * The waypoint: accepts inner (already de-tunnelled) connections, sniffs
 * HTTP/1.1 vs h2c prior knowledge, turns each request into a
 * PipelineRequest, and writes the pipeline's response back.
 *
 * Connections come in three ways:
 *   - `handleConnection(duplex, meta)`: any byte stream plus what is known
 *     about it (source address, HBONE peer identity, the CONNECT target);
 *   - `listen(port, host)`: a plain TCP listener (standalone/testing; the
 *     service is found from the Host header);
 *   - `hboneHooks()`: `resolveTarget` and `dial` for an HboneServer from
 *     src/hbone. The CONNECT authority (VIP:port) picks the service; the
 *     accepted tunnel is bridged to an internal loopback listener and the
 *     HBONE metadata is matched back by the loopback source port.
 *
 * Config is swapped atomically with `updateConfig`; cluster state (outlier
 * ejections, active counts) survives for clusters whose config is unchanged.
 */
import { createServer as createH1Server, type IncomingMessage, type Server as H1Server, type ServerResponse } from 'node:http';
import { constants as h2c, performServerHandshake, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, Socket as NetSocket, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { Duplex, type Readable } from 'node:stream';
import { Registry } from 'prom-client';
import { systemClock, type Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import type { InboundRequest, TargetDecision } from '../hbone/server.js';
import { Abort, type AbortLike } from './abort.js';
import { JwtAuthenticator } from './authn.js';
import { ClusterState } from './cluster.js';
import type { ClusterConfig, L7Config, ServiceConfig, WorkloadConfig } from './config.js';
import type { ConnectionMeta } from './connection-meta.js';
import { evaluateL4Authz } from './l4-authz.js';
import { splitHostPort, type HeaderMap } from './match.js';
import { Pipeline, type PipelineRequest, type ResponseSink, type SinkResult } from './pipeline.js';
import type { WaypointPlugin } from './plugin.js';
import { RequestBody } from './request-body.js';
import { sniff } from './sniff.js';
import { sourceFromBaggage, type SourceWorkload } from './source-baggage.js';
import { TcpProxy, type TcpTarget } from './tcp-proxy.js';
import { WaypointTcpTelemetry } from './tcp-telemetry.js';
import { WaypointTelemetry } from './telemetry.js';
import { WaypointTracer, type TracingOptions } from './tracing.js';
import { tcpDialer, UpstreamPool, type UpstreamDialer } from './upstream.js';

export interface WaypointOptions {
  config: L7Config;
  logger: Logger;
  /** Opens upstream byte streams; default plain TCP (the lead passes an HBONE dialer). */
  dialer?: UpstreamDialer;
  registry?: Registry;
  clock?: Clock;
  /** Uniform [0,1) source for splits, faults, load balancing and backoff jitter. */
  random?: () => number;
  plugins?: readonly WaypointPlugin[];
  tracing?: TracingOptions;
  /**
   * Request bodies stream upstream; up to this many bytes are also kept so the
   * request can be retried or mirrored (Envoy's buffer limit). Larger bodies
   * still go through, without retries or mirrors. Default 1 MiB.
   */
  maxReplayBodyBytes?: number;
  /** destination_cluster label. */
  clusterId?: string;
  mirrorTimeoutMs?: number;
}

export type { ConnectionMeta } from './connection-meta.js';

export class Waypoint {
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #maxBody: number;
  readonly #pool: UpstreamPool;
  readonly #tracer: WaypointTracer;
  readonly #pipeline: Pipeline;
  readonly #tcp: TcpProxy;
  readonly registry: Registry;
  #config: L7Config;
  #clusters = new Map<string, ClusterState>();
  readonly #h1: H1Server;
  readonly #sessions = new Set<ServerHttp2Session>();
  readonly #meta = new WeakMap<object, ConnectionMeta>();
  readonly #baggageCache = new WeakMap<ReadonlyMap<string, string>, SourceWorkload>();
  readonly #listeners = new Set<NetServer>();
  readonly #sockets = new Set<Duplex>();
  /** HTTP/1 connections and their in-flight request count (for drain). */
  readonly #h1Sockets = new Map<Duplex, number>();
  #draining = false;
  #internal: Promise<number> | undefined;
  readonly #pendingMeta = new Map<number, ConnectionMeta>();
  readonly #metaWaiters = new Map<number, (m: ConnectionMeta) => void>();

  constructor(opts: WaypointOptions) {
    this.#log = opts.logger.child({ component: 'waypoint' });
    this.#clock = opts.clock ?? systemClock;
    this.#random = opts.random ?? Math.random;
    this.#maxBody = opts.maxReplayBodyBytes ?? 1 << 20;
    this.registry = opts.registry ?? new Registry();
    this.#pool = new UpstreamPool(opts.dialer ?? tcpDialer());
    this.#tracer = new WaypointTracer(opts.tracing);
    this.#config = opts.config;
    this.#rebuildClusters(opts.config);
    this.#pipeline = new Pipeline({
      clock: this.#clock,
      random: this.#random,
      logger: this.#log,
      telemetry: new WaypointTelemetry(this.registry, opts.logger),
      tracer: this.#tracer,
      authn: new JwtAuthenticator(this.#clock),
      pool: this.#pool,
      plugins: opts.plugins ?? [],
      cluster: (name) => this.#clusters.get(name),
      clusterId: opts.clusterId ?? 'Kubernetes',
      mirrorTimeoutMs: opts.mirrorTimeoutMs ?? 10_000,
    });
    this.#tcp = new TcpProxy({
      dialer: opts.dialer ?? tcpDialer(),
      cluster: (name) => this.#clusters.get(name),
      telemetry: new WaypointTcpTelemetry(this.registry, opts.logger),
      logger: this.#log,
      clock: this.#clock,
      random: this.#random,
      clusterId: opts.clusterId ?? 'Kubernetes',
    });
    this.#h1 = createH1Server({ keepAliveTimeout: 60_000, requestTimeout: 0 }, (req, res) => this.#onH1(req, res));
  }

  get config(): L7Config {
    return this.#config;
  }

  /** Swaps in a new (already compiled) config for new requests. */
  updateConfig(config: L7Config): void {
    this.#config = config;
    this.#rebuildClusters(config);
  }

  #rebuildClusters(config: L7Config): void {
    const next = new Map<string, ClusterState>();
    for (const [name, c] of config.clusters) {
      const cur = this.#clusters.get(name);
      next.set(name, cur && sameCluster(cur.config, c) ? cur : new ClusterState(c, this.#clock, this.#random));
    }
    this.#clusters = next;
  }

  /** Cluster run-time state, for admin/debug and tests. */
  clusterState(name: string): ClusterState | undefined {
    return this.#clusters.get(name);
  }

  /**
   * Serves one inner connection. With a CONNECT target: a 'tcp' service or a
   * bound workload is passed through as TCP at once; an 'http' service is
   * sniffed (HTTP/1.1, h2c prior knowledge, else TCP passthrough); 'grpc' is
   * HTTP. Without a target (plain listener) it must be HTTP. Never throws.
   */
  handleConnection(socket: Duplex, meta: ConnectionMeta): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.on('error', () => undefined);
    this.#meta.set(socket, meta);
    const tcpTarget = meta.target ? this.#tcpTarget(meta.target.host, meta.target.port) : undefined;
    if (tcpTarget) {
      void this.#tcp.serve(socket, Buffer.alloc(0), meta, tcpTarget);
      return;
    }
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const kind = sniff(buf);
      if (kind === 'more') return;
      socket.off('data', onData);
      if (kind === 'h2') {
        // a real socket keeps Node's native HTTP/2 I/O path (the session reads the
        // sniffed bytes back from the readable buffer); any other stream goes through prepend()
        if (hasNativeHandle(socket)) {
          socket.pause();
          socket.unshift(buf);
          this.#serveH2(socket, meta);
        } else {
          this.#serveH2(prepend(socket, buf), meta);
        }
        return;
      }
      const svc = kind === 'tcp' && meta.target ? this.#serviceByAddress(meta.target.host, meta.target.port) : undefined;
      if (svc?.protocol === 'http' && meta.target) {
        this.#fallbackTcp(socket, buf, meta, svc, meta.target.port);
        return;
      }
      // HTTP, or garbage where only HTTP may be spoken: the HTTP/1 parser answers 400
      socket.pause();
      socket.unshift(buf);
      this.#h1Sockets.set(socket, 0);
      socket.once('close', () => this.#h1Sockets.delete(socket));
      this.#h1.emit('connection', socket);
      socket.resume();
    };
    socket.on('data', onData);
    // a socket paused while its HBONE metadata was pending does not flow by itself
    socket.resume();
  }

  /** Non-HTTP bytes for an 'http' service reached through HBONE: TCP passthrough after L4 authz. */
  #fallbackTcp(socket: Duplex, head: Buffer, meta: ConnectionMeta, svc: ServiceConfig, port: number): void {
    const v = evaluateL4Authz(svc.authorization, { ...(meta.peerIdentity ? { principal: meta.peerIdentity } : {}), sourceIp: meta.sourceAddress, destinationPort: port });
    if (!v.allowed) {
      this.#log.info({ src: meta.sourceAddress, principal: meta.peerIdentity, service: svc.hostname, reason: v.reason }, 'tcp connection denied');
      socket.destroy();
      return;
    }
    socket.pause();
    void this.#tcp.serve(socket, head, meta, { kind: 'service', service: svc });
  }

  /** A CONNECT target served as opaque TCP: a 'tcp' service VIP, or (any port) a workload bound to this waypoint. */
  #tcpTarget(host: string, port: number): TcpTarget | undefined {
    const svc = this.#serviceByAddress(host, port);
    if (svc) return svc.protocol === 'tcp' ? { kind: 'service', service: svc } : undefined;
    const w = this.#workloadByAddress(host);
    return w ? { kind: 'workload', workload: w, port } : undefined;
  }

  #workloadByAddress(host: string): WorkloadConfig | undefined {
    return this.#config.workloads.find((w) => w.address === host);
  }

  /** A plain TCP listener (no HBONE); the service comes from the Host header. */
  async listen(port: number, host: string): Promise<NetServer> {
    const srv = createNetServer({ noDelay: true }, (s) => this.handleConnection(s, { sourceAddress: s.remoteAddress ?? '' }));
    this.#listeners.add(srv);
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => resolve());
    });
    return srv;
  }

  /** Hooks for an HboneServer: route CONNECTs for our services into this waypoint. */
  hboneHooks(): { resolveTarget(req: InboundRequest): Promise<TargetDecision>; dial(target: { host: string; port: number }, req: InboundRequest): Socket } {
    return {
      resolveTarget: async (req) => {
        const svc = this.#serviceByAddress(req.authority.host, req.authority.port);
        if (!svc && !this.#workloadByAddress(req.authority.host)) return { kind: 'unavailable', reason: `no waypoint service for ${req.authority.host}:${req.authority.port}` };
        if (svc?.protocol === 'tcp') {
          const v = evaluateL4Authz(svc.authorization, { principal: req.peerIdentity, sourceIp: req.remoteAddress, destinationPort: req.authority.port });
          if (!v.allowed) return { kind: 'deny', reason: v.reason };
        }
        const port = await this.#internalPort();
        return { kind: 'allow', host: '127.0.0.1', port };
      },
      dial: (target, req) => {
        const meta: ConnectionMeta = { sourceAddress: req.remoteAddress, peerIdentity: req.peerIdentity, target: { host: req.authority.host, port: req.authority.port }, baggage: req.baggage };
        const s = netConnect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
        s.once('connect', () => {
          const lp = s.localPort ?? 0;
          const w = this.#metaWaiters.get(lp);
          if (w) {
            this.#metaWaiters.delete(lp);
            w(meta);
          } else {
            this.#pendingMeta.set(lp, meta);
            // never accepted (listener closing): do not keep the entry
            s.once('close', () => {
              if (this.#pendingMeta.get(lp) === meta) this.#pendingMeta.delete(lp);
            });
          }
        });
        return s;
      },
    };
  }

  #internalPort(): Promise<number> {
    this.#internal ??= (async () => {
      const srv = createNetServer({ noDelay: true, allowHalfOpen: true }, (s) => {
        const rp = s.remotePort ?? 0;
        const meta = this.#pendingMeta.get(rp);
        if (meta) {
          this.#pendingMeta.delete(rp);
          this.handleConnection(s, meta);
          return;
        }
        s.pause();
        const t = setTimeout(() => {
          this.#metaWaiters.delete(rp);
          s.destroy();
        }, 5000);
        this.#metaWaiters.set(rp, (m) => {
          clearTimeout(t);
          // handleConnection resumes the socket itself when (and only when) it reads it
          this.handleConnection(s, m);
        });
      });
      this.#listeners.add(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => resolve());
      });
      return (srv.address() as AddressInfo).port;
    })();
    return this.#internal;
  }

  #serviceByAddress(host: string, port: number): ServiceConfig | undefined {
    return this.#config.services.find((s) => s.port === port && (s.addresses.includes(host) || s.hostname === host));
  }

  /** Host header → service: FQDN, or a short name / name.namespace prefix of it; port must match when given. */
  #serviceByHost(authority: string): ServiceConfig | undefined {
    const [host, port] = splitHostPort(authority.toLowerCase());
    const ok = (s: ServiceConfig): boolean => port === undefined || s.port === port;
    return this.#config.services.find((s) => ok(s) && (s.hostname === host || s.addresses.includes(host)))
      ?? this.#config.services.find((s) => ok(s) && s.hostname.startsWith(`${host}.`));
  }

  #resolve(meta: ConnectionMeta, authority: string): ServiceConfig | undefined {
    if (meta.target) return this.#serviceByAddress(meta.target.host, meta.target.port);
    return this.#serviceByHost(authority);
  }

  // ------------------------------------------------------------ HTTP/1.1

  #onH1(req: IncomingMessage, res: ServerResponse): void {
    const sock = req.socket as Duplex;
    this.#h1Sockets.set(sock, (this.#h1Sockets.get(sock) ?? 0) + 1);
    if (this.#draining) res.shouldKeepAlive = false;
    res.once('close', () => {
      const n = Math.max(0, (this.#h1Sockets.get(sock) ?? 1) - 1);
      if (this.#h1Sockets.has(sock)) this.#h1Sockets.set(sock, n);
      if (this.#draining && n === 0) sock.end();
    });
    const meta = this.#meta.get(req.socket) ?? { sourceAddress: req.socket.remoteAddress ?? '' };
    const headers: HeaderMap = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    const authority = headers.host ?? '';
    const ctl = new Abort();
    res.once('close', () => {
      if (!res.writableFinished) ctl.abort();
    });
    const sink = h1Sink(res);
    void this.#dispatch(meta, req.method ?? 'GET', req.url ?? '/', authority, headers, req, 'http', ctl, sink);
  }

  // ------------------------------------------------------------ HTTP/2

  #serveH2(socket: Duplex, meta: ConnectionMeta): void {
    const session = performServerHandshake(socket, { settings: { enablePush: false, maxConcurrentStreams: 1000 } });
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
    session.on('error', () => undefined);
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#onH2(stream, headers, meta));
  }

  #onH2(stream: ServerHttp2Stream, raw: IncomingHttpHeaders, meta: ConnectionMeta): void {
    stream.on('error', () => undefined);
    const headers: HeaderMap = {};
    for (const [k, v] of Object.entries(raw)) if (v !== undefined && !k.startsWith(':')) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    const authority = (raw[':authority'] as string | undefined) ?? headers.host ?? '';
    if (headers.host === undefined) headers.host = authority;
    const ctl = new Abort();
    stream.once('close', () => {
      if (stream.rstCode !== h2c.NGHTTP2_NO_ERROR || !stream.writableFinished) ctl.abort();
    });
    void this.#dispatch(meta, (raw[':method'] as string | undefined) ?? 'GET', (raw[':path'] as string | undefined) ?? '/', authority, headers, stream, 'http2', ctl, h2Sink(stream));
  }

  async #dispatch(meta: ConnectionMeta, method: string, path: string, authority: string, headers: HeaderMap, body: Readable, protocol: 'http' | 'http2', signal: AbortLike, sink: ResponseSink): Promise<void> {
    try {
      const svc = this.#resolve(meta, authority);
      if (!svc) {
        body.resume();
        await sink.send(404, { 'content-type': 'text/plain' }, Buffer.from('no waypoint service for this authority'), undefined, false);
        return;
      }
      const declared = headers['content-length'] !== undefined && /^\d+$/.test(headers['content-length']) ? Number(headers['content-length']) : undefined;
      const reqBody = new RequestBody(body, this.#maxBody, declared);
      delete headers.host;
      delete headers.connection;
      delete headers['keep-alive'];
      delete headers['transfer-encoding'];
      delete headers['content-length'];
      delete headers.te;
      delete headers.upgrade;
      if ((headers['content-type'] ?? '').startsWith('application/grpc')) headers.te = 'trailers';
      const req: PipelineRequest = {
        method, path, authority, headers, body: reqBody, protocol, service: svc, sourceAddress: meta.sourceAddress,
        ...(meta.peerIdentity ? { sourcePrincipal: meta.peerIdentity } : {}), mtls: meta.peerIdentity !== undefined, signal,
        ...(meta.baggage ? { sourceWorkload: this.#sourceWorkload(meta.baggage) } : {}),
      };
      await this.#pipeline.handle(req, sink);
    } catch (err) {
      this.#log.error({ err }, 'BUG: unexpected error dispatching a waypoint request');
    }
  }

  /** Source attributes of a connection's baggage, parsed once per connection rather than per request. */
  #sourceWorkload(b: ReadonlyMap<string, string>): SourceWorkload {
    let sw = this.#baggageCache.get(b);
    if (!sw) {
      sw = sourceFromBaggage(b);
      this.#baggageCache.set(b, sw);
    }
    return sw;
  }

  /** Flushes pending spans (tests, shutdown). */
  flushTraces(): Promise<void> {
    return this.#tracer.flush();
  }

  /**
   * Graceful drain: listeners stop accepting, h2 sessions get GOAWAY, HTTP/1
   * keep-alive connections are closed as soon as they are idle (after their
   * in-flight response). Resolves when every inner connection is closed or
   * after `deadlineMs`; close() then drops whatever is left.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.#draining = true;
    for (const l of this.#listeners) l.close();
    for (const session of this.#sessions) if (!session.closed) session.close();
    // idle keep-alive connections end now; busy ones after their response (see #onH1)
    for (const [sock, n] of this.#h1Sockets) if (n === 0) sock.end();
    // wall time on purpose: a fake clock in tests must not make shutdown spin forever
    const end = Date.now() + deadlineMs;
    while (this.#sockets.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
  }

  /** Inner connections currently open (HTTP and TCP passthrough). */
  get openConnections(): number {
    return this.#sockets.size;
  }

  async close(): Promise<void> {
    for (const l of this.#listeners) l.close();
    for (const s of this.#sockets) s.destroy();
    this.#pool.close();
    this.#h1.close();
    for (const session of this.#sessions) session.destroy();
    await this.#tracer.shutdown();
  }
}

/** A net.Socket still attached to its libuv handle (HTTP/2 can consume it natively). */
function hasNativeHandle(s: Duplex): s is NetSocket {
  return s instanceof NetSocket && (s as unknown as { _handle?: { isStreamBase?: boolean } })._handle?.isStreamBase === true;
}

/**
 * A Duplex that yields `head` and then everything from `socket`. HTTP/2 on a
 * net.Socket reads the native handle directly and would lose bytes already
 * read for sniffing, so the h2 session gets this JS stream instead.
 */
function prepend(socket: Duplex, head: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(head);
  socket.on('data', (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.once('end', () => d.push(null));
  socket.once('close', () => d.destroy());
  socket.on('error', (e: Error) => d.destroy(e));
  return d;
}

export { sourceFromBaggage } from './source-baggage.js';

function sameCluster(a: ClusterConfig, b: ClusterConfig): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** Pipes `body` into `write`, counting bytes; resolves at end or on error. */
function pump(body: Readable, out: NodeJS.WritableStream & { destroyed?: boolean }): Promise<{ bytes: number; error?: string }> {
  return new Promise((resolve) => {
    let bytes = 0;
    let done = false;
    const finish = (error?: string): void => {
      if (done) return;
      done = true;
      resolve(error ? { bytes, error } : { bytes });
    };
    body.on('data', (c: Buffer) => {
      bytes += c.length;
      if (!out.write(c)) {
        body.pause();
        out.once('drain', () => body.resume());
      }
    });
    body.once('end', () => finish());
    body.once('error', (e: Error) => finish(e.message));
    body.once('close', () => finish(body.readableEnded ? undefined : 'upstream closed before the end of the body'));
    (out as unknown as Readable).once?.('close', () => {
      if (!done) {
        body.destroy();
        finish('downstream closed');
      }
    });
  });
}

function h1Sink(res: ServerResponse): ResponseSink {
  return {
    async send(status, headers, body): Promise<SinkResult> {
      if (res.headersSent || res.destroyed) return { bytes: 0, error: 'downstream closed' };
      const h: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':')) h[k] = v;
      if (Buffer.isBuffer(body)) {
        h['content-length'] = String(body.length);
        res.writeHead(status, h);
        res.end(body);
        return { bytes: body.length };
      }
      res.writeHead(status, h);
      const r = await pump(body, res);
      res.end();
      return r;
    },
  };
}

function h2Sink(stream: ServerHttp2Stream): ResponseSink {
  return {
    async send(status, headers, body, trailers, grpc): Promise<SinkResult> {
      if (stream.destroyed || stream.closed || stream.headersSent) return { bytes: 0, error: 'downstream closed' };
      const h: Record<string, string | string[]> = { ':status': String(status) };
      for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') && k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding') h[k] = v;
      try {
        if (Buffer.isBuffer(body)) {
          if (body.length === 0) stream.respond(h, { endStream: true });
          else {
            h['content-length'] = String(body.length);
            stream.respond(h);
            stream.end(body);
          }
          return { bytes: body.length };
        }
        // gRPC trailers-only: status already in the headers
        if (grpc && headers['grpc-status'] !== undefined) {
          const r = await drain(body);
          stream.respond(h, { endStream: true });
          return r;
        }
        stream.respond(h, { waitForTrailers: grpc && trailers !== undefined });
        const r = await pump(body, stream);
        if (grpc && trailers) {
          const t = await trailers;
          const tt: Record<string, string> = {};
          for (const [k, v] of Object.entries(t)) if (!k.startsWith(':')) tt[k] = v;
          if (tt['grpc-status'] === undefined) tt['grpc-status'] = r.error ? '14' : '2';
          stream.once('wantTrailers', () => stream.sendTrailers(tt));
        }
        stream.end();
        return r;
      } catch (err) {
        stream.close(h2c.NGHTTP2_INTERNAL_ERROR);
        return { bytes: 0, error: err instanceof Error ? err.message : String(err) };
      }
    },
  };
}

async function drain(body: Readable): Promise<{ bytes: number }> {
  let bytes = 0;
  try {
    for await (const c of body) bytes += (c as Buffer).length;
  } catch {
    // a reset after a trailers-only answer changes nothing
  }
  return { bytes };
}
