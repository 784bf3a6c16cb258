/**
 * The waypoint's delta ADS stream: ONE non-wildcard subscription to the
 * single L7Config resource named "<namespace>/<gateway>". (DeltaXdsClient in
 * src/xds only subscribes wildcard; this is the same protocol with
 * resource_names_subscribe set.) Each response goes to `apply`; a rejected
 * resource is NACKed with the reason (google.rpc.Status INVALID_ARGUMENT) and
 * the previous one stays in force; otherwise it is ACKed. On stream failure
 * it keeps what it has, re-subscribes with initial_resource_versions on the
 * next stream, and reconnects with backoff (src/xds/backoff.ts).
 *
 * Events: 'connected', 'disconnected' (XdsStreamError), 'applied'
 * ({ version }), 'removed', 'nack-sent' ({ nonce, message }).
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { systemClock, type Clock, type Timer } from '../common/clock.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { Backoff, type BackoffOptions } from '../xds/backoff.js';
import { DELTA_ADS_PATH, RPC_CODE_INVALID_ARGUMENT, decodeDeltaResponse, encodeDeltaRequest, loadXdsTypes, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse, type XdsNode } from '../xds/codec.js';
import { deltaAdsServiceDefinition } from '../xds/delta-server.js';
import { XdsStreamError } from '../xds/errors.js';

export type SingleResourceUpdate = { kind: 'upsert'; version: string; body: Buffer } | { kind: 'remove' };

export interface SingleResourceXdsOptions {
  readonly address: string;
  readonly credentials: grpc.ChannelCredentials;
  readonly node: XdsNode;
  /** Per-stream headers (called on every (re)connect so a rotated token file is re-read). */
  readonly metadata?: () => Record<string, string>;
  readonly typeUrl: string;
  readonly resourceName: string;
  /** Applies an update; returns a rejection reason (NACK) or undefined (ACK). Must not throw. */
  apply(update: SingleResourceUpdate): string | undefined;
  readonly backoff?: BackoffOptions;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

type Call = grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

export class SingleResourceXdsClient extends EventEmitter {
  readonly #o: SingleResourceXdsOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #client: grpc.Client;
  #call: Call | undefined;
  #gen = 0;
  #timer: Timer | undefined;
  #closed = false;
  /** Version of the resource we hold and accepted ('' = none). */
  #held = '';

  constructor(o: SingleResourceXdsOptions) {
    super();
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#log = (o.logger ?? silentLogger()).child({ component: 'waypoint-xds', address: o.address, resource: o.resourceName });
    this.#backoff = new Backoff(o.backoff);
    loadXdsTypes();
    const Ctor = grpc.makeGenericClientConstructor(deltaAdsServiceDefinition(), 'AggregatedDiscoveryService');
    this.#client = new Ctor(o.address, o.credentials, {
      'grpc.initial_reconnect_backoff_ms': this.#backoff.initialMs,
      'grpc.max_reconnect_backoff_ms': this.#backoff.maxMs,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
  }

  /** The accepted version ('' before the first accepted resource or after removal). */
  get version(): string {
    return this.#held;
  }

  start(): void {
    if (this.#closed || this.#call || this.#timer) return;
    this.#connect();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#gen++;
    this.#timer?.cancel();
    this.#timer = undefined;
    const call = this.#call;
    this.#call = undefined;
    if (call) {
      call.on('error', () => undefined);
      call.cancel();
    }
    this.#client.close();
  }

  #connect(): void {
    if (this.#closed) return;
    const gen = ++this.#gen;
    const md = new grpc.Metadata();
    try {
      for (const [k, v] of Object.entries(this.#o.metadata?.() ?? {})) md.set(k, v);
    } catch (err) {
      this.#ended(gen, undefined, `cannot build the request headers: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    const call = this.#client.makeBidiStreamRequest<DeltaDiscoveryRequest, DeltaDiscoveryResponse>(DELTA_ADS_PATH, (m) => encodeDeltaRequest(m), (b) => decodeDeltaResponse(b), md);
    this.#call = call;
    call.on('metadata', () => {
      if (gen === this.#gen) this.emit('connected');
    });
    call.on('data', (res: DeltaDiscoveryResponse) => this.#onResponse(gen, call, res));
    call.on('error', (err: grpc.ServiceError) => this.#ended(gen, err.code, err.details || err.message));
    call.on('status', (s: grpc.StatusObject) => this.#ended(gen, s.code, s.details || 'stream finished by the server'));
    call.on('end', () => this.#ended(gen, undefined, 'stream ended'));
    call.write({
      node: this.#o.node,
      typeUrl: this.#o.typeUrl,
      resourceNamesSubscribe: [this.#o.resourceName],
      resourceNamesUnsubscribe: [],
      initialResourceVersions: this.#held ? { [this.#o.resourceName]: this.#held } : {},
      responseNonce: '',
    });
  }

  #ended(gen: number, code: number | undefined, details: string): void {
    if (gen !== this.#gen || this.#closed) return;
    this.#gen++;
    this.#call = undefined;
    const err = new XdsStreamError(this.#o.address, code, details);
    this.#log.warn({ err }, 'xds stream ended');
    this.emit('disconnected', err);
    const delay = this.#backoff.next();
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, delay);
  }

  #onResponse(gen: number, call: Call, res: DeltaDiscoveryResponse): void {
    if (gen !== this.#gen) return;
    this.#backoff.reset();
    const problems: string[] = [];
    if (res.typeUrl !== this.#o.typeUrl) problems.push(`unexpected type ${res.typeUrl}`);
    else {
      for (const r of res.resources) {
        if (r.name !== this.#o.resourceName) continue; // not ours (a server that ignores the subscription): skip
        if (!r.resource || r.resource.typeUrl !== this.#o.typeUrl) {
          problems.push(`${r.name}: resource body is not ${this.#o.typeUrl}`);
          continue;
        }
        const reason = this.#safeApply({ kind: 'upsert', version: r.version, body: r.resource.value });
        if (reason === undefined) {
          this.#held = r.version;
          this.emit('applied', { version: r.version });
        } else problems.push(`${r.name}: ${reason}`);
      }
      if (res.removedResources.includes(this.#o.resourceName)) {
        const reason = this.#safeApply({ kind: 'remove' });
        if (reason === undefined) {
          this.#held = '';
          this.emit('removed');
        } else problems.push(`${this.#o.resourceName}: ${reason}`);
      }
    }
    const ack: DeltaDiscoveryRequest = { typeUrl: res.typeUrl, resourceNamesSubscribe: [], resourceNamesUnsubscribe: [], initialResourceVersions: {}, responseNonce: res.nonce };
    if (problems.length > 0) {
      const message = problems.join('; ');
      ack.errorDetail = { code: RPC_CODE_INVALID_ARGUMENT, message };
      this.#log.warn({ nonce: res.nonce, detail: message }, 'l7 config rejected (NACK sent); keeping the previous config');
      this.emit('nack-sent', { nonce: res.nonce, message });
    }
    try {
      call.write(ack);
    } catch (err) {
      this.#log.debug({ err }, 'ack on a closing stream failed');
    }
  }

  #safeApply(u: SingleResourceUpdate): string | undefined {
    try {
      return this.#o.apply(u);
    } catch (err) {
      this.#log.error({ err }, 'BUG: l7 config handler threw');
      return err instanceof Error ? err.message : String(err);
    }
  }
}
