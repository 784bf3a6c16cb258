/** L7 config wire codec: JSON -> ambit.l7.v1.L7Config bytes -> JSON compiles to the same config. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileL7Config } from '../../src/waypoint/config.js';
import { WaypointConfigError } from '../../src/waypoint/errors.js';
import { decodeL7Config, encodeL7Config, L7_CONFIG_TYPE_URL } from '../../src/waypoint/l7-codec.js';

export const RICH = {
  version: 'v7',
  workloads: [{ address: '10.1.0.5', principal: 'spiffe://cluster.local/ns/default/sa/db', namespace: 'default', name: 'db-0' }],
  clusters: [
    {
      name: 'reviews-v1', protocol: 'http1',
      endpoints: [{ address: '10.0.0.1', port: 9080, labels: { app: 'reviews', version: 'v1' }, workload: 'reviews-v1', namespace: 'default', principal: 'spiffe://cluster.local/ns/default/sa/reviews' }],
      connectionPool: { maxConnections: 10, maxPendingRequests: 0, maxRequests: 5, maxRequestsPerConnection: 1, maxRetries: 3, connectTimeout: '1.5s' },
      outlierDetection: { consecutive5xxErrors: 3, consecutiveGatewayErrors: 2, interval: '1s', baseEjectionTime: 250, maxEjectionPercent: 50 },
      loadBalancer: { simple: 'ROUND_ROBIN' },
    },
    { name: 'reviews-v2', protocol: 'h2c', endpoints: [{ address: '10.0.0.2', port: 9080 }], loadBalancer: { consistentHash: { httpCookie: { name: 'user' } } } },
    { name: 'hash-ip', endpoints: [], loadBalancer: { consistentHash: { useSourceIp: true } } },
    { name: 'hash-q', endpoints: [], loadBalancer: { consistentHash: { httpQueryParameterName: 'u' } }, outlierDetection: {} },
  ],
  services: [
    {
      hostname: 'reviews.default.svc.cluster.local', namespace: 'default', addresses: ['10.96.0.10', 'fd00::10'], port: 9080, protocol: 'http',
      routes: [
        {
          name: 'canary',
          matches: [
            { path: { prefix: '/api' }, method: 'get', headers: [{ name: 'X-User', exact: 'jason' }, { name: 'x-dbg', present: false }, { name: 'x-r', regex: 'a+b', invert: true }], queryParams: [{ name: 'q', prefix: 'x' }] },
            { path: { regex: '/v[0-9]+/.*' } },
          ],
          backends: [
            { cluster: 'reviews-v1', weight: 90, requestHeaders: { set: { 'x-canary': 'no' } } },
            { cluster: 'reviews-v2', weight: 0, responseHeaders: { add: { 'x-v': '2' }, remove: ['server'] } },
            { cluster: 'hash-ip', weight: 10 },
          ],
          rewrite: { uriRegex: { pattern: '^/api/(.*)$', substitution: '/\\1' }, authority: 'internal' },
          requestHeaders: { set: { 'x-a': '1' }, add: { 'x-b': '' }, remove: ['x-c'] },
          mirrors: [{ cluster: 'hash-q' }, { cluster: 'reviews-v2', percentage: 12.5 }],
          timeout: '2s',
          retries: { attempts: 0, perTryTimeout: 500, retryOn: '5xx,503,reset', retriableStatusCodes: [502], backoff: '10ms', maxBackoff: '1m', retryIgnorePreviousHosts: false, budget: { percent: 30 } },
          fault: { delay: { fixedDelay: '0.25s', percentage: 5 }, abort: { grpcStatus: 'UNAVAILABLE', percentage: 1.5 } },
        },
        { name: 'moved', matches: [{ path: { exact: '/old' } }], redirect: { scheme: 'https', host: 'new', port: 8443, prefix: '/new', status: 308 } },
        { name: 'teapot', directResponse: { status: 418, body: 'short and stout' }, fault: { abort: { httpStatus: 503 } } },
      ],
      authorization: [
        {
          name: 'allow-get', action: 'ALLOW', dryRun: true,
          rules: [{
            from: [{ source: { principals: ['cluster.local/ns/default/sa/*'], notNamespaces: ['kube-system'], requestPrincipals: ['*'] } }],
            to: [{ operation: { methods: ['GET'], paths: ['/api*'], notHosts: ['evil'] } }],
            when: [{ key: 'request.headers[x-tenant]', values: ['a'], notValues: ['b*'] }],
          }],
        },
        { name: 'deny-all', action: 'DENY', rules: [{}] },
      ],
      requestAuthentication: [
        { issuer: 'https://issuer', audiences: ['a', 'b'], jwks: '{"keys":[]}', fromHeaders: [{ name: 'X-Jwt', prefix: 'Tok ' }], forwardOriginalToken: true, jwksCache: '10m' },
        { issuer: 'i2', jwksUri: 'https://example.invalid/jwks' },
      ],
    },
    { hostname: 'ratings.default.svc.cluster.local', port: 9090, protocol: 'grpc', routes: [{ backends: [{ cluster: 'reviews-v2' }], rewrite: { uriPrefix: '' }, retries: { retryOn: ['unavailable', 'cancelled'] } }] },
    { hostname: 'db.default.svc.cluster.local', port: 5432, protocol: 'tcp', addresses: ['10.96.0.20'], routes: [{ backends: [{ cluster: 'reviews-v1' }] }] },
  ],
};

test('type URL names the L7Config message', () => {
  assert.equal(L7_CONFIG_TYPE_URL, 'type.googleapis.com/ambit.l7.v1.L7Config');
});

test('a rich config survives encode/decode with an equal compiled result', () => {
  const bytes = encodeL7Config(RICH);
  assert.ok(bytes.length > 500);
  const back = decodeL7Config(bytes);
  assert.deepEqual(compileL7Config(back), compileL7Config(RICH));
  // and the decoded JSON re-encodes to the same bytes
  assert.deepEqual(Buffer.from(encodeL7Config(back)), Buffer.from(bytes));
});

test('decoded durations are strings and enums use the JSON spelling', () => {
  const back = decodeL7Config(encodeL7Config(RICH)) as { services: { protocol?: string; routes: { timeout?: string }[] }[]; clusters: { protocol?: string; loadBalancer?: unknown }[] };
  assert.equal(back.services[0]?.routes[0]?.timeout, '2000ms');
  assert.equal(back.services[2]?.protocol, 'tcp');
  assert.equal(back.clusters[1]?.protocol, 'h2c');
  assert.deepEqual(back.clusters[0]?.loadBalancer, { simple: 'ROUND_ROBIN' });
  const c = compileL7Config(back);
  assert.equal(c.services[2]?.protocol, 'tcp');
  assert.equal(c.workloads[0]?.principal, 'spiffe://cluster.local/ns/default/sa/db');
  assert.equal(c.clusters.get('reviews-v1')?.outlierDetection?.consecutive5xx, 3);
  assert.equal(c.clusters.get('reviews-v1')?.connectionPool.connectTimeoutMs, 1500);
});

test('the empty config round-trips to no services', () => {
  const back = decodeL7Config(encodeL7Config({}));
  assert.deepEqual(back, {});
  assert.equal(compileL7Config(back).services.length, 0);
});

test('a config that compiles badly still encodes (the waypoint NACKs it)', () => {
  const bad = { services: [{ hostname: 'a.b.svc', port: 80, routes: [{ backends: [{ cluster: 'missing' }] }] }] };
  const back = decodeL7Config(encodeL7Config(bad));
  assert.throws(() => compileL7Config(back), WaypointConfigError);
});

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof WaypointConfigError, String(err));
    return err.field;
  }
  return assert.fail('expected a WaypointConfigError');
}

test('shapes that cannot be encoded throw WaypointConfigError naming the field', () => {
  assert.equal(fieldOf(() => encodeL7Config({ servces: [] })), 'servces');
  assert.equal(fieldOf(() => encodeL7Config({ services: [{ port: 'x' }] })), 'services[0].port');
  assert.equal(fieldOf(() => encodeL7Config({ services: [{ protocol: 'udp' }] })), 'services[0].protocol');
  assert.equal(fieldOf(() => encodeL7Config({ services: [{ routes: [{ timeout: 'soon' }] }] })), 'services[0].routes[0].timeout');
  assert.equal(fieldOf(() => encodeL7Config({ services: [{ routes: [{ matches: [{ path: { exact: '/a', prefix: '/b' } }] }] }] })), 'services[0].routes[0].matches[0].path');
  assert.equal(fieldOf(() => encodeL7Config({ services: [{ authorization: [{ rules: [{ from: [{ principals: ['x'] }] }] }] }] })), 'services[0].authorization[0].rules[0].from[0].principals');
  assert.equal(fieldOf(() => encodeL7Config([])), 'config');
  assert.equal(fieldOf(() => decodeL7Config(Uint8Array.from([0x12, 0xff]))), 'config');
});
