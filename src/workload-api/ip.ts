/**
 * IP text <-> raw bytes (the wire form of Workload.addresses and
 * NetworkAddress.address), and the resource names the workload API uses:
 * Workload by uid, Service by `namespace/hostname`, Authorization by
 * `namespace/name`, and the `network/IP` alias keys of both address kinds.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Address, Authorization, Service, Workload } from './types.js';

/** Parses an IPv4 or IPv6 address into 4 or 16 bytes; undefined when it is not one. */
export function ipToBytes(ip: string): Uint8Array | undefined {
  if (isIPv4(ip)) return Uint8Array.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) return undefined;
  let text = ip;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // An embedded IPv4 tail (::ffff:1.2.3.4) is rewritten as two 16-bit groups.
  const lastColon = text.lastIndexOf(':');
  const maybeV4 = text.slice(lastColon + 1);
  if (isIPv4(maybeV4)) {
    const b = maybeV4.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  let groups: number[];
  const dbl = text.indexOf('::');
  if (dbl >= 0) {
    const head = parse(text.slice(0, dbl));
    const rest = parse(text.slice(dbl + 2));
    groups = [...head, ...new Array<number>(Math.max(0, 8 - head.length - rest.length)).fill(0), ...rest];
  } else {
    groups = parse(text);
  }
  if (groups.length !== 8) return undefined;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = (g >> 8) & 0xff;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** Formats 4 or 16 raw bytes as an IP (IPv6 in RFC 5952 short form); undefined for other lengths. */
export function bytesToIp(bytes: Uint8Array): string | undefined {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) return undefined;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  // WHATWG URL parsing applies the RFC 5952 compression rules for us.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** The `network/IP` alias key (empty network gives `/10.0.0.1`). */
export function networkIpKey(network: string, ip: string): string {
  return `${network}/${ip}`;
}

/** Splits `network/IP` (the IP is after the last '/'); undefined when the IP part is not an IP. */
export function parseNetworkIpKey(key: string): { network: string; ip: string } | undefined {
  const i = key.lastIndexOf('/');
  if (i < 0) return undefined;
  const ip = key.slice(i + 1);
  if (ipToBytes(ip) === undefined) return undefined;
  return { network: key.slice(0, i), ip };
}

export function workloadResourceName(w: Workload): string {
  return w.uid ?? '';
}

export function serviceResourceName(s: Service): string {
  return `${s.namespace ?? ''}/${s.hostname ?? ''}`;
}

/** The xDS resource name of an Address: the workload uid or `namespace/hostname`. */
export function addressResourceName(a: Address): string {
  return a.type === 'workload' ? workloadResourceName(a.workload) : serviceResourceName(a.service);
}

export function authorizationResourceName(a: Authorization): string {
  return `${a.namespace ?? ''}/${a.name ?? ''}`;
}
