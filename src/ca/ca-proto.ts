/**
 * The Istio CA wire format (proto/istio/v1/auth/ca.proto) loaded with
 * protobufjs, and the generic gRPC service definition built on it. Both the
 * server and the client use this module, so the method path and the
 * (de)serializers live in one place.
 *
 * Decoding never throws: a malformed request becomes a value the server
 * answers with INVALID_ARGUMENT (grpc-js would turn a throwing deserializer
 * into INTERNAL). google.protobuf.Struct comes from protobufjs's built-in
 * common types, so no proto/google file is needed.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

export const CA_SERVICE_NAME = 'istio.v1.auth.IstioCertificateService';
export const CREATE_CERTIFICATE_PATH = `/${CA_SERVICE_NAME}/CreateCertificate`;
/** The metadata key ztunnel sends in shared (node) mode. */
export const IMPERSONATED_IDENTITY_KEY = 'ImpersonatedIdentity';

/** A metadata value as the CA sees it: the JSON form of google.protobuf.Value. */
export type StructValue = null | boolean | number | string | StructValue[] | { [k: string]: StructValue };

export interface CertificateRequestMessage {
  readonly csr: string;
  /** Seconds; 0 when unset. int64 on the wire; values beyond 2^53 lose precision (they are cut to the maximum anyway). */
  readonly validityDuration: number;
  /** google.protobuf.Struct as a plain object; empty when unset. */
  readonly metadata: Readonly<Record<string, StructValue>>;
}

export interface CertificateResponseMessage {
  readonly certChain: readonly string[];
}

/** A request the server could not decode (the reason is for the INVALID_ARGUMENT message). */
export interface UndecodableRequest {
  readonly undecodable: string;
  readonly size: number;
}

export type DecodedRequest = (CertificateRequestMessage & { readonly size: number }) | UndecodableRequest;

interface Types {
  readonly request: protobuf.Type;
  readonly response: protobuf.Type;
}

let types: Types | undefined;

/** The repository root: the same file runs from src/ca and dist/src/ca, so walk up to package.json. */
function packageRoot(): string {
  const from = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

/** The path of ca.proto in this checkout or install. */
export function caProtoPath(): string {
  return path.join(packageRoot(), 'proto', 'istio', 'v1', 'auth', 'ca.proto');
}

function load(): Types {
  if (types === undefined) {
    const root = protobuf.loadSync(caProtoPath());
    types = {
      request: root.lookupType('istio.v1.auth.IstioCertificateRequest'),
      response: root.lookupType('istio.v1.auth.IstioCertificateResponse'),
    };
  }
  return types;
}

// google.protobuf.Value <-> JSON. Struct has no protobufjs wrapper, so convert by hand.
interface PbValue {
  nullValue?: number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: PbStruct;
  listValue?: { values?: PbValue[] };
}
interface PbStruct {
  fields?: Record<string, PbValue>;
}

/** Nesting guard: metadata is flat in practice; deep nesting is refused rather than recursed into. */
const MAX_STRUCT_DEPTH = 16;

function fromPbValue(v: PbValue, depth: number): StructValue {
  if (depth > MAX_STRUCT_DEPTH) throw new Error(`metadata is nested more than ${MAX_STRUCT_DEPTH} levels deep`);
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.numberValue !== undefined) return v.numberValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.structValue !== undefined) return fromPbStruct(v.structValue, depth + 1);
  if (v.listValue !== undefined) return (v.listValue.values ?? []).map((x) => fromPbValue(x, depth + 1));
  return null;
}

function fromPbStruct(s: PbStruct, depth: number): Record<string, StructValue> {
  const out: Record<string, StructValue> = Object.create(null) as Record<string, StructValue>;
  for (const [k, v] of Object.entries(s.fields ?? {})) out[k] = fromPbValue(v, depth);
  return out;
}

function toPbValue(v: StructValue): PbValue {
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toPbValue) } };
  return { structValue: toPbStruct(v) };
}

function toPbStruct(o: Readonly<Record<string, StructValue>>): PbStruct {
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toPbValue(v)])) };
}

export function encodeCertificateRequest(m: CertificateRequestMessage): Buffer {
  const t = load().request;
  const hasMeta = Object.keys(m.metadata).length > 0;
  const msg = t.fromObject({ csr: m.csr, validityDuration: m.validityDuration, ...(hasMeta ? { metadata: toPbStruct(m.metadata) } : {}) });
  return Buffer.from(t.encode(msg).finish());
}

/** Never throws. */
export function decodeCertificateRequest(buf: Buffer): DecodedRequest {
  const t = load().request;
  try {
    const o = t.toObject(t.decode(buf), { longs: Number, defaults: true }) as { csr: string; validityDuration: number; metadata?: PbStruct | null };
    return { csr: o.csr, validityDuration: o.validityDuration, metadata: fromPbStruct(o.metadata ?? {}, 0), size: buf.length };
  } catch (err) {
    return { undecodable: (err as Error).message, size: buf.length };
  }
}

export function encodeCertificateResponse(m: CertificateResponseMessage): Buffer {
  const t = load().response;
  return Buffer.from(t.encode(t.fromObject({ certChain: [...m.certChain] })).finish());
}

/** Throws on malformed input; grpc-js turns that into an INTERNAL status the client maps to an error. */
export function decodeCertificateResponse(buf: Buffer): CertificateResponseMessage {
  const t = load().response;
  const o = t.toObject(t.decode(buf), { defaults: true }) as { certChain: string[] };
  return { certChain: o.certChain };
}

/** The generic definition for grpc.Server#addService and grpc.makeGenericClientConstructor. */
export function caServiceDefinition(): grpc.ServiceDefinition<grpc.UntypedServiceImplementation> {
  load();
  return {
    CreateCertificate: {
      path: CREATE_CERTIFICATE_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: (m: CertificateRequestMessage) => encodeCertificateRequest(m),
      requestDeserialize: (b: Buffer) => decodeCertificateRequest(b),
      responseSerialize: (m: CertificateResponseMessage) => encodeCertificateResponse(m),
      responseDeserialize: (b: Buffer) => decodeCertificateResponse(b),
      originalName: 'createCertificate',
    },
  };
}
