/** Delta xDS bookkeeping: store diffs, subscription deltas, initial versions, NACK-no-resend, nonces, codec round trip. */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { decodeDeltaRequest, decodeDeltaResponse, encodeDeltaRequest, encodeDeltaResponse, fromPbStruct, toPbStruct, type XdsResource } from '../../src/xds/codec.js';
import { NonceSource, ResourceStore, Subscription } from '../../src/xds/delta-state.js';

const T = 'type.googleapis.com/istio.workload.Address';

function res(name: string, version: string): XdsResource {
  return { name, version, body: Buffer.from(`${name}@${version}`) };
}

function names(rs: XdsResource[]): string[] {
  return rs.map((r) => `${r.name}@${r.version}`);
}

describe('ResourceStore', () => {
  test('update reports only real changes and bumps the system version once per change set', () => {
    const s = new ResourceStore(T);
    assert.equal(s.systemVersion, '0');
    assert.deepEqual(s.update([res('a', '1'), res('b', '1')], []).sort(), ['a', 'b']);
    assert.equal(s.systemVersion, '1');
    assert.deepEqual(s.update([res('a', '1')], []), [], 'same version is not a change');
    assert.equal(s.systemVersion, '1');
    assert.deepEqual(s.update([res('a', '2')], ['zzz']), ['a'], 'removing an absent name is not a change');
    assert.deepEqual(s.update([], ['b']), ['b']);
    assert.equal(s.systemVersion, '3');
    assert.equal(s.size, 1);
  });

  test('replaceAll diffs against the current set', () => {
    const s = new ResourceStore(T);
    s.replaceAll([res('a', '1'), res('b', '1'), res('c', '1')]);
    const changed = s.replaceAll([res('a', '1'), res('b', '2'), res('d', '1')]);
    assert.deepEqual(changed.sort(), ['b', 'c', 'd']);
    assert.equal(s.get('c'), undefined);
    assert.equal(s.get('b')?.version, '2');
  });
});

describe('Subscription', () => {
  test('first request with an empty subscribe list is a wildcard; "*" also works', () => {
    const a = new Subscription();
    a.applyRequest([], [], true);
    assert.equal(a.wildcard, true);
    const b = new Subscription();
    b.applyRequest(['*'], [], true);
    assert.equal(b.wildcard, true);
    const c = new Subscription();
    c.applyRequest(['x'], [], true);
    assert.equal(c.wildcard, false);
    assert.equal(c.isSubscribed('x'), true);
    assert.equal(c.isSubscribed('y'), false);
    c.applyRequest([], [], false);
    assert.equal(c.wildcard, false, 'an empty list later is not a wildcard');
  });

  test('initial push sends everything; later deltas carry only changed names', () => {
    const s = new ResourceStore(T);
    s.update([res('a', '1'), res('b', '1'), res('c', '1')], []);
    const sub = new Subscription();
    sub.applyRequest([], [], true);
    const d0 = sub.computeDelta(s);
    assert.deepEqual(names(d0.upserts), ['a@1', 'b@1', 'c@1']);
    sub.markSent(d0);
    const changed = s.update([res('b', '2')], ['c']);
    const d1 = sub.computeDelta(s, changed);
    assert.deepEqual(names(d1.upserts), ['b@2']);
    assert.deepEqual(d1.removals, ['c']);
    sub.markSent(d1);
    assert.deepEqual(sub.computeDelta(s), { upserts: [], removals: [] });
  });

  test('initial_resource_versions: same versions are not resent, gone names are removed', () => {
    const s = new ResourceStore(T);
    s.update([res('a', '1'), res('b', '2'), res('new', '1')], []);
    const sub = new Subscription();
    sub.seed({ a: '1', b: '1', gone: '7' });
    sub.applyRequest([], [], true);
    const d = sub.computeDelta(s);
    assert.deepEqual(names(d.upserts), ['b@2', 'new@1']);
    assert.deepEqual(d.removals, ['gone']);
  });

  test('a sent (and NACKed) version is not resent until it changes', () => {
    const s = new ResourceStore(T);
    s.update([res('a', '1')], []);
    const sub = new Subscription();
    sub.applyRequest([], [], true);
    sub.markSent(sub.computeDelta(s));
    // the client NACKs a@1: nothing in the subscription changes
    assert.deepEqual(sub.computeDelta(s), { upserts: [], removals: [] });
    const changed = s.update([res('a', '2')], []);
    assert.deepEqual(names(sub.computeDelta(s, changed).upserts), ['a@2']);
  });

  test('named subscription only sees its names; unsubscribe forgets held names', () => {
    const s = new ResourceStore(T);
    s.update([res('a', '1'), res('b', '1')], []);
    const sub = new Subscription();
    const added = sub.applyRequest(['a'], [], true);
    assert.deepEqual(added, ['a']);
    const d = sub.computeDelta(s);
    assert.deepEqual(names(d.upserts), ['a@1']);
    sub.markSent(d);
    sub.applyRequest([], ['a'], false);
    assert.equal(sub.known.size, 0);
    assert.deepEqual(sub.computeDelta(s), { upserts: [], removals: [] });
  });
});

