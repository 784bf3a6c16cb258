/**
 * DeltaXdsServer: the server side of delta ADS
 * (envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources),
 * generic over type URLs. Resources are opaque `{ name, version, body }`;
 * `body` is wrapped in google.protobuf.Any with the type URL on the wire.
 * The caller owns the grpc.Server (TLS 15012 / plaintext 15010) and passes
 * `service()` to `addService`.
 *
 * Semantics: an empty resource_names_subscribe on the first request of a
 * type (or "*") is a wildcard subscription; initial_resource_versions seeds
 * what the client holds, so unchanged resources are not resent and held
 * names that no longer exist are sent in removed_resources. Changes
 * (`update`, `replaceAll`) are debounced and each push carries only the
 * changed/removed resources. Every response has system_version_info and a
 * unique nonce. An ACK is a request with response_nonce and no error_detail;
 * a NACK (error_detail set) is logged with the node id, counted and emitted
 * as 'nack', and the NACKed versions are not resent (the next change is).
 * The first response to a type's initial request is always sent, even empty,
 * so clients can tell they are synced.
 *
 * Metrics (prom-client, in the registry passed in):
 *   ambit_xds_connections                       gauge, open delta streams
 *   ambit_xds_pushes_total{type_url}            counter, responses sent
 *   ambit_xds_push_duration_seconds{type_url}   histogram, time to build and write one push to every stream
 *   ambit_xds_pushed_bytes_total{type_url}      counter, serialized response bytes (exact, counted in the serializer)
 *   ambit_xds_pushed_resources_total{type_url}  counter, resources + removals sent
 *   ambit_xds_acks_total{type_url}              counter
 *   ambit_xds_nacks_total{type_url}             counter
 *   ambit_xds_requests_refused_total{reason}    counter, requests refused before handling:
 *                                               too_large (over MAX_XDS_REQUEST_BYTES) or undecodable
 *
 * Events: 'connect' (XdsConnectEvent, on a stream's first request),
 * 'disconnect' (XdsConnectEvent), 'nack' (XdsNackEvent).
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { systemClock, type Clock, type Timer } from '../common/clock.js';
import { silentLogger, type Logger } from '../common/logger.js';
import {
  DELTA_ADS_PATH,
  decodeDeltaRequest,
  decodeDeltaResponse,
  encodeDeltaRequest,
  encodeDeltaResponse,
  loadXdsTypes,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type JsonValue,
  type XdsNode,
  type XdsResource,
} from './codec.js';
import { NonceSource, ResourceStore, Subscription, type Delta } from './delta-state.js';
import { XdsNackError, XdsUnauthenticatedError, XdsUnknownTypeError } from './errors.js';
import { parseNodeId, type ParsedNodeId } from './node.js';

export type { XdsResource } from './codec.js';

export type XdsAuthResult = { ok: true; principal: string } | { ok: false; code: grpc.status; message: string };

export interface DeltaXdsServerOptions {
  typeUrls: string[];
  /** Pushes after a change wait this long to batch further changes (default 100 ms). */
  debounceMs?: number;
  clock?: Clock;
  logger?: Logger;
  registry?: Registry;
  /** Called once per stream before anything else; a refusal ends the stream with `code`. */
  authenticate?: (metadata: grpc.Metadata, peer: string) => XdsAuthResult;
}

export interface XdsConnectEvent {
  connectionId: number;
  nodeId: string;
  peer: string;
}

export interface XdsNackEvent {
  connectionId: number;
  nodeId: string;
  typeUrl: string;
  nonce: string;
  code: number;
  message: string;
  error: XdsNackError;
}

export interface XdsServerStats {
  connections: number;
  pushes: number;
  nacks: number;
  acks: number;
}

export interface XdsTypeInfo {
  typeUrl: string;
  wildcard: boolean;
  names: string[];
  resourcesHeld: number;
  pendingNonces: number;
  lastAckedNonce: string;
  lastNack?: { nonce: string; message: string; at: number };
}

export interface XdsConnectionInfo {
  connectionId: number;
  peer: string;
  principal: string;
  nodeId: string;
  parsedNodeId?: ParsedNodeId;
  cluster?: string;
  metadata: Record<string, JsonValue>;
  connectedAt: number;
  types: XdsTypeInfo[];
}

