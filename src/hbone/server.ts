/**
 * HBONE server: mutual TLS 1.3 + HTTP/2 CONNECT, as ztunnel's inbound on 15008.
 *
 * Pipeline for one TCP connection (each step can refuse; refusals are counted):
 *   raw socket ─► TLS (our cert chosen by local address; client cert required,
 *   chained to the mesh roots) ─► ALPN must be h2 ─► client SPIFFE trust domain
 *   must equal ours ─► HTTP/2 session ─► per stream:
 *     method must be CONNECT (else 400) ─► :authority must be ip:port (else 400)
 *     ─► policy hook (deny ⇒ 401) ─► target lookup (none ⇒ 503) ─► dial the
 *     target (failure ⇒ 503) ─► 200 ─► bridge bytes until both ends close.
 *
 * Every refusal is counted in ambit_hbone_inbound_refused_total{reason}, also
 * the ones nghttp2 (or Node) makes on its own without telling us: a client
 * over the concurrent-stream cap gets a connection error that surfaces as a
 * session error while the session is at the cap (`max_streams`), and a stream
 * whose HEADERS were refused before reaching us (header list or field over
 * the limit, undecodable HPACK) leaves a gap in the client's stream ids that
 * we see at the next stream, or from nghttp2's last processed stream id when
 * the session is reaped (`headers_refused`).
 *
 * The server knows nothing about agents: the caller supplies the identity for
 * a local address, the target resolver and the dialer. The waypoint reuses it.
 */
