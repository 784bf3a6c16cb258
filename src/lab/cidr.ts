/**
 * IPv4 address and CIDR arithmetic for the lab's address plan. The lab is
 * IPv4-only (like a default kind cluster), so plain 32-bit integers suffice.
 */

export interface Cidr {
  /** Network address as an unsigned 32-bit integer. */
  readonly base: number;
  readonly prefix: number;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses dotted-quad IPv4; undefined when it is not one. */
export function parseIpv4(s: string): number | undefined {
  const m = IPV4.exec(s);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] ?? '';
    // Reject leading zeros: "010" is octal to some tools and decimal to others.
    if (part.length > 1 && part.startsWith('0')) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    n = n * 256 + octet;
  }
  return n;
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses `a.b.c.d/p`; undefined when malformed or when host bits are set. */
export function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseIpv4(s.slice(0, slash));
  const ptext = s.slice(slash + 1);
  if (addr === undefined || !/^\d{1,2}$/.test(ptext)) return undefined;
  const prefix = Number(ptext);
  if (prefix > 32) return undefined;
  if ((addr & ~mask(prefix)) >>> 0 !== 0) return undefined;
  return { base: addr, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIpv4(c.base)}/${c.prefix}`;
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return ((ip & mask(c.prefix)) >>> 0) === c.base;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.prefix <= b.prefix ? cidrContains(a, b.base) : cidrContains(b, a.base);
}

/** The subnet of `prefix` length inside `c` that contains `ip`. */
export function subnetOf(ip: number, prefix: number): Cidr {
  return { base: (ip & mask(prefix)) >>> 0, prefix };
}

/** The `index`-th subnet of length `prefix` inside `c` (index 0 is the first). */
export function nthSubnet(c: Cidr, prefix: number, index: number): Cidr | undefined {
  if (prefix < c.prefix || index < 0 || index >= 2 ** (prefix - c.prefix)) return undefined;
  return { base: c.base + index * 2 ** (32 - prefix), prefix };
}
