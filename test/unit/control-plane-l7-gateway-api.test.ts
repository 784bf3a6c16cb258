/**
 * Waypoint L7 config from Gateway API routes: the exact services, clusters
 * and workloads of the fixture waypoint, HTTPRoute matches/filters/
 * backends/timeouts/retries and their precedence, waypoint-Gateway parents
 * with hostnames, GRPCRoute method matches, unresolvable backends and the
 * notes for what is not applied.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BASE, build, CACHE, configOf, EP_RATINGS, EP_V1, EP_V2, RATINGS, REVIEWS, serviceOf } from '../helpers/control-plane-l7.js';

const own = (port: number, host: string): string => `outbound|${port}||${host}`;

test('without routes: one service entry per port (protocols from port names), default routes, ready in-mesh endpoints, bound workloads', () => {
  const b = build('');
  assert.deepEqual(b.issues, []);
  assert.deepEqual([...b.l7.configs.keys()], ['shop/wp']);
  const c = configOf(b);
  const svc = (hostname: string, addr: string, port: number, protocol: string) => ({
    hostname,
    namespace: 'shop',
    addresses: [addr],
    port,
    protocol,
    routes: [{ name: 'default', backends: [{ cluster: own(port, hostname), weight: 1 }] }],
    authorization: [],
    requestAuthentication: [],
  });
  assert.deepEqual(c, {
    services: [svc(CACHE, '10.96.0.12', 6379, 'tcp'), svc(RATINGS, '10.96.0.11', 50051, 'grpc'), svc(REVIEWS, '10.96.0.10', 9080, 'http')],
    clusters: [
      { name: own(50051, RATINGS), protocol: 'h2c', endpoints: [EP_RATINGS] },
      { name: own(6379, CACHE), protocol: 'http1', endpoints: [] },
      // reviews-v3 is not ready: not an endpoint.
      { name: own(9080, REVIEWS), protocol: 'http1', endpoints: [EP_V1, EP_V2] },
    ],
    workloads: [
      { address: '10.1.0.21', principal: 'spiffe://cluster.local/ns/shop/sa/default', namespace: 'shop', name: 'ratings-1' },
      { address: '10.1.0.11', principal: 'spiffe://cluster.local/ns/shop/sa/reviews', namespace: 'shop', name: 'reviews-v1' },
      { address: '10.1.0.12', principal: 'spiffe://cluster.local/ns/shop/sa/reviews', namespace: 'shop', name: 'reviews-v2' },
      { address: '10.1.0.13', principal: 'spiffe://cluster.local/ns/shop/sa/reviews', namespace: 'shop', name: 'reviews-v3' },
    ],
  });
});

test('waypoint-for service: no workloads; a service opting out (use-waypoint: none) and non-mesh pods are left out', () => {
  const base = BASE.replace('labels: {istio.io/waypoint-for: all}', 'labels: {}').replace('metadata: {name: cache, namespace: shop}', "metadata: {name: cache, namespace: shop, labels: {istio.io/use-waypoint: none}}").replace(
    'metadata: {name: reviews-v2, namespace: shop, labels: {app: reviews, version: v2}}',
    "metadata: {name: reviews-v2, namespace: shop, labels: {app: reviews, version: v2, istio.io/dataplane-mode: none}}",
  );
  const c = configOf(build('', base));
  assert.deepEqual(c.workloads, []);
  assert.deepEqual(c.services.map((s) => s.hostname), [RATINGS, REVIEWS]);
  assert.deepEqual(c.clusters.find((x) => x.name === own(9080, REVIEWS))?.endpoints, [EP_V1]);
});

const ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}, {path: {type: Exact, value: /health}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Route, value: api}], add: [{name: x-a, value: "1"}], remove: [x-debug]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-resp, value: "yes"}]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: ratings, port: 50051}, fraction: {numerator: 1, denominator: 4}}
    backendRefs:
    - name: reviews
      port: 9080
      weight: 90
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-backend, value: reviews}]}}]
    - {name: ratings, port: 50051, weight: 10}
    timeouts: {request: 2s, backendRequest: 500ms}
    retry: {attempts: 3, codes: [503, 504], backoff: 100ms}
  - matches: [{path: {type: PathPrefix, value: /api/v2}, method: POST, headers: [{name: X-User, value: jason}], queryParams: [{name: q, type: RegularExpression, value: "a.*"}]}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: internal.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    backendRefs: [{name: reviews, port: 9080}]
  - matches: [{path: {type: Exact, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: new.example, path: {type: ReplaceFullPath, replaceFullPath: /new}}
  - matches: [{path: {type: RegularExpression, value: "/r/[0-9]+"}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /cost$1}}
    backendRefs: [{name: missing, port: 80}, {name: reviews, port: 9080}]
  - backendRefs: [{name: missing, port: 80}]
`;

test('HTTPRoute on a Service: matches, filters, weighted backends with their own filters, mirror fraction, timeouts, retry; precedence order', () => {
  const b = build(ROUTE);
  assert.deepEqual(b.issues, []);
  const c = configOf(b);
  const reviews = serviceOf(c, REVIEWS);
  const rule0 = {
    requestHeaders: { set: { 'x-route': 'api' }, add: { 'x-a': '1' }, remove: ['x-debug'] },
    responseHeaders: { set: { 'x-resp': 'yes' } },
    mirrors: [{ cluster: own(50051, RATINGS), percentage: 25 }],
    backends: [
      { cluster: own(9080, REVIEWS), weight: 90, requestHeaders: { set: { 'x-backend': 'reviews' } } },
      { cluster: own(50051, RATINGS), weight: 10 },
    ],
    timeout: 2000,
    retries: { attempts: 3, retriableStatusCodes: [503, 504], backoff: 100, perTryTimeout: 500 },
  };
  assert.deepEqual(reviews.routes, [
    // Exact paths first (longer first), then regular expressions, then prefixes (longest first), the catch-all "/" last.
    { name: 'shop/reviews/rule-0/match-1', matches: [{ path: { exact: '/health' } }], ...rule0 },
    { name: 'shop/reviews/rule-2/match-0', matches: [{ path: { exact: '/old' } }], redirect: { scheme: 'https', host: 'new.example', path: '/new', status: 302 } },
    {
      name: 'shop/reviews/rule-3/match-0',
      matches: [{ path: { regex: '/r/[0-9]+' } }],
      rewrite: { uriRegex: { pattern: '^.*$', substitution: '/cost$$1' } },
      backends: [{ cluster: own(9080, REVIEWS), weight: 1 }],
    },
    {
      name: 'shop/reviews/rule-1/match-0',
      matches: [{ path: { prefix: '/api/v2' }, method: 'POST', headers: [{ name: 'x-user', exact: 'jason' }], queryParams: [{ name: 'q', regex: 'a.*' }] }],
      rewrite: { authority: 'internal.example', uriPrefix: '/v2' },
      backends: [{ cluster: own(9080, REVIEWS), weight: 1 }],
    },
    { name: 'shop/reviews/rule-0/match-0', matches: [{ path: { prefix: '/api' } }], ...rule0 },
    { name: 'shop/reviews/rule-4/match-0', matches: [{ path: { prefix: '/' } }], directResponse: { status: 500, body: 'no valid backend for this route' } },
  ]);
  // Other services keep their default route.
  assert.deepEqual(serviceOf(c, RATINGS).routes, [{ name: 'default', backends: [{ cluster: own(50051, RATINGS), weight: 1 }] }]);
  assert.deepEqual(b.l7.notes, [
    'HTTPRoute shop/reviews rules[3] backendRefs[0]: backend Service shop/missing does not exist; left out of the route',
    'HTTPRoute shop/reviews rules[4] backendRefs[0]: backend Service shop/missing does not exist; left out of the route',
    'HTTPRoute shop/reviews rules[4]: no usable backend; the rule answers 500',
  ]);
});

test('a backend Service not bound to the waypoint gets its cluster; a port-less parentRef covers every port', () => {
  const extra = `
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: shop, labels: {istio.io/use-waypoint: none}}
spec: {clusterIP: 10.96.0.20, selector: {app: reviews}, ports: [{name: http-web, port: 80, targetPort: 9080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-plain, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: reviews}]
  rules: [{backendRefs: [{name: plain, port: 80}]}]
`;
  const c = configOf(build(extra));
  assert.deepEqual(serviceOf(c, REVIEWS).routes, [{ name: 'shop/to-plain/rule-0/match-0', matches: [{ path: { prefix: '/' } }], backends: [{ cluster: 'outbound|80||plain.shop.svc.cluster.local', weight: 1 }] }]);
  assert.deepEqual(c.clusters.find((x) => x.name === 'outbound|80||plain.shop.svc.cluster.local'), {
    name: 'outbound|80||plain.shop.svc.cluster.local',
    protocol: 'http1',
    endpoints: [EP_V1, EP_V2],
  });
  assert.ok(!c.services.some((s) => s.hostname.startsWith('plain.')), 'plain is not a service of the waypoint');
});

test('a route with the waypoint Gateway as parent applies to its services, filtered by hostnames; other namespaces and consumer routes are noted', () => {
  const extra = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all, namespace: shop}
spec:
  parentRefs: [{name: wp}]
  hostnames: [reviews, ratings.shop.svc.cluster.local]
  rules:
  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-via, value: wp}]}}]
    backendRefs: [{name: reviews}]
---
apiVersion: v1
kind: Namespace
metadata: {name: client}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: consumer, namespace: client}
spec:
  parentRefs: [{kind: Service, group: "", name: reviews, namespace: shop}, {name: wp, namespace: shop}]
  rules: [{backendRefs: [{name: x, port: 1}]}]
`;
  const b = build(extra);
  const c = configOf(b);
  const route = (host: string, port: number) => ({
    name: 'shop/all/rule-0/match-0',
    matches: [{ path: { prefix: '/' } }],
    responseHeaders: { add: { 'x-via': 'wp' } },
    backends: [{ cluster: own(port, host), weight: 1 }],
  });
  assert.deepEqual(serviceOf(c, REVIEWS).routes, [route(REVIEWS, 9080)]);
  // A backendRef to the service itself without a port uses the request's port... ratings is not "reviews":
  // `reviews` has one port, so 9080.
  assert.deepEqual(serviceOf(c, RATINGS).routes, [route(REVIEWS, 9080)]);
  // cache is not in hostnames and is a TCP port anyway.
  assert.deepEqual(serviceOf(c, CACHE).routes, [{ name: 'default', backends: [{ cluster: own(6379, CACHE), weight: 1 }] }]);
  assert.deepEqual(b.l7.notes, [
    'HTTPRoute client/consumer parentRefs[0]: a route for a Service in another namespace (a "consumer" route) is not applied by waypoints',
    'HTTPRoute client/consumer parentRefs[1]: a route in another namespace than waypoint shop/wp is not applied (Gateway allowedRoutes are not evaluated; only Same)',
  ]);
});

test('GRPCRoute: method matches become paths, headers, weighted backends; on a gRPC service', () => {
  const extra = `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: ratings, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: ratings}]
  rules:
  - matches:
    - method: {service: ratings.v1.Ratings, method: Get}
      headers: [{name: x-tier, value: gold}]
    - method: {service: ratings.v1.Admin}
    - method: {type: RegularExpression, method: "List.*"}
    backendRefs: [{name: ratings, port: 50051, weight: 3}, {name: reviews, port: 9080, weight: 1}]
  - backendRefs: [{name: ratings, port: 50051}]
`;
  const b = build(extra);
  assert.deepEqual(b.issues, []);
  const c = configOf(b);
  const backends = [
    { cluster: own(50051, RATINGS), weight: 3 },
    { cluster: own(9080, REVIEWS), weight: 1 },
  ];
  assert.deepEqual(serviceOf(c, RATINGS).routes, [
    { name: 'shop/ratings/rule-0/match-0', matches: [{ path: { exact: '/ratings.v1.Ratings/Get' }, headers: [{ name: 'x-tier', exact: 'gold' }] }], backends },
    { name: 'shop/ratings/rule-0/match-2', matches: [{ path: { regex: '/[^/]+/List.*' } }], backends },
    { name: 'shop/ratings/rule-0/match-1', matches: [{ path: { prefix: '/ratings.v1.Admin/' } }], backends },
    { name: 'shop/ratings/rule-1/match-0', backends: [{ cluster: own(50051, RATINGS), weight: 1 }] },
  ]);
});

test('HTTPRoute and VirtualService on one service: the HTTPRoute wins, with a note; unsupported filters answer 500; cross-namespace backends need a ReferenceGrant', () => {
  const extra = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - matches: [{path: {value: /ext}}]
    filters: [{type: ExtensionRef, extensionRef: {group: x, kind: y, name: z}}]
    backendRefs: [{name: reviews, port: 9080}]
  - backendRefs: [{name: reviews, namespace: other, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
`;
  const b = build(extra);
  const c = configOf(b);
  assert.deepEqual(serviceOf(c, REVIEWS).routes, [
    { name: 'shop/reviews/rule-0/match-0', matches: [{ path: { prefix: '/ext' } }], directResponse: { status: 500, body: 'route filter not supported by the waypoint' } },
    { name: 'shop/reviews/rule-1/match-0', matches: [{ path: { prefix: '/' } }], directResponse: { status: 500, body: 'no valid backend for this route' } },
  ]);
  assert.deepEqual(b.l7.notes, [
    'reviews.shop.svc.cluster.local:9080: both Gateway API routes and VirtualService shop/reviews apply; the Gateway API routes are used (mixing is undefined in Istio)',
    'HTTPRoute shop/reviews rules[0]: filter ExtensionRef is not supported; the rule answers 500',
    'HTTPRoute shop/reviews rules[1] backendRefs[0]: backend Service other/reviews is in another namespace; that needs a ReferenceGrant, which is not supported yet; left out of the route',
    'HTTPRoute shop/reviews rules[1]: no usable backend; the rule answers 500',
  ]);
});

test('a route for a TCP port is not applied; a Service parent without a waypoint is noted', () => {
  const extra = `
apiVersion: v1
kind: Service
metadata: {name: lonely, namespace: shop, labels: {istio.io/use-waypoint: none}}
spec: {clusterIP: 10.96.0.30, ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cache, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cache}, {group: "", kind: Service, name: lonely}]
  rules: [{backendRefs: [{name: reviews, port: 9080}]}]
`;
  const b = build(extra);
  const c = configOf(b);
  assert.deepEqual(serviceOf(c, CACHE).routes, [{ name: 'default', backends: [{ cluster: own(6379, CACHE), weight: 1 }] }]);
  assert.deepEqual(b.l7.notes, [
    'HTTPRoute shop/cache parentRefs[1]: Service shop/lonely is not bound to a waypoint (istio.io/use-waypoint); the route has no effect',
    'cache.shop.svc.cluster.local:6379 is a TCP port (appProtocol or port name); HTTP routes for it are not applied',
  ]);
});

test('ServiceEntry hosts bound to the waypoint are services of it; an HTTPRoute with a ServiceEntry parent applies to them', () => {
  const extra = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: shop}
spec:
  hosts: [api.example.com]
  addresses: [240.0.0.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{address: 10.1.0.50, labels: {app: ext}, serviceAccount: ext}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ext, namespace: shop}
spec:
  parentRefs: [{group: networking.istio.io, kind: ServiceEntry, name: ext}]
  rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-ext, value: "1"}]}}], backendRefs: [{group: networking.istio.io, kind: ServiceEntry, name: ext}]}]
`;
  const b = build(extra);
  assert.deepEqual(b.issues, []);
  const c = configOf(b);
  assert.deepEqual(serviceOf(c, 'api.example.com'), {
    hostname: 'api.example.com',
    namespace: 'shop',
    addresses: ['240.0.0.1'],
    port: 80,
    protocol: 'http',
    routes: [{ name: 'shop/ext/rule-0/match-0', matches: [{ path: { prefix: '/' } }], requestHeaders: { add: { 'x-ext': '1' } }, backends: [{ cluster: 'outbound|80||api.example.com', weight: 1 }] }],
    authorization: [],
    requestAuthentication: [],
  });
  assert.deepEqual(c.clusters.find((x) => x.name === 'outbound|80||api.example.com'), {
    name: 'outbound|80||api.example.com',
    protocol: 'http1',
    endpoints: [{ address: '10.1.0.50', port: 80, labels: { app: 'ext' }, workload: 'ext', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/ext' }],
  });
});