test('NonceSource yields unique nonces', () => {
  const n = new NonceSource('p');
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) seen.add(n.next());
  assert.equal(seen.size, 1000);
  const other = new NonceSource();
  assert.notEqual(other.next(), new NonceSource().next(), 'random prefixes differ between sources');
});

describe('codec', () => {
  test('request round trip keeps node, metadata, initial versions and error_detail presence', () => {
    const buf = encodeDeltaRequest({
      node: { id: 'n1', cluster: 'c', metadata: { NAME: 'p', N: 2, B: true, L: ['x', null], S: { k: 'v' } } },
      typeUrl: T,
      resourceNamesSubscribe: ['*'],
      resourceNamesUnsubscribe: ['u'],
      initialResourceVersions: { a: '1' },
      responseNonce: 'nonce',
      errorDetail: { code: 0, message: '' },
    });
    const req = decodeDeltaRequest(buf);
    assert.deepEqual(req.node, { id: 'n1', cluster: 'c', metadata: { NAME: 'p', N: 2, B: true, L: ['x', null], S: { k: 'v' } } });
    assert.deepEqual(req.initialResourceVersions, { a: '1' });
    assert.deepEqual(req.resourceNamesSubscribe, ['*']);
    assert.deepEqual(req.errorDetail, { code: 0, message: '' }, 'an empty error_detail is still a NACK');
    const ack = decodeDeltaRequest(encodeDeltaRequest({ typeUrl: T, resourceNamesSubscribe: [], resourceNamesUnsubscribe: [], initialResourceVersions: {}, responseNonce: 'x' }));
    assert.equal(ack.errorDetail, undefined);
    assert.equal(ack.node, undefined);
  });

  test('response round trip keeps Any type_url and body bytes', () => {
    const body = Buffer.from([0, 1, 2, 255]);
    const out = decodeDeltaResponse(
      encodeDeltaResponse({ systemVersionInfo: '3', typeUrl: T, nonce: 'n', removedResources: ['r'], resources: [{ name: 'a', version: '1', aliases: [], resource: { typeUrl: T, value: body } }] }),
    );
    assert.equal(out.systemVersionInfo, '3');
    assert.deepEqual(out.removedResources, ['r']);
    assert.equal(out.resources[0]?.resource?.typeUrl, T);
    assert.deepEqual(out.resources[0]?.resource?.value, body);
  });

  test('struct conversion is symmetric', () => {
    const v = { a: 'x', b: 1.5, c: false, d: null, e: [1, 'two'], f: { g: { h: 'i' } } };
    assert.deepEqual(fromPbStruct(toPbStruct(v)), v);
  });

  test('malformed bytes throw (grpc-js turns that into a stream status)', () => {
    assert.throws(() => decodeDeltaRequest(Buffer.from([0x0a, 0xff])));
  });
});