export interface DeltaXdsService {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

type DeltaCall = grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

const MAX_PENDING_NONCES = 64;

interface TypeState {
  sub: Subscription;
  pendingNonces: string[];
  lastAckedNonce: string;
  lastNack?: { nonce: string; message: string; at: number };
}

/**
 * The largest delta xDS request the server handles (2 MiB): an agent's
 * request is an ACK or a subscription list (wildcard, or names: 10,000
 * names of ~100 bytes are 1 MB).
 * A larger one ends its stream with RESOURCE_EXHAUSTED and is counted.
 * grpc-js's own 4 MiB receive limit stays behind it as the transport's
 * guard (refused there without a count).
 */
export const MAX_XDS_REQUEST_BYTES = 2 * 1024 * 1024;

/** What the deserializer hands the stream instead of a request it refused. */
interface RefusedXdsRequest {
  readonly refused: 'too_large' | 'undecodable';
  readonly detail: string;
}

function isRefused(m: DeltaDiscoveryRequest | RefusedXdsRequest): m is RefusedXdsRequest {
  return (m as RefusedXdsRequest).refused !== undefined;
}

/**
 * Decodes on the server side; never throws, so a bad request reaches the
 * stream handler as a RefusedXdsRequest, where it is counted and answered.
 */
function deserializeRequest(b: Buffer, types: ReturnType<typeof loadXdsTypes>): DeltaDiscoveryRequest | RefusedXdsRequest {
  if (b.length > MAX_XDS_REQUEST_BYTES) return { refused: 'too_large', detail: `delta xds request of ${b.length} bytes is over the ${MAX_XDS_REQUEST_BYTES}-byte limit` };
  try {
    return decodeDeltaRequest(b, types);
  } catch (err) {
    return { refused: 'undecodable', detail: `delta xds request is not a valid DeltaDiscoveryRequest: ${(err as Error).message}` };
  }
}

interface Connection {
  id: number;
  call: DeltaCall;
  peer: string;
  principal: string;
  node?: XdsNode;
  connectedAt: number;
  announced: boolean;
  closed: boolean;
  types: Map<string, TypeState>;
}

/**
 * The grpc-js service definition for DeltaAggregatedResources with Ambit's
 * protobufjs codec. `onResponseBytes` sees the exact size of every serialized response.
 */
export function deltaAdsServiceDefinition(onResponseBytes?: (typeUrl: string, bytes: number) => void, forServer = false): grpc.ServiceDefinition {
  const types = loadXdsTypes();
  const serializeResponse = (m: DeltaDiscoveryResponse): Buffer => {
    const b = encodeDeltaResponse(m, types);
    onResponseBytes?.(m.typeUrl, b.length);
    return b;
  };
  return {
    DeltaAggregatedResources: {
      path: DELTA_ADS_PATH,
      requestStream: true,
      responseStream: true,
      requestSerialize: (m: DeltaDiscoveryRequest) => encodeDeltaRequest(m, types),
      requestDeserialize: forServer ? (b: Buffer) => deserializeRequest(b, types) : (b: Buffer) => decodeDeltaRequest(b, types),
      responseSerialize: serializeResponse,
      responseDeserialize: (b: Buffer) => decodeDeltaResponse(b, types),
      originalName: 'deltaAggregatedResources',
    },
  };
}

export class DeltaXdsServer extends EventEmitter {
  readonly #typeUrls: Set<string>;
  readonly #stores = new Map<string, ResourceStore>();
  readonly #dirty = new Map<string, Set<string>>();
  readonly #connections = new Map<number, Connection>();
  readonly #debounceMs: number;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #authenticate: DeltaXdsServerOptions['authenticate'];
  readonly #nonces = new NonceSource();
  #flushTimer: Timer | undefined;
  #nextConnectionId = 1;
  #closed = false;
  readonly #stats = { pushes: 0, nacks: 0, acks: 0 };
  readonly #m: {
    connections: Gauge;
    pushes: Counter<'type_url'>;
    duration: Histogram<'type_url'>;
    bytes: Counter<'type_url'>;
    resources: Counter<'type_url'>;
    acks: Counter<'type_url'>;
    nacks: Counter<'type_url'>;
    refused: Counter<'reason'>;
  };

