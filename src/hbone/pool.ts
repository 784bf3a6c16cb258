/**
 * HBONE connection pool.
 *
 * Invariants:
 * 1. Connections are keyed by (source identity, expected destination
 *    identities, destination ip:port, source ip). A connection is never shared
 *    across keys, so a tunnel is always authenticated as the right source and
 *    verified against the right destination identities.
 * 2. A connection carries at most `maxStreamsPerConnection` concurrent
 *    streams (default 100). Slots are reserved synchronously before the
 *    CONNECT is sent, so concurrent callers cannot overshoot.
 * 3. At most one connection per key is being established at any moment;
 *    callers that find no free slot wait for it instead of dialing their own
 *    (no connection storms: 200 concurrent tunnels make exactly 2 connections).
 * 4. Only `ready` connections take new streams. A GOAWAY or close() moves a
 *    connection to `draining`; its streams finish, then it closes.
 * 5. A connection with no streams for `idleReleaseMs` (default 5 min) is closed.
 * 6. A failed connect rejects every caller waiting on it with the same typed
 *    error; the next caller tries again (no negative caching).
 * 7. A CONNECT the peer provably never processed (RST_STREAM REFUSED_STREAM,
 *    as a draining peer answers after its GOAWAY, or never sent at all) is
 *    retried once; any other failure goes back to the caller.
 * 8. A connection takes no new stream once our certificate or the peer's is
 *    past notAfter (it drains; open streams finish). A connection is never
 *    made with an expired certificate of ours, nor kept when the peer's is
 *    expired: the caller gets HboneCertificateExpiredError (fail closed).
 */
