/**
 * The real ControlPlane on loopback serving waypoint L7 configs: a manifest
 * folder with two waypoint Gateways, services, pods and an HTTPRoute. A
 * waypoint-style client subscribes by name (non-wildcard delta ADS) to
 * "shop/wp" and decodes ambit.l7.v1.L7Config; a wildcard DeltaXdsClient
 * sees both waypoints. Editing the HTTPRoute file pushes a new version of
 * that one resource only; an invalid manifest is reported in
 * /debug/status and the last good config stays served (nothing pushed).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/common/logger.js';
import type { CaAuthenticator } from '../../src/ca/authenticator.js';
import { ControlPlane } from '../../src/control-plane/server.js';
import { compileL7Config } from '../../src/waypoint/config.js';
import { decodeL7Config, L7_CONFIG_TYPE_URL } from '../../src/waypoint/l7-codec.js';
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse } from '../../src/xds/codec.js';
import { DeltaXdsClient, type XdsTypeUpdate } from '../../src/xds/delta-client.js';
import { deltaAdsServiceDefinition } from '../../src/xds/delta-server.js';
import { buildNode } from '../../src/xds/node.js';

const BASE = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
  addresses: [{type: IPAddress, value: 10.96.0.2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp2, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
  addresses: [{type: IPAddress, value: 10.96.0.3}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop, labels: {istio.io/use-waypoint: wp}}
spec: {clusterIP: 10.96.0.10, selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: shop, labels: {istio.io/use-waypoint: wp2}}
spec: {clusterIP: 10.96.0.11, selector: {app: reviews}, ports: [{name: http, port: 80, targetPort: 9080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: shop, labels: {app: reviews, version: v1}}
spec: {nodeName: n1, serviceAccountName: reviews, containers: [{name: c}]}
status: {podIP: 10.1.0.11}
`;

const route = (prefix: string): string => `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: ${prefix}}}]
    backendRefs: [{name: reviews, port: 9080}]
`;

const REVIEWS = 'reviews.shop.svc.cluster.local';
const NODE = buildNode({ instanceIp: '127.0.0.1', podName: 'wp-abc', podNamespace: 'shop', nodeName: 'n1' });
const denyAll: CaAuthenticator = { authenticate: () => Promise.resolve({ ok: false, kind: 'unauthenticated', reason: 'no CA use in this test' }) };

interface Received {
  name: string;
  version: string;
  config: Record<string, unknown>;
}

/** A waypoint-style delta ADS stream subscribed to one resource name (not a wildcard), ACKing everything. */
class NamedSubscriber {
  readonly received: Received[] = [];
  readonly responses: DeltaDiscoveryResponse[] = [];
  readonly #client: grpc.Client;
  readonly #call: grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;
  #waiters: Array<() => void> = [];

  constructor(address: string, name: string) {
    const Ctor = grpc.makeGenericClientConstructor(deltaAdsServiceDefinition(), 'AggregatedDiscoveryService');
    this.#client = new Ctor(address, grpc.credentials.createInsecure());
    const method = (this.#client as unknown as Record<string, () => grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>>).DeltaAggregatedResources as () => grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;
    this.#call = method.call(this.#client);
    this.#call.on('data', (res: DeltaDiscoveryResponse) => {
      this.responses.push(res);
      for (const r of res.resources) {
        assert.equal(r.resource?.typeUrl, L7_CONFIG_TYPE_URL);
        this.received.push({ name: r.name, version: r.version, config: decodeL7Config((r.resource as { value: Buffer }).value) });
      }
      this.#call.write({ typeUrl: res.typeUrl, resourceNamesSubscribe: [], resourceNamesUnsubscribe: [], initialResourceVersions: {}, responseNonce: res.nonce });
      const w = this.#waiters;
      this.#waiters = [];
      w.forEach((f) => f());
    });
    this.#call.on('error', () => undefined);
    this.#call.write({ node: NODE, typeUrl: L7_CONFIG_TYPE_URL, resourceNamesSubscribe: [name], resourceNamesUnsubscribe: [], initialResourceVersions: {}, responseNonce: '' });
  }

  async waitFor(pred: () => boolean, what: string, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.#call.cancel();
    this.#client.close();
  }
}

let dir: string;
let cp: ControlPlane;
let named: NamedSubscriber | undefined;
let wildcard: DeltaXdsClient | undefined;
const wildcardHeld = new Map<string, string>();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-cp-l7-'));
  await writeFile(join(dir, 'base.yaml'), BASE);
  await writeFile(join(dir, 'route.yaml'), route('/v1'));
  cp = await ControlPlane.start(
    { manifests: dir, caDir: join(dir, 'ca'), trustDomain: 'cluster.local', clusterDomain: 'cluster.local', address: '127.0.0.1', grpcPort: 0, plaintextPort: 0, monitoringPort: 0, debounceMs: 20 },
    { logger: silentLogger(), registry: new Registry(), caAuthenticator: denyAll },
  );
});

