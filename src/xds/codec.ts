/**
 * The delta xDS wire codec: loads Ambit's own .proto files (proto/envoy/**,
 * proto/google/rpc) with protobufjs once, and converts between bytes and the
 * plain TypeScript shapes the server and client use. google.protobuf.Any,
 * Struct and Duration are protobufjs's bundled well-known types (identical
 * field numbers). Decoders throw on malformed bytes; they run inside grpc-js
 * deserializers, which turn a throw into an INTERNAL status for that one
 * stream, so bad input never crashes the process.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { XdsProtoLoadError } from './errors.js';

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
export const DELTA_ADS_PATH = `/${ADS_SERVICE}/DeltaAggregatedResources`;
/** google.rpc.Code INVALID_ARGUMENT: what a NACK's error_detail carries for rejected resources. */
export const RPC_CODE_INVALID_ARGUMENT = 3;

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** One opaque resource: `body` is the serialized message of the type URL (wrapped in Any on the wire). */
export interface XdsResource {
  name: string;
  version: string;
  body: Buffer;
}

/** The envoy.config.core.v3.Node fields Ambit sets and reads. */
export interface XdsNode {
  id: string;
  cluster?: string;
  metadata?: Record<string, JsonValue>;
  userAgentName?: string;
  userAgentVersion?: string;
  clientFeatures?: string[];
}

export interface RpcStatus {
  code: number;
  message: string;
}

export interface DeltaDiscoveryRequest {
  node?: XdsNode;
  typeUrl: string;
  resourceNamesSubscribe: string[];
  resourceNamesUnsubscribe: string[];
  initialResourceVersions: Record<string, string>;
  responseNonce: string;
  errorDetail?: RpcStatus;
}

export interface WireResource {
  name: string;
  version: string;
  aliases: string[];
  /** The Any: type_url and the serialized message. Absent for a bare name/version. */
  resource?: { typeUrl: string; value: Buffer };
}

export interface DeltaDiscoveryResponse {
  systemVersionInfo: string;
  typeUrl: string;
  resources: WireResource[];
  removedResources: string[];
  nonce: string;
}

interface Types {
  request: protobuf.Type;
  response: protobuf.Type;
}

let cached: Types | undefined;

/** <repo>/proto: walk up from this file (src/xds or dist/src/xds) to the nearest package.json. */
export function defaultProtoDir(from: string = path.dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'proto');
    if (path.dirname(dir) === dir) return path.resolve(from, '../../../proto');
  }
}

/** Loads ads.proto (and its imports) from `dir`. Throws XdsProtoLoadError. Cached for the default dir. */
export function loadXdsTypes(dir: string = defaultProtoDir()): Types {
  if (cached && dir === defaultProtoDir()) return cached;
  try {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => path.join(dir, target);
    root.loadSync('envoy/service/discovery/v3/ads.proto', { keepCase: false });
    root.resolveAll();
    const types: Types = {
      request: root.lookupType('envoy.service.discovery.v3.DeltaDiscoveryRequest'),
      response: root.lookupType('envoy.service.discovery.v3.DeltaDiscoveryResponse'),
    };
    if (dir === defaultProtoDir()) cached = types;
    return types;
  } catch (err) {
    throw new XdsProtoLoadError(dir, { cause: err });
  }
}

// ---- google.protobuf.Struct <-> plain JSON ----

type PbValue = {
  nullValue?: number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: PbStruct;
  listValue?: { values?: PbValue[] };
};
type PbStruct = { fields?: Record<string, PbValue> };

function toPbValue(v: JsonValue): PbValue {
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toPbValue) } };
  return { structValue: toPbStruct(v) };
}

export function toPbStruct(obj: Record<string, JsonValue>): PbStruct {
  const fields: Record<string, PbValue> = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = toPbValue(v);
  return { fields };
}

function fromPbValue(v: PbValue): JsonValue {
  if (v.boolValue !== undefined && v.boolValue !== null) return v.boolValue;
  if (v.numberValue !== undefined && v.numberValue !== null) return v.numberValue;
  if (v.stringValue !== undefined && v.stringValue !== null) return v.stringValue;
  if (v.structValue) return fromPbStruct(v.structValue);
  if (v.listValue) return (v.listValue.values ?? []).map(fromPbValue);
  return null;
}

export function fromPbStruct(s: PbStruct | undefined | null): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = fromPbValue(v);
  return out;
}

// ---- messages ----

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: Number, defaults: false, arrays: true, objects: true, oneofs: false };

