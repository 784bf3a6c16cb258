/**
 * Waypoint L7 config from VirtualService and DestinationRule: routes in
 * order with one route per match entry, rewrite per entry, retries split
 * into conditions and codes, fault, mirror, per-destination headers;
 * clusters per subset with the DestinationRule policy (subset and port
 * overrides), retry budget, and the notes for what a waypoint cannot do.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build, configOf, EP_V1, EP_V2, RATINGS, REVIEWS, serviceOf } from '../helpers/control-plane-l7.js';
import { re2Substitution } from '../../src/control-plane/l7-virtual-service.js';

const VS = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - name: v2-users
    match:
    - headers: {end-user: {exact: jason}}
      uri: {prefix: /api/v1}
      withoutHeaders: {x-skip: {}}
    - queryParams: {beta: {regex: "on|yes"}}
      method: {exact: post}
    - sourceLabels: {app: x}
    - uri: {exact: /other-port}
      port: 8080
    rewrite: {uri: /v2}
    route:
    - destination: {host: reviews, subset: v2}
      headers: {request: {set: {x-subset: v2}}}
    timeout: 3s
    retries: {attempts: 4, perTryTimeout: 1s, retryOn: "5xx,503,reset,envoy-ratelimited"}
    fault:
      delay: {fixedDelay: 200ms, percentage: {value: 10}}
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 5.5}}
    mirror: {host: ratings.shop.svc.cluster.local, port: {number: 50051}}
    mirrorPercentage: {value: 25}
  - match: [{uri: {regex: "/legacy/(.*)"}}]
    rewrite: {uriRegexRewrite: {match: "^/legacy/(.*)$", rewrite: "/new/\\\\1"}, authority: reviews-new}
    route: [{destination: {host: reviews.shop.svc.cluster.local, port: {number: 9080}}}]
  - match: [{uri: {prefix: /go/}}]
    redirect: {uri: /gone, authority: elsewhere.example, redirectCode: 308}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v3}
      weight: 20
    - destination: {host: unknown.example}
      weight: 0
    headers: {response: {add: {x-served: vs}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 250ms, tcpKeepalive: {time: 10s}}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 50, maxRequestsPerConnection: 5, maxRetries: 3}
    outlierDetection: {consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 1m, maxEjectionPercent: 50}
    loadBalancer: {simple: ROUND_ROBIN}
    retryBudget: {percent: 25, minRetryConcurrency: 2}
    portLevelSettings:
    - port: {number: 9080}
      outlierDetection: {consecutiveGatewayErrors: 2}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpCookie: {name: session, ttl: 0s}}}
      connectionPool: {http: {http2MaxRequests: 7}}
`;

test('VirtualService http routes: one route per match, rewrites per match kind, retries, fault, mirror, redirect, directResponse, weights', () => {
  const b = build(VS);
  assert.deepEqual(b.issues, []);
  const c = configOf(b);
  const budget = { budget: { percent: 25, minRetryConcurrency: 2 } };
  const first = {
    timeout: 3000,
    retries: { attempts: 4, perTryTimeout: 1000, retriableStatusCodes: [503], retryOn: '5xx,reset,retriable-status-codes', ...budget },
    fault: { delay: { fixedDelay: 200, percentage: 10 }, abort: { grpcStatus: 'UNAVAILABLE', percentage: 5.5 } },
    backends: [{ cluster: `outbound|9080|v2|${REVIEWS}`, weight: 1, requestHeaders: { set: { 'x-subset': 'v2' } } }],
    mirrors: [{ cluster: `outbound|50051||${RATINGS}`, percentage: 25 }],
  };
  assert.deepEqual(serviceOf(c, REVIEWS).routes, [
    {
      name: 'shop/reviews/v2-users/match-0',
      // A prefix not ending in '/' keeps Istio's plain string-prefix meaning.
      matches: [{ path: { regex: '/api/v1.*' }, headers: [{ name: 'end-user', exact: 'jason' }, { name: 'x-skip', invert: true, present: true }] }],
      ...first,
      rewrite: { uriRegex: { pattern: '^/api/v1', substitution: '/v2' } },
    },
    { name: 'shop/reviews/v2-users/match-1', matches: [{ method: 'POST', queryParams: [{ name: 'beta', regex: 'on|yes' }] }], ...first, rewrite: { uriRegex: { pattern: '^/', substitution: '/v2' } } },
    {
      name: 'shop/reviews/http-1/match-0',
      matches: [{ path: { regex: '/legacy/(.*)' } }],
      backends: [{ cluster: `outbound|9080||${REVIEWS}`, weight: 1 }],
      retries: budget,
      rewrite: { uriRegex: { pattern: '^/legacy/(.*)$', substitution: '/new/$1' }, authority: 'reviews-new' },
    },
    { name: 'shop/reviews/http-2/match-0', matches: [{ path: { prefix: '/go/' } }], redirect: { host: 'elsewhere.example', path: '/gone', status: 308 } },
    { name: 'shop/reviews/http-3/match-0', matches: [{ path: { exact: '/teapot' } }], directResponse: { status: 418, body: 'short and stout' } },
    {
      name: 'shop/reviews/http-4',
      responseHeaders: { add: { 'x-served': 'vs' } },
      backends: [
        { cluster: `outbound|9080|v1|${REVIEWS}`, weight: 80 },
        // Unknown subset and unknown host: empty clusters, so their share fails 503 as in Istio.
        { cluster: `outbound|9080|v3|${REVIEWS}`, weight: 20 },
        { cluster: 'outbound|9080||unknown.example', weight: 0 },
      ],
      retries: budget,
    },
  ]);
});

test('DestinationRule: policy per cluster, subsets filter endpoints and override fields, port-level settings, retry budget', () => {
  const c = configOf(build(VS));
  const pool = { maxConnections: 100, maxPendingRequests: 10, maxRequests: 50, maxRequestsPerConnection: 5, maxRetries: 3, connectTimeout: 250 };
  const byName = new Map(c.clusters.map((x) => [x.name, x]));
  // Port level replaces the whole outlierDetection field for port 9080 (Istio merges by field).
  const portOd = { consecutiveGatewayErrors: 2 };
  assert.deepEqual(byName.get(`outbound|9080||${REVIEWS}`), { name: `outbound|9080||${REVIEWS}`, protocol: 'http1', endpoints: [EP_V1, EP_V2], connectionPool: pool, outlierDetection: portOd, loadBalancer: { simple: 'ROUND_ROBIN' } });
  assert.deepEqual(byName.get(`outbound|9080|v1|${REVIEWS}`), { name: `outbound|9080|v1|${REVIEWS}`, protocol: 'http1', endpoints: [EP_V1], connectionPool: pool, outlierDetection: portOd, loadBalancer: { simple: 'ROUND_ROBIN' } });
  assert.deepEqual(byName.get(`outbound|9080|v2|${REVIEWS}`), {
    name: `outbound|9080|v2|${REVIEWS}`,
    protocol: 'http1',
    endpoints: [EP_V2],
    connectionPool: { maxRequests: 7 },
    outlierDetection: portOd,
    loadBalancer: { consistentHash: { httpCookie: { name: 'session' } } },
  });
  assert.deepEqual(byName.get(`outbound|9080|v3|${REVIEWS}`), { name: `outbound|9080|v3|${REVIEWS}`, protocol: 'http1', endpoints: [] }, 'an unknown subset gets an empty cluster');
  // The mirror target has no DestinationRule: defaults.
  assert.deepEqual(byName.get(`outbound|50051||${RATINGS}`)?.connectionPool, undefined);
});

test('notes: unknown subset, unknown host, unsupported retryOn, match fields a waypoint cannot evaluate, DR fields not applied', () => {
  const b = build(VS);
  assert.deepEqual(b.l7.notes, [
    'DestinationRule shop/reviews: not applied by the waypoint: connectionPool.tcp.tcpKeepalive',
    "VirtualService shop/reviews http[0]: retries.retryOn 'envoy-ratelimited' is not supported by the waypoint; ignored",
    'VirtualService shop/reviews http[0] match[2]: sourceLabels cannot be evaluated by the waypoint; this match is left out',
    "VirtualService shop/reviews http[4] route[1]: DestinationRule shop/reviews has no subset 'v3' for reviews.shop.svc.cluster.local; requests to it fail (503)",
    'VirtualService shop/reviews http[4] route[2]: destination host unknown.example is not a known service; requests to it fail (503)',
  ]);
});

test('an unknown destination host gets an empty cluster (503 at the waypoint); a VS for a gateway only is ignored; several VS for one host: the first is used', () => {
  const extra = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a-bad, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http: [{route: [{destination: {host: nowhere}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b-second, namespace: shop}
spec:
  hosts: ["*.shop.svc.cluster.local"]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: c-ingress, namespace: shop}
spec:
  hosts: [ratings]
  gateways: [istio-system/ingress]
  http: [{route: [{destination: {host: reviews}}]}]
`;
  const b = build(extra);
  const c = configOf(b);
  assert.deepEqual(serviceOf(c, REVIEWS).routes, [{ name: 'shop/a-bad/http-0', backends: [{ cluster: 'outbound|9080||nowhere.shop.svc.cluster.local', weight: 1 }] }]);
  assert.deepEqual(c.clusters.find((x) => x.name.includes('nowhere')), { name: 'outbound|9080||nowhere.shop.svc.cluster.local', protocol: 'http1', endpoints: [] });
  // The wildcard VS covers ratings; the ingress-only one does not count.
  assert.deepEqual(serviceOf(c, RATINGS).routes, [{ name: 'shop/b-second/http-0', backends: [{ cluster: `outbound|9080||${REVIEWS}`, weight: 1 }] }]);
  assert.deepEqual(b.l7.notes, [
    'cache.shop.svc.cluster.local:6379 is a TCP port (appProtocol or port name); HTTP routes for it are not applied',
    'reviews.shop.svc.cluster.local:9080: several VirtualServices apply (shop/a-bad, shop/b-second); only shop/a-bad is used',
    'VirtualService shop/a-bad http[0] route[0]: destination host nowhere is not a known service; requests to it fail (503)',
  ]);
});

test('RE2 substitutions become JavaScript ones', () => {
  assert.equal(re2Substitution('/x/\\1/\\2'), '/x/$1/$2');
  assert.equal(re2Substitution('/cost$1'), '/cost$$1');
});

test('DestinationRule lookup: the service namespace before the root namespace, exact host before a wildcard; workloadSelector rules are skipped', () => {
  const dr = (name: string, ns: string, host: string, lb: string, extra = '') => `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${name}, namespace: ${ns}}
spec:
  host: "${host}"
  trafficPolicy: {loadBalancer: {simple: ${lb}}}${extra}
`;
  const b = build(
    [
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}',
      dr('root-exact', 'istio-system', REVIEWS, 'RANDOM'),
      dr('local-wild', 'shop', '*.shop.svc.cluster.local', 'ROUND_ROBIN'),
      dr('root-wild', 'istio-system', '*.svc.cluster.local', 'RANDOM'),
      dr('sidecar', 'shop', 'ratings', 'RANDOM', '\n  workloadSelector: {matchLabels: {app: x}}'),
    ].join('\n---\n'),
  );
  const c = configOf(b);
  const lb = (name: string) => c.clusters.find((x) => x.name === name)?.loadBalancer;
  // reviews: exact host in the root namespace beats a wildcard in the service namespace.
  assert.deepEqual(lb(`outbound|9080||${REVIEWS}`), { simple: 'RANDOM' });
  // ratings: no exact rule; the wildcard in its own namespace beats the root one.
  assert.deepEqual(lb(`outbound|50051||${RATINGS}`), { simple: 'ROUND_ROBIN' });
  assert.ok(b.l7.notes.includes('DestinationRule shop/sidecar: has a workloadSelector (sidecar-only); waypoints ignore it'));
});
