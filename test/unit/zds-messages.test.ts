/** ZDS protobuf codec: golden bytes, round trips, unknown fields, malformed input as values. */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  decodeWorkloadRequest,
  decodeWorkloadResponse,
  decodeZdsHello,
  encodeWorkloadRequest,
  encodeWorkloadResponse,
  encodeZdsHello,
  ZDS_MAX_MESSAGE_SIZE,
  ZdsVersion,
  type WorkloadRequest,
} from '../../src/zds/messages.js';
import { readFields, readVarint, WireWriter } from '../../src/zds/wire.js';

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

function toHex(b: Buffer): string {
  return b.toString('hex').replace(/(..)(?!$)/g, '$1 ');
}

function decodedOk(buf: Buffer): WorkloadRequest {
  const r = decodeWorkloadRequest(buf);
  assert.ok(r.ok, `expected ${toHex(buf)} to decode, got ${JSON.stringify(r)}`);
  return r.value;
}

function rejected(buf: Buffer, reason?: RegExp): void {
  const r = decodeWorkloadRequest(buf);
  assert.equal(r.ok, false, `expected ${toHex(buf)} to be rejected, got ${JSON.stringify(r)}`);
  if (r.ok) return;
  assert.ok(r.reason.length > 0);
  if (reason) assert.match(r.reason, reason);
}

describe('golden bytes (computed by hand from the wire format)', () => {
  test('ZdsHello', () => {
    // field 1 varint: tag (1<<3)|0 = 0x08, value 1.
    assert.equal(toHex(encodeZdsHello({ version: ZdsVersion.V1 })), '08 01');
    assert.equal(toHex(encodeZdsHello()), '08 01');
    // proto3: the zero enum value is left off the wire.
    assert.equal(encodeZdsHello({ version: ZdsVersion.NOT_USED }).length, 0);
    assert.deepEqual(decodeZdsHello(hex('08 01')), { ok: true, value: { version: 1 } });
    assert.deepEqual(decodeZdsHello(hex('')), { ok: true, value: { version: 0 } });
    // open enum: an unknown version is kept as a number.
    assert.deepEqual(decodeZdsHello(hex('08 07')), { ok: true, value: { version: 7 } });
  });

  const vectors: Array<[string, WorkloadRequest, string]> = [
    // WorkloadRequest.add (1, len) { AddWorkload.uid (1) "u", workload_info (2) { name (1) "n" } }
    ['add with name', { kind: 'add', uid: 'u', workloadInfo: { name: 'n', namespace: '', serviceAccount: '' } }, '0a 08 0a 01 75 12 03 0a 01 6e'],
    ['add without info', { kind: 'add', uid: 'u' }, '0a 03 0a 01 75'],
    [
      'add with full info',
      { kind: 'add', uid: 'u', workloadInfo: { name: 'n', namespace: 'ns', serviceAccount: 'sa' } },
      '0a 10 0a 01 75 12 0b 0a 01 6e 12 02 6e 73 1a 02 73 61',
    ],
    // an empty WorkloadInfo is still present on the wire (message presence).
    ['add with empty info', { kind: 'add', uid: 'u', workloadInfo: { name: '', namespace: '', serviceAccount: '' } }, '0a 05 0a 01 75 12 00'],
    // WorkloadRequest.keep is field 5: tag (5<<3)|2 = 0x2a.
    ['keep', { kind: 'keep', uid: 'u' }, '2a 03 0a 01 75'],
    // WorkloadRequest.del (2) { DelWorkload.uid is field 2: tag 0x12 }
    ['del', { kind: 'del', uid: 'u' }, '12 03 12 01 75'],
    // WorkloadRequest.snapshot_sent (3): an empty message, present.
    ['snapshot_sent', { kind: 'snapshot_sent' }, '1a 00'],
    // an empty uid is left off; the oneof member is still present.
    ['add with empty uid', { kind: 'add', uid: '' }, '0a 00'],
  ];
  for (const [name, msg, bytes] of vectors) {
    test(`WorkloadRequest ${name}: ${bytes}`, () => {
      assert.equal(toHex(encodeWorkloadRequest(msg)), bytes);
      assert.deepEqual(decodedOk(hex(bytes)), msg);
    });
  }

  test('WorkloadRequest with a 200-byte uid uses a two-byte length varint', () => {
    const uid = 'x'.repeat(200);
    const enc = encodeWorkloadRequest({ kind: 'keep', uid });
    // KeepWorkload = 0a c8 01 <200> (203 bytes) -> 2a cb 01 <203>
    assert.equal(toHex(enc.subarray(0, 6)), '2a cb 01 0a c8 01');
    assert.equal(enc.length, 206);
    assert.deepEqual(decodedOk(enc), { kind: 'keep', uid });
  });

  test('WorkloadResponse ack and nack', () => {
    assert.equal(toHex(encodeWorkloadResponse({ ack: { error: '' } })), '0a 00');
    assert.equal(toHex(encodeWorkloadResponse({ ack: { error: 'x' } })), '0a 03 0a 01 78');
    assert.deepEqual(decodeWorkloadResponse(hex('0a 00')), { ok: true, value: { ack: { error: '' } } });
    assert.deepEqual(decodeWorkloadResponse(hex('0a 03 0a 01 78')), { ok: true, value: { ack: { error: 'x' } } });
  });
});

