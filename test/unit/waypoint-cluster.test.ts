/** Cluster state (pure, fake clock): circuit breaker admission, load balancers, outlier detection; retry-on rules. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../src/common/clock.js';
import { ClusterState } from '../../src/waypoint/cluster.js';
import { compileL7Config, type ClusterConfig, type RetryCondition } from '../../src/waypoint/config.js';
import { retriableFailure, retriableResponse } from '../../src/waypoint/pipeline.js';

function cluster(extra: Record<string, unknown>, n = 3): ClusterConfig {
  const eps = Array.from({ length: n }, (_, i) => ({ address: `10.0.0.${i + 1}`, port: 80 }));
  return compileL7Config({ clusters: [{ name: 'c', endpoints: eps, ...extra }] }).clusters.get('c') as ClusterConfig;
}
const noHash = { headers: {}, sourceIp: '1.1.1.1', query: new URLSearchParams() };

test('admission: active slots, then a bounded pending queue, then overflow', async () => {
  const c = new ClusterState(cluster({ connectionPool: { maxConnections: 1, maxPendingRequests: 1 } }), new FakeClock(), Math.random);
  const a = await c.admit();
  assert.ok(a.ok);
  const pending = c.admit();
  assert.equal(c.pending, 1);
  assert.deepEqual(await c.admit(), { ok: false, reason: 'overflow' });
  if (a.ok) a.release();
  const p = await pending;
  assert.ok(p.ok);
  assert.equal(c.active, 1);
  if (p.ok) {
    p.release();
    p.release();
  }
  assert.equal(c.active, 0, 'release is idempotent');
});

test('a waiter removed by abort does not take a slot', async () => {
  const c = new ClusterState(cluster({ connectionPool: { maxConnections: 1, maxPendingRequests: 5 } }), new FakeClock(), Math.random);
  const a = await c.admit();
  const ctl = new AbortController();
  const w = c.admit(ctl.signal);
  ctl.abort();
  assert.deepEqual(await w, { ok: false, reason: 'overflow' });
  assert.equal(c.pending, 0);
  if (a.ok) a.release();
  assert.equal(c.active, 0);
});

test('round robin, least request (P2C) and consistent hash', () => {
  const rr = new ClusterState(cluster({ loadBalancer: { simple: 'ROUND_ROBIN' } }), new FakeClock(), Math.random);
  assert.deepEqual([0, 1, 2, 3].map(() => rr.pick(noHash)?.key), ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.1:80']);
  const lr = new ClusterState(cluster({}), new FakeClock(), Math.random);
  (lr.endpoints[0] as { active: number }).active = 10;
  (lr.endpoints[1] as { active: number }).active = 10;
  let third = 0;
  for (let i = 0; i < 300; i++) if (lr.pick(noHash)?.key === '10.0.0.3:80') third++;
  assert.ok(third > 150, `least-loaded picked ${third}/300`);
  const ch = new ClusterState(cluster({ loadBalancer: { consistentHash: { httpHeaderName: 'x-user' } } }, 5), new FakeClock(), Math.random);
  const pick = (u: string): string | undefined => ch.pick({ ...noHash, headers: { 'x-user': u } })?.key;
  for (const u of ['a', 'b', 'c']) assert.equal(pick(u), pick(u));
  const spread = new Set(Array.from({ length: 50 }, (_, i) => pick(`user-${i}`)));
  assert.ok(spread.size >= 4, 'keys spread over endpoints');
});

test('avoids previously tried hosts when another is healthy', () => {
  const c = new ClusterState(cluster({ loadBalancer: { simple: 'RANDOM' } }, 2), new FakeClock(), Math.random);
  for (let i = 0; i < 20; i++) assert.equal(c.pick(noHash, new Set(['10.0.0.1:80']))?.key, '10.0.0.2:80');
  assert.equal(c.pick(noHash, new Set(['10.0.0.1:80', '10.0.0.2:80'])) !== undefined, true, 'all tried: any healthy');
});

test('outlier detection: consecutive 5xx eject for base × count, capped by max ejection percent (at least one)', () => {
  const clock = new FakeClock(1000);
  const c = new ClusterState(cluster({ outlierDetection: { consecutive5xxErrors: 3, baseEjectionTime: '30s', maxEjectionPercent: 10 } }), clock, Math.random);
  const [e1, e2] = c.endpoints;
  c.record(e1!, 500);
  c.record(e1!, 503);
  c.record(e1!, 200);
  c.record(e1!, 500);
  c.record(e1!, 500);
  assert.equal(c.ejectedCount(), 0, 'a success resets the streak');
  c.record(e1!, 'connect_failure');
  assert.equal(c.ejectedCount(), 1);
  for (let i = 0; i < 5; i++) c.record(e2!, 500);
  assert.equal(c.ejectedCount(), 1, '10% of 3 rounds down, but one may always be ejected; not two');
  for (let i = 0; i < 50; i++) assert.notEqual(c.pick(noHash)?.key, e1!.key);
  clock.advance(30_000);
  assert.equal(c.ejectedCount(), 0);
  for (let i = 0; i < 3; i++) c.record(e1!, 502);
  clock.advance(30_000);
  assert.equal(c.ejectedCount(), 1, 'second ejection lasts 2 × base');
  clock.advance(30_000);
  assert.equal(c.ejectedCount(), 0);
});

test('no healthy endpoint: pick returns undefined', () => {
  const clock = new FakeClock();
  const c = new ClusterState(cluster({ outlierDetection: { consecutiveGatewayErrors: 1, consecutive5xxErrors: 0, maxEjectionPercent: 100 } }, 1), clock, Math.random);
  c.record(c.endpoints[0]!, 500);
  assert.equal(c.ejectedCount(), 0, '500 is not a gateway error');
  c.record(c.endpoints[0]!, 504);
  assert.equal(c.pick(noHash), undefined);
});

test('retry-on: Envoy conditions for responses and failures', () => {
  const on = (...c: RetryCondition[]): Set<RetryCondition> => new Set(c);
  assert.equal(retriableResponse(503, undefined, on('5xx'), new Set()), true);
  assert.equal(retriableResponse(500, undefined, on('gateway-error'), new Set()), false);
  assert.equal(retriableResponse(504, undefined, on('gateway-error'), new Set()), true);
  assert.equal(retriableResponse(409, undefined, on('retriable-4xx'), new Set()), true);
  assert.equal(retriableResponse(418, undefined, on('retriable-status-codes'), new Set([418])), true);
  assert.equal(retriableResponse(200, 14, on('unavailable'), new Set()), true);
  assert.equal(retriableResponse(200, 13, on('unavailable'), new Set()), false);
  assert.equal(retriableFailure('connect_failure', on('connect-failure')), true);
  assert.equal(retriableFailure('reset', on('connect-failure')), false);
  assert.equal(retriableFailure('timeout', on('gateway-error')), true);
  assert.equal(retriableFailure('refused_stream', on('refused-stream')), true);
});