  constructor(opts: DeltaXdsServerOptions) {
    super();
    this.#typeUrls = new Set(opts.typeUrls);
    for (const t of this.#typeUrls) this.#stores.set(t, new ResourceStore(t));
    this.#debounceMs = Math.max(0, opts.debounceMs ?? 100);
    this.#clock = opts.clock ?? systemClock;
    this.#log = (opts.logger ?? silentLogger()).child({ component: 'xds-server' });
    this.#authenticate = opts.authenticate;
    const registers = [opts.registry ?? new Registry()];
    const labelNames = ['type_url'] as const;
    this.#m = {
      connections: new Gauge({ name: 'ambit_xds_connections', help: 'Open delta xDS streams', registers }),
      pushes: new Counter({ name: 'ambit_xds_pushes_total', help: 'Delta xDS responses sent', labelNames, registers }),
      duration: new Histogram({
        name: 'ambit_xds_push_duration_seconds',
        help: 'Time to build and write one push of a type to every subscribed stream',
        labelNames,
        buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
        registers,
      }),
      bytes: new Counter({ name: 'ambit_xds_pushed_bytes_total', help: 'Serialized delta xDS response bytes sent', labelNames, registers }),
      resources: new Counter({ name: 'ambit_xds_pushed_resources_total', help: 'Resources and removals sent in delta xDS responses', labelNames, registers }),
      acks: new Counter({ name: 'ambit_xds_acks_total', help: 'Delta xDS responses acknowledged', labelNames, registers }),
      nacks: new Counter({ name: 'ambit_xds_nacks_total', help: 'Delta xDS responses rejected by a client (NACK)', labelNames, registers }),
      refused: new Counter({ name: 'ambit_xds_requests_refused_total', help: 'Delta xDS requests refused before handling: too_large or undecodable', labelNames: ['reason'], registers }),
    };
  }

  /** Incremental change of one type: only these names are considered for the next (debounced) push. */
  update(typeUrl: string, upserts: XdsResource[], removals: string[]): void {
    const store = this.#store(typeUrl);
    if (!store) return;
    this.#markDirty(typeUrl, store.update(upserts, removals));
  }

  /** Replaces the whole set of one type; the diff (added, new version, removed) is pushed. */
  replaceAll(typeUrl: string, resources: XdsResource[]): void {
    const store = this.#store(typeUrl);
    if (!store) return;
    this.#markDirty(typeUrl, store.replaceAll(resources));
  }

  /** The current resources of a type (for debug dumps and tests). */
  resources(typeUrl: string): XdsResource[] {
    const store = this.#stores.get(typeUrl);
    if (!store) return [];
    return [...store.names()].map((n) => store.get(n)).filter((r): r is XdsResource => r !== undefined);
  }