describe('proto3 decoding rules', () => {
  test('unknown fields of every wire type are skipped', () => {
    // before: field 9 varint 300 (48 ac 02), field 10 i64 (51 + 8 bytes), field 11 i32 (5d + 4 bytes),
    // field 12 len "zz" (62 02 7a 7a); then keep{uid:"u"}; then field 4 (unknown oneof slot in our version) len 0.
    const buf = hex('48 ac 02  51 01 02 03 04 05 06 07 08  5d 01 02 03 04  62 02 7a 7a  2a 03 0a 01 75  22 00');
    assert.deepEqual(decodedOk(buf), { kind: 'keep', uid: 'u' });
  });

  test('unknown fields inside nested messages are skipped, including reserved trust_domain (4)', () => {
    // AddWorkload { uid "u", field 7 varint 1, workload_info { name "n", trust_domain(4) "td", field 9 varint 5 } }
    const info = '0a 01 6e 22 02 74 64 48 05';
    const add = `0a 01 75 38 01 12 09 ${info}`;
    const buf = hex(`0a 10 ${add}`);
    assert.deepEqual(decodedOk(buf), { kind: 'add', uid: 'u', workloadInfo: { name: 'n', namespace: '', serviceAccount: '' } });
  });

  test('the last oneof member wins; repeats of one member merge', () => {
    assert.deepEqual(decodedOk(hex('0a 03 0a 01 75  12 03 12 01 76')), { kind: 'del', uid: 'v' });
    // add{uid u} then add{workload_info{name n}}: merged.
    assert.deepEqual(decodedOk(hex('0a 03 0a 01 75  0a 05 12 03 0a 01 6e')), {
      kind: 'add',
      uid: 'u',
      workloadInfo: { name: 'n', namespace: '', serviceAccount: '' },
    });
    // the last value of a scalar wins.
    assert.deepEqual(decodedOk(hex('2a 06 0a 01 61 0a 01 62')), { kind: 'keep', uid: 'b' });
  });

  test('Ack merges and skips unknown fields', () => {
    assert.deepEqual(decodeWorkloadResponse(hex('10 01 0a 03 0a 01 78 0a 03 0a 01 79')), { ok: true, value: { ack: { error: 'y' } } });
  });
});

describe('malformed input is a value, never a throw', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['truncated tag varint', '80', /truncated varint/],
    ['truncated value varint', '08', /truncated varint/],
    ['truncated value varint with continuation', '48 80', /truncated varint/],
    ['truncated length varint', '0a', /truncated varint/],
    ['length past the end', '0a 05 0a 01', /past the end/],
    ['nested length past the end', '0a 02 0a 05', /past the end/],
    ['varint longer than 10 bytes', '48 ff ff ff ff ff ff ff ff ff ff 01', /overflows 64 bits|longer than 10/],
    ['varint of 10 bytes overflowing 64 bits', '48 ff ff ff ff ff ff ff ff ff 02', /overflows 64 bits/],
    ['wire type 3 (start group)', '0b', /wire type 3/],
    ['wire type 4 (end group)', '0c', /wire type 4/],
    ['wire type 6', '0e', /wire type 6/],
    ['wire type 7', '0f 00', /wire type 7/],
    ['field number 0 (varint)', '00 01', /field number 0/],
    ['field number 0 (len)', '02 00', /field number 0/],
    ['tag beyond 32 bits', '80 80 80 80 10 00', /out of range/],
    ['truncated i64', '51 01 02 03', /past the end/],
    ['truncated i32', '5d 01', /past the end/],
    ['known field with the wrong wire type', '08 01', /wire type 0, expected 2/],
    ['nested known field with the wrong wire type', '0a 02 08 01', /AddWorkload.uid has wire type 0/],
    ['invalid utf-8 in uid', '0a 03 0a 01 ff', /not valid utf-8/],
    ['invalid utf-8 in workload_info.name', '0a 05 12 03 0a 01 c3', /not valid utf-8/],
    ['malformed first occurrence of a merged member', '0a 01 0a  0a 01 01', /AddWorkload|WorkloadRequest.add/],
    ['missing oneof', '', /no known payload/],
    ['only an unknown oneof member', '22 00', /no known payload/],
  ];
  for (const [name, bytes, reason] of cases) {
    test(name, () => rejected(hex(bytes), reason));
  }

  test('messages over 1024 bytes are rejected with a clear reason', () => {
    // a valid keep followed by an unknown field padding the message to 1025 bytes.
    const head = hex('2a 03 0a 01 75');
    const padLen = ZDS_MAX_MESSAGE_SIZE + 1 - head.length - 3;
    const buf = Buffer.concat([head, new WireWriter().bytes(12, Buffer.alloc(padLen)).finish()]);
    assert.equal(buf.length, ZDS_MAX_MESSAGE_SIZE + 1);
    rejected(buf, /1025 bytes; the limit is 1024/);
    // exactly 1024 is fine.
    const exact = Buffer.concat([head, new WireWriter().bytes(12, Buffer.alloc(padLen - 1)).finish()]);
    assert.equal(exact.length, ZDS_MAX_MESSAGE_SIZE);
    assert.deepEqual(decodedOk(exact), { kind: 'keep', uid: 'u' });
    for (const decode of [decodeZdsHello, decodeWorkloadResponse]) {
      const r = decode(Buffer.alloc(2000));
      assert.equal(r.ok, false);
    }
  });

  test('ZdsHello and WorkloadResponse reject malformed input', () => {
    assert.equal(decodeZdsHello(hex('0a 00')).ok, false); // version with wire type 2
    assert.equal(decodeZdsHello(hex('08')).ok, false);
    assert.equal(decodeWorkloadResponse(hex('')).ok, false); // no ack
    assert.equal(decodeWorkloadResponse(hex('08 00')).ok, false); // ack as varint
    assert.equal(decodeWorkloadResponse(hex('0a 03 0a 05 78')).ok, false);
  });
});

