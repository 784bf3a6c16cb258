/**
 * Waypoint end to end, resilience (issue must-shows 2 and 3), configured by
 * Istio VirtualServices in a lab with the control plane:
 * - retries (attempts 3, retryOn 5xx) turn a backend failing every other
 *   request with 503 into 100 % success, and every retry is counted in
 *   ambit_waypoint_upstream_retries_total; with attempts 0 half fail again;
 * - a 100 ms per-try timeout against a backend that answers after 1 s gives
 *   504 after the tries (well before the backend would answer);
 * - fault injection: a 50 % abort with 503 (count within 3 sigma) and a
 *   fixed 500 ms delay observed by the client.
 * Real curl in a captured client pod. Needs root.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import {
  downWaypointLab, eventually, hits, HTTP_PORT, metricSum, NS, requests, scrapeWaypoint, setManifest, startBackend, stopProc, tally, upWaypointLab, VIP, waitServed, withWaypointLog, withinSigma, type WaypointLab,
} from '../helpers/waypoint-lab.js';

const name = `wpde${randomBytes(2).toString('hex')}`;
let w: WaypointLab | undefined;
const fqdn = (svc: string): string => `${svc}.${NS}.svc.cluster.local`;

function retriesVs(attempts: number): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-v1
  namespace: ${NS}
spec:
  hosts: [${fqdn('reviews-v1')}]
  http:
    - route:
        - destination:
            host: ${fqdn('reviews-v1')}
      retries:
        attempts: ${attempts}
        retryOn: 5xx`;
}

const PER_TRY_VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-v2
  namespace: ${NS}
spec:
  hosts: [${fqdn('reviews-v2')}]
  http:
    - route:
        - destination:
            host: ${fqdn('reviews-v2')}
      retries:
        attempts: 2
        perTryTimeout: 100ms
        retryOn: 5xx,gateway-error,reset`;

const FAULT_VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: ${NS}
spec:
  hosts: [${fqdn('reviews')}]
  http:
    - match:
        - uri:
            prefix: /abort
      fault:
        abort:
          percentage:
            value: 50
          httpStatus: 503
      route:
        - destination:
            host: ${fqdn('reviews-v1')}
    - match:
        - uri:
            prefix: /delay
      fault:
        delay:
          percentage:
            value: 100
          fixedDelay: 500ms
      route:
        - destination:
            host: ${fqdn('reviews-v1')}
    - route:
        - destination:
            host: ${fqdn('reviews-v1')}`;

describe('waypoint lab: retries, per-try timeout, fault injection', { ...requiresRoot(), ...requiresTool('curl', 'nft') }, () => {
  let v1: ChildProcess | undefined;
  let v1Count = '';
  let v2Count = '';

  before(async () => {
    if (process.getuid?.() !== 0) return;
    w = await upWaypointLab(name, { 'retries.yaml': retriesVs(3), 'per-try.yaml': PER_TRY_VS, 'fault.yaml': FAULT_VS });
    v1Count = join(w.dir, 'v1.count');
    v2Count = join(w.dir, 'v2.count');
    v1 = await startBackend(w, 'reviews-v1', { countFile: v1Count, args: ['--fail-rate', '0.5', '--fail-status', '503'] });
    await startBackend(w, 'reviews-v2', { countFile: v2Count, args: ['--delay-ms', '1000'] });
    await withWaypointLog(w, () => waitServed(w as WaypointLab, `${NS}/client`, `http://${VIP['reviews-v1']}:${HTTP_PORT}/ready`, 30_000));
  });

  after(() => downWaypointLab(w, name));

  test('retries (attempts 3, retryOn 5xx): a 50 % failing backend gives 100 % success, retries counted', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    const n = 200;
    const m0 = await scrapeWaypoint(w0);
    const h0 = hits(v1Count);
    const res = await requests(w0, `${NS}/client`, `http://${VIP['reviews-v1']}:${HTTP_PORT}/retry`, n);
    const h1 = hits(v1Count);
    const m1 = await scrapeWaypoint(w0);
    const retries = metricSum(m1, 'ambit_waypoint_upstream_retries_total') - metricSum(m0, 'ambit_waypoint_upstream_retries_total');
    const failed = h1.failed - h0.failed;
    t.diagnostic(`status ${JSON.stringify(tally(res, (x) => String(x.status)))}; backend hits ${h1.http - h0.http}, 503s ${failed}; retries counted ${retries}`);
    assert.deepEqual(tally(res, (x) => String(x.status)), { '200': n });
    assert.ok(failed >= n * 0.4, `the backend failed ${failed} times`);
    assert.equal(retries, failed, 'one retry per failed attempt');
    const ok = metricSum(m1, 'istio_requests_total', { reporter: 'waypoint', response_code: '200', destination_service: fqdn('reviews-v1') }) - metricSum(m0, 'istio_requests_total', { reporter: 'waypoint', response_code: '200', destination_service: fqdn('reviews-v1') });
    assert.equal(ok, n, 'istio_requests_total counts each client request once, as 200');

    // attempts 0: the same backend now fails half the requests.
    await setManifest(w0, 'retries.yaml', retriesVs(0));
    await eventually('retries off', 15_000, async () => {
      const r = await requests(w0, `${NS}/client`, `http://${VIP['reviews-v1']}:${HTTP_PORT}/probe`, 6);
      return r.some((x) => x.status === 503) || JSON.stringify(tally(r, (x) => String(x.status)));
    });
    const off = await requests(w0, `${NS}/client`, `http://${VIP['reviews-v1']}:${HTTP_PORT}/noretry`, n);
    const s = tally(off, (x) => String(x.status));
    t.diagnostic(`retries off: ${JSON.stringify(s)}`);
    assert.ok(withinSigma(s['503'] ?? 0, n, 0.5), `about half fail without retries: ${JSON.stringify(s)}`);
  });

  test('per-try timeout 100 ms against a 1 s backend: 504 after the tries, well before 1 s', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    const h0 = hits(v2Count);
    const res = await requests(w0, `${NS}/client`, `http://${VIP['reviews-v2']}:${HTTP_PORT}/slow`, 5);
    const h1 = hits(v2Count);
    t.diagnostic(`per-try timeout: ${res.map((x) => `${x.status} in ${(x.seconds * 1000).toFixed(0)} ms`).join(', ')}; backend hits ${h1.http - h0.http}`);
    for (const r of res) {
      assert.equal(r.status, 504);
      assert.ok(r.seconds >= 0.3, `3 tries of 100 ms take at least 300 ms, took ${r.seconds}s`);
      assert.ok(r.seconds < 0.9, `504 before the 1 s backend answers, took ${r.seconds}s`);
    }
    assert.equal(h1.http - h0.http, 15, 'each request tried the backend 3 times (1 + attempts 2)');
  });

  test('fault injection: 50 % abort with 503 within 3 sigma, fixed 500 ms delay seen by the client', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    // A healthy v1 for this test (the retry test's v1 fails every other request).
    await stopProc(w0, v1);
    v1 = await startBackend(w0, 'reviews-v1', { countFile: v1Count });
    await waitServed(w0, `${NS}/client`, `http://${VIP.reviews}:${HTTP_PORT}/plain`, 15_000);
    const n = 400;
    const h0 = hits(v1Count);
    const m0 = await scrapeWaypoint(w0);
    const ab = await requests(w0, `${NS}/client`, `http://${VIP.reviews}:${HTTP_PORT}/abort`, n);
    const m1 = await scrapeWaypoint(w0);
    const h1 = hits(v1Count);
    const s = tally(ab, (x) => String(x.status));
    const aborted = s['503'] ?? 0;
    t.diagnostic(`abort 50 %: ${JSON.stringify(s)}; backend hits ${h1.http - h0.http}`);
    assert.equal(aborted + (s['200'] ?? 0), n, 'only 200 and 503');
    assert.ok(withinSigma(aborted, n, 0.5), `${aborted} aborted of ${n}; expected 200 +- 30`);
    assert.equal(h1.http - h0.http, n - aborted, 'aborted requests never reach the backend');
    const fi = metricSum(m1, 'istio_requests_total', { reporter: 'waypoint', response_code: '503', response_flags: 'FI' }) - metricSum(m0, 'istio_requests_total', { reporter: 'waypoint', response_code: '503', response_flags: 'FI' });
    assert.equal(fi, aborted, 'aborts are labelled response_flags="FI"');

    const plain = await requests(w0, `${NS}/client`, `http://${VIP.reviews}:${HTTP_PORT}/plain`, 5);
    const delayed = await requests(w0, `${NS}/client`, `http://${VIP.reviews}:${HTTP_PORT}/delay`, 5);
    t.diagnostic(`no fault: ${plain.map((x) => (x.seconds * 1000).toFixed(0)).join(', ')} ms; delay 500 ms: ${delayed.map((x) => (x.seconds * 1000).toFixed(0)).join(', ')} ms`);
    const median = [...plain].map((x) => x.seconds).sort((a, b) => a - b)[2] as number;
    assert.ok(plain.every((r) => r.status === 200) && median < 0.25, `undelayed requests: median ${median}s`);
    for (const r of delayed) {
      assert.equal(r.status, 200);
      assert.ok(r.seconds >= 0.5 && r.seconds < 1.5, `delayed request took ${r.seconds}s`);
    }
  });
});
