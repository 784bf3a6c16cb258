/**
 * Wire codec for the waypoint's L7 config: the compileL7Config JSON input
 * shape <-> ambit.l7.v1.L7Config protobuf bytes (proto/ambit/l7/v1/l7.proto).
 *
 * The control plane encodes one L7Config per waypoint Gateway and serves it
 * on delta ADS as L7_CONFIG_TYPE_URL; the waypoint proxy decodes it and hands
 * the result to compileL7Config. The conversion walks the proto reflection
 * (protobufjs, loaded at run time from <repo>/proto), so every field of the
 * .proto is covered and unknown JSON keys are refused. A few JSON shapes
 * differ from the wire and are mapped here:
 *  - durations: "100ms"/"1.5s"/ms numbers <-> google.protobuf.Duration
 *  - enums: names (protocol fields lower case in JSON, e.g. "http1")
 *  - authz rules: JSON `from: [{source}]`, `to: [{operation}]` <-> repeated Source/Operation
 *  - retryOn as a comma string; abort.grpcStatus as a code name
 * Encoding validates shape only (a config that fails compileL7Config, e.g. a
 * route naming an unknown cluster, still encodes; the waypoint NACKs it).
 */
import path from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { GRPC_CODES, parseDuration } from './config.js';
import { WaypointConfigError } from './errors.js';

export const L7_CONFIG_TYPE_URL = 'type.googleapis.com/ambit.l7.v1.L7Config';
export const L7_PROTO = 'ambit/l7/v1/l7.proto';

/** <repo>/proto: walk up from this module (src/waypoint or dist/src/waypoint) to the nearest package.json. */
function protoDir(): string {
  const from = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'proto');
    if (path.dirname(dir) === dir) return path.resolve(from, '../../../proto');
  }
}

let cachedType: protobuf.Type | undefined;
/** The protobufjs type of ambit.l7.v1.L7Config (loaded once per process). */
export function l7ConfigType(): protobuf.Type {
  if (cachedType) return cachedType;
  const dir = protoDir();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(dir, target));
  root.loadSync(L7_PROTO, { keepCase: false });
  root.resolveAll();
  cachedType = root.lookupType('ambit.l7.v1.L7Config');
  return cachedType;
}

type Obj = Record<string, unknown>;
const fail = (field: string, problem: string): never => {
  throw new WaypointConfigError(field, problem);
};
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const DURATION = '.google.protobuf.Duration';
const AUTHZ_RULE = '.ambit.l7.v1.AuthorizationPolicy.Rule';
const WRAPPED: Record<string, string> = { from: 'source', to: 'operation' };
const U32_MAX = 2 ** 32 - 1;

const join = (base: string, key: string): string => (base === 'config' ? key : `${base}.${key}`);

/** JSON (compileL7Config) name of a field: protobufjs keeps `_5` in `consecutive_5xx_errors`; JSON says consecutive5xxErrors. */
const jsonName = (protoName: string): string => protoName.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
const byJson = new WeakMap<protobuf.Type, Map<string, protobuf.Field>>();
function jsonFields(type: protobuf.Type): Map<string, protobuf.Field> {
  let m = byJson.get(type);
  if (!m) {
    m = new Map(type.fieldsArray.map((fl) => [jsonName(fl.name), fl]));
    byJson.set(type, m);
  }
  return m;
}

// ---------------------------------------------------------------- encode

function toDuration(v: unknown, f: string): { seconds: number; nanos: number } {
  const ms = parseDuration(v, f);
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

function encodeScalar(field: protobuf.Field, v: unknown, f: string): unknown {
  switch (field.type) {
    case 'string':
      return typeof v === 'string' ? v : fail(f, 'must be a string');
    case 'bool':
      return typeof v === 'boolean' ? v : fail(f, 'must be true or false');
    case 'double':
    case 'float':
      return typeof v === 'number' && Number.isFinite(v) ? v : fail(f, 'must be a number');
    case 'uint32': {
      let n = v;
      if (field.name === 'grpcStatus' && typeof v === 'string') {
        const i = GRPC_CODES.indexOf(v.toUpperCase() as (typeof GRPC_CODES)[number]);
        n = i >= 0 ? i : fail(f, `must be a grpc status code name (${GRPC_CODES.join(', ')}) or number`);
      } else if (typeof v === 'string' && /^\d+$/.test(v)) n = Number(v);
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > U32_MAX) fail(f, 'must be a non-negative integer');
      return n;
    }
    default:
      return fail(f, `has an unsupported wire type ${field.type}`);
  }
}

