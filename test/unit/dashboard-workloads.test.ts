/**
 * Per-workload golden signals (src/dashboard/workloads.ts): calls in and out
 * per second from the same pairs as the graph, no double counting of calls
 * through a waypoint, errors and denials as a share of calls, the L7 p99,
 * open connections, a baseline first round, per-pair counter resets and
 * expired series without spikes, idle workloads listed with zeros, bounds.
 * The collector serves them at /api/workloads. Also the graph side of waypoints: their upstream edges go straight to the
 * workload (no service -> waypoint -> service loop).
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import type { PromSample } from '../../src/cli/prom-text.js';
import { FakeClock } from '../../src/common/clock.js';
import { Collector, type WorkloadsView } from '../../src/dashboard/collector.js';
import type { NetnsFetch } from '../../src/dashboard/netns-http.js';
import { startDashboardServer } from '../../src/dashboard/server.js';
import { displayEdges, emptyCounters, graphNodes, pairsFromSamples, type EdgeCounters, type Inventory, type PairAcc } from '../../src/dashboard/edges.js';
import { pairCalls, WorkloadHistory, type WorkloadSignals } from '../../src/dashboard/workloads.js';

const inv: Inventory = {
  workloads: [
    { namespace: 'demo', name: 'productpage', node: 'node-b' },
    { namespace: 'demo', name: 'reviews-v1', node: 'node-a', version: 'v1' },
    { namespace: 'demo', name: 'rogue', node: 'node-b' },
    { namespace: 'demo', name: 'idle', node: 'node-a' },
    { namespace: 'demo', name: 'waypoint', node: 'node-b', waypoint: true },
  ],
  services: [
    { namespace: 'demo', name: 'reviews', hostname: 'reviews.demo.svc.cluster.local' },
    { namespace: 'demo', name: 'productpage', hostname: 'productpage.demo.svc.cluster.local' },
  ],
};
const nodes = graphNodes([], inv);
const WAYPOINTS = new Set(['wl:demo/waypoint']);
const REVIEWS = 'reviews.demo.svc.cluster.local';

function pair(source: string, target: string, c: Partial<EdgeCounters>, service?: string): PairAcc {
  return { source: `wl:demo/${source}`, target: `wl:demo/${target}`, counters: { ...emptyCounters(), ...c }, ...(service ? { service } : {}) };
}

/** The demo's reviews path after n calls: productpage -> waypoint -> reviews-v1 (L4 both hops, L7 from the waypoint), one open connection per hop. */
function reviewsPath(n: number, errors = 0): PairAcc[] {
  return [
    pair('productpage', 'waypoint', { opened: n, closed: n - 1, mtls: n }, REVIEWS),
    pair('waypoint', 'reviews-v1', { opened: n, closed: n - 1, mtls: n }, REVIEWS),
    pair('productpage', 'reviews-v1', { requests: n, requestErrors: errors, buckets: { '10': n / 2, '100': n, '+Inf': n } }, REVIEWS),
  ];
}

function find(v: WorkloadSignals[], name: string): WorkloadSignals {
  const w = v.find((x) => x.name === name);
  assert.ok(w, `${name} is listed`);
  return w;
}

test('the first round is a baseline; the next ones give calls per second in and out', () => {
  const h = new WorkloadHistory(150, 5);
  h.push(0, reviewsPath(100), WAYPOINTS);
  let v = h.view(nodes);
  assert.equal(find(v, 'productpage').out.callsPerSec, 0, 'no rate from a single round');
  h.push(2000, reviewsPath(120), WAYPOINTS);
  v = h.view(nodes);
  const pp = find(v, 'productpage');
  assert.equal(pp.out.callsPerSec, 10, '20 requests in 2 s, counted once (not again as connections to the waypoint)');
  assert.equal(pp.out.l7, true);
  assert.equal(pp.in.callsPerSec, 0);
  const r1 = find(v, 'reviews-v1');
  assert.equal(r1.in.callsPerSec, 10, 'requests, not also the waypoint connections');
  assert.equal(r1.out.callsPerSec, 0);
  assert.ok(r1.in.p99Ms !== undefined && r1.in.p99Ms > 10 && r1.in.p99Ms <= 100, `p99 from the waypoint histogram (${r1.in.p99Ms})`);
  assert.equal(pp.out.p99Ms, r1.in.p99Ms, 'the same requests seen from the caller');
  const wp = find(v, 'waypoint');
  assert.equal(wp.kind, 'waypoint');
  assert.equal(wp.in.callsPerSec, 10, "the waypoint's own row counts its connections");
  assert.equal(wp.out.callsPerSec, 10);
  assert.equal(wp.in.l7, false);
  assert.equal(wp.active, 2, 'one open connection in, one out');
  assert.equal(pp.active, 1, 'the connection to the waypoint is open');
  assert.equal(find(v, 'idle').in.callsPerSec, 0);
  assert.deepEqual(pp.points.map((p) => p.outCalls), [0, 10]);
});

