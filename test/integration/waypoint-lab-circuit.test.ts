/**
 * Waypoint end to end, circuit breaking and outlier detection (issue
 * must-show 4), configured by Istio DestinationRules in a lab with the
 * control plane:
 * - connectionPool maxConnections 1 / http1MaxPendingRequests 1 in front of
 *   a backend that answers after 1 s: of 20 concurrent curl clients, the
 *   excess get 503 at once with the overflow flag (response_flags="UO" in
 *   istio_requests_total; src/waypoint sets no x-envoy-overloaded header);
 * - outlierDetection ejects the endpoint that answers only 500 and traffic
 *   moves to the healthy one.
 * Needs root.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { curl, downWaypointLab, HTTP_PORT, metricSum, NS, parseTransfers, requests, scrapeWaypoint, startBackend, stopProc, tally, upWaypointLab, VIP, waitServed, withWaypointLog, WRITE_OUT, type WaypointLab } from '../helpers/waypoint-lab.js';

const name = `wpdc${randomBytes(2).toString('hex')}`;
let w: WaypointLab | undefined;
const fqdn = (svc: string): string => `${svc}.${NS}.svc.cluster.local`;

const POOL_DR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews-v2
  namespace: ${NS}
spec:
  host: ${fqdn('reviews-v2')}
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        http2MaxRequests: 1`;

const OUTLIER_DR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: ${NS}
spec:
  host: ${fqdn('reviews')}
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 100`;

describe('waypoint lab: circuit breaking and outlier detection', { ...requiresRoot(), ...requiresTool('curl', 'nft') }, () => {
  let v2: ChildProcess | undefined;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    w = await upWaypointLab(name, { 'pool.yaml': POOL_DR, 'outlier.yaml': OUTLIER_DR });
    // v1 answers only 500 (the outlier); v2 is healthy and slow only when asked (?delay=ms).
    // Backends are not restarted between tests: see the last test.
    await startBackend(w, 'reviews-v1', { args: ['--status', '500'] });
    v2 = await startBackend(w, 'reviews-v2');
    await withWaypointLog(w, () => waitServed(w as WaypointLab, `${NS}/client`, `http://${VIP['reviews-v2']}:${HTTP_PORT}/ready`, 30_000));
  });

  after(() => downWaypointLab(w, name));

  test('maxConnections 1 + 1 pending: of 20 concurrent clients the excess get 503 UO at once', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    const n = 20;
    const m0 = await scrapeWaypoint(w0);
    const r = await curl(w0, `${NS}/client`, ['--parallel', '--parallel-immediate', '--parallel-max', String(n), '-o', '/dev/null', '-w', WRITE_OUT, '--max-time', '10', `http://${VIP['reviews-v2']}:${HTTP_PORT}/cb[1-${n}]?delay=1000`]);
    const m1 = await scrapeWaypoint(w0);
    const res = parseTransfers(r.stdout);
    assert.equal(res.length, n, `curl made ${res.length} of ${n} transfers: ${r.stderr.slice(0, 300)}`);
    const ok = res.filter((x) => x.status === 200);
    const shed = res.filter((x) => x.status === 503);
    const uo = metricSum(m1, 'istio_requests_total', { reporter: 'waypoint', response_code: '503', response_flags: 'UO' }) - metricSum(m0, 'istio_requests_total', { reporter: 'waypoint', response_code: '503', response_flags: 'UO' });
    t.diagnostic(`20 concurrent: ${ok.length} x 200 (${ok.map((x) => x.seconds.toFixed(2)).join(', ')} s), ${shed.length} x 503 (max ${Math.max(...shed.map((x) => x.seconds)).toFixed(3)} s); UO counted ${uo}`);
    assert.equal(ok.length + shed.length, n, `only 200 and 503: ${JSON.stringify(tally(res, (x) => String(x.status)))}`);
    assert.ok(ok.length >= 1 && ok.length <= 2, `one active and one pending request succeed, got ${ok.length}`);
    assert.ok(shed.length >= n - 2, `the excess is shed, got ${shed.length}`);
    for (const s of shed) assert.ok(s.seconds < 0.9, `overflow answers at once, not after the 1 s backend: ${s.seconds}s`);
    assert.equal(uo, shed.length, 'every shed request carries the overflow flag UO');
  });

  test('outlier detection ejects the endpoint that only answers 500; traffic moves to the healthy one', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    const first = await requests(w0, `${NS}/client`, `http://${VIP.reviews}:${HTTP_PORT}/od`, 10);
    // Envoy ejects at the 3rd consecutive 5xx; an implementation that ejects at the interval sweep (1 s) has had time by now.
    await new Promise((r) => setTimeout(r, 1500));
    const rest = await requests(w0, `${NS}/client`, `http://${VIP.reviews}:${HTTP_PORT}/od2`, 40);
    t.diagnostic(`first 10: ${JSON.stringify(tally(first, (x) => `${x.status}/${x.version}`))}; next 40: ${JSON.stringify(tally(rest, (x) => `${x.status}/${x.version}`))}`);
    const errors = first.filter((x) => x.status === 500).length;
    assert.ok(errors >= 3, `the failing endpoint was tried until ejected (${errors} x 500)`);
    assert.ok(first.every((x) => x.status === 500 || (x.status === 200 && x.version === 'v2')), 'only v1 fails');
    assert.deepEqual(tally(rest, (x) => `${x.status}/${x.version}`), { '200/v2': 40 }, 'after ejection everything goes to the healthy v2');
  });

  test('a restarted backend is served at once (no request hangs on a stale pooled upstream connection)', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    await stopProc(w0, v2);
    v2 = await startBackend(w0, 'reviews-v2');
    const res: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await curl(w0, `${NS}/client`, ['-o', '/dev/null', '-w', '%{http_code} %{time_total}', '--max-time', '3', `http://${VIP['reviews-v2']}:${HTTP_PORT}/after-restart${i}`], 10_000);
      res.push(r.code === 0 ? r.stdout : `curl exit ${r.code} ${r.stdout} ${r.stderr.trim()}`);
    }
    t.diagnostic(`after the backend restart: ${res.join(' | ')}`);
    assert.deepEqual(res.map((x) => x.split(' ')[0]), ['200', '200', '200', '200']);
  });
});
