/** SOCKS5 (RFC 1928) greeting/request parsers: incremental, CONNECT only, never throwing. */
import { strict as assert } from 'node:assert';
import { isIPv6, SocketAddress } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { encodeReply, parseGreeting, parseRequest, SocksReply, type ParseResult } from '../../src/agent/socks5.js';

const b = (...bytes: number[]): Buffer => Buffer.from(bytes);
const port16 = (p: number): number[] => [p >> 8, p & 0xff];

/** Feeds `full` one byte at a time: every proper prefix must ask for more, the whole must parse. */
function byteByByte<T>(parse: (buf: Buffer) => ParseResult<T>, full: Buffer): T {
  for (let n = 0; n < full.length; n++) {
    assert.deepEqual(parse(full.subarray(0, n)), { kind: 'more' }, `prefix of ${n} bytes`);
  }
  const r = parse(full);
  assert.equal(r.kind, 'ok', JSON.stringify(r));
  if (r.kind !== 'ok') throw new Error('unreachable');
  assert.equal(r.consumed, full.length);
  return r.value;
}

function error<T>(r: ParseResult<T>, reason: RegExp, reply?: SocksReply): void {
  assert.equal(r.kind, 'error', JSON.stringify(r));
  if (r.kind !== 'error') return;
  assert.match(r.reason, reason);
  assert.equal(r.reply, reply);
}

describe('parseGreeting', () => {
  test('is incremental and returns the offered methods', () => {
    assert.deepEqual(byteByByte(parseGreeting, b(5, 1, 0)), { methods: [0] });
    assert.deepEqual(byteByByte(parseGreeting, b(5, 3, 0, 2, 0x80)), { methods: [0, 2, 0x80] });
  });

  test('consumes only the greeting when the request follows in the same read', () => {
    const r = parseGreeting(b(5, 1, 0, 5, 1, 0, 1));
    assert.deepEqual(r, { kind: 'ok', value: { methods: [0] }, consumed: 3 });
  });

  test('rejects other versions and an empty method list', () => {
    error(parseGreeting(b(4, 1, 0)), /not socks5 \(version byte 4\)/);
    error(parseGreeting(b(0x47, 0x45)), /not socks5/); // "GET ..."
    error(parseGreeting(b(5, 0)), /offers no methods/);
  });
});

describe('parseRequest', () => {
  test('IPv4 CONNECT, byte by byte', () => {
    const req = b(5, 1, 0, 1, 10, 0, 1, 11, ...port16(8080));
    assert.deepEqual(byteByByte(parseRequest, req), { host: '10.0.1.11', port: 8080, addressType: 'ipv4' });
  });

  test('IPv6 CONNECT, byte by byte', () => {
    const addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x01];
    const v = byteByByte(parseRequest, b(5, 1, 0, 4, ...addr, ...port16(443)));
    assert.equal(v.addressType, 'ipv6');
    assert.equal(v.port, 443);
    assert.ok(isIPv6(v.host), v.host);
    assert.equal(new SocketAddress({ address: v.host, family: 'ipv6' }).address, '2001:db8::a01');
    const loop = parseRequest(b(5, 1, 0, 4, ...Array<number>(15).fill(0), 1, ...port16(80)));
    assert.equal(loop.kind, 'ok');
    if (loop.kind === 'ok') assert.equal(new SocketAddress({ address: loop.value.host, family: 'ipv6' }).address, '::1');
  });

  test('domain CONNECT, byte by byte', () => {
    const name = 'web.shop.svc.cluster.local';
    const req = b(5, 1, 0, 3, name.length, ...Buffer.from(name), ...port16(80));
    assert.deepEqual(byteByByte(parseRequest, req), { host: name, port: 80, addressType: 'domain' });
    const short = b(5, 1, 0, 3, 3, ...Buffer.from('web'), ...port16(65535));
    assert.deepEqual(byteByByte(parseRequest, short), { host: 'web', port: 65535, addressType: 'domain' });
  });

  test('an IP literal sent as a domain is typed as an ip', () => {
    const ip = '10.96.0.10';
    const r = parseRequest(b(5, 1, 0, 3, ip.length, ...Buffer.from(ip), ...port16(80)));
    assert.deepEqual(r, { kind: 'ok', value: { host: ip, port: 80, addressType: 'ipv4' }, consumed: 5 + ip.length + 2 });
  });

  test('consumes only the request when data follows', () => {
    const r = parseRequest(b(5, 1, 0, 1, 127, 0, 0, 1, ...port16(9), 0xde, 0xad));
    assert.equal(r.kind, 'ok');
    if (r.kind === 'ok') assert.equal(r.consumed, 10);
  });

  test('BIND and UDP ASSOCIATE are refused with CommandNotSupported, before the address arrives', () => {
    for (const cmd of [0x02, 0x03, 0x00, 0xff]) {
      error(parseRequest(b(5, cmd, 0, 1)), /command \d+ is not supported/, SocksReply.CommandNotSupported);
    }
  });

  test('unknown address types are refused with AddressTypeNotSupported', () => {
    for (const atyp of [0x00, 0x02, 0x05, 0xff]) {
      error(parseRequest(b(5, 1, 0, atyp, 1, 2, 3, 4, 0, 80)), new RegExp(`address type ${atyp} is not supported`), SocksReply.AddressTypeNotSupported);
    }
  });

  test('empty and invalid domain names are refused', () => {
    error(parseRequest(b(5, 1, 0, 3, 0, ...port16(80))), /domain name is empty/, SocksReply.GeneralFailure);
    for (const bad of ['a b', 'web_svc', 'web/x', 'ünï', 'a:b', 'x\u0000y']) {
      const raw = Buffer.from(bad, 'latin1');
      error(parseRequest(b(5, 1, 0, 3, raw.length, ...raw, ...port16(80))), /invalid characters/, SocksReply.GeneralFailure);
    }
  });

  test('port 0 is refused for every address type', () => {
    error(parseRequest(b(5, 1, 0, 1, 10, 0, 0, 1, 0, 0)), /port 0 is invalid/, SocksReply.GeneralFailure);
    error(parseRequest(b(5, 1, 0, 4, ...Array<number>(16).fill(1), 0, 0)), /port 0/, SocksReply.GeneralFailure);
    error(parseRequest(b(5, 1, 0, 3, 1, 0x61, 0, 0)), /port 0/, SocksReply.GeneralFailure);
  });

  test('a wrong version is refused with GeneralFailure', () => {
    error(parseRequest(b(4, 1, 0, 1, 10, 0, 0, 1, 0, 80)), /bad socks5 request version 4/, SocksReply.GeneralFailure);
  });
});

