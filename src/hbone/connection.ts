/**
 * One HBONE client connection: TCP ─► TLS 1.3 (no SNI, our workload cert,
 * the server's URI SAN must be one of the expected identities) ─► HTTP/2.
 *
 * States: connecting ─► ready ─► draining ─► closed (any state may go to
 * closed). `draining` means no new streams (GOAWAY received or close()
 * called); open streams finish, then the session closes.
 *
 * Stream slots are reserved by the pool before a stream is opened, so the
 * stream count never exceeds the limit even with concurrent callers.
 */
import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { connect as h2connect, constants as h2c, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { Clock, Timer } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import {
  HboneAlpnError,
  HboneConnectError,
  HboneConnectTimeoutError,
  HboneConnectionClosedError,
  HboneIdentityMismatchError,
  HbonePingTimeoutError,
  HboneStatusError,
  HboneStreamResetError,
  HboneTlsError,
} from './errors.js';
import { EagerWriteTransport } from './eager-write-transport.js';
import * as S from './settings.js';
import { connectionValidUntil, MAX_EXPIRY_TIMER_MS, peerIdentities, secureContextFor, type TlsIdentity } from './tls-identity.js';

export type ConnectionState = 'connecting' | 'ready' | 'draining' | 'closed';

const ALLOWED: Record<ConnectionState, readonly ConnectionState[]> = {
  connecting: ['ready', 'closed'],
  ready: ['draining', 'closed'],
  draining: ['closed'],
  closed: [],
};

export interface HboneConnectOptions {
  /** A socket that is connecting (or connected) to the peer's 15008. */
  socket: Socket;
  /** `ip:port` of the peer, for messages and metrics. */
  address: string;
  identity: TlsIdentity;
  expectedIdentities: readonly string[];
  clock: Clock;
  logger: Logger;
  connectTimeoutMs?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
}

export class HboneConnection extends EventEmitter {
  readonly address: string;
  #state: ConnectionState = 'connecting';
  #session: ClientHttp2Session | undefined;
  #active = 0;
  #pingTimer: Timer | undefined;
  #pingDeadline: Timer | undefined;
  #expiryTimer: Timer | undefined;
  /** The earlier of both leaves' notAfter (ms); no new streams from then on. */
  #validUntil: number | undefined;
  readonly #opts: HboneConnectOptions;
  readonly #log: Logger;

  private constructor(opts: HboneConnectOptions) {
    super();
    this.address = opts.address;
    this.#opts = opts;
    this.#log = opts.logger.child({ component: 'hbone-connection', peer: opts.address });
  }

  /** Connects and completes TLS and the HTTP/2 preface; rejects with a typed HboneError. */
  static connect(opts: HboneConnectOptions): Promise<HboneConnection> {
    const conn = new HboneConnection(opts);
    return conn.#connect().then(() => conn);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get activeStreams(): number {
    return this.#active;
  }

  #transition(to: ConnectionState): boolean {
    const from = this.#state;
    if (!ALLOWED[from].includes(to)) return false;
    this.#state = to;
    this.#log.debug({ from, to }, 'hbone connection state');
    this.emit('state', from, to);
    return true;
  }

  #connect(): Promise<void> {
    const o = this.#opts;
    const timeoutMs = o.connectTimeoutMs ?? S.DEFAULT_CONNECT_TIMEOUT_MS;
    return new Promise<void>((resolve, reject) => {
      const raw = o.socket;
      raw.setNoDelay(true); // small HEADERS frames must not wait for delayed ACKs
      // Filled in once TLS starts; fail() may run before that (TCP connect errors).
      const started: { tls?: TLSSocket } = {};
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        timer.cancel();
        raw.destroy();
        started.tls?.destroy();
        this.#session?.destroy();
        this.#transition('closed');
        reject(err);
      };
      const timer = o.clock.setTimeout(() => {
        fail(raw.connecting ? new HboneConnectTimeoutError(o.address, timeoutMs) : new HboneTlsError(o.address, new Error(`handshake not finished after ${timeoutMs}ms`)));
      }, timeoutMs);
      raw.once('error', (err) => fail(raw.connecting || !started.tls ? new HboneConnectError(o.address, err) : new HboneTlsError(o.address, err)));

      let identityError: Error | undefined;
      const tls = tlsConnect({
        socket: raw,
        secureContext: secureContextFor(o.identity),
        ALPNProtocols: [S.HBONE_ALPN],
        rejectUnauthorized: true,
        // No SNI: the server picks its certificate by the address we dialed.
        checkServerIdentity: (_host: string, cert: PeerCertificate) => {
          const presented = peerIdentities(new X509Certificate(cert.raw));
          if (presented.some((p) => o.expectedIdentities.includes(p))) return undefined;
          identityError = new HboneIdentityMismatchError(o.address, presented, o.expectedIdentities);
          return identityError;
        },
      });
      started.tls = tls;
      tls.on('error', (err: Error) => fail(identityError ?? (err instanceof HboneIdentityMismatchError ? err : new HboneTlsError(o.address, err))));
      tls.once('secureConnect', () => {
        const t = tls;
        if (t.alpnProtocol !== S.HBONE_ALPN) {
          fail(new HboneAlpnError(o.address, t.alpnProtocol));
          return;
        }
        const session = h2connect(`https://${o.address}`, {
          createConnection: () => new EagerWriteTransport(t),
          settings: {
            initialWindowSize: S.DEFAULT_STREAM_WINDOW_BYTES,
            maxFrameSize: S.DEFAULT_MAX_FRAME_BYTES,
            maxHeaderListSize: S.DEFAULT_CLIENT_MAX_HEADER_LIST_BYTES,
            enablePush: false,
          },
          maxSessionMemory: S.DEFAULT_MAX_SESSION_MEMORY_MB,
        });
        this.#session = session;
        session.on('error', (err: Error) => {
          if (!settled) fail(new HboneTlsError(o.address, err));
          else this.#log.debug({ err: err.message }, 'hbone session error');
        });
        session.once('connect', () => {
          if (settled) return;
          settled = true;
          timer.cancel();
          try {
            session.setLocalWindowSize(S.DEFAULT_CONNECTION_WINDOW_BYTES);
          } catch {
            // closed already; the close handler below takes over
          }
          this.#transition('ready');
          this.#schedulePing();
          this.#scheduleExpiry(t);
          resolve();
        });
        session.once('close', () => {
          if (!settled) fail(new HboneConnectionClosedError(o.address, 'closed during the http/2 handshake'));
          this.#onClosed();
        });
        session.on('goaway', (code: number) => {
          this.#log.debug({ code }, 'hbone goaway received');
          this.#drain();
        });
      });
    });
  }

  #schedulePing(): void {
    const o = this.#opts;
    const interval = o.pingIntervalMs ?? S.DEFAULT_PING_INTERVAL_MS;
    const timeout = o.pingTimeoutMs ?? S.DEFAULT_PING_TIMEOUT_MS;
    this.#pingTimer = o.clock.setTimeout(() => {
      const session = this.#session;
      if (!session || session.closed || session.destroyed) return;
      this.#pingDeadline = o.clock.setTimeout(() => this.destroy(new HbonePingTimeoutError(this.address, timeout)), timeout);
      const sent = session.ping((err) => {
        this.#pingDeadline?.cancel();
        if (!err) this.#schedulePing();
      });
      if (!sent) this.#pingDeadline.cancel();
    }, interval);
  }

  /**
   * Drains the connection when our certificate or the peer's expires: open
   * tunnels finish, new ones need a new handshake, which an expired
   * certificate cannot pass (fail closed).
   */
  #scheduleExpiry(tls: TLSSocket): void {
    const until = connectionValidUntil(this.#opts.identity, tls.getPeerX509Certificate());
    if (until === undefined) return;
    this.#validUntil = until;
    const delay = until - this.#opts.clock.now();
    if (delay > MAX_EXPIRY_TIMER_MS) return; // tryReserve checks on use
    this.#expiryTimer = this.#opts.clock.setTimeout(() => this.#expire(), Math.max(0, delay));
  }

  #expire(): void {
    if (this.#state !== 'ready') return;
    this.#log.info({ validUntil: new Date(this.#validUntil ?? 0).toISOString() }, 'a certificate of this hbone connection expired; draining it');
    this.#drain();
  }

  /** The earlier notAfter of the two leaves (ms since the epoch), once connected. */
  get validUntil(): number | undefined {
    return this.#validUntil;
  }

  /** Reserves a stream slot; the pool calls this before openStream. */
  tryReserve(limit: number): boolean {
    if (this.#state === 'ready' && this.#validUntil !== undefined && this.#opts.clock.now() >= this.#validUntil) this.#expire();
    if (this.#state !== 'ready' || this.#active >= limit) return false;
    this.#active++;
    return true;
  }

  /** Returns a reserved slot that was not used. */
  release(): void {
    this.#active--;
    if (this.#active === 0) {
      this.emit('idle');
      if (this.#state === 'draining') this.#session?.close();
    }
  }

  /**
   * Sends CONNECT on a reserved slot and resolves with the stream once the
   * server answered 200. The slot is released when the stream closes.
   */
  openStream(authority: string, headers: OutgoingHttpHeaders): Promise<ClientHttp2Stream> {
    const session = this.#session;
    if (!session || this.#state === 'closed') {
      this.release();
      return Promise.reject(new HboneConnectionClosedError(this.address, 'connection is closed', true));
    }
    return new Promise((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = session.request({ ...headers, ':method': 'CONNECT', ':authority': authority }, { endStream: false });
      } catch (err) {
        this.release();
        reject(new HboneConnectionClosedError(this.address, (err as Error).message, true));
        return;
      }
      let answered = false;
      stream.once('close', () => {
        this.release();
        if (!answered) reject(new HboneStreamResetError(authority, stream.rstCode ?? h2c.NGHTTP2_INTERNAL_ERROR));
      });
      stream.on('error', () => undefined);
      stream.once('response', (h) => {
        answered = true;
        const status = Number(h[':status']);
        if (status === 200) {
          resolve(stream);
          return;
        }
        stream.close(h2c.NGHTTP2_CANCEL);
        reject(new HboneStatusError(status, authority));
      });
    });
  }

  #drain(): void {
    if (!this.#transition('draining')) return;
    this.emit('draining');
    if (this.#active === 0) this.#session?.close();
  }

  #onClosed(): void {
    this.#expiryTimer?.cancel();
    this.#pingTimer?.cancel();
    this.#pingDeadline?.cancel();
    if (this.#transition('closed')) this.emit('closed');
  }

  /** Graceful: no new streams; the session closes when open streams finish. */
  close(): void {
    if (this.#state === 'ready') this.#drain();
  }

  /** Immediate: resets every stream and drops the connection. */
  destroy(err?: Error): void {
    if (err) this.#log.warn({ err: err.message }, 'hbone connection dropped');
    this.#session?.destroy(err, h2c.NGHTTP2_CANCEL);
    this.#onClosed();
  }
}