after(async () => {
  named?.close();
  await wildcard?.close();
  await cp?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function routesOf(r: Received): unknown {
  const c = compileL7Config(r.config);
  const svc = c.services.find((s) => s.hostname === REVIEWS);
  assert.ok(svc, 'reviews is a service of the waypoint');
  return svc.routes.map((x) => ({ name: x.name, path: x.matches[0]?.path, backends: x.backends.map((b) => b.cluster) }));
}

test('a waypoint subscribed to its own name gets its L7 config only; a wildcard client gets every waypoint', async () => {
  named = new NamedSubscriber(`127.0.0.1:${cp.ports.plaintext}`, 'shop/wp');
  await named.waitFor(() => named!.received.length >= 1, 'the first config');
  assert.deepEqual(named.received.map((r) => r.name), ['shop/wp']);
  assert.deepEqual(routesOf(named.received[0] as Received), [{ name: 'shop/reviews/rule-0/match-0', path: { kind: 'prefix', value: '/v1' }, backends: [`outbound|9080||${REVIEWS}`] }]);
  const c = compileL7Config((named.received[0] as Received).config);
  assert.deepEqual([...c.clusters.values()].map((x) => [x.name, x.endpoints.map((e) => `${e.address}:${e.port} ${e.principal}`)]), [
    [`outbound|9080||${REVIEWS}`, ['10.1.0.11:9080 spiffe://cluster.local/ns/shop/sa/reviews']],
  ]);

  wildcard = new DeltaXdsClient({
    address: `127.0.0.1:${cp.ports.plaintext}`,
    credentials: grpc.credentials.createInsecure(),
    node: NODE,
    handlers: [
      {
        typeUrl: L7_CONFIG_TYPE_URL,
        apply: (u: XdsTypeUpdate) => {
          for (const r of u.upserts) {
            compileL7Config(decodeL7Config(r.body));
            wildcardHeld.set(r.name, r.version);
          }
          for (const n of u.removals) wildcardHeld.delete(n);
          return { rejected: [] };
        },
      },
    ],
  });
  const synced = new Promise<void>((resolve) => wildcard!.once('synced', () => resolve()));
  wildcard.start();
  await synced;
  assert.deepEqual([...wildcardHeld.keys()].sort(), ['shop/wp', 'shop/wp2']);
  assert.equal(wildcardHeld.get('shop/wp'), (named.received[0] as Received).version, 'same content, same version');
});

test('editing the HTTPRoute pushes a new version of that waypoint only', async () => {
  assert.ok(named);
  const before = named.received.length;
  const wp2Version = wildcardHeld.get('shop/wp2');
  await writeFile(join(dir, 'route.yaml'), route('/v2'));
  await named.waitFor(() => named!.received.length > before, 'the updated config');
  const latest = named.received.at(-1) as Received;
  assert.equal(latest.name, 'shop/wp');
  assert.notEqual(latest.version, (named.received[before - 1] as Received).version);
  assert.deepEqual(routesOf(latest), [{ name: 'shop/reviews/rule-0/match-0', path: { kind: 'prefix', value: '/v2' }, backends: [`outbound|9080||${REVIEWS}`] }]);
  assert.ok(named.received.every((r) => r.name === 'shop/wp'), 'never anything but the subscribed name');
  // The other waypoint's bytes did not change, so its version did not either.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(wildcardHeld.get('shop/wp2'), wp2Version);
  assert.equal(wildcardHeld.get('shop/wp'), latest.version);
});

test('an invalid manifest is reported and the last good config stays served', async () => {
  assert.ok(named);
  const before = named.received.length;
  const served = cp.xds.resources(L7_CONFIG_TYPE_URL).find((r) => r.name === 'shop/wp')?.version;
  await writeFile(
    join(dir, 'bad.yaml'),
    `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules: [{matches: [{path: {type: RegularExpression, value: "(("}}], backendRefs: [{name: reviews, port: 9080}]}]
`,
  );
  const deadline = Date.now() + 5000;
  let text: string[] = [];
  while (Date.now() < deadline) {
    const res = await fetch(`http://127.0.0.1:${cp.ports.monitoring}/debug/status`);
    const status = (await res.json()) as { issues: Array<{ text: string }> };
    text = status.issues.map((i) => i.text);
    if (text.length > 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(text, [
    "bad.yaml: HTTPRoute shop/broken: spec.rules[0].matches[0].path.value: is not a valid regular expression (Invalid regular expression: /((/: Unterminated group); got '(('",
  ]);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(named.received.length, before, 'nothing new was pushed');
  assert.equal(cp.xds.resources(L7_CONFIG_TYPE_URL).find((r) => r.name === 'shop/wp')?.version, served);
  assert.equal(cp.status().served.waypoints, 2);
});
