/** L7 config validation: Istio defaults, frozen output, errors that name the field. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileL7Config, parseDuration, type L7Config } from '../../src/waypoint/config.js';
import { WaypointConfigError } from '../../src/waypoint/errors.js';

const base = (route: Record<string, unknown> = {}, cluster: Record<string, unknown> = {}): Record<string, unknown> => ({
  clusters: [{ name: 'c', endpoints: [{ address: '10.0.0.1', port: 80 }], ...cluster }],
  services: [{ hostname: 'Reviews.Default.svc.cluster.local', port: 9080, routes: [{ backends: [{ cluster: 'c' }], ...route }] }],
});

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof WaypointConfigError, String(err));
    assert.equal(err.code, 'AMBIT_ERR_WAYPOINT_CONFIG_INVALID');
    return err.field;
  }
  assert.fail('expected a WaypointConfigError');
}

test('Istio/Envoy defaults fill silent fields', () => {
  const c: L7Config = compileL7Config(base());
  const svc = c.services[0];
  assert.equal(svc?.hostname, 'reviews.default.svc.cluster.local');
  assert.equal(svc?.namespace, 'default');
  const r = svc?.routes[0];
  assert.equal(r?.timeoutMs, 0);
  assert.equal(r?.retries.attempts, 2);
  assert.deepEqual([...(r?.retries.retryOn ?? [])].sort(), ['cancelled', 'connect-failure', 'refused-stream', 'retriable-status-codes', 'unavailable']);
  assert.equal(r?.retries.retriableStatusCodes.size, 0, '503 is not retried by default since Istio 1.24');
  assert.equal(r?.retries.backoffBaseMs, 25);
  assert.equal(r?.retries.backoffMaxMs, 250);
  assert.equal(r?.retries.retryIgnorePreviousHosts, true);
  const cl = c.clusters.get('c');
  assert.equal(cl?.loadBalancer.kind, 'LEAST_REQUEST');
  assert.equal(cl?.connectionPool.maxConnections, 2 ** 32 - 1);
  assert.equal(cl?.connectionPool.connectTimeoutMs, 10_000);
  assert.equal(cl?.outlierDetection, undefined);
  const od = compileL7Config(base({}, { outlierDetection: {} })).clusters.get('c')?.outlierDetection;
  assert.deepEqual(od, { consecutive5xx: 5, consecutiveGatewayErrors: 0, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10 });
});

test('retryOn accepts a comma string with raw status codes', () => {
  const r = compileL7Config(base({ retries: { retryOn: '5xx,503,reset', perTryTimeout: '1.5s', budget: {} } })).services[0]?.routes[0]?.retries;
  assert.deepEqual([...(r?.retryOn ?? [])].sort(), ['5xx', 'reset', 'retriable-status-codes']);
  assert.deepEqual([...(r?.retriableStatusCodes ?? [])], [503]);
  assert.equal(r?.perTryTimeoutMs, 1500);
  assert.deepEqual(r?.budget, { percent: 20, minRetryConcurrency: 3 });
});

test('the compiled config is deeply frozen', () => {
  const c = compileL7Config(base({ requestHeaders: { set: { 'x-a': '1' } } }));
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.services[0]?.routes[0]));
  assert.ok(Object.isFrozen(c.services[0]?.routes[0]?.requestHeaders.set));
  assert.throws(() => {
    (c.services[0] as { port: number }).port = 1;
  }, TypeError);
});

test('errors name the field', () => {
  assert.equal(fieldOf(() => compileL7Config(base({ retries: { attempts: -1 } }))), 'services[0].routes[0].retries.attempts');
  assert.equal(fieldOf(() => compileL7Config(base({ retries: { retryOn: '5xx,sometimes' } }))), 'services[0].routes[0].retries.retryOn[1]');
  assert.equal(fieldOf(() => compileL7Config(base({ backends: [{ cluster: 'nope' }] }))), 'services[0].routes[0].backends[0].cluster');
  assert.equal(fieldOf(() => compileL7Config(base({ matches: [{ path: { regex: '(' } }] }))), 'services[0].routes[0].matches[0].path.regex');
  assert.equal(fieldOf(() => compileL7Config(base({ matches: [{ path: { prefix: 'x' } }] }))), 'services[0].routes[0].matches[0].path.prefix');
  assert.equal(fieldOf(() => compileL7Config(base({ fault: { abort: { httpStatus: 503, percentage: 101 } } }))), 'services[0].routes[0].fault.abort.percentage');
  assert.equal(fieldOf(() => compileL7Config(base({ timeout: '10 parsecs' }))), 'services[0].routes[0].timeout');
  assert.equal(fieldOf(() => compileL7Config(base({ redirect: { path: '/x' } }))), 'services[0].routes[0]');
  assert.equal(fieldOf(() => compileL7Config(base({ tiemout: '1s' }))), 'services[0].routes[0].tiemout');
  assert.equal(fieldOf(() => compileL7Config(base({}, { loadBalancer: { simple: 'FASTEST' } }))), 'clusters[0].loadBalancer.simple');
  assert.equal(fieldOf(() => compileL7Config(base({}, { endpoints: [{ address: '1.2.3.4', port: 70000 }] }))), 'clusters[0].endpoints[0].port');
  assert.equal(fieldOf(() => compileL7Config({ ...base(), services: [{ hostname: 'a', port: 1, routes: [], requestAuthentication: [{ issuer: 'i' }] }] })), 'services[0].requestAuthentication[0]');
  assert.equal(fieldOf(() => compileL7Config({ ...base(), services: [{ hostname: 'a', port: 1, authorization: [{ name: 'p', action: 'MAYBE' }] }] })), 'services[0].authorization[0].action');
  assert.equal(fieldOf(() => compileL7Config({ ...base(), services: [{ hostname: 'a', port: 1, authorization: [{ name: 'p', rules: [{ when: [{ key: 'request.body' }] }] }] }] })), 'services[0].authorization[0].rules[0].when[0].key');
  assert.equal(fieldOf(() => compileL7Config({ clusters: [{ name: 'c' }, { name: 'c' }] })), 'clusters[1].name');
  assert.equal(fieldOf(() => compileL7Config('nope')), 'config');
});

test('parseDuration', () => {
  assert.equal(parseDuration('250ms', 'f'), 250);
  assert.equal(parseDuration('1.5s', 'f'), 1500);
  assert.equal(parseDuration('2m', 'f'), 120_000);
  assert.equal(parseDuration(40, 'f'), 40);
  assert.throws(() => parseDuration('-1s', 'f'), WaypointConfigError);
});

test('proto-decoded forms are accepted: {seconds, nanos} durations and upper-case enums', () => {
  const c = compileL7Config({
    clusters: [{ name: 'c', protocol: 'H2C' }],
    services: [{ hostname: 'a.b', port: 1, protocol: 'GRPC', routes: [{ backends: [{ cluster: 'c' }], timeout: { seconds: 1, nanos: 500_000_000 } }] }],
  });
  assert.equal(c.clusters.get('c')?.protocol, 'h2c');
  assert.equal(c.services[0]?.protocol, 'grpc');
  assert.equal(c.services[0]?.routes[0]?.timeoutMs, 1500);
});

test('the proto file parses and names every config message', async () => {
  const { default: protobuf } = await import('protobufjs');
  const { fileURLToPath } = await import('node:url');
  const dir = fileURLToPath(new URL('../../../proto/', import.meta.url));
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => dir + target;
  root.loadSync('ambit/l7/v1/l7.proto');
  root.resolveAll();
  for (const m of ['L7Config', 'L7Service', 'Route', 'RetryPolicy', 'Fault', 'AuthorizationPolicy', 'JwtRule', 'L7Cluster', 'ConnectionPool', 'OutlierDetection', 'LoadBalancer']) {
    assert.ok(root.lookupType(`ambit.l7.v1.${m}`), m);
  }
  assert.equal(root.lookupType('ambit.l7.v1.Route').fields.retries?.id, 11);
});
