/**
 * Shared fixture for the control plane's waypoint L7 tests: an ambient
 * namespace `shop` bound (namespace label) to waypoint Gateway shop/wp
 * (waypoint-for: all, VIP 10.96.0.2), services reviews (http 9080, two
 * ready pods v1/v2 and a not-ready v3), ratings (grpc 50051 -> named
 * container port 7070) and cache (redis 6379), plus helpers that load YAML
 * text into a store and run both translations.
 */
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { parseManifestText } from '../../src/control-plane/manifest-source.js';
import { ResourceStore } from '../../src/control-plane/resource-store.js';
import { translate, type Translation } from '../../src/control-plane/translate.js';
import { translateL7, type L7Translation } from '../../src/control-plane/translate-l7.js';
import type { L7ConfigInput, ServiceInput } from '../../src/control-plane/l7-input.js';
import { compileL7Config } from '../../src/waypoint/config.js';
import { decodeL7Config, encodeL7Config } from '../../src/waypoint/l7-codec.js';
import { formatIssue } from '../../src/control-plane/validation.js';

export const BASE = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop, labels: {istio.io/waypoint-for: all}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
  addresses: [{type: IPAddress, value: 10.96.0.2}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  clusterIP: 10.96.0.11
  selector: {app: ratings}
  ports: [{name: grpc, port: 50051, targetPort: grpc-port}]
---
apiVersion: v1
kind: Service
metadata: {name: cache, namespace: shop}
spec:
  clusterIP: 10.96.0.12
  selector: {app: cache}
  ports: [{name: redis, port: 6379}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: shop, labels: {app: reviews, version: v1}}
spec: {nodeName: n1, serviceAccountName: reviews, containers: [{name: c}]}
status: {podIP: 10.1.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v2, namespace: shop, labels: {app: reviews, version: v2}}
spec: {nodeName: n1, serviceAccountName: reviews, containers: [{name: c}]}
status: {podIP: 10.1.0.12}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v3, namespace: shop, labels: {app: reviews, version: v3}}
spec: {nodeName: n1, serviceAccountName: reviews, containers: [{name: c}]}
status: {podIP: 10.1.0.13, conditions: [{type: Ready, status: "False"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ratings-1, namespace: shop, labels: {app: ratings}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: grpc-port, containerPort: 7070}]}]}
status: {podIP: 10.1.0.21}
`;

export const REVIEWS = 'reviews.shop.svc.cluster.local';
export const RATINGS = 'ratings.shop.svc.cluster.local';
export const CACHE = 'cache.shop.svc.cluster.local';

export const EP_V1 = { address: '10.1.0.11', port: 9080, labels: { app: 'reviews', version: 'v1' }, workload: 'reviews-v1', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/reviews' };
export const EP_V2 = { address: '10.1.0.12', port: 9080, labels: { app: 'reviews', version: 'v2' }, workload: 'reviews-v2', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/reviews' };
export const EP_RATINGS = { address: '10.1.0.21', port: 7070, labels: { app: 'ratings' }, workload: 'ratings-1', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/default' };

export interface Built {
  readonly issues: string[];
  readonly t: Translation;
  readonly l7: L7Translation;
}

/** Loads YAML documents (BASE plus `extra`) and runs both translations. */
export function build(extra: string, base = BASE): Built {
  const parsed = parseManifestText('test.yaml', `${base}\n---\n${extra}`);
  const store = new ResourceStore();
  store.replaceSource('test.yaml', parsed.resources, parsed.issues);
  const t = translate(store.snapshot());
  return { issues: store.issues().map(formatIssue), t, l7: translateL7(store.snapshot(), t) };
}

/** The config of waypoint `key`; it must compile and survive the wire codec unchanged. */
export function configOf(b: Built, key = 'shop/wp'): L7ConfigInput {
  const c = b.l7.configs.get(key);
  assert.ok(c, `waypoint ${key} has a config (rejected: ${b.l7.rejected.get(key) ?? '-'})`);
  const compiled = compileL7Config(c);
  assert.ok(isDeepStrictEqual(compileL7Config(decodeL7Config(encodeL7Config(c))), compiled), 'the config survives encode/decode');
  return c;
}

export function serviceOf(c: L7ConfigInput, hostname: string, port?: number): ServiceInput {
  const s = c.services.find((x) => x.hostname === hostname && (port === undefined || x.port === port));
  assert.ok(s, `service ${hostname}${port ? `:${port}` : ''} is in the config`);
  return s;
}