describe('wire primitives', () => {
  test('varint encode/decode at the edges', () => {
    for (const v of [0n, 1n, 127n, 128n, 300n, 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n]) {
      const enc = new WireWriter().varint(v).finish();
      const dec = readVarint(enc, 0);
      assert.ok(dec.ok);
      assert.equal(dec.value.value, v);
      assert.equal(dec.value.next, enc.length);
    }
    assert.equal(toHex(new WireWriter().varint(300).finish()), 'ac 02');
    // negative int32 enums are sign-extended to 10 bytes.
    assert.equal(new WireWriter().varint(-1).finish().length, 10);
    assert.deepEqual(decodeZdsHello(new WireWriter().uint(1, -1).finish()), { ok: true, value: { version: -1 } });
  });

  test('readFields reports fields in order', () => {
    const r = readFields(hex('08 96 01 12 02 68 69'));
    assert.ok(r.ok);
    assert.equal(r.value.length, 2);
    assert.deepEqual(r.value[0], { field: 1, wireType: 0, value: 150n });
    assert.equal(r.value[1]?.field, 2);
  });
});

describe('properties', () => {
  test('decoders never throw on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1100 }), (bytes) => {
        const buf = Buffer.from(bytes);
        for (const r of [decodeWorkloadRequest(buf), decodeWorkloadResponse(buf), decodeZdsHello(buf)]) {
          if (!r.ok) assert.ok(typeof r.reason === 'string' && r.reason.length > 0);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('decoders never throw on mutated valid messages', () => {
    const seed = encodeWorkloadRequest({ kind: 'add', uid: 'pod-uid', workloadInfo: { name: 'n', namespace: 'ns', serviceAccount: 'sa' } });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(seed.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(seed.length), (edits, cut) => {
        const buf = Buffer.from(seed);
        for (const [i, b] of edits) buf[i] = b;
        const r = decodeWorkloadRequest(buf.subarray(0, cut));
        assert.equal(typeof r.ok, 'boolean');
      }),
      { numRuns: 2000 },
    );
  });

  const text = fc.string({ unit: 'binary', maxLength: 40 });
  const info = fc.record({ name: text, namespace: text, serviceAccount: text });
  const request: fc.Arbitrary<WorkloadRequest> = fc.oneof(
    fc.record({ kind: fc.constant('add' as const), uid: text }),
    fc.record({ kind: fc.constant('add' as const), uid: text, workloadInfo: info }),
    fc.record({ kind: fc.constant('keep' as const), uid: text }),
    fc.record({ kind: fc.constant('del' as const), uid: text }),
    fc.constant({ kind: 'snapshot_sent' as const }),
  );

  test('WorkloadRequest encode -> decode round trip (unicode included)', () => {
    fc.assert(
      fc.property(request, (msg) => {
        // fc.record builds null-prototype objects; compare against plain ones.
        assert.deepEqual(decodedOk(encodeWorkloadRequest(msg)), JSON.parse(JSON.stringify(msg)));
      }),
      { numRuns: 1000 },
    );
  });

  test('WorkloadResponse and ZdsHello round trip', () => {
    fc.assert(
      fc.property(text, fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (error, version) => {
        assert.deepEqual(decodeWorkloadResponse(encodeWorkloadResponse({ ack: { error } })), { ok: true, value: { ack: { error } } });
        assert.deepEqual(decodeZdsHello(encodeZdsHello({ version })), { ok: true, value: { version } });
      }),
      { numRuns: 500 },
    );
  });
});