function asBuffer(b: unknown): Buffer {
  if (Buffer.isBuffer(b)) return b;
  if (b instanceof Uint8Array) return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return Buffer.alloc(0);
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function strArray(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function nodeToPb(node: XdsNode): Record<string, unknown> {
  const pb: Record<string, unknown> = { id: node.id };
  if (node.cluster) pb.cluster = node.cluster;
  if (node.metadata) pb.metadata = toPbStruct(node.metadata);
  if (node.userAgentName) pb.userAgentName = node.userAgentName;
  if (node.userAgentVersion) pb.userAgentVersion = node.userAgentVersion;
  if (node.clientFeatures?.length) pb.clientFeatures = node.clientFeatures;
  return pb;
}

function nodeFromPb(pb: Record<string, unknown>): XdsNode {
  const node: XdsNode = { id: str(pb.id) };
  if (pb.cluster) node.cluster = str(pb.cluster);
  if (pb.metadata) node.metadata = fromPbStruct(pb.metadata as PbStruct);
  if (pb.userAgentName) node.userAgentName = str(pb.userAgentName);
  if (pb.userAgentVersion) node.userAgentVersion = str(pb.userAgentVersion);
  const features = strArray(pb.clientFeatures);
  if (features.length) node.clientFeatures = features;
  return node;
}

export function encodeDeltaRequest(req: DeltaDiscoveryRequest, types: Types = loadXdsTypes()): Buffer {
  const pb: Record<string, unknown> = {
    typeUrl: req.typeUrl,
    resourceNamesSubscribe: req.resourceNamesSubscribe,
    resourceNamesUnsubscribe: req.resourceNamesUnsubscribe,
    initialResourceVersions: req.initialResourceVersions,
    responseNonce: req.responseNonce,
  };
  if (req.node) pb.node = nodeToPb(req.node);
  if (req.errorDetail) pb.errorDetail = { code: req.errorDetail.code, message: req.errorDetail.message };
  return Buffer.from(types.request.encode(types.request.fromObject(pb)).finish());
}

export function decodeDeltaRequest(buf: Uint8Array, types: Types = loadXdsTypes()): DeltaDiscoveryRequest {
  const pb = types.request.toObject(types.request.decode(buf), TO_OBJECT) as Record<string, unknown>;
  const req: DeltaDiscoveryRequest = {
    typeUrl: str(pb.typeUrl),
    resourceNamesSubscribe: strArray(pb.resourceNamesSubscribe),
    resourceNamesUnsubscribe: strArray(pb.resourceNamesUnsubscribe),
    initialResourceVersions: { ...((pb.initialResourceVersions as Record<string, string> | undefined) ?? {}) },
    responseNonce: str(pb.responseNonce),
  };
  if (pb.node) req.node = nodeFromPb(pb.node as Record<string, unknown>);
  // error_detail is a message field: presence, not content, makes a NACK.
  const ed = pb.errorDetail as { code?: number; message?: string } | undefined;
  if (ed) req.errorDetail = { code: ed.code ?? 0, message: ed.message ?? '' };
  return req;
}

export function encodeDeltaResponse(res: DeltaDiscoveryResponse, types: Types = loadXdsTypes()): Buffer {
  const pb = {
    systemVersionInfo: res.systemVersionInfo,
    typeUrl: res.typeUrl,
    nonce: res.nonce,
    removedResources: res.removedResources,
    resources: res.resources.map((r) => ({
      name: r.name,
      version: r.version,
      aliases: r.aliases,
      // protobufjs's bundled Any keeps the snake_case field name type_url.
      ...(r.resource ? { resource: { type_url: r.resource.typeUrl, value: r.resource.value } } : {}),
    })),
  };
  return Buffer.from(types.response.encode(types.response.fromObject(pb)).finish());
}

export function decodeDeltaResponse(buf: Uint8Array, types: Types = loadXdsTypes()): DeltaDiscoveryResponse {
  const pb = types.response.toObject(types.response.decode(buf), TO_OBJECT) as Record<string, unknown>;
  const resources = (Array.isArray(pb.resources) ? pb.resources : []) as Array<Record<string, unknown>>;
  return {
    systemVersionInfo: str(pb.systemVersionInfo),
    typeUrl: str(pb.typeUrl),
    nonce: str(pb.nonce),
    removedResources: strArray(pb.removedResources),
    resources: resources.map((r) => {
      const any = r.resource as { type_url?: string; value?: unknown } | undefined;
      const out: WireResource = { name: str(r.name), version: str(r.version), aliases: strArray(r.aliases) };
      if (any) out.resource = { typeUrl: any.type_url ?? '', value: asBuffer(any.value) };
      return out;
    }),
  };
}