test('errors: L7 failures and L4 denials as a share of the calls, on both ends', () => {
  const h = new WorkloadHistory();
  const deny = (n: number): PairAcc => pair('rogue', 'productpage', { failed: n, denied: n, mtls: n }, 'productpage.demo.svc.cluster.local');
  h.push(0, [...reviewsPath(0), deny(0)], WAYPOINTS);
  h.push(1000, [...reviewsPath(10, 2), deny(4)], WAYPOINTS);
  const v = h.view(nodes);
  const rogue = find(v, 'rogue');
  assert.equal(rogue.out.callsPerSec, 4, 'a denied connection attempt is a call');
  assert.equal(rogue.out.errorShare, 1);
  assert.equal(rogue.out.deniedPerSec, 4);
  const pp = find(v, 'productpage');
  assert.equal(pp.in.deniedPerSec, 4, 'the workload that refused sees the denials as its inbound errors');
  assert.equal(pp.in.errorShare, 1);
  assert.equal(pp.out.errorShare, 0.2, '2 of 10 requests to reviews failed');
  assert.equal(find(v, 'reviews-v1').in.errorsPerSec, 2);
  assert.deepEqual(pairCalls({ ...emptyCounters(), requests: 5, requestErrors: 4, denied: 3 }, true), { calls: 5, errors: 5, denied: 3 }, 'errors never exceed calls');
});

test('an agent restart (one pair resets) and an expired series do not spike or go negative', () => {
  const h = new WorkloadHistory();
  h.push(0, reviewsPath(1000), WAYPOINTS);
  h.push(1000, reviewsPath(1010), WAYPOINTS);
  // The waypoint restarted: its L7 counters start again at 3; the L4 pairs keep growing.
  const restarted = reviewsPath(1020).map((p) => (p.counters.requests > 0 ? pair('productpage', 'reviews-v1', { requests: 3, buckets: { '10': 3, '+Inf': 3 } }, REVIEWS) : p));
  h.push(2000, restarted, WAYPOINTS);
  // Then the L7 series expires (missing from the round): nothing, not minus everything.
  h.push(3000, reviewsPath(1030).filter((p) => p.counters.requests === 0), WAYPOINTS);
  const pts = find(h.view(nodes), 'reviews-v1').points.map((p) => p.inCalls);
  assert.deepEqual(pts, [0, 10, 3, 0]);
  assert.ok(pts.every((x) => x >= 0));
});

test('the view: every workload and waypoint (idle ones with zeros), no services, points bounded and limited', () => {
  const h = new WorkloadHistory(4, 2);
  for (let i = 0; i < 10; i++) h.push(i * 1000, reviewsPath(i * 10), WAYPOINTS);
  const v = h.view(nodes, 3);
  assert.deepEqual(v.map((w) => w.name).sort(), ['idle', 'productpage', 'reviews-v1', 'rogue', 'waypoint']);
  const idle = find(v, 'idle');
  assert.deepEqual(idle.points, []);
  assert.equal(idle.in.callsPerSec + idle.out.callsPerSec + idle.active, 0);
  assert.equal(idle.node, 'node-a');
  assert.equal(find(v, 'productpage').points.length, 3, 'the newest 3 of the 4 kept');
  assert.equal(find(v, 'productpage').points.at(-1)?.t, 9000);
  assert.equal(find(h.view(nodes), 'productpage').points.length, 4, 'at most maxPoints');
  assert.equal(find(v, 'productpage').out.callsPerSec, 10, 'window of 2 rounds');
  assert.deepEqual(find(h.view(nodes, 0), 'productpage').points, []);
});

