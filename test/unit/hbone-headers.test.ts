/** HBONE CONNECT headers: forwarded, baggage and traceparent, formatted like ztunnel and parsed leniently. */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { formatBaggage, formatForwarded, newTraceParent, parseBaggage, parseForwarded, parseTraceParent } from '../../src/hbone/headers.js';

describe('forwarded', () => {
  test('ipv4 client without a service host', () => {
    const h = formatForwarded('10.0.1.10', 43512);
    assert.equal(h, 'for="10.0.1.10:43512"');
    assert.deepEqual(parseForwarded(h), { for: '10.0.1.10:43512' });
  });

  test('ipv6 client is bracketed inside the quoted for=', () => {
    const h = formatForwarded('fd00::a', 5000);
    assert.equal(h, 'for="[fd00::a]:5000"');
    assert.deepEqual(parseForwarded(h), { for: '[fd00::a]:5000' });
  });

  test('host= is added when the connection was addressed to a service', () => {
    const h = formatForwarded('10.0.1.10', 1234, 'web.shop.svc.cluster.local');
    assert.equal(h, 'for="10.0.1.10:1234";host=web.shop.svc.cluster.local');
    assert.deepEqual(parseForwarded(h), { for: '10.0.1.10:1234', host: 'web.shop.svc.cluster.local' });
    assert.deepEqual(parseForwarded(formatForwarded('::1', 9, 'db.data.svc.cluster.local')), { for: '[::1]:9', host: 'db.data.svc.cluster.local' });
    // An empty service host is the same as none.
    assert.equal(formatForwarded('10.0.1.10', 1234, ''), 'for="10.0.1.10:1234"');
  });

  test('quoted-string values are unescaped', () => {
    assert.deepEqual(parseForwarded('for="a\\"b"'), { for: 'a"b' });
    assert.deepEqual(parseForwarded('for="back\\\\slash"'), { for: 'back\\slash' });
    assert.deepEqual(parseForwarded('for="\\x\\y"'), { for: 'xy' });
    assert.deepEqual(parseForwarded('for=""'), { for: '' });
    // A lone quote is not a quoted string and is kept as is.
    assert.deepEqual(parseForwarded('for="'), { for: '"' });
  });

  test('reads only the first element; keys are case-insensitive; unknown parameters and junk are ignored', () => {
    assert.deepEqual(parseForwarded('for=10.0.0.1:1;host=a, for=10.0.0.2:2;host=b'), { for: '10.0.0.1:1', host: 'a' });
    assert.deepEqual(parseForwarded('For="10.0.0.1:1" ; HOST=x ; proto=https;by=_hidden'), { for: '10.0.0.1:1', host: 'x' });
    assert.deepEqual(parseForwarded('garbage;=novalue;;'), {});
  });

  test('non-string input parses to nothing', () => {
    for (const raw of [undefined, null, 1, ['for=1.2.3.4:1'], {}]) assert.deepEqual(parseForwarded(raw), {});
    assert.deepEqual(parseForwarded(''), {});
  });
});

describe('baggage', () => {
  test('formatBaggage emits ztunnel keys in order', () => {
    const b = formatBaggage({
      cluster: 'Kubernetes',
      namespace: 'shop',
      workloadKind: 'deployment',
      workloadName: 'web',
      canonicalService: 'web-svc',
      canonicalRevision: 'v1',
      region: 'eu-west1',
      zone: 'eu-west1-b',
    });
    assert.equal(
      b,
      'k8s.cluster.name=Kubernetes,k8s.namespace.name=shop,k8s.deployment.name=web,service.name=web-svc,service.version=v1,cloud.region=eu-west1,cloud.availability_zone=eu-west1-b',
    );
  });

  test('the workload kind defaults to pod and selects the key', () => {
    assert.equal(formatBaggage({ workloadName: 'client-7d9f' }), 'k8s.pod.name=client-7d9f');
    assert.equal(formatBaggage({ workloadKind: 'job', workloadName: 'j' }), 'k8s.job.name=j');
    assert.equal(formatBaggage({ workloadKind: 'cronjob', workloadName: 'c' }), 'k8s.cronjob.name=c');
    // A kind without a name emits nothing.
    assert.equal(formatBaggage({ workloadKind: 'deployment' }), '');
  });

  test('formatBaggage omits missing and empty values', () => {
    assert.equal(formatBaggage({}), '');
    assert.equal(formatBaggage({ cluster: '', namespace: 'shop', workloadName: '', canonicalService: '', canonicalRevision: 'v2', zone: '' }), 'k8s.namespace.name=shop,service.version=v2');
  });

  test('formatBaggage percent-encodes values and parseBaggage decodes them', () => {
    const src = { namespace: 'a b', canonicalService: 'x,y=z;w', canonicalRevision: 'ünï%' };
    const b = formatBaggage(src);
    assert.equal(b.split(',').length, 3, 'separators inside values are encoded');
    assert.ok(!b.includes(' '));
    const m = parseBaggage(b);
    assert.deepEqual(Object.fromEntries(m), { 'k8s.namespace.name': 'a b', 'service.name': 'x,y=z;w', 'service.version': 'ünï%' });
  });

  test('parseBaggage decodes percent-encoding, trims whitespace and drops member properties', () => {
    const m = parseBaggage(' k8s.namespace.name = my%20ns , service.name=a%2Cb;prop=1;other , empty= ');
    assert.deepEqual(Object.fromEntries(m), { 'k8s.namespace.name': 'my ns', 'service.name': 'a,b', empty: '' });
  });

  test('parseBaggage skips malformed members and keeps the rest', () => {
    const m = parseBaggage('novalue,=v,,ok=1,bad=%E0%A4%A,;x=y,also=2');
    assert.deepEqual(Object.fromEntries(m), { ok: '1', also: '2' });
  });

  test('parseBaggage reads at most 64 members', () => {
    const raw = Array.from({ length: 100 }, (_, i) => `k${i}=v${i}`).join(',');
    const m = parseBaggage(raw);
    assert.equal(m.size, 64);
    assert.equal(m.get('k0'), 'v0');
    assert.equal(m.get('k63'), 'v63');
    assert.equal(m.has('k64'), false);
  });

  test('parseBaggage of non-strings is empty', () => {
    for (const raw of [undefined, null, 3, ['a=b'], {}]) assert.equal(parseBaggage(raw).size, 0);
  });
});

