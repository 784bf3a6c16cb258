// The xDS state as the data plane's ClusterState: workloads by IP with the
// CNI's netns, explicit service endpoints with port mapping and health, and
// the policies in scope for a workload.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterState } from '../../src/state/cluster-state.js';
import { clusterConfigFromWorkloadApi } from '../../src/state/from-workload-api.js';
import { ipToBytes } from '../../src/workload-api/ip.js';
import type { Authorization, Service, Workload } from '../../src/workload-api/types.js';

const ip = (s: string) => ipToBytes(s) as Uint8Array;
const w = (name: string, addr: string, extra: Partial<Workload> = {}): Workload => ({
  uid: `Kubernetes//Pod/shop/${name}`,
  name,
  namespace: 'shop',
  addresses: [ip(addr)],
  serviceAccount: name,
  node: 'node-a',
  tunnelProtocol: 'HBONE',
  canonicalName: name,
  canonicalRevision: 'v1',
  ...extra,
});
const svc: Service = { name: 'cart', namespace: 'shop', hostname: 'cart.shop.svc.cluster.local', addresses: [{ network: '', address: ip('10.96.0.9') }], ports: [{ servicePort: 80, targetPort: 8080 }] };
const policy = (name: string, scope: Authorization['scope'], namespace = 'shop'): Authorization => ({ name, namespace, scope, action: 'DENY', rules: [] });

function state(): ClusterState {
  return new ClusterState(
    clusterConfigFromWorkloadApi(
      {
        workloads: [
          w('cart-1', '10.244.1.2', { services: { 'shop/cart.shop.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 9090 }] } }, authorizationPolicies: ['shop/only-cart'] }),
          w('cart-2', '10.244.2.2', { services: { 'shop/cart.shop.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 0 }] } }, status: 'UNHEALTHY' }),
          w('cart-3', '10.244.2.3', { services: { 'shop/cart.shop.svc.cluster.local': { ports: [{ servicePort: 80 }] } } }),
          w('legacy', '10.244.1.9', { tunnelProtocol: 'NONE' }),
          w('broken', '', { addresses: [] }),
        ],
        services: [svc],
        policies: [policy('mesh-wide', 'GLOBAL', 'istio-system'), policy('ns', 'NAMESPACE'), policy('other-ns', 'NAMESPACE', 'bank'), policy('only-cart', 'WORKLOAD_SELECTOR'), policy('unlisted', 'WORKLOAD_SELECTOR')],
      },
      { trustDomain: 'cluster.local', clusterDomain: 'cluster.local', nodes: [], netnsByPod: new Map([['shop/cart-1', '/var/run/netns/cart-1']]) },
    ),
  );
}

void test('workloads: by IP, uid, tunnel protocol, the CNI netns, canonical labels; unaddressed ones skipped', () => {
  const s = state();
  const c1 = s.workloadByIp('10.244.1.2');
  assert.equal(c1?.uid, 'Kubernetes//Pod/shop/cart-1');
  assert.equal(c1?.netns, '/var/run/netns/cart-1');
  assert.deepEqual(c1?.labels, { app: 'cart-1', version: 'v1' });
  assert.equal(s.workloadByIp('10.244.1.9')?.tunnelProtocol, 'NONE');
  assert.equal(s.workloadByUid('Kubernetes//Pod/shop/broken'), undefined);
  assert.equal(s.identityOf(c1 as NonNullable<typeof c1>).toString(), 'spiffe://cluster.local/ns/shop/sa/cart-1');
});

void test('service endpoints: explicit, healthy only, with the workload port mapping or the service targetPort', () => {
  const s = state();
  const service = s.serviceByVip('10.96.0.9');
  assert.ok(service);
  const port = service.ports[0];
  assert.ok(port);
  const eps = s.endpoints(service, port).map((e) => [e.workload.name, e.port]);
  assert.deepEqual(eps, [
    ['cart-1', 9090],
    ['cart-3', 8080],
  ]);
  assert.equal(s.serviceByName('cart', 'shop')?.name, 'cart');
});

void test('policies in scope: global, own namespace, and the selector policies the workload lists', () => {
  const s = state();
  const names = (n: string) => s.policiesFor(s.workloadByUid(`Kubernetes//Pod/shop/${n}`) as NonNullable<ReturnType<typeof s.workloadByUid>>).map((p) => p.name);
  assert.deepEqual(names('cart-1'), ['mesh-wide', 'ns', 'only-cart']);
  assert.deepEqual(names('cart-3'), ['mesh-wide', 'ns']);
});
