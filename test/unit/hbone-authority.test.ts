/** The CONNECT `:authority` parser: `ip:port` / `[ipv6]:port` only, rejections returned as values. */
import { strict as assert } from 'node:assert';
import { SocketAddress } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { formatAuthority, parseAuthority, type AuthorityResult } from '../../src/hbone/authority.js';

function ok(raw: unknown): { host: string; port: number; family: 4 | 6 } {
  const r = parseAuthority(raw);
  assert.ok(r.ok, `expected ${JSON.stringify(raw)} to parse, got ${JSON.stringify(r)}`);
  return r.value;
}

function rejected(raw: unknown, reason: RegExp): void {
  const r: AuthorityResult = parseAuthority(raw);
  assert.equal(r.ok, false, `expected ${JSON.stringify(raw)} to be rejected, got ${JSON.stringify(r)}`);
  if (r.ok) return;
  assert.equal(typeof r.reason, 'string');
  assert.ok(r.reason.length > 0);
  assert.match(r.reason, reason);
}

/** Node's own textual form of an address (lowercase, zero-compressed). */
function norm(host: string): string {
  return new SocketAddress({ address: host, family: host.includes(':') ? 'ipv6' : 'ipv4' }).address;
}

describe('parseAuthority', () => {
  test('accepts ipv4:port', () => {
    assert.deepEqual(ok('10.0.1.11:8080'), { host: '10.0.1.11', port: 8080, family: 4 });
    assert.deepEqual(ok('127.0.0.1:1'), { host: '127.0.0.1', port: 1, family: 4 });
    assert.deepEqual(ok('255.255.255.255:65535'), { host: '255.255.255.255', port: 65535, family: 4 });
  });

  test('accepts [ipv6]:port and strips the brackets', () => {
    assert.deepEqual(ok('[::1]:80'), { host: '::1', port: 80, family: 6 });
    assert.deepEqual(ok('[fd00:10::b]:15008'), { host: 'fd00:10::b', port: 15008, family: 6 });
    assert.deepEqual(ok('[::ffff:10.0.0.1]:443'), { host: '::ffff:10.0.0.1', port: 443, family: 6 });
  });

  test('rejects a missing authority', () => {
    for (const raw of [undefined, null, '', 80, ['1.2.3.4:80'], {}]) rejected(raw, /missing :authority/);
  });

  test('rejects hostnames', () => {
    rejected('example.com:80', /'example\.com' is not an ipv4 address/);
    rejected('localhost:80', /not an ipv4 address/);
    rejected('web.shop.svc.cluster.local:8080', /not an ipv4 address/);
  });

  test('rejects an authority without a port', () => {
    rejected('10.0.0.1', /is not ip:port/);
    rejected(':80', /is not ip:port/);
    rejected('10.0.0.1:', /port '' is not a number/);
    rejected('[::1]', /malformed authority/);
    rejected('[::1]:', /port '' is not a number/);
    rejected('[::1]80', /malformed authority/);
    rejected('[::1', /malformed authority/);
  });

  test('rejects ports out of range', () => {
    rejected('10.0.0.1:0', /port 0 is out of range/);
    rejected('10.0.0.1:65536', /port 65536 is out of range/);
    rejected('10.0.0.1:99999', /out of range/);
    rejected('[::1]:0', /out of range/);
    rejected('[::1]:65536', /out of range/);
  });

  test('rejects non-digit ports', () => {
    for (const p of ['http', '-1', '+80', '8 0', ' 80', '80 ', '0x50', '1e3', '8080a', '123456', '٨٠']) {
      rejected(`10.0.0.1:${p}`, /is not a number/);
    }
    rejected('[::1]:abc', /is not a number/);
  });

  test('rejects authorities longer than 64 characters', () => {
    const long = `[${'0:'.repeat(30)}:1]:80`;
    assert.ok(long.length > 64);
    rejected(long, /too long/);
    rejected('1'.repeat(65), /too long/);
    // The limit is on length alone: the longest real ipv6 authority fits.
    assert.equal(ok('[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535').port, 65535);
  });

  test('rejects ipv4 in brackets', () => {
    rejected('[10.0.0.1]:80', /'10\.0\.0\.1' is not an ipv6 address/);
    rejected('[example.com]:80', /not an ipv6 address/);
  });

  test('rejects ipv6 zone ids (a scope is meaningless across nodes)', () => {
    rejected('[fe80::1%eth0]:80', /not an ipv6 address/);
  });

  test('rejects ipv6 without brackets', () => {
    rejected('::1:80', /not an ipv4 address/);
    rejected('fd00::1:8080', /not an ipv4 address/);
    rejected('2001:db8::1', /not an ipv4 address/);
  });
});

describe('formatAuthority', () => {
  test('brackets ipv6 only', () => {
    assert.equal(formatAuthority('10.0.1.11', 8080), '10.0.1.11:8080');
    assert.equal(formatAuthority('::1', 80), '[::1]:80');
    assert.equal(formatAuthority('fd00::b', 15008), '[fd00::b]:15008');
  });

  test('round-trips through parseAuthority', () => {
    for (const [host, port, family] of [
      ['10.0.1.11', 8080, 4],
      ['::1', 80, 6],
      ['fd00:10::b', 65535, 6],
    ] as const) {
      assert.deepEqual(ok(formatAuthority(host, port)), { host, port, family });
    }
  });
});

describe('authority properties', () => {
  const port = fc.integer({ min: 1, max: 65535 });

  test('parseAuthority(formatAuthority(ipv4, port)) gives back the host and port', () => {
    fc.assert(
      fc.property(fc.ipV4(), port, (h, p) => {
        const v = ok(formatAuthority(h, p));
        assert.equal(norm(v.host), norm(h));
        assert.equal(v.port, p);
        assert.equal(v.family, 4);
      }),
    );
  });

  test('parseAuthority(formatAuthority(ipv6, port)) gives back the host and port', () => {
    fc.assert(
      fc.property(fc.ipV6(), port, (h, p) => {
        const v = ok(formatAuthority(h, p));
        assert.equal(norm(v.host), norm(h));
        assert.equal(v.port, p);
        assert.equal(v.family, 6);
      }),
    );
  });

  test('parseAuthority never throws and always explains a rejection', () => {
    const check = (raw: unknown): void => {
      const r = parseAuthority(raw);
      if (r.ok) {
        assert.ok(r.value.port >= 1 && r.value.port <= 65535);
        assert.ok(r.value.family === 4 || r.value.family === 6);
      } else {
        assert.ok(r.reason.length > 0);
      }
    };
    fc.assert(fc.property(fc.string(), check));
    fc.assert(fc.property(fc.string({ unit: 'binary' }), check));
    fc.assert(fc.property(fc.stringMatching(/^\[?[0-9a-f:.]{0,50}\]?:?[0-9]{0,6}$/), check));
    fc.assert(fc.property(fc.anything(), check));
  });
});
