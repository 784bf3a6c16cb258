/**
 * DeltaXdsClient: the node agent's side of delta ADS, shaped like ztunnel's
 * client. On every (re)connect it wildcard-subscribes each handler's type URL
 * and sends initial_resource_versions (name -> version of what it holds and
 * accepted), so the server sends only what changed. Each response goes to
 * the type's handler; resources it rejects are NACKed (google.rpc.Status
 * code 3 INVALID_ARGUMENT listing names and reasons) while the valid ones
 * stay applied; otherwise the response is ACKed. On stream failure it keeps
 * the last-known-good state (handlers are never cleared) and reconnects with
 * backoff (10 ms doubling to 15 s, reset after a successful response).
 *
 * Events: 'connected' (response headers or first response), 'synced' (a
 * response for every type after each (re)connect), 'disconnected'
 * (XdsStreamError), 'nack-sent' (XdsNackSentEvent).
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { systemClock, type Clock, type Timer } from '../common/clock.js';
import { silentLogger, type Logger } from '../common/logger.js';
import {
  DELTA_ADS_PATH,
  RPC_CODE_INVALID_ARGUMENT,
  decodeDeltaResponse,
  encodeDeltaRequest,
  loadXdsTypes,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type XdsNode,
  type XdsResource,
} from './codec.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { deltaAdsServiceDefinition } from './delta-server.js';
import { XdsClosedError, XdsInvalidResourceError, XdsStreamError, XdsUnknownTypeError } from './errors.js';

export type { XdsResource, XdsNode } from './codec.js';

export interface XdsTypeUpdate {
  upserts: XdsResource[];
  removals: string[];
}

export interface XdsTypeHandler {
  typeUrl: string;
  /** Applies the valid resources and returns the rejected ones (they are NACKed). Must not throw (a throw rejects the whole response). */
  apply(update: XdsTypeUpdate): { rejected: { name: string; reason: string }[] };
}

export type XdsClientState = 'idle' | 'connecting' | 'streaming' | 'backoff' | 'closed';

export interface DeltaXdsClientOptions {
  address: string;
  credentials: grpc.ChannelCredentials;
  node: XdsNode;
  /**
   * Per-stream headers, e.g. { authorization: 'Bearer <token>', clusterid: 'Kubernetes' }. A function
   * is called on every (re)connect, so a rotated token file is re-read like ztunnel does.
   */
  metadata?: Record<string, string> | (() => Record<string, string>);
  handlers: XdsTypeHandler[];
  backoff?: BackoffOptions;
  clock?: Clock;
  logger?: Logger;
  channelOptions?: grpc.ChannelOptions;
}

export interface XdsNackSentEvent {
  typeUrl: string;
  nonce: string;
  rejected: { name: string; reason: string }[];
  message: string;
}

type DeltaClientCall = grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

interface TypeState {
  handler: XdsTypeHandler;
  /** Accepted resources: name -> version. Survives reconnects (initial_resource_versions). */
  held: Map<string, string>;
  /** A response for this type arrived on the current stream. */
  received: boolean;
}

/** Largest response accepted (default channel option; callers may override). */
export const MAX_RESPONSE_BYTES = 256 * 1024 * 1024;

/** How long close() waits for the server to finish the stream before cancelling it. */
const CLOSE_GRACE_MS = 1000;

export class DeltaXdsClient extends EventEmitter {
  readonly #opts: DeltaXdsClientOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #types = new Map<string, TypeState>();
  readonly #client: grpc.Client;
  #state: XdsClientState = 'idle';
  #call: DeltaClientCall | undefined;
  #generation = 0;
  #retryTimer: Timer | undefined;
  #synced = false;

