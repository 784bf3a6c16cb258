/**
 * Translation of test/fixtures/control-plane/cluster (2 nodes, an ambient
 * namespace and a plain one, 4 pods, 2 services, AuthorizationPolicies, a
 * namespace-wide PeerAuthentication STRICT, a waypoint Gateway) into the
 * Address and Authorization resources agents get; every result also has to
 * survive the agent's decoder.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../src/common/logger.js';
import { ManifestSource } from '../../src/control-plane/manifest-source.js';
import { ResourceStore } from '../../src/control-plane/resource-store.js';
import { translate, STATIC_STRICT_POLICY_NAME, stringMatchOf, type Translation } from '../../src/control-plane/translate.js';
import { parseManifestText } from '../../src/control-plane/manifest-source.js';
import { diffResources, EMPTY_ENCODED, encodeTranslation } from '../../src/control-plane/diff.js';
import { decodeAddress, decodeAuthorization, encodeAddress, encodeAuthorization } from '../../src/workload-api/codec.js';
import { bytesToIp } from '../../src/workload-api/ip.js';
import type { Service, Workload } from '../../src/workload-api/types.js';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/control-plane/cluster/', import.meta.url));

async function load(dir: string): Promise<{ store: ResourceStore; t: Translation }> {
  const store = new ResourceStore();
  const src = new ManifestSource({ dir, store, logger: silentLogger() });
  await src.start({ watch: false });
  src.close();
  return { store, t: translate(store.snapshot()) };
}

function workload(t: Translation, uid: string): Workload {
  const a = t.addresses.get(uid);
  assert.ok(a && a.type === 'workload', `workload ${uid} is served`);
  return a.workload;
}

function service(t: Translation, key: string): Service {
  const a = t.addresses.get(key);
  assert.ok(a && a.type === 'service', `service ${key} is served`);
  return a.service;
}

test('the fixture loads without issues and serves 4 workloads, 2 services and the policies', async () => {
  const { store, t } = await load(FIXTURE);
  assert.deepEqual(store.issues(), []);
  assert.deepEqual([...t.addresses.keys()].sort(), [
    'Kubernetes//Pod/legacy/old',
    'Kubernetes//Pod/shop/client',
    'Kubernetes//Pod/shop/server-a',
    'Kubernetes//Pod/shop/server-b',
    'legacy/old.legacy.svc.cluster.local',
    'shop/server.shop.svc.cluster.local',
  ]);
  assert.deepEqual([...t.authorizations.keys()].sort(), [`istio-system/${STATIC_STRICT_POLICY_NAME}`, 'shop/allow-client', 'shop/deny-legacy']);
  // Everything survives the agent's decoder.
  for (const a of t.addresses.values()) assert.ok(decodeAddress(encodeAddress(a)).ok);
  for (const a of t.authorizations.values()) assert.ok(decodeAuthorization(encodeAuthorization(a)).ok);
});

test('pods become workloads: uid, identity, tunnel by namespace mode, status, canonical labels, locality, services', async () => {
  const { t } = await load(FIXTURE);
  const client = workload(t, 'Kubernetes//Pod/shop/client');
  assert.equal(client.name, 'client');
  assert.equal(client.namespace, 'shop');
  assert.deepEqual(client.addresses?.map((b) => bytesToIp(b)), ['10.244.1.10']);
  assert.equal(client.serviceAccount, 'client');
  assert.equal(client.node, 'node-a');
  assert.equal(client.tunnelProtocol, 'HBONE');
  assert.equal(client.trustDomain, 'cluster.local');
  assert.equal(client.clusterId, 'Kubernetes');
  assert.equal(client.status, 'HEALTHY');
  assert.deepEqual(client.locality, { region: 'eu-west', zone: 'eu-west-1a', subzone: '' });
  assert.equal(client.waypoint, undefined, 'the waypoint is for services only');
  assert.deepEqual(client.services, {});
  assert.deepEqual(client.authorizationPolicies, [`istio-system/${STATIC_STRICT_POLICY_NAME}`]);
  assert.deepEqual(t.workloadMeta.get('Kubernetes//Pod/shop/client'), { kind: 'Pod', labels: { app: 'client' }, netns: '/var/run/netns/ambit-p-shop-client' });

  const a = workload(t, 'Kubernetes//Pod/shop/server-a');
  assert.equal(a.canonicalName, 'server');
  assert.equal(a.canonicalRevision, 'v1');
  assert.deepEqual(a.services, { 'shop/server.shop.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080 }] } });
  assert.deepEqual(a.authorizationPolicies, [`istio-system/${STATIC_STRICT_POLICY_NAME}`, 'shop/allow-client']);

  const b = workload(t, 'Kubernetes//Pod/shop/server-b');
  assert.equal(b.status, 'UNHEALTHY');
  assert.equal(b.canonicalName, 'server-canonical');
  assert.equal(b.canonicalRevision, 'v2');
  assert.equal(b.locality, undefined, 'node-b has no locality labels');
  assert.deepEqual(b.services, { 'shop/server.shop.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8081 }] } }, 'named targetPort resolved per pod');

  const old = workload(t, 'Kubernetes//Pod/legacy/old');
  assert.equal(old.tunnelProtocol, 'NONE');
  assert.equal(old.serviceAccount, 'default');
  assert.equal(old.canonicalRevision, 'latest');
  assert.deepEqual(old.authorizationPolicies, [], 'STRICT in shop does not reach legacy');
  assert.deepEqual(old.services, { 'legacy/old.legacy.svc.cluster.local': { ports: [{ servicePort: 9000, targetPort: 9090 }] } });
});

test('services: hostname, VIPs, ports, waypoint from the Gateway address', async () => {
  const { t } = await load(FIXTURE);
  const s = service(t, 'shop/server.shop.svc.cluster.local');
  assert.equal(s.name, 'server');
  assert.equal(s.hostname, 'server.shop.svc.cluster.local');
  assert.deepEqual(s.addresses?.map((a) => [a.network, bytesToIp(a.address as Uint8Array)]), [['', '10.96.0.10']]);
  assert.deepEqual(s.ports, [{ servicePort: 80, targetPort: 0, appProtocol: 'HTTP11' }], 'named target port: 0 (per endpoint), http- name prefix');
  assert.equal(s.ipFamilies, 'IPV4_ONLY');
  assert.equal(s.waypoint?.hboneMtlsPort, 15008);
  assert.equal(bytesToIp(s.waypoint?.address?.address as Uint8Array), '10.96.0.50');
  const old = service(t, 'legacy/old.legacy.svc.cluster.local');
  assert.deepEqual(old.ports, [{ servicePort: 9000, targetPort: 9090, appProtocol: 'UNKNOWN' }]);
  assert.equal(old.waypoint, undefined);
});

test('authorization policies and PeerAuthentication STRICT', async () => {
  const { t } = await load(FIXTURE);
  assert.deepEqual(t.authorizations.get('shop/allow-client'), {
    name: 'allow-client',
    namespace: 'shop',
    scope: 'WORKLOAD_SELECTOR',
    action: 'ALLOW',
    dryRun: false,
    rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'cluster.local/ns/shop/sa/client' }] }] }, { matches: [{ destinationPorts: [8080] }] }] }],
  });
  const deny = t.authorizations.get('shop/deny-legacy');
  assert.equal(deny?.scope, 'NAMESPACE');
  assert.equal(deny?.action, 'DENY');
  const m = deny?.rules?.[0]?.clauses?.[0]?.matches?.[0];
  assert.deepEqual(m?.namespaces, [{ exact: 'legacy' }]);
  assert.deepEqual(m?.notSourceIps?.map((a) => [bytesToIp(a.address as Uint8Array), a.length]), [['10.244.0.0', 16]]);
  assert.deepEqual(t.authorizations.get(`istio-system/${STATIC_STRICT_POLICY_NAME}`), {
    name: STATIC_STRICT_POLICY_NAME,
    namespace: 'istio-system',
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules: [{ clauses: [{ matches: [{ notPrincipals: [{ presence: {} }] }] }] }],
  });
});

function translateText(text: string): Translation {
  const store = new ResourceStore();
  const p = parseManifestText('x.yaml', text);
  assert.deepEqual(p.issues, []);
  store.replaceSource('x.yaml', p.resources);
  return translate(store.snapshot());
}

test('scopes, L7 handling, port-level mTLS, EndpointSlices, ServiceEntry and WorkloadEntry', () => {
  const t = translateText(`
apiVersion: v1
kind: Namespace
metadata: {name: mesh, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: global, namespace: istio-system}
spec: {action: DENY, rules: [{from: [{source: {ipBlocks: ["192.0.2.0/24"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: l7, namespace: mesh}
spec:
  action: ALLOW
  rules:
    - to: [{operation: {methods: [GET]}}]
    - from: [{source: {principals: ["*"]}}]
      when: [{key: destination.port, values: ["80"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: l7-deny, namespace: mesh}
spec:
  action: DENY
  rules:
    - from: [{source: {namespaces: ["evil*"]}}]
      to: [{operation: {paths: ["/admin"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: at-waypoint, namespace: mesh}
spec: {targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}], action: DENY}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db, namespace: mesh}
spec: {selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}, portLevelMtls: {"9100": {mode: PERMISSIVE}}}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: mesh, labels: {app: db}}
spec: {nodeName: n1}
status: {podIP: 10.244.1.7}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: mesh}
spec: {nodeName: n1}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: mesh}
spec: {clusterIP: 10.96.1.1, ports: [{name: pg, port: 5432, targetPort: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-abc, namespace: mesh, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints:
  - addresses: [10.244.1.7]
    targetRef: {kind: Pod, name: db-0}
  - addresses: [192.168.9.9]
    conditions: {ready: false}
ports: [{name: pg, port: 15432}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: mesh}
spec:
  hosts: [api.example.com]
  addresses: [240.240.0.1]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.5}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm1, namespace: mesh}
spec: {address: 10.10.0.9, labels: {app: db}, serviceAccount: vm, weight: 4, locality: r1/z1}
`);
  const global = t.authorizations.get('istio-system/global');
  assert.equal(global?.scope, 'GLOBAL');
  // ALLOW: the L7 rule is dropped, the L4 one kept (`*` -> presence; when -> its own clause).
  assert.deepEqual(t.authorizations.get('mesh/l7')?.rules, [{ clauses: [{ matches: [{ principals: [{ presence: {} }] }] }, { matches: [{ destinationPorts: [80] }] }] }]);
  // DENY: the L7 `to` is dropped, so it denies more.
  assert.deepEqual(t.authorizations.get('mesh/l7-deny')?.rules, [{ clauses: [{ matches: [{ namespaces: [{ prefix: 'evil' }] }] }] }]);
  assert.equal(t.authorizations.has('mesh/at-waypoint'), false);
  assert.ok(t.notes.some((n) => n.includes('at-waypoint')));
  assert.ok(t.notes.some((n) => n.includes('Pod mesh/pending')));
  assert.deepEqual(t.authorizations.get('mesh/converted_peer_authentication_db'), {
    name: 'converted_peer_authentication_db',
    namespace: 'mesh',
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules: [{ clauses: [{ matches: [{ notPrincipals: [{ presence: {} }], notDestinationPorts: [9100] }] }] }],
  });
  const db = t.addresses.get('Kubernetes//Pod/mesh/db-0');
  assert.ok(db?.type === 'workload');
  assert.deepEqual(db.workload.authorizationPolicies, ['mesh/converted_peer_authentication_db']);
  assert.deepEqual(db.workload.services, { 'mesh/db.mesh.svc.cluster.local': { ports: [{ servicePort: 5432, targetPort: 15432 }] } }, 'slice port wins');
  const ipOnly = t.addresses.get('Kubernetes/discovery.k8s.io/EndpointSlice/mesh/db-abc/192.168.9.9');
  assert.ok(ipOnly?.type === 'workload');
  assert.equal(ipOnly.workload.status, 'UNHEALTHY');
  const se = t.addresses.get('mesh/api.example.com');
  assert.ok(se?.type === 'service');
  assert.deepEqual(se.service.ports, [{ servicePort: 443, targetPort: 0, appProtocol: 'UNKNOWN' }]);
  const seEp = t.addresses.get('Kubernetes/networking.istio.io/ServiceEntry/mesh/ext/203.0.113.5');
  assert.ok(seEp?.type === 'workload');
  assert.deepEqual(seEp.workload.services, { 'mesh/api.example.com': { ports: [{ servicePort: 443, targetPort: 443 }] } });
  const vm = t.addresses.get('Kubernetes/networking.istio.io/WorkloadEntry/mesh/vm1');
  assert.ok(vm?.type === 'workload');
  assert.equal(vm.workload.serviceAccount, 'vm');
  assert.deepEqual(vm.workload.capacity, { value: 4 });
  assert.deepEqual(vm.workload.locality, { region: 'r1', zone: 'z1', subzone: '' });
  assert.equal(vm.workload.tunnelProtocol, 'HBONE');
  for (const a of t.addresses.values()) assert.ok(decodeAddress(encodeAddress(a)).ok);
  for (const a of t.authorizations.values()) assert.ok(decodeAuthorization(encodeAuthorization(a)).ok);
});

test('string match forms', () => {
  assert.deepEqual(stringMatchOf('*'), { presence: {} });
  assert.deepEqual(stringMatchOf('a*'), { prefix: 'a' });
  assert.deepEqual(stringMatchOf('*a'), { suffix: 'a' });
  assert.deepEqual(stringMatchOf('a'), { exact: 'a' });
});

const pods = (list: Array<[string, string]>): string =>
  list.map(([name, ip]) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: n}\nspec: {nodeName: n1}\nstatus: {podIP: ${ip}}\n`).join('---\n');

test('encoded translations diff by content: only changed resources are upserted, vanished ones removed', () => {
  const e1 = encodeTranslation(translateText(pods([['a', '10.0.0.1'], ['b', '10.0.0.2']])));
  const first = diffResources(EMPTY_ENCODED.addresses, e1.addresses);
  assert.deepEqual(first.upserts.map((r) => r.name), ['Kubernetes//Pod/n/a', 'Kubernetes//Pod/n/b']);
  assert.ok(first.upserts.every((r) => /^[0-9a-f]{16}$/.test(r.version)));
  const next = pods([['b', '10.0.0.3'], ['c', '10.0.0.4']]);
  const e2 = encodeTranslation(translateText(next));
  const d = diffResources(e1.addresses, e2.addresses);
  assert.deepEqual(d.upserts.map((r) => r.name), ['Kubernetes//Pod/n/b', 'Kubernetes//Pod/n/c']);
  assert.deepEqual(d.removals, ['Kubernetes//Pod/n/a']);
  assert.deepEqual(diffResources(e2.addresses, encodeTranslation(translateText(next)).addresses), { upserts: [], removals: [] });
  // A resource that would be NACKed is left out and reported, not thrown.
  const t = translateText(next);
  t.addresses.set('broken', { type: 'workload', workload: { uid: 'broken', name: 'x', namespace: 'n', addresses: [new Uint8Array(5)] } });
  const e3 = encodeTranslation(t);
  assert.equal(e3.addresses.has('broken'), false);
  assert.deepEqual(e3.errors, ['broken: workload broken: addresses[0]: an IP address must be 4 or 16 bytes, got 5']);
  assert.equal(e3.addresses.size, 2);
});

test('resolvePodIp fills in pods without status.podIP (the lab plans IPs itself)', () => {
  const store = new ResourceStore();
  store.replaceSource('x.yaml', parseManifestText('x.yaml', 'apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\nspec: {nodeName: n1}\n').resources);
  assert.equal(translate(store.snapshot()).addresses.size, 0);
  const t = translate(store.snapshot(), { resolvePodIp: (ns, name) => (ns === 'n' && name === 'p' ? '10.244.3.3' : undefined) });
  const w = t.addresses.get('Kubernetes//Pod/n/p');
  assert.ok(w?.type === 'workload');
  assert.equal(bytesToIp(w.workload.addresses?.[0] as Uint8Array), '10.244.3.3');
});