import { constants as h2constants, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { Gauge, type Registry } from 'prom-client';
import { systemClock, type Clock, type Timer } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { formatAuthority } from './authority.js';
import { HboneConnection } from './connection.js';
import { HboneCertificateExpiredError, HboneConnectionClosedError, HbonePoolClosedError, HboneStreamResetError } from './errors.js';
import * as S from './settings.js';
import { connectionValidUntil, type TlsIdentity } from './tls-identity.js';

export interface PoolKey {
  readonly srcIdentity: string;
  readonly dstIdentities: readonly string[];
  readonly dstHost: string;
  readonly dstPort: number;
  /** The source address the connection is made from (spoofed/in-pod source). */
  readonly srcIp?: string;
}

export interface HbonePoolOptions {
  /** Certificate for a source identity (rotated certs are picked up on the next connection). */
  identityFor(srcIdentity: string): Promise<TlsIdentity>;
  /**
   * Opens a TCP connection to the peer's HBONE port, from `srcIp` when given.
   * Must not be allowHalfOpen: a FIN on the outer connection ends every stream,
   * and half-close is a per-stream (END_STREAM) matter.
   */
  dial(dst: { host: string; port: number }, srcIp: string | undefined): Socket;
  logger: Logger;
  clock?: Clock;
  registry?: Registry;
  maxStreamsPerConnection?: number;
  idleReleaseMs?: number;
  connectTimeoutMs?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
}

interface KeyEntry {
  readonly key: PoolKey;
  readonly connections: HboneConnection[];
  connecting?: Promise<HboneConnection>;
}

export function poolKeyString(k: PoolKey): string {
  return [k.srcIdentity, [...k.dstIdentities].sort().join(','), formatAuthority(k.dstHost, k.dstPort), k.srcIp ?? ''].join('|');
}

function neverProcessed(err: unknown): boolean {
  return (err instanceof HboneStreamResetError && err.rstCode === h2constants.NGHTTP2_REFUSED_STREAM) || (err instanceof HboneConnectionClosedError && err.unsent);
}

export class HbonePool {
  readonly #opts: HbonePoolOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #entries = new Map<string, KeyEntry>();
  readonly #idleTimers = new Map<HboneConnection, Timer>();
  readonly #maxStreams: number;
  #closed = false;

  constructor(opts: HbonePoolOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#log = opts.logger.child({ component: 'hbone-pool' });
    this.#maxStreams = opts.maxStreamsPerConnection ?? S.DEFAULT_POOL_MAX_STREAMS_PER_CONNECTION;
    if (opts.registry) {
      const count = (): number => this.connectionCount();
      new Gauge({
        name: 'ambit_hbone_pool_connections',
        help: 'HBONE client connections held by the pool',
        registers: [opts.registry],
        collect() {
          this.set(count());
        },
      });
    }
  }

  /** Opens a tunnel (a CONNECT stream answered 200) to `authority` through a pooled connection. */
  async openTunnel(key: PoolKey, authority: string, headers: OutgoingHttpHeaders = {}): Promise<ClientHttp2Stream> {
    const conn = await this.#acquire(key);
    try {
      return await conn.openStream(authority, headers);
    } catch (err) {
      // A CONNECT the peer never processed (refused by a GOAWAY from a draining agent, or
      // never sent because the connection had just closed) is safe to try once more: the
      // failed connection no longer takes streams, so the retry goes to a fresh one.
      if (!neverProcessed(err)) throw err;
      this.#log.debug({ authority, err: (err as Error).message }, 'connect was not processed; retrying on another connection');
      return (await this.#acquire(key)).openStream(authority, headers);
    }
  }

  /** Number of open (not closed) connections, for one key or all. */
  connectionCount(key?: PoolKey): number {
    const entries = key ? [this.#entries.get(poolKeyString(key))] : [...this.#entries.values()];
    return entries.reduce((n, e) => n + (e ? e.connections.filter((c) => c.state !== 'closed').length : 0), 0);
  }

  async #acquire(key: PoolKey): Promise<HboneConnection> {
    const id = poolKeyString(key);
    for (;;) {
      if (this.#closed) throw new HbonePoolClosedError();
      let entry = this.#entries.get(id);
      if (!entry) {
        entry = { key, connections: [] };
        this.#entries.set(id, entry);
      }
      for (const c of entry.connections) {
        if (c.tryReserve(this.#maxStreams)) {
          this.#idleTimers.get(c)?.cancel();
          this.#idleTimers.delete(c);
          return c;
        }
      }
      if (!entry.connecting) {
        const e = entry;
        e.connecting = this.#connect(e).finally(() => {
          e.connecting = undefined;
        });
      }
      await entry.connecting;
    }
  }

  async #connect(entry: KeyEntry): Promise<HboneConnection> {
    const { key } = entry;
    const identity = await this.#opts.identityFor(key.srcIdentity);
    const address = formatAuthority(key.dstHost, key.dstPort);
    // An expired certificate of ours must not even be tried: the peer would
    // refuse it anyway, and a connection that is born expired would make
    // #acquire dial again and again (invariant 8).
    const ours = connectionValidUntil(identity, undefined);
    if (ours !== undefined && ours <= this.#clock.now()) throw new HboneCertificateExpiredError(address, 'our', ours);
    const socket = this.#opts.dial({ host: key.dstHost, port: key.dstPort }, key.srcIp);
    const conn = await HboneConnection.connect({
      socket,
      address: formatAuthority(key.dstHost, key.dstPort),
      identity,
      expectedIdentities: key.dstIdentities,
      clock: this.#clock,
      logger: this.#opts.logger,
      ...(this.#opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: this.#opts.connectTimeoutMs } : {}),
      ...(this.#opts.pingIntervalMs !== undefined ? { pingIntervalMs: this.#opts.pingIntervalMs } : {}),
      ...(this.#opts.pingTimeoutMs !== undefined ? { pingTimeoutMs: this.#opts.pingTimeoutMs } : {}),
    });
    if (conn.validUntil !== undefined && conn.validUntil <= this.#clock.now()) {
      conn.destroy();
      throw new HboneCertificateExpiredError(address, 'the peer', conn.validUntil);
    }
    entry.connections.push(conn);
    this.#log.debug({ peer: conn.address, src: key.srcIdentity, connections: entry.connections.length }, 'hbone connection added to pool');
    conn.on('idle', () => this.#armIdle(conn));
    conn.once('closed', () => {
      this.#idleTimers.get(conn)?.cancel();
      this.#idleTimers.delete(conn);
      const i = entry.connections.indexOf(conn);
      if (i >= 0) entry.connections.splice(i, 1);
      if (entry.connections.length === 0 && !entry.connecting) this.#entries.delete(poolKeyString(key));
    });
    this.#armIdle(conn);
    return conn;
  }

  #armIdle(conn: HboneConnection): void {
    this.#idleTimers.get(conn)?.cancel();
    const ms = this.#opts.idleReleaseMs ?? S.DEFAULT_POOL_IDLE_RELEASE_MS;
    this.#idleTimers.set(
      conn,
      this.#clock.setTimeout(() => {
        this.#idleTimers.delete(conn);
        if (conn.activeStreams === 0) {
          this.#log.debug({ peer: conn.address }, 'releasing idle hbone connection');
          conn.close();
        }
      }, ms),
    );
  }

  /** Graceful: refuse new tunnels; connections close once their streams finish. */
  close(): void {
    this.#closed = true;
    for (const e of this.#entries.values()) for (const c of e.connections) c.close();
  }

  /** Immediate: drop every connection and stream. */
  destroy(): void {
    this.#closed = true;
    for (const t of this.#idleTimers.values()) t.cancel();
    this.#idleTimers.clear();
    for (const e of this.#entries.values()) for (const c of [...e.connections]) c.destroy();
  }
}
