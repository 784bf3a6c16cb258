/**
 * Encode/decode of istio.workload.Address and istio.security.Authorization
 * (protobufjs over the .proto files), plus the semantic checks the agent
 * applies before accepting a resource. Decoding never throws: a result is
 * `{ ok: false, reason }` with a precise reason (the text the agent NACKs
 * with), e.g. `workload Kubernetes//Pod/demo/a: addresses[0]: an IP address
 * must be 4 or 16 bytes, got 5`.
 *
 * Decoded values are normalized (see types.ts): enums as names, every scalar
 * and repeated field present, absent sub-messages undefined.
 */
import protobuf from 'protobufjs';
import { WorkloadApiEncodeError } from './errors.js';
import { workloadApiTypes } from './proto.js';
import type { Address, Authorization, CidrAddress, GatewayAddress, Match, NetworkAddress, Port, Service, StringMatch, Workload } from './types.js';

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; reason: string };

class Reject extends Error {}

type Plain = Record<string, unknown>;

/** Converts a decoded protobufjs message into the normalized plain shape, rejecting unknown enum numbers. */
function normalize(type: protobuf.Type, msg: Plain, path: string): Plain {
  const out: Plain = {};
  const own = (k: string): boolean => Object.prototype.hasOwnProperty.call(msg, k);
  for (const f of type.fieldsArray) {
    const v = msg[f.name];
    const at = path === '' ? f.name : `${path}.${f.name}`;
    const one = (x: unknown, p: string): unknown => {
      if (f.resolvedType instanceof protobuf.Type) return normalize(f.resolvedType, x as Plain, p);
      if (f.resolvedType instanceof protobuf.Enum) {
        const name = f.resolvedType.valuesById[x as number];
        if (name === undefined) throw new Reject(`${p}: unknown ${f.resolvedType.name} value ${String(x)}`);
        return name;
      }
      return x;
    };
    if (f.map) {
      const m: Plain = {};
      for (const [k, x] of Object.entries((v ?? {}) as Plain)) m[k] = one(x, `${at}[${JSON.stringify(k)}]`);
      out[f.name] = m;
    } else if (f.repeated) {
      out[f.name] = ((v ?? []) as unknown[]).map((x, i) => one(x, `${at}[${i}]`));
    } else if (f.resolvedType instanceof protobuf.Type) {
      if (v !== null && v !== undefined) out[f.name] = one(v, at);
    } else if (f.partOf) {
      // A oneof member (or a proto3 `optional`): present only when it was on the wire.
      if (own(f.name)) out[f.name] = one(v, at);
    } else {
      out[f.name] = one(v, at);
    }
  }
  return out;
}

// Semantic checks. They accept partially filled values (encode input) and
// full normalized ones (decode output).

function fail(where: string, what: string): never {
  throw new Reject(`${where}: ${what}`);
}

function checkIp(bytes: Uint8Array | undefined, where: string): number {
  const n = bytes?.length ?? 0;
  if (n !== 4 && n !== 16) fail(where, `an IP address must be 4 or 16 bytes, got ${n}`);
  return n * 8;
}

function checkPrefix(length: number | undefined, bits: number, where: string): void {
  if (length !== undefined && (length < 0 || length > bits)) fail(where, `prefix length must be at most ${bits}, got ${length}`);
}

function checkPort(p: number | undefined, where: string, zeroOk: boolean): void {
  const v = p ?? 0;
  if (!Number.isInteger(v) || v < (zeroOk ? 0 : 1) || v > 65535) fail(where, `must be a port ${zeroOk ? 'from 0' : 'from 1'} to 65535, got ${v}`);
}

function checkEnum(v: unknown, allowed: readonly string[], where: string): void {
  if (v !== undefined && !allowed.includes(v as string)) fail(where, `must be one of ${allowed.join(', ')}; got ${JSON.stringify(v)}`);
}

function required(v: string | undefined, where: string): void {
  if (v === undefined || v === '') fail(where, 'is required');
}

function checkNetworkAddress(a: NetworkAddress, where: string): void {
  const bits = checkIp(a.address, `${where}.address`);
  checkPrefix(a.length, bits, `${where}.length`);
}

function checkGateway(g: GatewayAddress | undefined, where: string): void {
  if (!g) return;
  if (g.address) checkNetworkAddress(g.address, `${where}.address`);
  else if (g.hostname) required(g.hostname.hostname, `${where}.hostname.hostname`);
  else fail(where, 'neither hostname nor address is set');
  checkPort(g.hboneMtlsPort, `${where}.hboneMtlsPort`, true);
}