test('from scraped samples: the same numbers as the graph edges', () => {
  const l4 = (src: string, dst: string, name: string, value: number, extra: Record<string, string> = {}): PromSample => ({
    name: `istio_tcp_connections_${name}_total`,
    value,
    labels: { reporter: 'destination', source_workload: src, source_workload_namespace: 'demo', destination_workload: dst, destination_workload_namespace: 'demo', destination_service: REVIEWS, response_flags: '-', connection_security_policy: 'mutual_tls', ...extra },
  });
  const l7 = (value: number): PromSample => ({
    name: 'istio_requests_total',
    value,
    labels: { reporter: 'waypoint', source_workload: 'productpage', source_workload_namespace: 'demo', destination_workload: 'reviews-v1', destination_workload_namespace: 'demo', destination_service: REVIEWS, response_code: '200' },
  });
  const round = (n: number): PairAcc[] =>
    pairsFromSamples([l4('productpage', 'waypoint', 'opened', n), l4('productpage', 'waypoint', 'closed', n), l4('waypoint', 'reviews-v1', 'opened', n), l4('waypoint', 'reviews-v1', 'closed', n)], [l7(n)], inv);
  const h = new WorkloadHistory();
  h.push(0, round(10), WAYPOINTS);
  h.push(1000, round(17), WAYPOINTS);
  const v = h.view(nodes);
  assert.equal(find(v, 'productpage').out.callsPerSec, 7);
  assert.equal(find(v, 'reviews-v1').in.callsPerSec, 7);
  assert.equal(find(v, 'waypoint').out.callsPerSec, 7);
  // The graph: service -> waypoint -> workload, and the L7 edge service -> workload, without a waypoint -> service edge.
  const edges = displayEdges(round(17), inv);
  assert.ok(edges.has('wl:demo/productpage>svc:demo/reviews'));
  assert.ok(edges.has('svc:demo/reviews>wl:demo/waypoint'));
  assert.ok(edges.has('wl:demo/waypoint>wl:demo/reviews-v1'), 'the waypoint connects to the workload directly');
  assert.equal(edges.get('wl:demo/waypoint>wl:demo/reviews-v1')?.service, REVIEWS, 'the service is still named on the edge');
  assert.ok(!edges.has('wl:demo/waypoint>svc:demo/reviews'), 'no loop back through the service');
  assert.equal(edges.get('svc:demo/reviews>wl:demo/reviews-v1')?.counters.requests, 17, 'the requests reach the workload through the service');
});

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

test('the collector scrapes the signals and serves them at /api/workloads', async () => {
  let opened = 100;
  const line = (name: string, v: number, flags = '-'): string =>
    `istio_tcp_connections_${name}_total{reporter="destination",source_workload="rogue",source_workload_namespace="demo",destination_workload="productpage",destination_workload_namespace="demo",destination_service="productpage.demo.svc.cluster.local",response_flags="${flags}",connection_security_policy="mutual_tls"} ${v}`;
  const fetch: NetnsFetch = async (_t, path) => (path === '/metrics' ? { status: 200, body: [line('opened', opened), line('closed', opened - 2), line('failed', opened / 10, 'DENY'), ''].join('\n') } : { status: 404, body: '' });
  const clock = new FakeClock(1_000_000);
  const c = new Collector({ targets: { agents: [{ node: 'node-a', netns: 'node-a', host: '127.0.0.1', metricsPort: 15020, adminPort: 15000, readinessPort: 15021 }], waypoints: [], inventory: inv }, fetch, clock, intervalMs: 1000, maxPoints: 10 });
  await c.scrapeOnce();
  for (let i = 0; i < 3; i++) {
    clock.advance(1000);
    opened += 10;
    await c.scrapeOnce();
  }
  const v = c.workloads();
  assert.equal(v.intervalMs, 1000);
  assert.equal(v.windowSeconds, 5);
  const rogue = find(v.workloads, 'rogue');
  assert.equal(rogue.out.callsPerSec, 11, '10 opened + 1 denied per second');
  assert.equal(rogue.out.deniedPerSec, 1);
  assert.equal(find(v.workloads, 'productpage').in.callsPerSec, 11);
  assert.equal(find(v.workloads, 'productpage').active, 2);
  assert.equal(rogue.points.length, 4);
  const s = await startDashboardServer({ collector: c, port: 0 });
  try {
    const r = await get(`${s.url}api/workloads?points=2`);
    assert.equal(r.status, 200);
    const body = JSON.parse(r.body) as WorkloadsView;
    assert.deepEqual(body.workloads.map((w) => w.name).sort(), ['idle', 'productpage', 'reviews-v1', 'rogue', 'waypoint']);
    assert.equal(find(body.workloads, 'rogue').points.length, 2);
    assert.equal(find(body.workloads, 'rogue').points.at(-1)?.outCalls, 11);
    const all = JSON.parse((await get(`${s.url}api/workloads?points=999`)).body) as WorkloadsView;
    assert.equal(find(all.workloads, 'rogue').points.length, 4, 'no more than the collector keeps');
    assert.equal((await get(`${s.url}api/workloads?points=-1`)).status, 400);
    assert.equal((await get(`${s.url}api/workloads?points=x`)).status, 400);
  } finally {
    await s.close();
  }
});
