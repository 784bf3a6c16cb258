/**
 * Waypoint end to end, routing (issue must-shows 1 and 6): in a lab with the
 * control plane, a Gateway API HTTPRoute attached to the `reviews` Service
 * splits traffic 90/10 between reviews-v1 and reviews-v2 and sends every
 * request with `end-user: jason` to v2. Real curl in a captured client pod,
 * HTTP/1.1 and h2c (prior knowledge); the path is client -> agent ->
 * waypoint pod -> agent -> backend pod. A client that skips the waypoint
 * (a plaintext client outside the mesh, straight to a backend pod's IP, once
 * the waypoint is also the workloads' waypoint) is refused by the
 * destination agent and never reaches the backend; a mesh client addressing
 * the pod IP is carried through the waypoint. `labApply` starts and stops the waypoint
 * process as the pod gains and loses its gateway-name label. Needs root (network namespaces, nftables).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { processAlive } from '../../src/lab/agents.js';
import { labStatus } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { renderWaypointManifest } from '../../src/lab/waypoints.js';
import { curl, downWaypointLab, setManifest, metricSum, scrapeWaypoint, eventually, hits, HTTP_PORT, BACKEND_HTTP, NS, podIp, requests, startBackend, tally, upWaypointLab, VIP, waitServed, waypointLog, withinSigma, type WaypointLab } from '../helpers/waypoint-lab.js';

const name = `wpdr${randomBytes(2).toString('hex')}`;
let w: WaypointLab | undefined;
const url = `http://${VIP.reviews}:${HTTP_PORT}`;

const ROUTE = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
  namespace: ${NS}
spec:
  parentRefs:
    - group: ""
      kind: Service
      name: reviews
      port: ${HTTP_PORT}
  rules:
    - matches:
        - headers:
            - name: end-user
              value: jason
      backendRefs:
        - name: reviews-v2
          port: ${HTTP_PORT}
    - backendRefs:
        - name: reviews-v1
          port: ${HTTP_PORT}
          weight: 90
        - name: reviews-v2
          port: ${HTTP_PORT}
          weight: 10`;

describe('waypoint lab: weighted split, header routing, bypass refused', { ...requiresRoot(), ...requiresTool('curl', 'nft') }, () => {
  let v1Count = '';
  before(async () => {
    if (process.getuid?.() !== 0) return;
    w = await upWaypointLab(name, { 'route.yaml': ROUTE });
    v1Count = join(w.dir, 'v1.count');
    await startBackend(w, 'reviews-v1', { countFile: v1Count });
    await startBackend(w, 'reviews-v2');
    try {
      await waitServed(w, `${NS}/client`, `${url}/ready`, 30_000);
      // The route is in force once jason lands on v2 (the base split would give v1 90 % of the time).
      await eventually('HTTPRoute in force', 20_000, async () => {
        const t = await requests(w as WaypointLab, `${NS}/client`, `${url}/probe`, 5, ['-H', 'end-user: jason']);
        return t.every((x) => x.version === 'v2') || JSON.stringify(tally(t, (x) => `${x.status}/${x.version}`));
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- waypoint log ---\n${waypointLog(w)}`);
    }
  });

  after(() => downWaypointLab(w, name));

  test('2,000 requests over HTTP/1.1 split 90/10 within 3 sigma', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    const n = 2000;
    const started = Date.now();
    const res = await requests(w0, `${NS}/client`, `${url}/r`, n);
    const byStatus = tally(res, (x) => String(x.status));
    const byVersion = tally(res, (x) => x.version);
    t.diagnostic(`${n} requests in ${Date.now() - started} ms: status ${JSON.stringify(byStatus)}, versions ${JSON.stringify(byVersion)}`);
    assert.deepEqual(byStatus, { '200': n }, 'every request succeeds');
    const v2 = byVersion.v2 ?? 0;
    assert.equal((byVersion.v1 ?? 0) + v2, n);
    assert.ok(withinSigma(v2, n, 0.1), `v2 got ${v2} of ${n}; expected 200 +- ${(3 * Math.sqrt(n * 0.1 * 0.9)).toFixed(0)}`);
  });

  test('end-user: jason always goes to v2 (HTTP/1.1 and h2c); others still split', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    const h1 = await requests(w0, `${NS}/client`, `${url}/j`, 200, ['-H', 'end-user: jason']);
    const h2 = await requests(w0, `${NS}/client`, `${url}/j2`, 200, ['--http2-prior-knowledge', '-H', 'end-user: jason']);
    t.diagnostic(`jason h1 ${JSON.stringify(tally(h1, (x) => `${x.status}/${x.version}`))}, h2c ${JSON.stringify(tally(h2, (x) => `${x.status}/${x.version}`))}`);
    assert.deepEqual(tally(h1, (x) => `${x.status}/${x.version}`), { '200/v2': 200 });
    assert.deepEqual(tally(h2, (x) => `${x.status}/${x.version}`), { '200/v2': 200 });
    const other = await requests(w0, `${NS}/client`, `${url}/o`, 300, ['--http2-prior-knowledge', '-H', 'end-user: alice']);
    const v = tally(other, (x) => x.version);
    t.diagnostic(`alice over h2c: ${JSON.stringify(v)}`);
    assert.ok((v.v1 ?? 0) > 200, 'alice mostly gets v1');
    assert.ok(withinSigma(v.v2 ?? 0, 300, 0.1), `alice v2 share ${v.v2 ?? 0}/300 off 10 %`);
  });

  test('skipping the waypoint (straight to a backend pod) is refused by the destination agent', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    // A service waypoint does not cover pod-IP traffic (as in Istio): make it the workloads' waypoint too.
    await setManifest(w0, 'waypoint.yaml', renderWaypointManifest({ namespace: NS, name: 'wp', node: 'node-b', clusterIP: VIP.wp, for: 'all' }));
    const direct = `http://${podIp(w0, 'reviews-v1')}:${BACKEND_HTTP}/direct`;
    const attempt = async (from: string): Promise<string> => {
      const r = await curl(w0, from, ['-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', direct], 10_000);
      return `exit ${r.code} status ${r.stdout} ${r.stderr.trim()}`;
    };
    await eventually('a plaintext client outside the mesh is refused', 15_000, async () => !(await attempt('outside/outsider')).includes('status 200') || 'still served');
    const before = hits(v1Count).http;
    const m0 = await scrapeWaypoint(w0);
    const fromOutside = [await attempt('outside/outsider'), await attempt('outside/outsider')];
    const afterOutside = hits(v1Count).http;
    const fromMesh = await attempt(`${NS}/client`);
    const m1 = await scrapeWaypoint(w0);
    const seen = ['istio_requests_total', 'istio_tcp_connections_opened_total'].reduce((n, m) => n + metricSum(m1, m, { destination_workload: 'reviews-v1' }) - metricSum(m0, m, { destination_workload: 'reviews-v1' }), 0);
    t.diagnostic(`non-mesh pod -> pod IP: ${fromOutside.join(' | ')}`);
    t.diagnostic(`mesh client -> pod IP: ${fromMesh}; the waypoint saw ${seen} request(s)/connection(s) to reviews-v1`);
    assert.equal(afterOutside, before, 'the backend saw none of the bypass attempts');
    for (const r of fromOutside) assert.doesNotMatch(r, /status 200/, 'a client outside the mesh is refused');
    assert.match(fromMesh, /status 200/, 'a mesh client addressing the pod is carried through the waypoint');
    assert.ok(seen >= 1, 'the waypoint carried the pod-addressed request');
    // The same client through the service (and so the waypoint) still works.
    const ok = await requests(w0, `${NS}/client`, `${url}/after`, 3, ['-H', 'end-user: jason']);
    assert.deepEqual(tally(ok, (x) => String(x.status)), { '200': 3 });
  });

  test('labApply follows the gateway-name label: the waypoint process stops, and a new one starts and serves', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    const file = join(w0.dir, 'waypoint.yaml');
    const text = readFileSync(file, 'utf8');
    const unlabelled = text.replace('  labels:\n    gateway.networking.k8s.io/gateway-name: "wp"\n    istio.io/dataplane-mode: none', '  labels:\n    istio.io/dataplane-mode: none');
    assert.notEqual(unlabelled, text);
    const before = (await labStatus(name)).waypoints;
    assert.equal(before.length, 1);
    assert.equal(before[0]?.alive, true);
    await setManifest(w0, 'waypoint.yaml', unlabelled.trimEnd());
    const off = await labStatus(name);
    assert.deepEqual(off.waypoints, [], 'no waypoint process without the label');
    assert.equal(processAlive(before[0]?.pid ?? 0), false, 'the old process is gone');
    const since = Date.now();
    await setManifest(w0, 'waypoint.yaml', text.trimEnd());
    const on = (await labStatus(name)).waypoints;
    assert.equal(on.length, 1);
    assert.equal(on[0]?.alive, true);
    assert.notEqual(on[0]?.pid, before[0]?.pid);
    await waitServed(w0, `${NS}/client`, `${url}/again`, 20_000, ['-H', 'end-user: jason']);
    t.diagnostic(`label restored -> new waypoint ready and serving in ${Date.now() - since} ms`);
  });
});