function checkPorts(ports: Port[] | undefined, where: string): void {
  (ports ?? []).forEach((p, i) => {
    checkPort(p.servicePort, `${where}[${i}].servicePort`, false);
    checkPort(p.targetPort, `${where}[${i}].targetPort`, true);
    checkEnum(p.appProtocol, ['UNKNOWN', 'HTTP11', 'HTTP2', 'GRPC', 'TCP', 'TLS'], `${where}[${i}].appProtocol`);
  });
}

function checkWorkload(w: Workload): void {
  const where = `workload ${w.uid ? w.uid : '(no uid)'}`;
  required(w.uid, `${where}: uid`);
  required(w.name, `${where}: name`);
  required(w.namespace, `${where}: namespace`);
  (w.addresses ?? []).forEach((a, i) => checkIp(a, `${where}: addresses[${i}]`));
  checkEnum(w.tunnelProtocol, ['NONE', 'HBONE', 'LEGACY_ISTIO_MTLS'], `${where}: tunnelProtocol`);
  checkEnum(w.workloadType, ['DEPLOYMENT', 'CRONJOB', 'POD', 'JOB'], `${where}: workloadType`);
  checkEnum(w.status, ['HEALTHY', 'UNHEALTHY'], `${where}: status`);
  checkEnum(w.networkMode, ['STANDARD', 'HOST_NETWORK'], `${where}: networkMode`);
  checkGateway(w.waypoint, `${where}: waypoint`);
  checkGateway(w.networkGateway, `${where}: networkGateway`);
  if (w.applicationTunnel) {
    checkEnum(w.applicationTunnel.protocol, ['NONE', 'PROXY'], `${where}: applicationTunnel.protocol`);
    checkPort(w.applicationTunnel.port, `${where}: applicationTunnel.port`, true);
  }
  for (const [key, list] of Object.entries(w.services ?? {})) {
    const slash = key.indexOf('/');
    if (slash <= 0 || slash === key.length - 1) fail(`${where}: services`, `key ${JSON.stringify(key)} must be namespace/hostname`);
    checkPorts(list.ports, `${where}: services[${JSON.stringify(key)}].ports`);
  }
  for (const p of w.authorizationPolicies ?? []) {
    if (!/^[^/]+\/[^/]+$/.test(p)) fail(`${where}: authorizationPolicies`, `${JSON.stringify(p)} must be namespace/name`);
  }
}

function checkService(s: Service): void {
  const where = `service ${s.namespace ?? ''}/${s.hostname ?? ''}`;
  required(s.name, `${where}: name`);
  required(s.namespace, `${where}: namespace`);
  required(s.hostname, `${where}: hostname`);
  (s.addresses ?? []).forEach((a, i) => checkNetworkAddress(a, `${where}: addresses[${i}]`));
  checkPorts(s.ports, `${where}: ports`);
  checkGateway(s.waypoint, `${where}: waypoint`);
  (s.weightedWaypoints ?? []).forEach((w, i) => checkGateway(w.destination ?? {}, `${where}: weightedWaypoints[${i}].destination`));
  checkEnum(s.ipFamilies, ['AUTOMATIC', 'IPV4_ONLY', 'IPV6_ONLY', 'DUAL'], `${where}: ipFamilies`);
  checkEnum(s.visibility, ['PUBLIC', 'NAMESPACE'], `${where}: visibility`);
  if (s.loadBalancing) {
    (s.loadBalancing.routingPreference ?? []).forEach((r, i) =>
      checkEnum(r, ['UNSPECIFIED_SCOPE', 'REGION', 'ZONE', 'SUBZONE', 'NODE', 'CLUSTER', 'NETWORK'], `${where}: loadBalancing.routingPreference[${i}]`),
    );
    checkEnum(s.loadBalancing.mode, ['UNSPECIFIED_MODE', 'STRICT', 'FAILOVER', 'PASSTHROUGH'], `${where}: loadBalancing.mode`);
    checkEnum(s.loadBalancing.healthPolicy, ['ONLY_HEALTHY', 'ALLOW_ALL'], `${where}: loadBalancing.healthPolicy`);
  }
}

function checkStringMatches(list: StringMatch[] | undefined, where: string): void {
  (list ?? []).forEach((m, i) => {
    if (!('exact' in m) && !('prefix' in m) && !('suffix' in m) && !('presence' in m)) fail(`${where}[${i}]`, 'no match type (exact, prefix, suffix or presence) is set');
  });
}

