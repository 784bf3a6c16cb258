/**
 * Parsing of the CONNECT `:authority`. HBONE targets are `ip:port` or
 * `[ipv6]:port`; anything else is a 400. Returned as a value, not thrown,
 * because a bad authority is an expected input on port 15008.
 */
import { isIP } from 'node:net';

export interface Authority {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

export type AuthorityResult = { ok: true; value: Authority } | { ok: false; reason: string };

const MAX_AUTHORITY_LENGTH = 64;

export function parseAuthority(raw: unknown): AuthorityResult {
  if (typeof raw !== 'string' || raw.length === 0) return { ok: false, reason: 'missing :authority' };
  if (raw.length > MAX_AUTHORITY_LENGTH) return { ok: false, reason: 'authority too long' };
  let host: string;
  let portText: string;
  if (raw.startsWith('[')) {
    const close = raw.indexOf(']');
    if (close < 0 || raw[close + 1] !== ':') return { ok: false, reason: `malformed authority '${raw}'` };
    host = raw.slice(1, close);
    portText = raw.slice(close + 2);
    if (isIP(host) !== 6 || host.includes('%')) return { ok: false, reason: `authority host '${host}' is not an ipv6 address` };
  } else {
    const colon = raw.lastIndexOf(':');
    if (colon <= 0) return { ok: false, reason: `authority '${raw}' is not ip:port` };
    host = raw.slice(0, colon);
    portText = raw.slice(colon + 1);
    if (isIP(host) !== 4) return { ok: false, reason: `authority host '${host}' is not an ipv4 address` };
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return { ok: false, reason: `authority port '${portText}' is not a number` };
  const port = Number(portText);
  if (port < 1 || port > 65535) return { ok: false, reason: `authority port ${port} is out of range` };
  return { ok: true, value: { host, port, family: isIP(host) === 6 ? 6 : 4 } };
}

export function formatAuthority(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
