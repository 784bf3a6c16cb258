/**
 * SOCKS5 (RFC 1928), the subset ztunnel offers on 15080: no authentication,
 * CONNECT only, IPv4 / IPv6 / domain names. Until in-pod capture lands it is
 * how an unmodified client (curl --socks5-hostname) enters the mesh.
 * The parsers are pure and incremental: they never throw on bad input.
 */
import { isIPv4, isIPv6 } from 'node:net';

export const SOCKS_VERSION = 5;
export const METHOD_NO_AUTH = 0x00;
export const METHOD_NONE_ACCEPTABLE = 0xff;
export const CMD_CONNECT = 0x01;

export enum SocksReply {
  Succeeded = 0x00,
  GeneralFailure = 0x01,
  NotAllowed = 0x02,
  NetworkUnreachable = 0x03,
  HostUnreachable = 0x04,
  ConnectionRefused = 0x05,
  CommandNotSupported = 0x07,
  AddressTypeNotSupported = 0x08,
}

export type ParseResult<T> = { kind: 'more' } | { kind: 'ok'; value: T; consumed: number } | { kind: 'error'; reason: string; reply?: SocksReply };

export interface SocksRequest {
  /** An IP literal or a domain name. */
  host: string;
  port: number;
  addressType: 'ipv4' | 'ipv6' | 'domain';
}

export function parseGreeting(buf: Buffer): ParseResult<{ methods: number[] }> {
  if (buf.length < 2) return { kind: 'more' };
  if (buf[0] !== SOCKS_VERSION) return { kind: 'error', reason: `not socks5 (version byte ${buf[0]})` };
  const n = buf[1] as number;
  if (n === 0) return { kind: 'error', reason: 'socks5 greeting offers no methods' };
  if (buf.length < 2 + n) return { kind: 'more' };
  return { kind: 'ok', value: { methods: [...buf.subarray(2, 2 + n)] }, consumed: 2 + n };
}

export function parseRequest(buf: Buffer): ParseResult<SocksRequest> {
  if (buf.length < 4) return { kind: 'more' };
  if (buf[0] !== SOCKS_VERSION) return { kind: 'error', reason: `bad socks5 request version ${buf[0]}`, reply: SocksReply.GeneralFailure };
  if (buf[1] !== CMD_CONNECT) return { kind: 'error', reason: `socks5 command ${buf[1]} is not supported (only CONNECT)`, reply: SocksReply.CommandNotSupported };
  const atyp = buf[3];
  let host: string;
  let off: number;
  let addressType: SocksRequest['addressType'];
  if (atyp === 0x01) {
    if (buf.length < 10) return { kind: 'more' };
    host = [...buf.subarray(4, 8)].join('.');
    off = 8;
    addressType = 'ipv4';
  } else if (atyp === 0x04) {
    if (buf.length < 22) return { kind: 'more' };
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(4 + i * 2).toString(16));
    host = groups.join(':');
    off = 20;
    addressType = 'ipv6';
  } else if (atyp === 0x03) {
    if (buf.length < 5) return { kind: 'more' };
    const len = buf[4] as number;
    if (len === 0) return { kind: 'error', reason: 'socks5 domain name is empty', reply: SocksReply.GeneralFailure };
    if (buf.length < 5 + len + 2) return { kind: 'more' };
    host = buf.subarray(5, 5 + len).toString('latin1');
    if (!/^[A-Za-z0-9.-]+$/.test(host)) return { kind: 'error', reason: 'socks5 domain name has invalid characters', reply: SocksReply.GeneralFailure };
    off = 5 + len;
    addressType = isIPv4(host) || isIPv6(host) ? (isIPv4(host) ? 'ipv4' : 'ipv6') : 'domain';
  } else {
    return { kind: 'error', reason: `socks5 address type ${atyp} is not supported`, reply: SocksReply.AddressTypeNotSupported };
  }
  const port = buf.readUInt16BE(off);
  if (port === 0) return { kind: 'error', reason: 'socks5 port 0 is invalid', reply: SocksReply.GeneralFailure };
  return { kind: 'ok', value: { host, port, addressType }, consumed: off + 2 };
}

export function encodeReply(code: SocksReply): Buffer {
  // BND.ADDR/PORT are zero: clients of a transparent tunnel do not use them.
  return Buffer.from([SOCKS_VERSION, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
}