function checkCidrs(list: CidrAddress[] | undefined, where: string): void {
  (list ?? []).forEach((a, i) => checkPrefix(a.length, checkIp(a.address, `${where}[${i}].address`), `${where}[${i}].length`));
}

function checkMatch(m: Match, where: string): void {
  for (const k of ['namespaces', 'notNamespaces', 'principals', 'notPrincipals'] as const) checkStringMatches(m[k], `${where}.${k}`);
  for (const k of ['sourceIps', 'notSourceIps', 'destinationIps', 'notDestinationIps'] as const) checkCidrs(m[k], `${where}.${k}`);
  for (const k of ['destinationPorts', 'notDestinationPorts'] as const) (m[k] ?? []).forEach((p, i) => checkPort(p, `${where}.${k}[${i}]`, false));
}

function checkAuthorization(a: Authorization): void {
  const where = `authorization ${a.namespace ?? ''}/${a.name ?? ''}`;
  required(a.name, `${where}: name`);
  required(a.namespace, `${where}: namespace`);
  checkEnum(a.scope, ['GLOBAL', 'NAMESPACE', 'WORKLOAD_SELECTOR'], `${where}: scope`);
  checkEnum(a.action, ['ALLOW', 'DENY'], `${where}: action`);
  (a.rules ?? []).forEach((r, ri) =>
    (r.clauses ?? []).forEach((c, ci) => (c.matches ?? []).forEach((m, mi) => checkMatch(m, `${where}: rules[${ri}].clauses[${ci}].matches[${mi}]`))),
  );
}

function checkAddress(a: Address): void {
  if (a.type === 'workload') checkWorkload(a.workload);
  else if (a.type === 'service') checkService(a.service);
  else fail('address', 'neither workload nor service is set');
}

/** Semantic validation of an Address the way the agent applies it; undefined when valid, else the reason. */
export function validateAddress(a: Address): string | undefined {
  return guard(() => checkAddress(a));
}

/** Semantic validation of an Authorization; undefined when valid, else the reason. */
export function validateAuthorization(a: Authorization): string | undefined {
  return guard(() => checkAuthorization(a));
}

function guard(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof Reject) return err.message;
    throw err;
  }
}

function decodeWith<T>(type: protobuf.Type, buf: Uint8Array, what: string, finish: (plain: Plain) => T, check: (v: T) => void): DecodeResult<T> {
  let msg: protobuf.Message;
  try {
    msg = type.decode(buf);
  } catch (err) {
    return { ok: false, reason: `${what}: malformed protobuf: ${(err as Error).message}` };
  }
  let value: T;
  try {
    value = finish(normalize(type, msg as unknown as Plain, ''));
  } catch (err) {
    if (err instanceof Reject) return { ok: false, reason: `${what}: ${err.message}` };
    throw err;
  }
  const reason = guard(() => check(value));
  return reason === undefined ? { ok: true, value } : { ok: false, reason };
}

/** Decodes and validates an istio.workload.Address. */
export function decodeAddress(buf: Uint8Array): DecodeResult<Address> {
  return decodeWith(
    workloadApiTypes().Address,
    buf,
    'address',
    (p): Address => {
      if (p.workload) return { type: 'workload', workload: p.workload as Workload };
      if (p.service) return { type: 'service', service: p.service as Service };
      throw new Reject('neither workload nor service is set');
    },
    checkAddress,
  );
}

/** Decodes and validates an istio.security.Authorization. */
export function decodeAuthorization(buf: Uint8Array): DecodeResult<Authorization> {
  return decodeWith(workloadApiTypes().Authorization, buf, 'authorization', (p) => p as Authorization, checkAuthorization);
}

/** Encodes an Address; throws WorkloadApiEncodeError if the agent would reject it (a producer bug). */
export function encodeAddress(a: Address): Buffer {
  const reason = validateAddress(a);
  if (reason !== undefined) throw new WorkloadApiEncodeError(reason);
  const T = workloadApiTypes().Address;
  const body = a.type === 'workload' ? { workload: a.workload } : { service: a.service };
  return Buffer.from(T.encode(T.fromObject(body)).finish());
}

/** Encodes an Authorization; throws WorkloadApiEncodeError if the agent would reject it. */
export function encodeAuthorization(a: Authorization): Buffer {
  const reason = validateAuthorization(a);
  if (reason !== undefined) throw new WorkloadApiEncodeError(reason);
  const T = workloadApiTypes().Authorization;
  return Buffer.from(T.encode(T.fromObject(a as Plain)).finish());
}
