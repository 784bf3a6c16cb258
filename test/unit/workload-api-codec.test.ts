/** Workload API codec: golden bytes from the field numbers, round trips, and the agent's decode rejections. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeAddress, decodeAuthorization, encodeAddress, encodeAuthorization, validateAddress } from '../../src/workload-api/codec.js';
import { WorkloadApiEncodeError } from '../../src/workload-api/errors.js';
import { addressResourceName, bytesToIp, ipToBytes, networkIpKey, parseNetworkIpKey } from '../../src/workload-api/ip.js';
import { workloadApiTypes } from '../../src/workload-api/proto.js';
import { APP_PROTOCOLS, TUNNEL_PROTOCOLS, WORKLOAD_STATUSES, WORKLOAD_TYPES, type Address, type Authorization } from '../../src/workload-api/types.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ip = (s: string): Uint8Array => ipToBytes(s) as Uint8Array;

const small: Address = {
  type: 'workload',
  workload: {
    uid: 'u1',
    name: 'a',
    namespace: 'ns',
    addresses: [ip('10.0.0.1')],
    tunnelProtocol: 'HBONE',
    serviceAccount: 'sa',
    node: 'n1',
    status: 'UNHEALTHY',
    services: { 'ns/s': { ports: [{ servicePort: 80, targetPort: 8080 }] } },
  },
};

// Hand-computed from the field numbers of proto/istio/workload/workload.proto.
const WORKLOAD_BODY = [
  '0a 01 61', //                 name = 1 (LEN) "a"
  '12 02 6e73', //               namespace = 2 "ns"
  '1a 04 0a000001', //           addresses = 3, 4 raw bytes
  '28 01', //                    tunnel_protocol = 5 (VARINT) HBONE = 1
  '3a 02 7361', //               service_account = 7 "sa"
  '4a 02 6e31', //               node = 9 "n1"
  '8801 01', //                  status = 17 (tag 136 as a 2-byte varint) UNHEALTHY = 1
  'a201 02 7531', //             uid = 20 (tag 162) "u1"
  // services = 22 (tag 178): map entry { key = 1 "ns/s", value = 2 PortList { ports = 1 Port { 1: 80, 2: 8080 } } }
  'b201 0f 0a046e732f73 1207 0a05 0850 10903f',
].join(' ');
const GOLDEN = `0a ${(hex(WORKLOAD_BODY).length).toString(16).padStart(2, '0')} ${WORKLOAD_BODY}`; // Address.workload = 1

test('a small Workload encodes to the hand-computed bytes', () => {
  assert.equal(encodeAddress(small).toString('hex'), hex(GOLDEN).toString('hex'));
});

test('the golden bytes decode to the same Workload, defaults filled in', () => {
  const r = decodeAddress(hex(GOLDEN));
  assert.ok(r.ok, r.ok ? '' : r.reason);
  assert.equal(r.value.type, 'workload');
  if (r.value.type !== 'workload') return;
  const w = r.value.workload;
  assert.equal(w.uid, 'u1');
  assert.equal(w.tunnelProtocol, 'HBONE');
  assert.equal(w.status, 'UNHEALTHY');
  assert.equal(w.workloadType, 'DEPLOYMENT'); // proto3 default
  assert.equal(w.trustDomain, '');
  assert.deepEqual(w.authorizationPolicies, []);
  assert.equal(w.waypoint, undefined);
  assert.equal(bytesToIp(w.addresses?.[0] as Uint8Array), '10.0.0.1');
  assert.deepEqual(w.services, { 'ns/s': { ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' }] } });
});

test('Service and Authorization golden bytes (field numbers of service, network address, match, string match)', () => {
  const svc: Address = { type: 'service', service: { name: 's', namespace: 'ns', hostname: 'h', addresses: [{ network: 'n', address: ip('10.96.0.1') }], ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 'HTTP11' }] } };
  // Address.service = 2; Service{1 "s", 2 "ns", 3 "h", 4 NetworkAddress{1 "n", 2 bytes}, 5 Port{1 80, 2 8080, 3 HTTP11=1}}
  const body = '0a0173 12026e73 1a0168 2209 0a016e 12040a600001 2a07 0850 10903f 1801';
  assert.equal(encodeAddress(svc).toString('hex'), `12${(hex(body).length).toString(16).padStart(2, '0')}${hex(body).toString('hex')}`);

  const authz: Authorization = {
    name: 'p',
    namespace: 'ns',
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules: [{ clauses: [{ matches: [{ notPrincipals: [{ presence: {} }], destinationPorts: [80, 443], sourceIps: [{ address: ip('10.0.0.0'), length: 8 }] }] }] }],
  };
  // Authorization{1 "p", 2 "ns", 3 WORKLOAD_SELECTOR=2, 4 DENY=1, 5 Rule{1 Clause{2 Match{4 StringMatch{4 Empty}, 5 Address{1 bytes, 2 8}, 9 packed [80, 443]}}}}
  const match = '2202 2200 2a08 0a040a000000 1008 4a03 50bb03';
  const clause = `12${(hex(match).length).toString(16).padStart(2, '0')}${match}`;
  const rule = `0a${(hex(clause).length).toString(16).padStart(2, '0')}${clause}`;
  const expected = `0a0170 12026e73 1802 2001 2a${(hex(rule).length).toString(16).padStart(2, '0')}${rule}`;
  assert.equal(encodeAuthorization(authz).toString('hex'), hex(expected).toString('hex'));
  const back = decodeAuthorization(hex(expected));
  assert.ok(back.ok, back.ok ? '' : back.reason);
  assert.deepEqual(back.value.rules?.[0]?.clauses?.[0]?.matches?.[0]?.notPrincipals, [{ presence: {} }]);
  assert.deepEqual(back.value.rules?.[0]?.clauses?.[0]?.matches?.[0]?.destinationPorts, [80, 443]);
});

test('round trip of a rich workload and service keeps every field', () => {
  const w: Address = {
    type: 'workload',
    workload: {
      uid: 'Kubernetes//Pod/demo/a',
      name: 'a',
      namespace: 'demo',
      addresses: [ip('10.244.1.2'), ip('fd00::2')],
      network: 'net1',
      tunnelProtocol: 'HBONE',
      trustDomain: 'cluster.local',
      serviceAccount: 'sa',
      waypoint: { address: { network: 'net1', address: ip('10.96.0.50') }, hboneMtlsPort: 15008 },
      networkGateway: { hostname: { namespace: 'istio-system', hostname: 'gw.example' }, hboneMtlsPort: 15008 },
      node: 'node-a',
      canonicalName: 'a',
      canonicalRevision: 'v1',
      workloadType: 'POD',
      workloadName: 'a',
      nativeTunnel: true,
      applicationTunnel: { protocol: 'PROXY', port: 15088 },
      services: { 'demo/a.demo.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 'GRPC' }] } },
      authorizationPolicies: ['demo/p'],
      status: 'HEALTHY',
      clusterId: 'Kubernetes',
      locality: { region: 'r', zone: 'z', subzone: 's' },
      networkMode: 'STANDARD',
      capacity: { value: 3 },
    },
  };
  const r = decodeAddress(encodeAddress(w));
  assert.ok(r.ok, r.ok ? '' : r.reason);
  const got = r.value.type === 'workload' ? r.value.workload : undefined;
  assert.ok(got);
  assert.equal(got.capacity?.value, 3);
  assert.deepEqual(got.applicationTunnel, { protocol: 'PROXY', port: 15088 });
  assert.equal(bytesToIp(got.addresses?.[1] as Uint8Array), 'fd00::2');
  assert.equal(bytesToIp(got.waypoint?.address?.address as Uint8Array), '10.96.0.50');
  assert.deepEqual(got.networkGateway?.hostname, { namespace: 'istio-system', hostname: 'gw.example' });
  assert.deepEqual(got.locality, { region: 'r', zone: 'z', subzone: 's' });
  assert.equal(addressResourceName(r.value), 'Kubernetes//Pod/demo/a');

  const s: Address = {
    type: 'service',
    service: {
      name: 'a',
      namespace: 'demo',
      hostname: 'a.demo.svc.cluster.local',
      addresses: [{ network: '', address: ip('10.96.0.0'), length: 24 }],
      loadBalancing: { routingPreference: ['NETWORK', 'ZONE'], mode: 'FAILOVER', healthPolicy: 'ALLOW_ALL' },
      ipFamilies: 'IPV4_ONLY',
      visibility: 'NAMESPACE',
      weightedWaypoints: [{ destination: { hostname: { namespace: 'demo', hostname: 'wp' } }, weight: 3 }],
    },
  };
  const rs = decodeAddress(encodeAddress(s));
  assert.ok(rs.ok, rs.ok ? '' : rs.reason);
  const gs = rs.value.type === 'service' ? rs.value.service : undefined;
  assert.equal(gs?.addresses?.[0]?.length, 24);
  assert.deepEqual(gs?.loadBalancing, { routingPreference: ['NETWORK', 'ZONE'], mode: 'FAILOVER', healthPolicy: 'ALLOW_ALL' });
  assert.equal(gs?.visibility, 'NAMESPACE');
  assert.equal(addressResourceName(rs.value), 'demo/a.demo.svc.cluster.local');
});

test('NetworkAddress.length is optional: 0 is kept, absent stays absent', () => {
  const mk = (length?: number): Address => ({ type: 'service', service: { name: 's', namespace: 'n', hostname: 'h', addresses: [{ address: ip('10.0.0.0'), ...(length !== undefined ? { length } : {}) }] } });
  const zero = decodeAddress(encodeAddress(mk(0)));
  const none = decodeAddress(encodeAddress(mk()));
  assert.ok(zero.ok && none.ok);
  assert.equal(zero.value.type === 'service' ? zero.value.service.addresses?.[0]?.length : -1, 0);
  assert.equal(none.value.type === 'service' ? none.value.service.addresses?.[0]?.length : -1, undefined);
});

function rawWorkload(fields: Record<string, unknown>): Buffer {
  const { Address } = workloadApiTypes();
  return Buffer.from(Address.encode(Address.fromObject({ workload: fields })).finish());
}

test('decode rejects a 5-byte IP, an unknown enum value and a missing uid, naming the field', () => {
  const bad5 = decodeAddress(rawWorkload({ uid: 'u', name: 'a', namespace: 'n', addresses: [Buffer.from([10, 0, 0, 1, 9])] }));
  assert.deepEqual(bad5, { ok: false, reason: 'workload u: addresses[0]: an IP address must be 4 or 16 bytes, got 5' });

  const badEnum = decodeAddress(rawWorkload({ uid: 'u', name: 'a', namespace: 'n', tunnelProtocol: 7 }));
  assert.deepEqual(badEnum, { ok: false, reason: 'address: workload.tunnelProtocol: unknown TunnelProtocol value 7' });

  const noUid = decodeAddress(rawWorkload({ name: 'a', namespace: 'n' }));
  assert.deepEqual(noUid, { ok: false, reason: 'workload (no uid): uid: is required' });

  assert.deepEqual(decodeAddress(Buffer.alloc(0)), { ok: false, reason: 'address: neither workload nor service is set' });
  const garbage = decodeAddress(hex('0aff'));
  assert.equal(garbage.ok, false);
  assert.match(garbage.ok ? '' : garbage.reason, /^address: malformed protobuf: /);

  const { Authorization } = workloadApiTypes();
  const badAction = decodeAuthorization(Buffer.from(Authorization.encode(Authorization.fromObject({ name: 'p', namespace: 'n', action: 5 })).finish()));
  assert.deepEqual(badAction, { ok: false, reason: 'authorization: action: unknown Action value 5' });
  const noMatchType = decodeAuthorization(encodeRawAuthz({ name: 'p', namespace: 'n', rules: [{ clauses: [{ matches: [{ principals: [{}] }] }] }] }));
  assert.deepEqual(noMatchType, { ok: false, reason: 'authorization n/p: rules[0].clauses[0].matches[0].principals[0]: no match type (exact, prefix, suffix or presence) is set' });
});

function encodeRawAuthz(o: Record<string, unknown>): Buffer {
  const { Authorization } = workloadApiTypes();
  return Buffer.from(Authorization.encode(Authorization.fromObject(o)).finish());
}

test('encode refuses what the agent would reject', () => {
  assert.throws(() => encodeAddress({ type: 'workload', workload: { name: 'a', namespace: 'n' } }), (e: unknown) => e instanceof WorkloadApiEncodeError && e.code === 'AMBIT_ERR_WORKLOAD_API_ENCODE');
  assert.equal(validateAddress({ type: 'service', service: { name: 's', namespace: 'n', hostname: 'h', ports: [{ servicePort: 70000 }] } }), 'service n/h: ports[0].servicePort: must be a port from 1 to 65535, got 70000');
});

test('ip helpers', () => {
  assert.deepEqual([...ip('10.1.2.3')], [10, 1, 2, 3]);
  assert.equal(ipToBytes('10.1.2.300'), undefined);
  assert.equal(ipToBytes('nope'), undefined);
  for (const v6 of ['::1', 'fd00::2', '2001:db8::8:800:200c:417a', '::ffff:10.1.2.3', '1:2:3:4:5:6:7:8']) {
    const b = ipToBytes(v6);
    assert.equal(b?.length, 16, v6);
    assert.equal(bytesToIp(b as Uint8Array), new URL(`http://[${v6}]/`).hostname.slice(1, -1), v6);
  }
  assert.deepEqual([...(ipToBytes('::ffff:10.1.2.3') as Uint8Array).slice(10)], [0xff, 0xff, 10, 1, 2, 3]);
  assert.equal(bytesToIp(new Uint8Array(5)), undefined);
  assert.equal(networkIpKey('', '10.0.0.1'), '/10.0.0.1');
  assert.deepEqual(parseNetworkIpKey('net/fd00::1'), { network: 'net', ip: 'fd00::1' });
  assert.equal(parseNetworkIpKey('net/x'), undefined);
});

test('property: random valid workloads round trip through encode/decode unchanged', () => {
  const name = fc.string({ minLength: 1, maxLength: 12 });
  const ipBytes = fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 }));
  const port = fc.integer({ min: 1, max: 65535 });
  fc.assert(
    fc.property(
      fc.record({
        uid: name,
        name,
        namespace: name,
        addresses: fc.array(ipBytes, { maxLength: 3 }),
        tunnelProtocol: fc.constantFrom(...TUNNEL_PROTOCOLS),
        status: fc.constantFrom(...WORKLOAD_STATUSES),
        workloadType: fc.constantFrom(...WORKLOAD_TYPES),
        services: fc.dictionary(fc.tuple(name, name).map(([a, b]) => `${a.replace(/\//g, '')}x/${b}`), fc.record({ ports: fc.array(fc.record({ servicePort: port, targetPort: port, appProtocol: fc.constantFrom(...APP_PROTOCOLS) }), { maxLength: 2 }) }), { maxKeys: 2 }).map((d) => ({ ...d })),
        authorizationPolicies: fc.array(fc.constantFrom('a/b', 'ns/p'), { maxLength: 2 }),
      }),
      (w) => {
        const r = decodeAddress(encodeAddress({ type: 'workload', workload: w }));
        assert.ok(r.ok, r.ok ? '' : r.reason);
        const got = r.value.type === 'workload' ? r.value.workload : {};
        // fast-check builds null-prototype objects and Uint8Arrays; compare as plain JSON.
        const bytes = (v: unknown): unknown => (v instanceof Uint8Array ? [...v] : (v as { type?: string; data?: unknown })?.type === 'Buffer' ? (v as { data: unknown }).data : v);
        const plain = (x: unknown): unknown => JSON.parse(JSON.stringify(x, (_k, v: unknown) => bytes(v)));
        assert.deepEqual(plain(got), plain({ ...got, ...w }));
      },
    ),
    { numRuns: 200 },
  );
});

test('property: ipToBytes and bytesToIp are inverse for any 4 or 16 bytes', () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })), (b) => {
      assert.deepEqual([...(ipToBytes(bytesToIp(b) as string) as Uint8Array)], [...b]);
    }),
    { numRuns: 500 },
  );
});