describe('traceparent', () => {
  test('newTraceParent is a version-00 W3C header with fresh random ids that parses back', () => {
    const a = newTraceParent();
    const b = newTraceParent();
    for (const t of [a, b]) {
      assert.match(t, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      const p = parseTraceParent(t);
      assert.ok(p);
      const [, traceId, parentId] = t.split('-');
      assert.deepEqual(p, { traceId, parentId, flags: '00' });
    }
    assert.notEqual(a, b);
  });

  const T = '4bf92f3577b34da6a3ce929d0e0e4736';
  const P = '00f067aa0ba902b7';

  test('parseTraceParent accepts the W3C example and trims whitespace', () => {
    assert.deepEqual(parseTraceParent(`00-${T}-${P}-01`), { traceId: T, parentId: P, flags: '01' });
    assert.deepEqual(parseTraceParent(` 00-${T}-${P}-00\t`), { traceId: T, parentId: P, flags: '00' });
    assert.deepEqual(parseTraceParent(`01-${T}-${P}-00`), { traceId: T, parentId: P, flags: '00' });
  });

  test('parseTraceParent rejects all-zero ids, version ff and bad lengths or characters', () => {
    const bad = [
      `00-${'0'.repeat(32)}-${P}-01`,
      `00-${T}-${'0'.repeat(16)}-01`,
      `ff-${T}-${P}-01`,
      `00-${T.slice(1)}-${P}-01`,
      `00-${T}0-${P}-01`,
      `00-${T}-${P.slice(1)}-01`,
      `00-${T}-${P}0-01`,
      `0-${T}-${P}-01`,
      `000-${T}-${P}-01`,
      `00-${T}-${P}-1`,
      `00-${T}-${P}-001`,
      `00-${T.toUpperCase()}-${P}-01`,
      `00-${T}-${P}`,
      `00_${T}_${P}_01`,
      `zz-${T}-${P}-01`,
      '',
    ];
    for (const raw of bad) assert.equal(parseTraceParent(raw), undefined, raw);
    for (const raw of [undefined, null, 0, {}, [`00-${T}-${P}-01`]]) assert.equal(parseTraceParent(raw), undefined);
  });
});

describe('header parser properties', () => {
  const inputs = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.stringMatching(/^[ -~]{0,80}$/), fc.anything());

  test('parseForwarded never throws and returns only strings', () => {
    fc.assert(
      fc.property(inputs, (raw) => {
        const f = parseForwarded(raw);
        for (const [k, v] of Object.entries(f)) {
          assert.ok(k === 'for' || k === 'host');
          assert.equal(typeof v, 'string');
        }
      }),
    );
  });

  test('parseBaggage never throws and never returns more than 64 entries', () => {
    fc.assert(fc.property(inputs, (raw) => assert.ok(parseBaggage(raw).size <= 64)));
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[a-z%0-9A-F=;, ]{0,12}$/), { maxLength: 80 }), (members) => {
        assert.ok(parseBaggage(members.join(',')).size <= 64);
      }),
    );
  });

  test('parseTraceParent never throws', () => {
    fc.assert(fc.property(inputs, (raw) => void parseTraceParent(raw)));
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/), (raw) => {
        const p = parseTraceParent(raw);
        if (p) assert.equal(`${raw.slice(0, 2)}-${p.traceId}-${p.parentId}-${p.flags}`, raw);
      }),
    );
  });

  test('baggage round-trips any values', () => {
    const v = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 });
    fc.assert(
      fc.property(v, v, v, (namespace, canonicalService, canonicalRevision) => {
        const m = parseBaggage(formatBaggage({ namespace, canonicalService, canonicalRevision }));
        assert.equal(m.get('k8s.namespace.name'), namespace);
        assert.equal(m.get('service.name'), canonicalService);
        assert.equal(m.get('service.version'), canonicalRevision);
      }),
    );
  });
});