  constructor(opts: DeltaXdsClientOptions) {
    super();
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#log = (opts.logger ?? silentLogger()).child({ component: 'xds-client', address: opts.address });
    this.#backoff = new Backoff(opts.backoff);
    for (const h of opts.handlers) this.#types.set(h.typeUrl, { handler: h, held: new Map(), received: false });
    loadXdsTypes();
    const Ctor = grpc.makeGenericClientConstructor(deltaAdsServiceDefinition(), 'AggregatedDiscoveryService');
    // grpc-js's own subchannel reconnect backoff (default 1 s growing to 120 s) would otherwise delay
    // reconnection far past our 15 s cap after a long outage; align it with ours unless the caller overrides.
    const channelOptions: grpc.ChannelOptions = {
      'grpc.initial_reconnect_backoff_ms': this.#backoff.initialMs,
      'grpc.max_reconnect_backoff_ms': this.#backoff.maxMs,
      // A first (full) response of a big cluster exceeds grpc-js's 4 MiB default receive limit.
      'grpc.max_receive_message_length': MAX_RESPONSE_BYTES,
      ...(opts.channelOptions ?? {}),
    };
    this.#client = new Ctor(opts.address, opts.credentials, channelOptions);
  }

  get state(): XdsClientState {
    return this.#state;
  }