function encodeValue(field: protobuf.Field, v: unknown, f: string): unknown {
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Enum) {
    if (typeof v === 'number' && Object.values(rt.values).includes(v)) return v;
    const name = typeof v === 'string' ? v.toUpperCase() : undefined;
    if (name === undefined || rt.values[name] === undefined) fail(f, `must be one of ${Object.keys(rt.values).map((k) => (field.name === 'protocol' ? k.toLowerCase() : k)).join(', ')}`);
    return name;
  }
  if (rt instanceof protobuf.Type) {
    if (rt.fullName === DURATION) return toDuration(v, f);
    return encodeMessage(rt, v, f);
  }
  return encodeScalar(field, v, f);
}

function encodeMessage(type: protobuf.Type, v: unknown, f: string): Obj {
  if (!isObj(v)) return fail(f, 'must be an object');
  const out: Obj = {};
  for (const [key, raw] of Object.entries(v)) {
    const ff = join(f, key);
    const field = jsonFields(type).get(key);
    if (!field) return fail(ff, `is not a known field (known: ${[...jsonFields(type).keys()].join(', ')})`);
    if (raw === undefined || raw === null) continue;
    if (field.map) {
      if (!isObj(raw)) fail(ff, 'must be an object');
      out[field.name] = Object.fromEntries(Object.entries(raw as Obj).map(([k, mv]) => [k, encodeScalar(field, mv, `${ff}.${k}`)]));
    } else if (field.repeated) {
      let list: unknown = raw;
      if (key === 'retryOn' && typeof raw === 'string') list = raw.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
      if (!Array.isArray(list)) return fail(ff, 'must be a list');
      const wrap = type.fullName === AUTHZ_RULE ? WRAPPED[key] : undefined;
      out[field.name] = list.map((item, i) => {
        const itf = `${ff}[${i}]`;
        if (wrap !== undefined) {
          if (!isObj(item)) return fail(itf, 'must be an object');
          const extra = Object.keys(item).filter((k) => k !== wrap);
          if (extra.length > 0) fail(`${itf}.${extra[0]}`, `is not a known field (known: ${wrap})`);
          return encodeValue(field, item[wrap] ?? {}, `${itf}.${wrap}`);
        }
        return encodeValue(field, item, itf);
      });
    } else out[field.name] = encodeValue(field, raw, ff);
  }
  for (const oneof of type.oneofsArray) {
    const set = oneof.oneof.filter((name) => out[name] !== undefined);
    if (set.length > 1) fail(f, `must set only one of ${oneof.oneof.join(', ')}`);
  }
  return out;
}

/** JSON config (compileL7Config input shape) -> ambit.l7.v1.L7Config bytes. Throws WaypointConfigError on a shape it cannot encode. */
export function encodeL7Config(input: unknown): Uint8Array {
  const type = l7ConfigType();
  const plain = encodeMessage(type, input, 'config');
  return type.encode(type.fromObject(plain)).finish();
}

// ---------------------------------------------------------------- decode

function durationString(d: unknown): string {
  const o = isObj(d) ? d : {};
  const ms = Number(o.seconds ?? 0) * 1000 + Number(o.nanos ?? 0) / 1e6;
  return `${Number(ms.toFixed(6))}ms`;
}

function decodeValue(field: protobuf.Field, v: unknown): unknown {
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Enum) {
    const name = typeof v === 'number' ? (rt.valuesById[v] ?? String(v)) : String(v);
    return field.name === 'protocol' ? name.toLowerCase() : name;
  }
  if (rt instanceof protobuf.Type) return rt.fullName === DURATION ? durationString(v) : decodeMessage(rt, v);
  return v;
}

function decodeMessage(type: protobuf.Type, v: unknown): Obj {
  const o = isObj(v) ? v : {};
  const out: Obj = {};
  for (const [key, raw] of Object.entries(o)) {
    const field = type.fields[key];
    if (!field || raw === undefined || raw === null) continue; // oneof virtual names and unknowns
    const jkey = jsonName(key);
    if (field.map) out[jkey] = { ...(raw as Obj) };
    else if (field.repeated) {
      const wrap = type.fullName === AUTHZ_RULE ? WRAPPED[jkey] : undefined;
      out[jkey] = (raw as unknown[]).map((item) => (wrap !== undefined ? { [wrap]: decodeValue(field, item) } : decodeValue(field, item)));
    } else out[jkey] = decodeValue(field, raw);
  }
  return out;
}

/** ambit.l7.v1.L7Config bytes -> the compileL7Config JSON input shape. Throws WaypointConfigError on bytes that are not an L7Config. */
export function decodeL7Config(bytes: Uint8Array): Record<string, unknown> {
  const type = l7ConfigType();
  let msg: protobuf.Message;
  try {
    msg = type.decode(bytes);
  } catch (err) {
    return fail('config', `is not a valid ambit.l7.v1.L7Config message (${(err as Error).message})`);
  }
  const plain = type.toObject(msg, { enums: String, longs: Number, defaults: false, arrays: false, objects: false, oneofs: false });
  return decodeMessage(type, plain);
}