  /** What to pass to `grpcServer.addService(definition, implementation)`. */
  service(): DeltaXdsService {
    return {
      definition: deltaAdsServiceDefinition((typeUrl, bytes) => this.#m.bytes.inc({ type_url: typeUrl }, bytes), true),
      implementation: { DeltaAggregatedResources: (call: DeltaCall) => this.#onStream(call) },
    };
  }

  stats(): XdsServerStats {
    return { connections: this.#connections.size, ...this.#stats };
  }

  connectionsInfo(): XdsConnectionInfo[] {
    return [...this.#connections.values()].map((c) => {
      const nodeId = c.node?.id ?? '';
      const parsed = nodeId ? parseNodeId(nodeId) : undefined;
      const info: XdsConnectionInfo = {
        connectionId: c.id,
        peer: c.peer,
        principal: c.principal,
        nodeId,
        metadata: c.node?.metadata ?? {},
        connectedAt: c.connectedAt,
        types: [...c.types.entries()].map(([typeUrl, t]) => {
          const ti: XdsTypeInfo = {
            typeUrl,
            wildcard: t.sub.wildcard,
            names: [...t.sub.names],
            resourcesHeld: t.sub.known.size,
            pendingNonces: t.pendingNonces.length,
            lastAckedNonce: t.lastAckedNonce,
          };
          if (t.lastNack) ti.lastNack = { ...t.lastNack };
          return ti;
        }),
      };
      if (parsed?.ok) info.parsedNodeId = parsed.value;
      if (c.node?.cluster) info.cluster = c.node.cluster;
      return info;
    });
  }

  /** Ends every stream (clients reconnect elsewhere or later) and stops pushing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#flushTimer?.cancel();
    this.#flushTimer = undefined;
    for (const c of [...this.#connections.values()]) {
      this.#drop(c);
      try {
        c.call.end();
      } catch {
        // already gone
      }
    }
  }

  // ---- internals ----

  #store(typeUrl: string): ResourceStore | undefined {
    const store = this.#stores.get(typeUrl);
    if (!store) {
      this.#log.warn({ typeUrl, err: new XdsUnknownTypeError(typeUrl) }, 'update for a type url this server does not serve; ignored');
      return undefined;
    }
    if (this.#closed) {
      this.#log.debug({ typeUrl }, 'update after close; ignored');
      return undefined;
    }
    return store;
  }

  #markDirty(typeUrl: string, names: string[]): void {
    if (names.length === 0) return;
    let set = this.#dirty.get(typeUrl);
    if (!set) this.#dirty.set(typeUrl, (set = new Set()));
    for (const n of names) set.add(n);
    this.#flushTimer ??= this.#clock.setTimeout(() => this.#flush(), this.#debounceMs);
  }

  #flush(): void {
    this.#flushTimer = undefined;
    const dirty = [...this.#dirty.entries()];
    this.#dirty.clear();
    for (const [typeUrl, names] of dirty) {
      const store = this.#stores.get(typeUrl);
      if (!store) continue;
      const started = process.hrtime.bigint();
      for (const c of this.#connections.values()) {
        const t = c.types.get(typeUrl);
        if (!t || c.closed) continue;
        const delta = t.sub.computeDelta(store, names);
        if (delta.upserts.length > 0 || delta.removals.length > 0) this.#send(c, typeUrl, t, store, delta);
      }
      this.#m.duration.observe({ type_url: typeUrl }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  #send(c: Connection, typeUrl: string, t: TypeState, store: ResourceStore, delta: Delta): void {
    const nonce = this.#nonces.next();
    const res: DeltaDiscoveryResponse = {
      systemVersionInfo: store.systemVersion,
      typeUrl,
      nonce,
      removedResources: delta.removals,
      resources: delta.upserts.map((r) => ({ name: r.name, version: r.version, aliases: [], resource: { typeUrl, value: r.body } })),
    };
    t.sub.markSent(delta);
    t.pendingNonces.push(nonce);
    if (t.pendingNonces.length > MAX_PENDING_NONCES) t.pendingNonces.shift();
    try {
      c.call.write(res);
    } catch (err) {
      this.#log.debug({ err, connectionId: c.id }, 'write to a closing stream failed');
      return;
    }
    this.#stats.pushes++;
    this.#m.pushes.inc({ type_url: typeUrl });
    this.#m.resources.inc({ type_url: typeUrl }, delta.upserts.length + delta.removals.length);
    this.#log.debug(
      { connectionId: c.id, nodeId: c.node?.id, typeUrl, nonce, upserts: delta.upserts.length, removals: delta.removals.length },
      'pushed',
    );
  }

  #onStream(call: DeltaCall): void {
    const peer = call.getPeer();
    let principal = '';
    if (this.#closed) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'xds server is shutting down' });
      return;
    }
    if (this.#authenticate) {
      let auth: XdsAuthResult;
      try {
        auth = this.#authenticate(call.metadata, peer);
      } catch (err) {
        this.#log.error({ err, peer }, 'authenticate hook threw; refusing the stream');
        auth = { ok: false, code: grpc.status.INTERNAL, message: 'authentication failed' };
      }
      if (!auth.ok) {
        this.#log.warn({ peer, err: new XdsUnauthenticatedError(peer, auth.message) }, 'xds stream refused');
        call.emit('error', { code: auth.code, details: auth.message });
        return;
      }
      principal = auth.principal;
    }
    const c: Connection = {
      id: this.#nextConnectionId++,
      call,
      peer,
      principal,
      connectedAt: this.#clock.now(),
      announced: false,
      closed: false,
      types: new Map(),
    };
    this.#connections.set(c.id, c);
    this.#m.connections.set(this.#connections.size);
    call.on('data', (req: DeltaDiscoveryRequest | RefusedXdsRequest) => {
      if (isRefused(req)) {
        this.#m.refused.inc({ reason: req.refused });
        this.#log.warn({ connectionId: c.id, peer, reason: req.refused, err: req.detail }, 'delta xds request refused; ending the stream');
        this.#drop(c);
        call.emit('error', { code: req.refused === 'too_large' ? grpc.status.RESOURCE_EXHAUSTED : grpc.status.INVALID_ARGUMENT, details: req.detail });
        return;
      }
      try {
        this.#onRequest(c, req);
      } catch (err) {
        this.#log.error({ err, connectionId: c.id }, 'failed to handle a delta xds request; dropping the stream');
        this.#drop(c);
        call.emit('error', { code: grpc.status.INTERNAL, details: 'internal error handling the request' });
      }
    });
    call.on('end', () => {
      this.#drop(c);
      try {
        call.end();
      } catch {
        // already ended
      }
    });
    call.on('error', (err) => {
      this.#log.debug({ err, connectionId: c.id }, 'delta xds stream error');
      this.#drop(c);
    });
    call.on('cancelled', () => this.#drop(c));
    call.on('close', () => this.#drop(c));
  }

  #drop(c: Connection): void {
    if (c.closed) return;
    c.closed = true;
    this.#connections.delete(c.id);
    this.#m.connections.set(this.#connections.size);
    const nodeId = c.node?.id ?? '';
    this.#log.info({ connectionId: c.id, nodeId, peer: c.peer }, 'xds client disconnected');
    if (c.announced) this.emit('disconnect', { connectionId: c.id, nodeId, peer: c.peer } satisfies XdsConnectEvent);
  }

  #onRequest(c: Connection, req: DeltaDiscoveryRequest): void {
    if (c.closed) return;
    if (!c.node && req.node) c.node = req.node;
    const nodeId = c.node?.id ?? '';
    if (!c.announced) {
      c.announced = true;
      this.#log.info({ connectionId: c.id, nodeId, peer: c.peer, principal: c.principal, metadata: c.node?.metadata }, 'xds client connected');
      this.emit('connect', { connectionId: c.id, nodeId, peer: c.peer } satisfies XdsConnectEvent);
    }
    const typeUrl = req.typeUrl;
    const store = this.#stores.get(typeUrl);
    if (!store) {
      this.#log.warn({ connectionId: c.id, nodeId, typeUrl, err: new XdsUnknownTypeError(typeUrl) }, 'request for an unserved type url; ignored');
      return;
    }
    let t = c.types.get(typeUrl);
    if (!t) {
      // First request of this type on this stream (a nonce here would be from an older stream: ignored).
      t = { sub: new Subscription(), pendingNonces: [], lastAckedNonce: '' };
      c.types.set(typeUrl, t);
      t.sub.seed(req.initialResourceVersions);
      t.sub.applyRequest(req.resourceNamesSubscribe, req.resourceNamesUnsubscribe, true);
      this.#send(c, typeUrl, t, store, t.sub.computeDelta(store));
      return;
    }
    if (req.responseNonce) this.#onAck(c, typeUrl, t, req);
    if (req.resourceNamesSubscribe.length > 0 || req.resourceNamesUnsubscribe.length > 0) {
      const wasWildcard = t.sub.wildcard;
      const added = t.sub.applyRequest(req.resourceNamesSubscribe, req.resourceNamesUnsubscribe, false);
      const delta = !wasWildcard && t.sub.wildcard ? t.sub.computeDelta(store) : t.sub.computeDelta(store, added);
      if (delta.upserts.length > 0 || delta.removals.length > 0) this.#send(c, typeUrl, t, store, delta);
    }
  }

  #onAck(c: Connection, typeUrl: string, t: TypeState, req: DeltaDiscoveryRequest): void {
    const nonce = req.responseNonce;
    const idx = t.pendingNonces.indexOf(nonce);
    const nodeId = c.node?.id ?? '';
    if (idx < 0) {
      this.#log.debug({ connectionId: c.id, nodeId, typeUrl, nonce }, 'ack/nack for an unknown or stale nonce; ignored');
      return;
    }
    t.pendingNonces.splice(0, idx + 1);
    if (req.errorDetail) {
      const { code, message } = req.errorDetail;
      const error = new XdsNackError(nodeId, typeUrl, nonce, message);
      t.lastNack = { nonce, message, at: this.#clock.now() };
      this.#stats.nacks++;
      this.#m.nacks.inc({ type_url: typeUrl });
      this.#log.warn({ connectionId: c.id, nodeId, typeUrl, nonce, code, detail: message, err: error }, 'xds client rejected a push (NACK)');
      this.emit('nack', { connectionId: c.id, nodeId, typeUrl, nonce, code, message, error } satisfies XdsNackEvent);
      return;
    }
    t.lastAckedNonce = nonce;
    this.#stats.acks++;
    this.#m.acks.inc({ type_url: typeUrl });
  }
}
