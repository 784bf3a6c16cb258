/**
 * The non-pseudo headers ztunnel puts on an HBONE CONNECT, and their parsers.
 * - `forwarded`: `for="<client ip:port>"`, plus `;host=<service>` when the
 *   connection was addressed to a service (RFC 7239 syntax).
 * - `baggage`: W3C baggage with the source workload's k8s attributes; the
 *   inbound side uses it only when the peer is a gateway (later issues).
 * - `traceparent`: W3C trace context, random per outbound connection.
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';

export interface SourceWorkloadInfo {
  cluster?: string;
  namespace?: string;
  /** `pod`, `deployment`, `job` or `cronjob` and the name, as ztunnel's `k8s.<kind>.name`. */
  workloadKind?: 'pod' | 'deployment' | 'job' | 'cronjob';
  workloadName?: string;
  canonicalService?: string;
  canonicalRevision?: string;
  region?: string;
  zone?: string;
}

export interface ForwardedInfo {
  for?: string;
  host?: string;
}

export interface TraceParent {
  traceId: string;
  parentId: string;
  flags: string;
}

export function formatBaggage(src: SourceWorkloadInfo): string {
  const parts: string[] = [];
  const add = (k: string, v: string | undefined): void => {
    if (!v) return;
    try {
      parts.push(`${k}=${encodeURIComponent(v)}`);
    } catch {
      // a value with a lone surrogate cannot be encoded; baggage is advisory, so skip it
    }
  };
  add('k8s.cluster.name', src.cluster);
  add('k8s.namespace.name', src.namespace);
  if (src.workloadName) add(`k8s.${src.workloadKind ?? 'pod'}.name`, src.workloadName);
  add('service.name', src.canonicalService);
  add('service.version', src.canonicalRevision);
  add('cloud.region', src.region);
  add('cloud.availability_zone', src.zone);
  return parts.join(',');
}

/** Parses W3C baggage into a flat map; malformed members are skipped (baggage is advisory). */
export function parseBaggage(raw: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (typeof raw !== 'string') return out;
  for (const member of raw.split(',').slice(0, 64)) {
    const [kv] = member.split(';');
    const eq = kv?.indexOf('=') ?? -1;
    if (!kv || eq <= 0) continue;
    const key = kv.slice(0, eq).trim();
    if (key === '') continue;
    try {
      out.set(key, decodeURIComponent(kv.slice(eq + 1).trim()));
    } catch {
      continue;
    }
  }
  return out;
}

function quoteForwardedValue(v: string): string {
  return `"${v.replace(/["\\]/g, '\\$&')}"`;
}

export function formatForwarded(clientIp: string, clientPort: number, serviceHost?: string): string {
  const forValue = isIP(clientIp) === 6 ? `[${clientIp}]:${clientPort}` : `${clientIp}:${clientPort}`;
  return `for=${quoteForwardedValue(forValue)}${serviceHost ? `;host=${serviceHost}` : ''}`;
}

/** Reads the first element of a `forwarded` header; unknown parameters are ignored. */
export function parseForwarded(raw: unknown): ForwardedInfo {
  if (typeof raw !== 'string') return {};
  const first = raw.split(',')[0] ?? '';
  const info: ForwardedInfo = {};
  for (const pair of first.split(';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const key = pair.slice(0, eq).trim().toLowerCase();
    let value = pair.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    if (key === 'for') info.for = value;
    else if (key === 'host') info.host = value;
  }
  return info;
}

export function newTraceParent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-00`;
}

export function parseTraceParent(raw: unknown): TraceParent | undefined {
  if (typeof raw !== 'string') return undefined;
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(raw.trim());
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2] ?? '') || /^0+$/.test(m[3] ?? '')) return undefined;
  return { traceId: m[2] as string, parentId: m[3] as string, flags: m[4] as string };
}
