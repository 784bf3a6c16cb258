// Service endpoint choice: capacity weights, health, locality preference
// (FAILOVER and STRICT), PASSTHROUGH mode, and the refusal when nothing is
// eligible. Uses a seeded PRNG so the statistics are reproducible.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eligibleEndpoints, pickWeighted } from '../../src/agent/load-balance.js';
import { routeOutbound } from '../../src/agent/route.js';
import { ClusterState, type Endpoint } from '../../src/state/cluster-state.js';
import type { LocalLoadBalancing, LocalWorkload } from '../../src/state/local-config.js';

/** mulberry32: a small deterministic PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const wl = (name: string, o: Partial<LocalWorkload> = {}): LocalWorkload => ({ uid: `ns/${name}`, name, namespace: 'ns', serviceAccount: name, node: 'node-a', ip: '10.0.0.1', labels: {}, ...o });
const ep = (w: LocalWorkload, healthy = true): Endpoint => ({ workload: w, port: 8080, healthy });
const src = wl('client', { node: 'node-a', locality: { region: 'r1', zone: 'z1', subzone: '' } });

void test('1,000 picks over capacities 1, 1 and 2 split 25/25/50 within tolerance; an unhealthy endpoint gets none', () => {
  const eps = [ep(wl('a', { capacity: 1 })), ep(wl('b', { capacity: 1 })), ep(wl('c', { capacity: 2 })), ep(wl('sick', { capacity: 5 }), false)];
  const random = prng(42);
  const counts: Record<string, number> = { a: 0, b: 0, c: 0, sick: 0 };
  const eligible = eligibleEndpoints(eps, src, undefined);
  for (let i = 0; i < 1000; i++) {
    const e = pickWeighted(eligible, random);
    assert.ok(e);
    counts[e.workload.name] = (counts[e.workload.name] ?? 0) + 1;
  }
  // Binomial standard deviations: sqrt(1000*.25*.75) = 13.7, sqrt(1000*.5*.5) = 15.8; allow 4 sigma.
  assert.ok(Math.abs((counts.a ?? 0) - 250) < 55, `a: ${counts.a}`);
  assert.ok(Math.abs((counts.b ?? 0) - 250) < 55, `b: ${counts.b}`);
  assert.ok(Math.abs((counts.c ?? 0) - 500) < 64, `c: ${counts.c}`);
  assert.equal(counts.sick, 0);
});

void test('ALLOW_ALL health policy includes unhealthy endpoints; capacity 0 is never picked', () => {
  const eps = [ep(wl('sick'), false), ep(wl('zero', { capacity: 0 }))];
  assert.deepEqual(
    eligibleEndpoints(eps, src, { routingPreference: [], mode: 'UNSPECIFIED', healthPolicy: 'ALLOW_ALL' }).map((e) => e.workload.name),
    ['sick', 'zero'],
  );
  const random = prng(1);
  for (let i = 0; i < 100; i++) assert.notEqual(pickWeighted([ep(wl('zero', { capacity: 0 })), ep(wl('one'))], random)?.workload.name, 'zero');
  assert.equal(pickWeighted([ep(wl('zero', { capacity: 0 }))], random), undefined);
});

void test('FAILOVER prefers same node, then same zone, while they exist', () => {
  const lb: LocalLoadBalancing = { routingPreference: ['REGION', 'ZONE', 'NODE'], mode: 'FAILOVER', healthPolicy: 'ONLY_HEALTHY' };
  const sameNode = ep(wl('same-node', { node: 'node-a', locality: { region: 'r1', zone: 'z1', subzone: '' } }));
  const sameZone = ep(wl('same-zone', { node: 'node-b', locality: { region: 'r1', zone: 'z1', subzone: '' } }));
  const otherZone = ep(wl('other-zone', { node: 'node-c', locality: { region: 'r1', zone: 'z2', subzone: '' } }));
  const names = (eps: Endpoint[]) => eligibleEndpoints(eps, src, lb).map((e) => e.workload.name);
  assert.deepEqual(names([sameNode, sameZone, otherZone]), ['same-node']);
  assert.deepEqual(names([sameZone, otherZone]), ['same-zone']);
  assert.deepEqual(names([otherZone]), ['other-zone'], 'falls over to the next tier');
  assert.deepEqual(names([{ ...sameNode, healthy: false }, sameZone]), ['same-zone'], 'an unhealthy same-node endpoint does not count');
});

void test('STRICT keeps only endpoints matching every scope', () => {
  const lb: LocalLoadBalancing = { routingPreference: ['NODE'], mode: 'STRICT', healthPolicy: 'ONLY_HEALTHY' };
  assert.deepEqual(eligibleEndpoints([ep(wl('remote', { node: 'node-b' }))], src, lb), []);
  assert.equal(eligibleEndpoints([ep(wl('local', { node: 'node-a' })), ep(wl('remote', { node: 'node-b' }))], src, lb).length, 1);
});

void test('routing: no eligible endpoint is a clean refusal; PASSTHROUGH mode sends to the VIP as addressed', () => {
  const server = wl('server', { ip: '10.0.0.2', tunnelProtocol: 'HBONE', node: 'node-b' });
  const base = { trustDomain: 'cluster.local', clusterDomain: 'cluster.local', nodes: [], workloads: [src, server] };
  const svc = (mode: LocalLoadBalancing['mode'], healthy: boolean) => ({
    name: 'svc',
    namespace: 'ns',
    hostname: 'svc.ns.svc.cluster.local',
    vips: ['10.96.0.5'],
    ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' as const }],
    selector: {},
    endpoints: [{ uid: 'ns/server', ports: {}, healthy }],
    loadBalancing: { routingPreference: [], mode, healthPolicy: 'ONLY_HEALTHY' as const },
  });
  const refused = routeOutbound(new ClusterState({ ...base, services: [svc('UNSPECIFIED', false)] }), src, '10.96.0.5', 80);
  assert.equal(refused.kind, 'refuse');
  assert.match(refused.kind === 'refuse' ? refused.error.message : '', /1 endpoint\(s\) for this port but none is eligible/);
  const pt = routeOutbound(new ClusterState({ ...base, services: [svc('PASSTHROUGH', false)] }), src, '10.96.0.5', 80);
  assert.deepEqual(pt.kind === 'passthrough' ? [pt.host, pt.port] : [], ['10.96.0.5', 80]);
  const ok = routeOutbound(new ClusterState({ ...base, services: [svc('UNSPECIFIED', true)] }), src, '10.96.0.5', 80);
  assert.equal(ok.kind === 'hbone' ? ok.authority : '', '10.0.0.2:8080');
});