import { constants as h2c, performServerHandshake, type ServerHttp2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Counter, Registry } from 'prom-client';
import { Counter as PromCounter } from 'prom-client';
import type { Clock } from '../common/clock.js';
import { systemClock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { parseAuthority, type Authority } from './authority.js';
import { bridge, h2Side, tcpSide, type BridgeResult } from './bridge.js';
import { parseBaggage, parseForwarded, parseTraceParent, type ForwardedInfo, type TraceParent } from './headers.js';
import * as S from './settings.js';
import { connectionValidUntil, MAX_EXPIRY_TIMER_MS, peerIdentities, trustDomainOf, type TlsIdentity } from './tls-identity.js';

/** What the server knows about one CONNECT when it asks where it goes. */
export interface InboundRequest {
  readonly authority: Authority;
  /** The client's SPIFFE id from its certificate. */
  readonly peerIdentity: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly forwarded: ForwardedInfo;
  readonly baggage: ReadonlyMap<string, string>;
  readonly traceparent?: TraceParent;
}

export type TargetDecision =
  | { kind: 'allow'; host: string; port: number }
  | { kind: 'deny'; reason: string }
  | { kind: 'bad_request'; reason: string }
  | { kind: 'unavailable'; reason: string };

export interface InboundTunnelResult extends BridgeResult {
  readonly request: InboundRequest;
  readonly target: { host: string; port: number };
  readonly durationMs: number;
}

export interface HboneServerOptions {
  /** Our certificate for a connection arriving at `localAddress`; undefined refuses the connection. */
  identityFor(localAddress: string): TlsIdentity | undefined;
  /** Policy and target lookup for one CONNECT. Synchronous or async. */
  resolveTarget(req: InboundRequest): TargetDecision | Promise<TargetDecision>;
  /** Opens the upstream TCP connection (a connecting socket, allowHalfOpen). */
  dial(target: { host: string; port: number }, req: InboundRequest): Socket;
  logger: Logger;
  registry?: Registry;
  clock?: Clock;
  /** TLS handshake, and then the client's HTTP/2 preface + SETTINGS, must each arrive within this. */
  handshakeTimeoutMs?: number;
  /** A session with no open stream and no traffic for this long is closed (DEFAULT_SERVER_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number;
  upstreamConnectTimeoutMs?: number;
  maxConcurrentStreams?: number;
  /** Called when a tunnel got its 200 and starts carrying bytes. */
  onTunnelOpened?(req: InboundRequest, target: { host: string; port: number }): void;
  /** Called once per tunnel that got a 200, when both ends are closed. */
  onTunnelClosed?(result: InboundTunnelResult): void;
  /** Called when a CONNECT is refused (400/401/503); `status` is what the client got. */
  onTunnelRefused?(req: InboundRequest, status: number, reason: string): void;
}

export type RefusalReason =
  | 'handshake_timeout'
  | 'idle_timeout'
  | 'session_error'
  | 'max_streams'
  | 'headers_refused'
  | 'invalid_frames'
  | 'flood'
  | 'continuation_flood'
  | 'tls_error'
  | 'no_identity'
  | 'alpn'
  | 'trust_domain'
  | 'bad_method'
  | 'bad_authority'
  | 'denied'
  | 'no_target'
  | 'connect_failed'
  | 'stream_reset';

/**
 * The refusal a session error stands for. At the stream cap, a protocol error
 * (the client opened one stream too many after ACKing our SETTINGS) or too
 * many invalid frames (it kept opening streams nghttp2 refused before the
 * ACK) is `max_streams`; nghttp2's flood detectors and Node's invalid-frame
 * limit get their own reasons; anything else is `session_error`.
 */
export function sessionErrorReason(err: Error & { code?: string }, atStreamCap: boolean): RefusalReason {
  if (atStreamCap && (err.code === 'ERR_HTTP2_ERROR' || err.code === 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES')) return 'max_streams';
  if (err.code === 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES') return 'invalid_frames';
  if (/flood/i.test(err.message)) return 'flood';
  if (/continuation/i.test(err.message)) return 'continuation_flood';
  return 'session_error';
}

export class HboneServer {
  readonly #opts: HboneServerOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #sessions = new Set<ServerHttp2Session>();
  readonly #rawSockets = new Set<Socket>();
  readonly #servers = new Set<Server>();
  readonly #tlsServers = new WeakMap<TlsIdentity, TlsServer>();
  readonly #refused: Counter<'reason'> | undefined;
  #closing = false;

  constructor(opts: HboneServerOptions) {
    this.#opts = opts;
    this.#log = opts.logger.child({ component: 'hbone-server' });
    this.#clock = opts.clock ?? systemClock;
    this.#refused = opts.registry
      ? new PromCounter({ name: 'ambit_hbone_inbound_refused_total', help: 'HBONE connections or streams refused by the server, by reason', labelNames: ['reason'], registers: [opts.registry] })
      : undefined;
  }

  /** Listens on a TCP address; the returned server is closed by close()/destroy(). */
  listen(port: number, host: string): Promise<Server> {
    const server = createServer({ allowHalfOpen: false, pauseOnConnect: false, noDelay: true }, (s) => this.handleConnection(s));
    return this.#attachAndListen(server, () => server.listen(port, host));
  }

  /** Serves connections from an existing listener (e.g. one created inside a pod netns). */
  serve(server: Server): void {
    server.on('connection', (s: Socket) => this.handleConnection(s));
    this.#servers.add(server);
  }

  #attachAndListen(server: Server, start: () => void): Promise<Server> {
    this.#servers.add(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.once('listening', () => {
        server.off('error', reject);
        resolve(server);
      });
      start();
    });
  }

  /** Accepts one raw TCP connection. Never throws; every failure is a refusal. */
  handleConnection(raw: Socket): void {
    if (this.#closing) {
      raw.destroy();
      return;
    }
    raw.on('error', () => undefined);
    raw.setNoDelay(true);
    this.#rawSockets.add(raw);
    raw.once('close', () => this.#rawSockets.delete(raw));
    const local = raw.localAddress ?? '';
    const id = this.#opts.identityFor(local);
    if (!id) {
      this.#refuse('no_identity', { local });
      raw.destroy();
      return;
    }
    this.#tlsServerFor(id).emit('connection', raw);
  }

  /**
   * One never-listening tls.Server per certificate: it owns the handshake
   * (client cert required and verified, ALPN, handshake timeout), and we feed
   * it raw sockets. A rotated certificate is a new TlsIdentity object, so it
   * gets a new server; the old one is collected with its last connection.
   */
  #tlsServerFor(id: TlsIdentity): TlsServer {
    let srv = this.#tlsServers.get(id);
    if (srv) return srv;
    srv = createTlsServer({
      key: id.privateKeyPem,
      cert: id.certChainPem.join('\n'),
      ca: [...id.rootsPem],
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ciphers: S.TLS13_CIPHERSUITES,
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: [S.HBONE_ALPN],
      handshakeTimeout: this.#opts.handshakeTimeoutMs ?? S.DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
    });
    srv.on('secureConnection', (tls: TLSSocket) => this.#onSecure(tls, id));
    srv.on('tlsClientError', (err: Error & { code?: string }, tls: TLSSocket) => {
      this.#refuse(err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'handshake_timeout' : 'tls_error', { remote: tls.remoteAddress, err: err.message });
      tls.destroy();
    });
    this.#tlsServers.set(id, srv);
    return srv;
  }

  #onSecure(tls: TLSSocket, id: TlsIdentity): void {
    const remote = `${tls.remoteAddress}:${tls.remotePort}`;
    if (tls.alpnProtocol !== S.HBONE_ALPN) {
      this.#refuse('alpn', { remote, alpn: tls.alpnProtocol });
      tls.destroy();
      return;
    }
    const peers = peerIdentities(tls.getPeerX509Certificate());
    let peerTd: string | undefined;
    try {
      peerTd = peers.length === 1 ? trustDomainOf(peers[0] as string) : undefined;
    } catch {
      peerTd = undefined;
    }
    if (peerTd === undefined || peerTd !== trustDomainOf(id.identity)) {
      this.#refuse('trust_domain', { remote, peer: peers, want: trustDomainOf(id.identity) });
      tls.destroy();
      return;
    }
    const peerIdentity = peers[0] as string;
    const session = performServerHandshake(tls, {
      settings: {
        initialWindowSize: S.DEFAULT_STREAM_WINDOW_BYTES,
        maxFrameSize: S.DEFAULT_MAX_FRAME_BYTES,
        maxConcurrentStreams: this.#opts.maxConcurrentStreams ?? S.DEFAULT_SERVER_MAX_CONCURRENT_STREAMS,
        maxHeaderListSize: S.DEFAULT_SERVER_MAX_HEADER_LIST_BYTES,
        enablePush: false,
      },
      maxSessionMemory: S.DEFAULT_MAX_SESSION_MEMORY_MB,
    });
    this.#sessions.add(session);
    // The client's preface and SETTINGS are part of the handshake: a peer that
    // completes TLS and then stays silent must not hold the connection forever.
    const prefaceTimer = this.#clock.setTimeout(() => {
      this.#refuse('handshake_timeout', { remote, stage: 'http2 preface' });
      session.destroy();
    }, this.#opts.handshakeTimeoutMs ?? S.DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS);
    session.once('remoteSettings', () => prefaceTimer.cancel());
    const maxStreams = this.#opts.maxConcurrentStreams ?? S.DEFAULT_SERVER_MAX_CONCURRENT_STREAMS;
    // Streams we saw, by id: ids the client used that never reached us were refused by nghttp2/Node.
    let openStreams = 0;
    let lastSeenStream = 0;
    const countUnseen = (upTo: number): void => {
      // client stream ids are odd and increasing (a well-behaved client never skips one): count the odd ids in (lastSeen, upTo]
      const odd = (n: number): number => Math.max(0, Math.floor((n + 1) / 2));
      const unseen = upTo > lastSeenStream ? odd(upTo) - odd(lastSeenStream) : 0;
      if (unseen > 0) this.#refuse('headers_refused', { remote, streams: unseen, lastSeen: lastSeenStream, upTo }, unseen);
      lastSeenStream = Math.max(lastSeenStream, upTo);
    };
    // Idle sessions (no open stream, no traffic) are closed. This also reaps a
    // session nghttp2 stopped reading after it sent a GOAWAY for a protocol
    // error (e.g. an undecodable header block), which Node reports no event for.
    session.setTimeout(this.#opts.idleTimeoutMs ?? S.DEFAULT_SERVER_IDLE_TIMEOUT_MS, () => {
      if (openStreams > 0) return;
      countUnseen(session.state.lastProcStreamID ?? 0);
      this.#refuse('idle_timeout', { remote });
      session.destroy();
    });
    // At the earlier of our leaf's and the peer's notAfter the session gets a
    // GOAWAY: open tunnels finish, new ones need a new handshake, which an
    // expired certificate cannot pass (fail closed after expiry).
    const validUntil = connectionValidUntil(id, tls.getPeerX509Certificate());
    const untilExpiry = validUntil === undefined ? Infinity : validUntil - this.#clock.now();
    const expiryTimer =
      untilExpiry <= MAX_EXPIRY_TIMER_MS
        ? this.#clock.setTimeout(() => {
            this.#log.info({ remote, peer: peerIdentity, validUntil: new Date(validUntil ?? 0).toISOString() }, 'a certificate of this hbone session expired; sending goaway');
            if (!session.closed && !session.destroyed) session.close();
          }, Math.max(0, untilExpiry))
        : undefined;
    session.once('close', () => {
      prefaceTimer.cancel();
      expiryTimer?.cancel();
      this.#sessions.delete(session);
    });
    session.on('error', (err: Error & { code?: string }) => {
      // Opening a stream over the advertised cap is a connection error (PROTOCOL_ERROR) in nghttp2.
      // openStreams still holds the count from before the session died (see the stream 'close' below).
      this.#refuse(sessionErrorReason(err, openStreams >= maxStreams), { remote, err: err.message, code: err.code, openStreams });
    });
    session.once('connect', () => {
      try {
        session.setLocalWindowSize(S.DEFAULT_CONNECTION_WINDOW_BYTES);
      } catch {
        // the session closed before the window could be raised; nothing to tune
      }
    });
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      const id = stream.id ?? 0;
      countUnseen(id - 2);
      lastSeenStream = Math.max(lastSeenStream, id);
      openStreams++;
      // Streams torn down with their session are not decremented: the session 'error' must still see the cap.
      stream.once('close', () => {
        if (!session.destroyed) openStreams--;
      });
      this.#onStream(stream, headers, tls, peerIdentity).catch((err: unknown) => {
        this.#log.error({ err }, 'BUG: unexpected error handling hbone stream');
        stream.close(h2c.NGHTTP2_INTERNAL_ERROR);
      });
    });
  }

  async #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, tls: TLSSocket, peerIdentity: string): Promise<void> {
    stream.on('error', () => undefined);
    const started = this.#clock.now();
    if (headers[':method'] !== 'CONNECT') {
      this.#respondAndClose(stream, 400, 'bad_method', { method: headers[':method'] });
      return;
    }
    const parsed = parseAuthority(headers[':authority']);
    if (!parsed.ok) {
      this.#respondAndClose(stream, 400, 'bad_authority', { reason: parsed.reason });
      return;
    }
    const traceparent = parseTraceParent(headers.traceparent);
    const req: InboundRequest = {
      authority: parsed.value,
      peerIdentity,
      remoteAddress: tls.remoteAddress ?? '',
      remotePort: tls.remotePort ?? 0,
      localAddress: tls.localAddress ?? '',
      forwarded: parseForwarded(headers.forwarded),
      baggage: parseBaggage(headers.baggage),
      ...(traceparent ? { traceparent } : {}),
    };
    const decision = await this.#opts.resolveTarget(req);
    if (stream.destroyed) return;
    if (decision.kind !== 'allow') {
      const [status, reason]: [number, RefusalReason] = decision.kind === 'deny' ? [401, 'denied'] : decision.kind === 'bad_request' ? [400, 'bad_authority'] : [503, 'no_target'];
      this.#respondAndClose(stream, status, reason, { reason: decision.reason, peer: peerIdentity });
      this.#opts.onTunnelRefused?.(req, status, decision.reason);
      return;
    }
    const target = { host: decision.host, port: decision.port };
    const upstream = await this.#dialUpstream(target, req, stream);
    if (!upstream) {
      this.#opts.onTunnelRefused?.(req, 503, `connect to ${target.host}:${target.port} failed`);
      return;
    }
    stream.respond({ ':status': 200 });
    this.#opts.onTunnelOpened?.(req, target);
    const result = await bridge(h2Side(stream), tcpSide(upstream));
    this.#opts.onTunnelClosed?.({ ...result, request: req, target, durationMs: this.#clock.now() - started });
  }

  /** Connects upstream before answering, so 200 means the target accepted. */
  #dialUpstream(target: { host: string; port: number }, req: InboundRequest, stream: ServerHttp2Stream): Promise<Socket | undefined> {
    return new Promise((resolve) => {
      let upstream: Socket;
      try {
        upstream = this.#opts.dial(target, req);
      } catch (err) {
        this.#respondAndClose(stream, 503, 'connect_failed', { target, err: (err as Error).message });
        resolve(undefined);
        return;
      }
      const timer = this.#clock.setTimeout(() => fail(new Error('connect timed out')), this.#opts.upstreamConnectTimeoutMs ?? S.DEFAULT_CONNECT_TIMEOUT_MS);
      const onAbort = (): void => {
        // the client reset the stream while we were connecting: drop the upstream
        timer.cancel();
        upstream.off('error', fail);
        upstream.destroy();
        this.#refuse('stream_reset', {});
        resolve(undefined);
      };
      const fail = (err: Error): void => {
        timer.cancel();
        stream.off('close', onAbort);
        upstream.destroy();
        this.#respondAndClose(stream, 503, 'connect_failed', { target, err: err.message });
        resolve(undefined);
      };
      upstream.once('error', fail);
      stream.once('close', onAbort);
      upstream.once('connect', () => {
        timer.cancel();
        upstream.off('error', fail);
        stream.off('close', onAbort);
        resolve(upstream);
      });
    });
  }

  #respondAndClose(stream: ServerHttp2Stream, status: number, reason: RefusalReason, fields: Record<string, unknown>): void {
    this.#refuse(reason, fields);
    if (stream.destroyed || stream.closed) return;
    try {
      stream.respond({ ':status': status }, { endStream: true });
    } catch {
      stream.close(h2c.NGHTTP2_REFUSED_STREAM);
    }
  }

  #refuse(reason: RefusalReason, fields: Record<string, unknown>, n = 1): void {
    this.#refused?.inc({ reason }, n);
    this.#log.debug({ reason, ...fields }, 'hbone refused');
  }

  /** Graceful: stop accepting, send GOAWAY, let open tunnels finish. */
  async close(): Promise<void> {
    this.#closing = true;
    const waits: Array<Promise<void>> = [];
    for (const s of this.#servers) waits.push(new Promise((r) => s.close(() => r())));
    for (const session of this.#sessions) {
      waits.push(new Promise((r) => (session.closed ? r() : session.close(() => r()))));
    }
    await Promise.all(waits);
  }

  /** Immediate: drops every connection. */
  destroy(): void {
    this.#closing = true;
    for (const s of this.#servers) s.close();
    for (const session of this.#sessions) session.destroy();
    for (const raw of this.#rawSockets) raw.destroy();
  }
}
