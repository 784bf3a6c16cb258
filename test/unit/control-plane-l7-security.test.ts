/**
 * Waypoint authorization and request authentication: AuthorizationPolicy
 * and RequestAuthentication attached by targetRefs (Service, ServiceEntry,
 * the waypoint Gateway, the istio-waypoint GatewayClass from the root
 * namespace) keep their L7 fields; ports are decided per service port;
 * what the waypoint cannot evaluate errs on the safe side; CUSTOM fails
 * closed; dry-run from the annotation.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build, CACHE, configOf, RATINGS, REVIEWS, serviceOf } from '../helpers/control-plane-l7.js';

const POLICIES = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewers, namespace: shop, annotations: {istio.io/dry-run: "true"}}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/productpage], notNamespaces: [evil], requestPrincipals: ["*"]}}]
    to: [{operation: {methods: [GET], paths: [/api/*], hosts: [reviews*], ports: ["9080"]}}, {operation: {ports: ["1234"]}}]
    when: [{key: "request.auth.claims[groups]", values: [admins]}, {key: "request.headers[x-tenant]", notValues: [blocked]}, {key: destination.port, values: ["9080"]}]
  - from: [{source: {ipBlocks: [10.0.0.0/8]}}]
  - to: [{operation: {notPorts: ["9080"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  action: DENY
  rules:
  - to: [{operation: {paths: [/admin*], notMethods: [OPTIONS]}}]
    when: [{key: remote.ip, values: [1.2.3.4]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: ratings}]
  action: CUSTOM
  provider: {name: my-ext-authz}
  rules: [{to: [{operation: {paths: [/secret]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-audit, namespace: istio-system}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
  action: AUDIT
  rules: [{from: [{source: {namespaces: [legacy]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: selector-only, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: https://issuer.example/jwks.json
    audiences: [reviews]
    fromHeaders: [{name: X-Jwt, prefix: "Bearer "}]
    forwardOriginalToken: true
  - issuer: inline
    jwks: '{"keys":[]}'
    fromParams: [token]
  - issuer: discovery-only
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: sidecar-style, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: x, jwksUri: "https://x/jwks"}]
`;

const DENY_ADMIN = { name: 'shop/deny-admin', action: 'DENY', rules: [{ to: [{ operation: { notMethods: ['OPTIONS'], paths: ['/admin*'] } }] }] };
const AUDIT = { name: 'istio-system/mesh-audit', action: 'AUDIT', rules: [{ from: [{ source: { namespaces: ['legacy'] } }] }] };

test('targetRefs attach policies to services of the waypoint, with their L7 fields', () => {
  const b = build(POLICIES);
  assert.deepEqual(b.issues, []);
  const c = configOf(b);
  assert.deepEqual(serviceOf(c, REVIEWS).authorization, [
    AUDIT,
    DENY_ADMIN,
    {
      name: 'shop/reviews-viewers',
      action: 'ALLOW',
      dryRun: true,
      rules: [
        {
          from: [{ source: { principals: ['cluster.local/ns/shop/sa/productpage'], notNamespaces: ['evil'], requestPrincipals: ['*'] } }],
          // The port-1234 operation can never match this entry (port 9080): dropped; the port itself is decided here.
          to: [{ operation: { hosts: ['reviews*'], methods: ['GET'], paths: ['/api/*'] } }],
          when: [
            { key: 'request.auth.claims[groups]', values: ['admins'] },
            { key: 'request.headers[x-tenant]', notValues: ['blocked'] },
          ],
        },
        // rules[1] (ipBlocks) is dropped from the ALLOW policy; rules[2] (notPorts 9080) can never match.
      ],
    },
  ]);
  assert.deepEqual(serviceOf(c, REVIEWS).requestAuthentication, [
    { issuer: 'https://issuer.example', audiences: ['reviews'], jwksUri: 'https://issuer.example/jwks.json', fromHeaders: [{ name: 'x-jwt', prefix: 'Bearer ' }], forwardOriginalToken: true },
    { issuer: 'inline', jwks: '{"keys":[]}' },
  ]);
  // CUSTOM fails closed as DENY of what it selects.
  assert.deepEqual(serviceOf(c, RATINGS).authorization, [AUDIT, DENY_ADMIN, { name: 'shop/ext', action: 'DENY', rules: [{ to: [{ operation: { paths: ['/secret'] } }] }] }]);
  assert.deepEqual(serviceOf(c, RATINGS).requestAuthentication, []);
  assert.deepEqual(serviceOf(c, CACHE).authorization, [AUDIT, DENY_ADMIN]);
  assert.deepEqual(b.l7.notes, [
    'RequestAuthentication shop/sidecar-style: has no targetRefs; in ambient mode JWT rules take effect only on a waypoint (targetRefs to the waypoint Gateway or a Service)',
    "AuthorizationPolicy shop/deny-admin rules[0]: condition key 'remote.ip' is not evaluated by the waypoint; the condition is dropped (matches more)",
    'AuthorizationPolicy shop/ext: CUSTOM (ext_authz) is not supported by the waypoint; enforced as DENY of the requests it selects (fail closed)',
    'AuthorizationPolicy shop/reviews-viewers rules[1]: ipBlocks/remoteIpBlocks are not evaluated by the waypoint; the ALLOW rule is left out (allows less)',
    'RequestAuthentication shop/jwt jwtRules[1]: fromParams not supported by the waypoint; ignored',
    'RequestAuthentication shop/jwt jwtRules[2]: neither jwksUri nor jwks is set (OIDC discovery is not supported); tokens of issuer discovery-only are rejected',
  ]);
});

test('an ALLOW policy whose every rule needs what the waypoint lacks keeps no rules (denies all, fail closed)', () => {
  const c = configOf(
    build(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-ip, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  rules: [{when: [{key: destination.ip, values: [10.0.0.1]}]}]
`),
  );
  assert.deepEqual(serviceOf(c, REVIEWS).authorization, [{ name: 'shop/only-ip', action: 'ALLOW', rules: [] }]);
});

test('a policy for a Service in another namespace, or for another waypoint, does not attach', () => {
  const c = configOf(
    build(`
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: other}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}, {kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-wp, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: not-wp}]
  action: DENY
  rules: [{}]
`),
  );
  for (const s of c.services) assert.deepEqual(s.authorization, [], s.hostname);
});
