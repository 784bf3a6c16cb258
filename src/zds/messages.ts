/**
 * Typed encode/decode for the ZDS messages (proto/zds.proto, package
 * istio.workload.zds). Wire compatible with ztunnel and istio-cni:
 * proto3 rules (defaults left off the wire, last value of a scalar wins,
 * repeated occurrences of a message field merge, the last oneof member wins,
 * unknown fields skipped). Decoding never throws; bad input is a value.
 */
import { decodeUtf8, readFields, WIRE_LEN, WIRE_VARINT, WireWriter, type WireField, type WireResult } from './wire.js';

/** ztunnel reads each datagram into a 1024-byte buffer; anything longer is truncated. */
export const ZDS_MAX_MESSAGE_SIZE = 1024;

export const ZdsVersion = { NOT_USED: 0, V1: 1 } as const;

export interface ZdsHello {
  /** An open enum: values other than ZdsVersion's are kept as numbers. */
  readonly version: number;
}

export interface WorkloadInfo {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

export type WorkloadRequest =
  | { readonly kind: 'add'; readonly uid: string; readonly workloadInfo?: WorkloadInfo }
  | { readonly kind: 'keep'; readonly uid: string }
  | { readonly kind: 'del'; readonly uid: string }
  | { readonly kind: 'snapshot_sent' };

export interface WorkloadResponse {
  /** `error` is empty for an ACK; any text is a NACK. */
  readonly ack: { readonly error: string };
}

export type DecodeResult<T> = WireResult<T>;

// Field numbers (proto/zds.proto).
const HELLO_VERSION = 1;
const INFO_NAME = 1;
const INFO_NAMESPACE = 2;
const INFO_SERVICE_ACCOUNT = 3;
const ADD_UID = 1;
const ADD_WORKLOAD_INFO = 2;
const KEEP_UID = 1;
const DEL_UID = 2;
const REQ_ADD = 1;
const REQ_DEL = 2;
const REQ_SNAPSHOT_SENT = 3;
const REQ_KEEP = 5;
const ACK_ERROR = 1;
const RESP_ACK = 1;

function checkSize(buf: Uint8Array, what: string): DecodeResult<void> {
  if (buf.length > ZDS_MAX_MESSAGE_SIZE) return { ok: false, reason: `${what} is ${buf.length} bytes; the limit is ${ZDS_MAX_MESSAGE_SIZE}` };
  return { ok: true, value: undefined };
}

function fail<T>(reason: string): DecodeResult<T> {
  return { ok: false, reason };
}

/** The last occurrence of a string field wins; a wrong wire type is an error. */
function stringFields(buf: Uint8Array, what: string, names: Record<number, string>): DecodeResult<Map<number, string>> {
  const fields = readFields(buf);
  if (!fields.ok) return fail(`${what}: ${fields.reason}`);
  const out = new Map<number, string>();
  for (const f of fields.value) {
    const name = names[f.field];
    if (name === undefined) continue;
    if (f.wireType !== WIRE_LEN) return fail(`${what}.${name} has wire type ${f.wireType}, expected ${WIRE_LEN}`);
    const s = decodeUtf8(f.value, `${what}.${name}`);
    if (!s.ok) return s;
    out.set(f.field, s.value);
  }
  return { ok: true, value: out };
}

/**
 * Concatenating the occurrences of a message field is protobuf's merge. Each
 * occurrence must be well formed on its own, as a decoder that merges one at a
 * time would see it.
 */
function mergeOccurrences(fields: readonly WireField[], what: string): DecodeResult<Buffer> {
  const bodies: Buffer[] = [];
  for (const f of fields) {
    const body = f.value as Buffer;
    if (fields.length > 1) {
      const check = readFields(body);
      if (!check.ok) return fail(`${what}: ${check.reason}`);
    }
    bodies.push(body);
  }
  return { ok: true, value: Buffer.concat(bodies) };
}

// ---- ZdsHello ----

export function encodeZdsHello(hello: ZdsHello = { version: ZdsVersion.V1 }): Buffer {
  return new WireWriter().uint(HELLO_VERSION, hello.version).finish();
}

export function decodeZdsHello(buf: Uint8Array): DecodeResult<ZdsHello> {
  const size = checkSize(buf, 'ZdsHello');
  if (!size.ok) return size;
  const fields = readFields(buf);
  if (!fields.ok) return fail(`ZdsHello: ${fields.reason}`);
  let version = 0;
  for (const f of fields.value) {
    if (f.field !== HELLO_VERSION) continue;
    if (f.wireType !== WIRE_VARINT) return fail(`ZdsHello.version has wire type ${f.wireType}, expected ${WIRE_VARINT}`);
    version = Number(BigInt.asIntN(32, f.value));
  }
  return { ok: true, value: { version } };
}

// ---- WorkloadInfo ----

function encodeWorkloadInfo(info: WorkloadInfo): Buffer {
  return new WireWriter().string(INFO_NAME, info.name).string(INFO_NAMESPACE, info.namespace).string(INFO_SERVICE_ACCOUNT, info.serviceAccount).finish();
}

function decodeWorkloadInfo(buf: Uint8Array): DecodeResult<WorkloadInfo> {
  const s = stringFields(buf, 'WorkloadInfo', { [INFO_NAME]: 'name', [INFO_NAMESPACE]: 'namespace', [INFO_SERVICE_ACCOUNT]: 'service_account' });
  if (!s.ok) return s;
  return { ok: true, value: { name: s.value.get(INFO_NAME) ?? '', namespace: s.value.get(INFO_NAMESPACE) ?? '', serviceAccount: s.value.get(INFO_SERVICE_ACCOUNT) ?? '' } };
}

// ---- WorkloadRequest ----

export function encodeWorkloadRequest(req: WorkloadRequest): Buffer {
  const w = new WireWriter();
  switch (req.kind) {
    case 'add': {
      const add = new WireWriter().string(ADD_UID, req.uid);
      if (req.workloadInfo) add.message(ADD_WORKLOAD_INFO, encodeWorkloadInfo(req.workloadInfo));
      return w.message(REQ_ADD, add.finish()).finish();
    }
    case 'keep':
      return w.message(REQ_KEEP, new WireWriter().string(KEEP_UID, req.uid).finish()).finish();
    case 'del':
      return w.message(REQ_DEL, new WireWriter().string(DEL_UID, req.uid).finish()).finish();
    case 'snapshot_sent':
      return w.message(REQ_SNAPSHOT_SENT, Buffer.alloc(0)).finish();
  }
}

function decodeAdd(buf: Buffer): DecodeResult<WorkloadRequest> {
  const fields = readFields(buf);
  if (!fields.ok) return fail(`AddWorkload: ${fields.reason}`);
  let uid = '';
  const info: WireField[] = [];
  for (const f of fields.value) {
    if (f.field === ADD_UID) {
      if (f.wireType !== WIRE_LEN) return fail(`AddWorkload.uid has wire type ${f.wireType}, expected ${WIRE_LEN}`);
      const s = decodeUtf8(f.value, 'AddWorkload.uid');
      if (!s.ok) return s;
      uid = s.value;
    } else if (f.field === ADD_WORKLOAD_INFO) {
      if (f.wireType !== WIRE_LEN) return fail(`AddWorkload.workload_info has wire type ${f.wireType}, expected ${WIRE_LEN}`);
      info.push(f);
    }
  }
  if (info.length === 0) return { ok: true, value: { kind: 'add', uid } };
  const merged = mergeOccurrences(info, 'WorkloadInfo');
  if (!merged.ok) return merged;
  const wi = decodeWorkloadInfo(merged.value);
  if (!wi.ok) return wi;
  return { ok: true, value: { kind: 'add', uid, workloadInfo: wi.value } };
}

function decodeUidOnly(buf: Buffer, kind: 'keep' | 'del'): DecodeResult<WorkloadRequest> {
  const what = kind === 'keep' ? 'KeepWorkload' : 'DelWorkload';
  const uidField = kind === 'keep' ? KEEP_UID : DEL_UID;
  const s = stringFields(buf, what, { [uidField]: 'uid' });
  if (!s.ok) return s;
  return { ok: true, value: { kind, uid: s.value.get(uidField) ?? '' } };
}

function decodeSnapshotSent(buf: Buffer): DecodeResult<WorkloadRequest> {
  const fields = readFields(buf);
  if (!fields.ok) return fail(`SnapshotSent: ${fields.reason}`);
  return { ok: true, value: { kind: 'snapshot_sent' } };
}

const REQUEST_MEMBERS: Record<number, string> = { [REQ_ADD]: 'add', [REQ_DEL]: 'del', [REQ_SNAPSHOT_SENT]: 'snapshot_sent', [REQ_KEEP]: 'keep' };

export function decodeWorkloadRequest(buf: Uint8Array): DecodeResult<WorkloadRequest> {
  const size = checkSize(buf, 'WorkloadRequest');
  if (!size.ok) return size;
  const fields = readFields(buf);
  if (!fields.ok) return fail(`WorkloadRequest: ${fields.reason}`);
  // The last oneof member on the wire wins; repeats of that member merge.
  let member: number | undefined;
  let parts: WireField[] = [];
  for (const f of fields.value) {
    const name = REQUEST_MEMBERS[f.field];
    if (name === undefined) continue;
    if (f.wireType !== WIRE_LEN) return fail(`WorkloadRequest.${name} has wire type ${f.wireType}, expected ${WIRE_LEN}`);
    if (member !== f.field) parts = [];
    member = f.field;
    parts.push(f);
  }
  if (member === undefined) return fail('WorkloadRequest has no known payload (add, keep, del or snapshot_sent)');
  const merged = mergeOccurrences(parts, `WorkloadRequest.${REQUEST_MEMBERS[member] ?? member}`);
  if (!merged.ok) return merged;
  const body = merged.value;
  switch (member) {
    case REQ_ADD:
      return decodeAdd(body);
    case REQ_KEEP:
      return decodeUidOnly(body, 'keep');
    case REQ_DEL:
      return decodeUidOnly(body, 'del');
    default:
      return decodeSnapshotSent(body);
  }
}

// ---- WorkloadResponse ----

export function encodeWorkloadResponse(resp: WorkloadResponse): Buffer {
  return new WireWriter().message(RESP_ACK, new WireWriter().string(ACK_ERROR, resp.ack.error).finish()).finish();
}

export function decodeWorkloadResponse(buf: Uint8Array): DecodeResult<WorkloadResponse> {
  const size = checkSize(buf, 'WorkloadResponse');
  if (!size.ok) return size;
  const fields = readFields(buf);
  if (!fields.ok) return fail(`WorkloadResponse: ${fields.reason}`);
  const parts: WireField[] = [];
  for (const f of fields.value) {
    if (f.field !== RESP_ACK) continue;
    if (f.wireType !== WIRE_LEN) return fail(`WorkloadResponse.ack has wire type ${f.wireType}, expected ${WIRE_LEN}`);
    parts.push(f);
  }
  if (parts.length === 0) return fail('WorkloadResponse has no known payload (ack)');
  const merged = mergeOccurrences(parts, 'Ack');
  if (!merged.ok) return merged;
  const s = stringFields(merged.value, 'Ack', { [ACK_ERROR]: 'error' });
  if (!s.ok) return s;
  return { ok: true, value: { ack: { error: s.value.get(ACK_ERROR) ?? '' } } };
}
