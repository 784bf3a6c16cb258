/**
 * Parsing and validation of the L7 kinds (HTTPRoute, GRPCRoute,
 * VirtualService, DestinationRule, RequestAuthentication): API defaults
 * filled in, durations in milliseconds, and one issue per bad object
 * naming file, kind, namespace/name and field. Also the encode step's
 * "last good config stays" rule (diff.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseManifestText } from '../../src/control-plane/manifest-source.js';
import { formatIssue, parseDurationMs } from '../../src/control-plane/validation.js';
import { encodeL7Translation, type EncodedResource } from '../../src/control-plane/diff.js';
import type { GRPCRouteSpec, HTTPRouteSpec } from '../../src/control-plane/kinds-gateway-api.js';
import type { DestinationRuleSpec, VirtualServiceSpec } from '../../src/control-plane/kinds-istio-networking.js';
import type { RequestAuthenticationSpec } from '../../src/control-plane/kinds-l7.js';
import { decodeL7Config } from '../../src/waypoint/l7-codec.js';

function one<S>(yaml: string): S {
  const p = parseManifestText('l7.yaml', yaml);
  assert.deepEqual(p.issues.map(formatIssue), []);
  assert.equal(p.resources.length, 1);
  return (p.resources[0] as { spec: S }).spec;
}

function issues(yaml: string): string[] {
  const p = parseManifestText('l7.yaml', yaml);
  assert.equal(p.resources.length, 0, 'the invalid object is dropped');
  return p.issues.map(formatIssue);
}

test('durations: Go/Kubernetes forms in milliseconds, junk refused', () => {
  assert.equal(parseDurationMs('10s'), 10_000);
  assert.equal(parseDurationMs('1.5s'), 1500);
  assert.equal(parseDurationMs('250ms'), 250);
  assert.equal(parseDurationMs('1m30s'), 90_000);
  assert.equal(parseDurationMs('1h'), 3_600_000);
  assert.equal(parseDurationMs('0'), 0);
  assert.equal(parseDurationMs('0s'), 0);
  for (const bad of ['', '10', 's', '1x', '1s junk', '-1s']) assert.equal(parseDurationMs(bad), undefined, bad);
});

test('HTTPRoute: Gateway API defaults (parent group/kind/namespace, PathPrefix /, Exact headers, weight 1, redirect 302, mirror percent)', () => {
  const spec = one<HTTPRouteSpec>(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{name: wp}, {group: "", kind: Service, name: reviews, port: 9080}]
  hostnames: [reviews.example]
  rules:
  - matches: [{headers: [{name: X-A, value: b}], method: GET}]
    filters:
    - {type: RequestRedirect, requestRedirect: {hostname: x.example}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 80}}}
  - backendRefs: [{name: reviews, port: 9080}]
    timeouts: {request: 1m, backendRequest: 10s}
    retry: {codes: [500], attempts: 2}
`);
  assert.deepEqual(spec, {
    parentRefs: [
      { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'wp', namespace: 'shop' },
      { group: '', kind: 'Service', name: 'reviews', namespace: 'shop', port: 9080 },
    ],
    hostnames: ['reviews.example'],
    rules: [
      {
        matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [{ type: 'Exact', name: 'x-a', value: 'b' }], queryParams: [], method: 'GET' }],
        filters: [
          { type: 'RequestRedirect', hostname: 'x.example', statusCode: 302 },
          { type: 'RequestMirror', backendRef: { group: '', kind: 'Service', name: 'shadow', namespace: 'shop', port: 80 }, percent: 100 },
        ],
        backendRefs: [],
        timeouts: {},
      },
      {
        matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }],
        filters: [],
        backendRefs: [{ group: '', kind: 'Service', name: 'reviews', namespace: 'shop', port: 9080, weight: 1, filters: [] }],
        timeouts: { requestMs: 60_000, backendRequestMs: 10_000 },
        retry: { attempts: 2, codes: [500] },
      },
    ],
  });
});

test('GRPCRoute, VirtualService, DestinationRule, RequestAuthentication parse to their normalized specs', () => {
  const g = one<GRPCRouteSpec>(`
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: ratings}]
  rules: [{matches: [{method: {service: pkg.Svc}}], backendRefs: [{name: ratings, port: 50051, weight: 2}]}]
`);
  assert.deepEqual(g.rules[0]?.matches, [{ method: { type: 'Exact', service: 'pkg.Svc' }, headers: [] }]);
  const vs = one<VirtualServiceSpec>(`
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: v, namespace: shop}
spec:
  hosts: [reviews]
  tcp: [{route: [{destination: {host: reviews}}]}]
  http:
  - match: [{uri: {prefix: /a}, ignoreUriCase: true}]
    route: [{destination: {host: reviews, port: {number: 9080}, subset: v1}, weight: 100}]
    fault: {abort: {httpStatus: 503, percent: 7}}
    corsPolicy: {allowOrigins: [{exact: x}]}
`);
  assert.deepEqual(vs, {
    hosts: ['reviews'],
    gateways: [],
    http: [
      {
        match: [{ uri: { prefix: '/a' }, headers: {}, queryParams: {}, withoutHeaders: {}, unsupported: ['ignoreUriCase'] }],
        route: [{ destination: { host: 'reviews', port: 9080, subset: 'v1' }, weight: 100, headers: { request: { set: {}, add: {}, remove: [] }, response: { set: {}, add: {}, remove: [] } } }],
        fault: { abort: { httpStatus: 503, percentage: 7 } },
        mirrors: [],
        headers: { request: { set: {}, add: {}, remove: [] }, response: { set: {}, add: {}, remove: [] } },
        unsupported: ['corsPolicy'],
      },
    ],
    unsupported: ['tcp'],
  });
  const dr = one<DestinationRuleSpec>(`
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: d, namespace: shop}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    outlierDetection: {consecutiveErrors: 4}
    tls: {mode: SIMPLE}
  subsets: [{name: v1, labels: {version: v1}}]
`);
  assert.deepEqual(dr, {
    host: 'reviews',
    trafficPolicy: { outlierDetection: { consecutive5xxErrors: 4 }, loadBalancer: { simple: 'LEAST_REQUEST' }, tlsMode: 'SIMPLE', portLevelSettings: [], unsupported: [] },
    subsets: [{ name: 'v1', labels: { version: 'v1' } }],
  });
  const ra = one<RequestAuthenticationSpec>(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: j, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  jwtRules: [{issuer: i, jwksUri: "https://i/jwks", fromHeaders: [{name: X-T}]}]
`);
  assert.deepEqual(ra, {
    targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'wp' }],
    jwtRules: [{ issuer: 'i', audiences: [], jwksUri: 'https://i/jwks', fromHeaders: [{ name: 'x-t', prefix: '' }], forwardOriginalToken: false, unsupported: [] }],
  });
});

test('invalid L7 objects: one issue naming file, kind, namespace/name and field', () => {
  const cases: Array<[string, string]> = [
    [
      'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec: {rules: []}',
      'l7.yaml: HTTPRoute shop/r: spec.parentRefs: must name at least one parent (the waypoint Gateway or a Service)',
    ],
    [
      'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec: {parentRefs: [{name: wp}], rules: [{matches: [{path: {type: RegularExpression, value: "(("}}]}]}',
      "l7.yaml: HTTPRoute shop/r: spec.rules[0].matches[0].path.value: is not a valid regular expression (Invalid regular expression: /((/: Unterminated group); got '(('",
    ],
    [
      'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec: {parentRefs: [{name: wp}], rules: [{timeouts: {request: soon}}]}',
      "l7.yaml: HTTPRoute shop/r: spec.rules[0].timeouts.request: must be a duration such as '10s', '1.5s', '250ms' or '1m30s'; got 'soon'",
    ],
    [
      'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec: {parentRefs: [{name: wp}], rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: "bad header", value: x}]}}]}]}',
      "l7.yaml: HTTPRoute shop/r: spec.rules[0].filters[0].requestHeaderModifier.set[0].name: must be an HTTP header name (letters, digits, '-' ...); got 'bad header'",
    ],
    [
      'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec: {parentRefs: [{name: wp}], rules: [{retry: {codes: [200]}}]}',
      'l7.yaml: HTTPRoute shop/r: spec.rules[0].retry.codes[0]: must be an HTTP status code from 400 to 599; got 200',
    ],
    [
      'apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: shop}\nspec: {parentRefs: [{name: wp}], rules: [{matches: [{method: {}}]}]}',
      'l7.yaml: GRPCRoute shop/g: spec.rules[0].matches[0].method.service: one of service or method is required',
    ],
    [
      'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: shop}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}], redirect: {uri: /x}}]}',
      'l7.yaml: VirtualService shop/v: spec.http[0].route: exactly one of route, redirect, directResponse must be set',
    ],
    [
      'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: shop}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}, weight: 101}]}]}',
      'l7.yaml: VirtualService shop/v: spec.http[0].route[0].weight: must be an integer from 0 to 100; got 101',
    ],
    [
      'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: shop}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}], fault: {delay: {percentage: {value: 10}}}}]}',
      'l7.yaml: VirtualService shop/v: spec.http[0].fault.delay.fixedDelay: is required (exponentialDelay is not supported)',
    ],
    [
      'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: shop}\nspec: {host: a, trafficPolicy: {loadBalancer: {simple: FASTEST}}}',
      "l7.yaml: DestinationRule shop/d: spec.trafficPolicy.loadBalancer.simple: must be one of UNSPECIFIED, LEAST_CONN, LEAST_REQUEST, ROUND_ROBIN, RANDOM, PASSTHROUGH; got 'FASTEST'",
    ],
    [
      'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: shop}\nspec: {host: a, subsets: [{name: v1}, {name: v1}]}',
      "l7.yaml: DestinationRule shop/d: spec.subsets[1].name: 'v1' is listed twice",
    ],
    [
      'apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: j, namespace: shop}\nspec: {jwtRules: [{issuer: i, jwksUri: "ftp://x"}]}',
      "l7.yaml: RequestAuthentication shop/j: spec.jwtRules[0].jwksUri: must be an http or https URL; got 'ftp://x'",
    ],
  ];
  for (const [yaml, want] of cases) assert.deepEqual(issues(yaml), [want]);
});

test('encodeL7Translation: new configs are encoded; a rejected or unencodable one keeps the previous resource; vanished waypoints drop out', () => {
  const good = { services: [], clusters: [], workloads: [{ address: '10.0.0.1', principal: 'spiffe://td/ns/a/sa/b', namespace: 'a', name: 'p' }] };
  const first = encodeL7Translation({ configs: new Map([['a/wp', good], ['b/wp', good]]), rejected: new Map(), notes: [] }, new Map());
  assert.deepEqual([...first.resources.keys()], ['a/wp', 'b/wp']);
  assert.deepEqual(first.errors, []);
  assert.deepEqual(decodeL7Config((first.resources.get('a/wp') as EncodedResource).bytes).workloads, good.workloads);
  const second = encodeL7Translation(
    {
      configs: new Map([['c/wp', { services: 'nope' } as unknown as typeof good]]),
      rejected: new Map([['a/wp', 'services[0].port must be an integer']]),
      notes: [],
    },
    first.resources,
  );
  // a/wp: rejected -> previous kept; b/wp: gone; c/wp: does not encode and has no previous -> not served.
  assert.deepEqual([...second.resources.keys()], ['a/wp']);
  assert.equal(second.resources.get('a/wp'), first.resources.get('a/wp'));
  assert.equal(second.errors.length, 2);
  assert.equal(second.errors[0], 'a/wp: services[0].port must be an integer');
  assert.match(second.errors[1] as string, /^c\/wp: /);
});