describe('encodeReply', () => {
  test('is VER, REP, RSV, ATYP=ipv4 and a zero bound address', () => {
    assert.deepEqual([...encodeReply(SocksReply.Succeeded)], [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for (const [code, byte] of [
      [SocksReply.GeneralFailure, 1],
      [SocksReply.NotAllowed, 2],
      [SocksReply.NetworkUnreachable, 3],
      [SocksReply.HostUnreachable, 4],
      [SocksReply.ConnectionRefused, 5],
      [SocksReply.CommandNotSupported, 7],
      [SocksReply.AddressTypeNotSupported, 8],
    ] as const) {
      assert.deepEqual([...encodeReply(code)], [5, byte, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
  });
});

describe('socks5 parser properties', () => {
  const bytes = fc.uint8Array({ maxLength: 300 });
  /** Mostly-valid requests, so the deeper branches are reached too. */
  const requestLike = fc
    .tuple(fc.constantFrom(5, 5, 5, 4), fc.constantFrom(1, 1, 1, 2), fc.integer({ min: 0, max: 255 }), fc.constantFrom(1, 3, 4, 0, 2), fc.uint8Array({ maxLength: 270 }))
    .map(([v, c, r, a, rest]) => new Uint8Array([v, c, r, a, ...rest]));

  function sane<T>(r: ParseResult<T>, len: number): void {
    assert.ok(r.kind === 'more' || r.kind === 'ok' || r.kind === 'error');
    if (r.kind === 'ok') assert.ok(r.consumed > 0 && r.consumed <= len);
    if (r.kind === 'error') assert.ok(r.reason.length > 0);
  }

  test('parseGreeting never throws', () => {
    fc.assert(
      fc.property(bytes, (u8) => {
        const buf = Buffer.from(u8);
        sane(parseGreeting(buf), buf.length);
      }),
    );
  });

  test('parseRequest never throws and an ok request has a valid port', () => {
    fc.assert(
      fc.property(fc.oneof(bytes, requestLike), (u8) => {
        const buf = Buffer.from(u8);
        const r = parseRequest(buf);
        sane(r, buf.length);
        if (r.kind === 'ok') assert.ok(r.value.port >= 1 && r.value.port <= 65535 && r.value.host.length > 0);
      }),
    );
  });

  test('a prefix of a parseable request is never an error', () => {
    fc.assert(
      fc.property(requestLike, (u8) => {
        const buf = Buffer.from(u8);
        const full = parseRequest(buf);
        if (full.kind !== 'ok') return;
        for (let n = 0; n < full.consumed; n++) assert.equal(parseRequest(buf.subarray(0, n)).kind, 'more');
      }),
    );
  });
});