  /** Accepted name -> version per type (what initial_resource_versions will carry). */
  heldVersions(typeUrl: string): Record<string, string> {
    return Object.fromEntries(this.#types.get(typeUrl)?.held ?? []);
  }

  start(): void {
    if (this.#state === 'closed') throw new XdsClosedError('client');
    if (this.#state !== 'idle') return;
    this.#connect();
  }

  /** Ends the stream gracefully (half-close, then cancel after a grace period) and closes the channel. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#generation++;
    this.#retryTimer?.cancel();
    this.#retryTimer = undefined;
    const call = this.#call;
    this.#call = undefined;
    if (call) {
      await new Promise<void>((resolve) => {
        const timer = this.#clock.setTimeout(() => {
          call.cancel();
          resolve();
        }, CLOSE_GRACE_MS);
        call.once('status', () => {
          timer.cancel();
          resolve();
        });
        call.on('error', () => {
          // the status event carries it; this keeps an 'error' from being unhandled
        });
        call.end();
      });
    }
    this.#client.close();
  }

  #connect(): void {
    if (this.#state === 'closed') return;
    this.#state = 'connecting';
    this.#synced = false;
    for (const t of this.#types.values()) t.received = false;
    const gen = ++this.#generation;
    const md = new grpc.Metadata();
    try {
      const headers = typeof this.#opts.metadata === 'function' ? this.#opts.metadata() : (this.#opts.metadata ?? {});
      for (const [k, v] of Object.entries(headers)) md.set(k, v);
    } catch (err) {
      // e.g. the token file is missing: a failed attempt like any other, retried with backoff.
      const error = new XdsStreamError(this.#opts.address, undefined, `cannot build the request headers: ${err instanceof Error ? err.message : String(err)}`);
      this.#log.warn({ err: error }, 'xds stream not opened');
      this.emit('disconnected', error);
      this.#scheduleReconnect();
      return;
    }
    const call = this.#client.makeBidiStreamRequest<DeltaDiscoveryRequest, DeltaDiscoveryResponse>(
      DELTA_ADS_PATH,
      (m) => encodeDeltaRequest(m),
      (b) => decodeDeltaResponse(b),
      md,
    );
    this.#call = call;
    let ended = false;
    const onEnd = (code: number | undefined, details: string): void => {
      if (ended || gen !== this.#generation) return;
      ended = true;
      this.#call = undefined;
      const error = new XdsStreamError(this.#opts.address, code, details);
      this.#log.warn({ err: error }, 'xds stream ended');
      this.emit('disconnected', error);
      this.#scheduleReconnect();
    };
    call.on('metadata', () => this.#markConnected(gen));
    call.on('data', (res: DeltaDiscoveryResponse) => this.#onResponse(gen, call, res));
    call.on('error', (err: grpc.ServiceError) => onEnd(err.code, err.details || err.message));
    call.on('status', (s: grpc.StatusObject) => onEnd(s.code, s.details || 'stream finished by the server'));
    call.on('end', () => onEnd(undefined, 'stream ended'));

    let first = true;
    for (const [typeUrl, t] of this.#types) {
      const req: DeltaDiscoveryRequest = {
        typeUrl,
        resourceNamesSubscribe: [],
        resourceNamesUnsubscribe: [],
        initialResourceVersions: Object.fromEntries(t.held),
        responseNonce: '',
      };
      if (first) req.node = this.#opts.node;
      first = false;
      call.write(req);
    }
    this.#log.debug({ types: [...this.#types.keys()] }, 'xds stream opened');
  }

  #markConnected(gen: number): void {
    if (gen !== this.#generation || this.#state !== 'connecting') return;
    this.#state = 'streaming';
    this.#log.info('xds stream connected');
    this.emit('connected');
  }

  #scheduleReconnect(): void {
    if (this.#state === 'closed') return;
    this.#state = 'backoff';
    const delay = this.#backoff.next();
    this.#log.debug({ delayMs: delay, attempt: this.#backoff.attempts }, 'xds reconnect scheduled');
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.#connect();
    }, delay);
  }

  #onResponse(gen: number, call: DeltaClientCall, res: DeltaDiscoveryResponse): void {
    if (gen !== this.#generation) return;
    this.#markConnected(gen);
    this.#backoff.reset();
    const t = this.#types.get(res.typeUrl);
    if (!t) {
      const err = new XdsUnknownTypeError(res.typeUrl);
      this.#sendAck(call, res, [{ name: '*', reason: err.message }]);
      return;
    }
    const rejected: { name: string; reason: string }[] = [];
    const upserts: XdsResource[] = [];
    const seen = new Set<string>();
    for (const r of res.resources) {
      let reason: string | undefined;
      if (!r.name) reason = 'empty resource name';
      else if (seen.has(r.name)) reason = 'duplicate resource name in one response';
      else if (!r.resource) reason = 'resource has no body';
      else if (r.resource.typeUrl !== res.typeUrl) reason = `body type '${r.resource.typeUrl}' is not ${res.typeUrl}`;
      seen.add(r.name);
      if (reason !== undefined || !r.resource) rejected.push({ name: r.name, reason: reason ?? 'resource has no body' });
      else upserts.push({ name: r.name, version: r.version, body: r.resource.value });
    }
    const removals = res.removedResources;
    let handlerRejected: { name: string; reason: string }[];
    try {
      handlerRejected = t.handler.apply({ upserts, removals }).rejected;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      this.#log.error({ err, typeUrl: res.typeUrl }, 'xds handler threw; rejecting the whole response');
      handlerRejected = upserts.map((u) => ({ name: u.name, reason: `handler failed: ${reason}` }));
    }
    const rejectedNames = new Set(handlerRejected.map((r) => r.name));
    rejected.push(...handlerRejected);
    for (const u of upserts) if (!rejectedNames.has(u.name)) t.held.set(u.name, u.version);
    for (const n of removals) t.held.delete(n);
    this.#sendAck(call, res, rejected);
    if (!t.received) {
      t.received = true;
      if (!this.#synced && [...this.#types.values()].every((x) => x.received)) {
        this.#synced = true;
        this.#log.info('xds synced');
        this.emit('synced');
      }
    }
  }

  #sendAck(call: DeltaClientCall, res: DeltaDiscoveryResponse, rejected: { name: string; reason: string }[]): void {
    const req: DeltaDiscoveryRequest = {
      typeUrl: res.typeUrl,
      resourceNamesSubscribe: [],
      resourceNamesUnsubscribe: [],
      initialResourceVersions: {},
      responseNonce: res.nonce,
    };
    if (rejected.length > 0) {
      const message = rejected.map((r) => `${r.name}: ${r.reason}`).join('; ');
      req.errorDetail = { code: RPC_CODE_INVALID_ARGUMENT, message };
      for (const r of rejected) this.#log.warn({ err: new XdsInvalidResourceError(res.typeUrl, r.name, r.reason), nonce: res.nonce }, 'xds resource rejected');
      this.emit('nack-sent', { typeUrl: res.typeUrl, nonce: res.nonce, rejected, message } satisfies XdsNackSentEvent);
    }
    try {
      call.write(req);
    } catch (err) {
      this.#log.debug({ err }, 'ack on a closing stream failed');
    }
  }
}
