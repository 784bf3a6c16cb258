/** WorkloadStore: indexes, per-resource rejection inside a batch, removals, change events, snapshots. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeAddress } from '../../src/workload-api/codec.js';
import { ipToBytes } from '../../src/workload-api/ip.js';
import { workloadApiTypes } from '../../src/workload-api/proto.js';
import { WorkloadStore, type StoreChange } from '../../src/workload-api/store.js';
import type { Address } from '../../src/workload-api/types.js';

const ip = (s: string): Uint8Array => ipToBytes(s) as Uint8Array;
const HOST = 'echo.demo.svc.cluster.local';

function wl(name: string, addr: string, extra: Record<string, unknown> = {}): Address {
  return {
    type: 'workload',
    workload: { uid: `Kubernetes//Pod/demo/${name}`, name, namespace: 'demo', addresses: [ip(addr)], services: { [`demo/${HOST}`]: { ports: [{ servicePort: 80, targetPort: 8080 }] } }, ...extra },
  };
}

function raw(workload: Record<string, unknown>): Buffer {
  const { Address } = workloadApiTypes();
  return Buffer.from(Address.encode(Address.fromObject({ workload })).finish());
}

test('invalid resources are rejected with a reason while the valid ones of the same batch are applied', () => {
  const store = new WorkloadStore();
  const changes: StoreChange[] = [];
  store.on('change', (c) => changes.push(c));
  const svc: Address = { type: 'service', service: { name: 'echo', namespace: 'demo', hostname: HOST, addresses: [{ network: '', address: ip('10.96.0.20') }], ports: [{ servicePort: 80, targetPort: 8080 }] } };
  const res = store.applyAddresses({
    upserts: [
      { name: 'Kubernetes//Pod/demo/a', resource: encodeAddress(wl('a', '10.244.1.2')) },
      { name: 'bad-ip', resource: raw({ uid: 'bad-ip', name: 'x', namespace: 'demo', addresses: [Buffer.from([1, 2, 3, 4, 5])] }) },
      { name: 'bad-enum', resource: raw({ uid: 'bad-enum', name: 'x', namespace: 'demo', status: 9 }) },
      { name: 'no-uid', resource: raw({ name: 'x', namespace: 'demo' }) },
      { name: 'Kubernetes//Pod/demo/b', resource: wl('b', '10.244.2.3') },
      { name: `demo/${HOST}`, resource: encodeAddress(svc) },
    ],
  });
  assert.deepEqual(
    res.rejected.map((r) => r.name),
    ['bad-ip', 'bad-enum', 'no-uid'],
  );
  assert.match(res.rejected[0]?.reason ?? '', /addresses\[0\]: an IP address must be 4 or 16 bytes, got 5/);
  assert.match(res.rejected[1]?.reason ?? '', /unknown WorkloadStatus value 9/);
  assert.match(res.rejected[2]?.reason ?? '', /uid: is required/);
  assert.deepEqual(store.counts, { workloads: 2, services: 1, policies: 0 });
  assert.equal(store.workloadByIp('', '10.244.1.2')?.name, 'a');
  assert.equal(store.serviceByVip('', '10.96.0.20')?.name, 'echo');
  assert.deepEqual(store.endpointsOf(`demo/${HOST}`).map((w) => w.name).sort(), ['a', 'b']);
  assert.equal(changes.length, 1);
  assert.deepEqual(changes[0]?.upserted, ['Kubernetes//Pod/demo/a', 'Kubernetes//Pod/demo/b', `demo/${HOST}`]);
});

test('an update moves the IP index; removals clear every index; host-network workloads are not found by IP', () => {
  const store = new WorkloadStore();
  store.applyAddresses({ upserts: [{ name: 'a', resource: wl('a', '10.244.1.2') }] });
  store.applyAddresses({ upserts: [{ name: 'a', resource: wl('a', '10.244.1.9') }] });
  assert.equal(store.workloadByIp('', '10.244.1.2'), undefined);
  assert.equal(store.workloadByIp('', '10.244.1.9')?.name, 'a');
  store.applyAddresses({ upserts: [{ name: 'h', resource: wl('h', '10.0.0.5', { networkMode: 'HOST_NETWORK' }) }] });
  assert.equal(store.workloadByIp('', '10.0.0.5'), undefined);
  assert.ok(store.getWorkload('Kubernetes//Pod/demo/h'));
  const changes: StoreChange[] = [];
  store.on('change', (c) => changes.push(c));
  store.applyAddresses({ removals: ['Kubernetes//Pod/demo/a', 'unknown'] });
  assert.equal(store.workloadByIp('', '10.244.1.9'), undefined);
  assert.deepEqual(store.endpointsOf(`demo/${HOST}`).map((w) => w.name), ['h']);
  assert.deepEqual(changes, [{ type: 'addresses', upserted: [], removed: ['Kubernetes//Pod/demo/a'] }]);
  store.applyAddresses({ removals: ['nothing'] });
  assert.equal(changes.length, 1, 'no event when nothing changed');
});

test('authorizations: keyed namespace/name, rejected ones reported, policiesFor by scope', () => {
  const store = new WorkloadStore();
  const res = store.applyAuthorizations({
    upserts: [
      { name: 'istio-system/global', resource: { name: 'global', namespace: 'istio-system', scope: 'GLOBAL', action: 'DENY', rules: [] } },
      { name: 'demo/ns', resource: { name: 'ns', namespace: 'demo', scope: 'NAMESPACE', action: 'ALLOW', rules: [{}] } },
      { name: 'other/ns', resource: { name: 'ns', namespace: 'other', scope: 'NAMESPACE' } },
      { name: 'demo/sel', resource: { name: 'sel', namespace: 'demo', scope: 'WORKLOAD_SELECTOR' } },
      { name: 'demo/bad', resource: { name: 'bad', namespace: 'demo', rules: [{ clauses: [{ matches: [{ sourceIps: [{ address: new Uint8Array(3) }] }] }] }] } },
    ],
  });
  assert.deepEqual(res.rejected, [{ name: 'demo/bad', reason: 'authorization demo/bad: rules[0].clauses[0].matches[0].sourceIps[0].address: an IP address must be 4 or 16 bytes, got 3' }]);
  const w = wl('a', '10.244.1.2', { authorizationPolicies: ['demo/sel'] });
  const names = store.policiesFor(w.type === 'workload' ? w.workload : {}).map((p) => `${p.namespace}/${p.name}`).sort();
  assert.deepEqual(names, ['demo/ns', 'demo/sel', 'istio-system/global']);
  store.applyAuthorizations({ removals: ['demo/sel'] });
  assert.equal(store.getPolicy('demo/sel'), undefined);
});

test('snapshot is structured-clone safe and fromSnapshot rebuilds the indexes', () => {
  const store = new WorkloadStore();
  store.applyAddresses({ upserts: [{ name: 'a', resource: encodeAddress(wl('a', '10.244.1.2')) }] });
  store.applyAuthorizations({ upserts: [{ name: 'demo/p', resource: { name: 'p', namespace: 'demo', scope: 'NAMESPACE' } }] });
  const copy = WorkloadStore.fromSnapshot(structuredClone(store.snapshot()));
  assert.equal(copy.workloadByIp('', '10.244.1.2')?.uid, 'Kubernetes//Pod/demo/a');
  assert.equal(copy.counts.policies, 1);
});

test('a resource upserted under a name other than its uid is removed by that name', () => {
  const store = new WorkloadStore();
  store.applyAddresses({ upserts: [{ name: 'alias-a', resource: wl('a', '10.244.1.2') }] });
  assert.ok(store.getWorkload('Kubernetes//Pod/demo/a'));
  store.applyAddresses({ removals: ['alias-a'] });
  assert.equal(store.getWorkload('Kubernetes//Pod/demo/a'), undefined);
  store.applyAuthorizations({ upserts: [{ name: 'p-alias', resource: { name: 'p', namespace: 'demo' } }] });
  store.applyAuthorizations({ removals: ['p-alias'] });
  assert.equal(store.counts.policies, 0);
});
