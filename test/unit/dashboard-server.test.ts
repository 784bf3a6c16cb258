/**
 * The collector and the HTTP API with an injected fetch (no lab): scrape
 * rounds, health of agents that answer and of one that does not, events
 * (a denied edge, an agent going down, access-log lines from a file), and
 * the server's endpoints, status codes and SSE stream on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FakeClock } from '../../src/common/clock.js';
import { accessEvent, Collector, type DashboardTargets } from '../../src/dashboard/collector.js';
import { DashboardScrapeError } from '../../src/dashboard/errors.js';
import type { NetnsFetch } from '../../src/dashboard/netns-http.js';
import { startDashboardServer } from '../../src/dashboard/server.js';
import { APP_JS } from '../../src/dashboard/ui.js';

const dir = mkdtempSync(join(tmpdir(), 'ambit-dash-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function metrics(opened: number, denied: number): string {
  const l = (reporter: string, flags: string, src = 'client'): string =>
    `{reporter="${reporter}",source_workload="${src}",source_workload_namespace="demo",destination_workload="server",destination_workload_namespace="demo",destination_service="server.demo.svc.cluster.local",response_flags="${flags}",connection_security_policy="mutual_tls"}`;
  return [
    '# TYPE istio_tcp_connections_opened_total counter',
    `istio_tcp_connections_opened_total${l('source', '-')} ${opened}`,
    `istio_tcp_connections_closed_total${l('source', '-')} ${opened}`,
    `istio_tcp_connections_failed_total${l('source', 'DENY', 'rogue')} ${denied}`,
    'istio_tcp_sockets_open{reporter="source"} 1',
    '',
  ].join('\n');
}

interface World {
  opened: number;
  denied: number;
  nodeBDown: boolean;
  cpVersion: number;
}

function fakeFetch(w: World): NetnsFetch {
  return async (t, path) => {
    if (t.netns === 'node-b' && w.nodeBDown) throw new DashboardScrapeError('connect ECONNREFUSED');
    if (path === '/metrics') return { status: 200, body: t.netns === 'node-a' ? metrics(w.opened, w.denied) : '' };
    if (path === '/healthz/ready') return { status: 200, body: '{"ready":true,"pending":[]}' };
    if (path === '/config_dump') return { status: 200, body: JSON.stringify({ node: t.netns, workloads: [{ uid: 'demo/client', name: 'client', namespace: 'demo', node: t.netns }], workloadState: { 'demo/client': { state: 'Up' } }, certificates: [] }) };
    if (path === '/debug/status') return { status: 200, body: JSON.stringify({ version: w.cpVersion, served: { workloads: 2, services: 1, authorizations: 1 }, resources: {}, issues: [], rejections: 0 }) };
    if (path === '/debug/config') return { status: 200, body: JSON.stringify({ authorizations: { 'demo/deny': { name: 'deny', namespace: 'demo', action: 'DENY', scope: 'WORKLOAD_SELECTOR', rules: [{}] } } }) };
    return { status: 404, body: 'not found' };
  };
}

function targets(logFile: string): DashboardTargets {
  const agent = (node: string): DashboardTargets['agents'][number] => ({ node, netns: node, host: '127.0.0.1', metricsPort: 15020, adminPort: 15000, readinessPort: 15021 });
  return {
    agents: [agent('node-a'), agent('node-b')],
    waypoints: [],
    controlPlane: { netns: 'node-a', host: '10.0.0.1', port: 15014 },
    accessLogs: [{ node: 'node-a', file: logFile }],
    inventory: { workloads: [{ namespace: 'demo', name: 'client' }, { namespace: 'demo', name: 'server' }, { namespace: 'demo', name: 'rogue' }], services: [{ namespace: 'demo', name: 'server', hostname: 'server.demo.svc.cluster.local' }] },
  };
}

function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    })
      .on('error', reject)
      .end();
  });
}

test('collector rounds: rates, health, policies and events', async () => {
  const log = join(dir, 'agent-node-a.log');
  writeFileSync(log, '{"component":"access","msg":"connection complete","direction":"inbound"}\n');
  const w: World = { opened: 10, denied: 0, nodeBDown: false, cpVersion: 1 };
  const clock = new FakeClock(1_000_000);
  const c = new Collector({ targets: targets(log), fetch: fakeFetch(w), clock, intervalMs: 1000, windowPoints: 2 });
  await c.scrapeOnce();
  assert.equal(c.health().agents.every((a) => a.up && a.ready), true);
  assert.equal(c.health().agents[0]?.workloadsUp, 1);
  assert.deepEqual(c.health().controlPlane?.policies, [{ namespace: 'demo', name: 'deny', action: 'DENY', scope: 'WORKLOAD_SELECTOR', rules: 1 }]);
  assert.equal(c.events().length, 0, 'a healthy start is not news; the log before the dashboard is not replayed');

  clock.advance(1000);
  w.opened = 14;
  w.denied = 3;
  w.nodeBDown = true;
  w.cpVersion = 2;
  appendFileSync(log, JSON.stringify({ component: 'access', msg: 'connection failed', direction: 'inbound', 'src.workload': 'rogue', 'src.namespace': 'demo', 'dst.workload': 'server', 'dst.namespace': 'demo', response_flags: 'DENY', error: 'denied by policy demo/deny' }) + '\n{"component":"access","msg":"connection com');
  await c.scrapeOnce();
  const g = c.graph();
  const e = g.edges.find((x) => x.id === 'wl:demo/client>svc:demo/server');
  assert.equal(e?.cps, 4);
  assert.equal(g.edges.find((x) => x.id === 'wl:demo/rogue>svc:demo/server')?.status, 'denied');
  assert.equal(g.nodes.find((n) => n.id === 'svc:demo/server')?.health, 'ok', 'the enforcing side is not red');
  assert.equal(g.nodes.find((n) => n.id === 'wl:demo/rogue')?.health, 'denied');
  const b = c.health().agents.find((a) => a.node === 'node-b');
  assert.equal(b?.up, false);
  assert.match(b?.error ?? '', /ECONNREFUSED/);
  const ev = c.events();
  assert.ok(ev.some((x) => x.kind === 'deny' && x.text.includes('demo/rogue -> demo/server')), JSON.stringify(ev));
  assert.ok(ev.some((x) => x.kind === 'health' && x.text.includes('node-b is down')));
  assert.ok(ev.some((x) => x.kind === 'config' && x.text.includes('version 2')));
  assert.ok(ev.some((x) => x.kind === 'access' && x.level === 'error' && x.text.includes('DENY')));
  assert.deepEqual(c.events(ev.at(-1)?.seq ?? 0), [], 'since= filters');
  assert.equal(c.series('wl:demo/client>svc:demo/server')?.length, 2);
});

test('the collector loop runs rounds on its clock and stops', async () => {
  const w: World = { opened: 1, denied: 0, nodeBDown: false, cpVersion: 1 };
  const clock = new FakeClock(0);
  const c = new Collector({ targets: targets(join(dir, 'none.log')), fetch: fakeFetch(w), clock, intervalMs: 500 });
  let rounds = 0;
  c.onRound(() => rounds++);
  c.start();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  clock.advance(500);
  await new Promise((r) => setTimeout(r, 20));
  await c.stop();
  assert.equal(rounds, 2);
  assert.equal(clock.pendingTimers, 0, 'stop cancels the next round');
});

test('HTTP API: page, JSON endpoints, errors, SSE; loopback by default', async (t) => {
  const w: World = { opened: 5, denied: 0, nodeBDown: false, cpVersion: 1 };
  const c = new Collector({ targets: targets(join(dir, 'none.log')), fetch: fakeFetch(w), clock: new FakeClock(0), intervalMs: 1000 });
  await c.scrapeOnce();
  const s = await startDashboardServer({ collector: c, port: 0, title: 'T<x>' });
  t.after(() => s.close());
  assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const page = await get(s.url);
  assert.equal(page.status, 200);
  assert.match(page.type, /text\/html/);
  assert.ok(page.body.includes('Tx mesh dashboard'), 'title inserted, markup stripped');
  assert.ok(!page.body.includes('__TITLE__'));
  assert.ok(!/https?:\/\/(?!www\.w3\.org)/.test(page.body + APP_JS), 'no external resources: works offline');
  assert.equal((await get(`${s.url}app.js`)).body, APP_JS);
  assert.doesNotThrow(() => new Function(APP_JS), 'the page script is valid JavaScript');
  const snap = JSON.parse((await get(`${s.url}api/snapshot`)).body) as { graph: { edges: unknown[]; rounds: number }; health: { agents: unknown[] }; events: unknown[] };
  assert.equal(snap.graph.rounds, 1);
  assert.equal(snap.health.agents.length, 2);
  const graph = JSON.parse((await get(`${s.url}api/graph`)).body) as { edges: Array<{ id: string }> };
  const id = graph.edges[0]?.id ?? '';
  assert.ok(id);
  const series = await get(`${s.url}api/series?edge=${encodeURIComponent(id)}`);
  assert.equal(series.status, 200);
  assert.equal((JSON.parse(series.body) as { points: unknown[] }).points.length, 1);
  assert.equal((await get(`${s.url}api/series?edge=nope`)).status, 404);
  assert.equal((await get(`${s.url}api/series`)).status, 400);
  assert.equal((await get(`${s.url}api/events?since=-1`)).status, 400);
  assert.equal((await get(`${s.url}api/health`)).status, 200);
  assert.equal((await get(`${s.url}healthz`)).status, 200);
  assert.equal((await get(`${s.url}nothing`)).status, 404);
  const post = await new Promise<number>((resolve, reject) => request(`${s.url}api/graph`, { method: 'POST' }, (res) => resolve(res.statusCode ?? 0)).on('error', reject).end());
  assert.equal(post, 405);

  // SSE: one snapshot at once, another after the next round.
  const events = await new Promise<string[]>((resolve, reject) => {
    const got: string[] = [];
    const req = request(`${s.url}api/stream`, (res) => {
      assert.match(String(res.headers['content-type']), /text\/event-stream/);
      res.on('data', (d: Buffer) => {
        got.push(...d.toString().split('\n').filter((l) => l.startsWith('event: ')));
        if (got.length === 1) void c.scrapeOnce();
        if (got.length >= 2) {
          req.destroy();
          resolve(got);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
  assert.deepEqual(events, ['event: snapshot', 'event: snapshot']);
});

test('a port in use is a DashboardBindError', async (t) => {
  const c = new Collector({ targets: targets(join(dir, 'none.log')), fetch: fakeFetch({ opened: 0, denied: 0, nodeBDown: false, cpVersion: 1 }), clock: new FakeClock(0) });
  const a = await startDashboardServer({ collector: c, port: 0 });
  t.after(() => a.close());
  await assert.rejects(startDashboardServer({ collector: c, port: a.port }), (e: Error & { code?: string }) => e.code === 'AMBIT_ERR_DASHBOARD_BIND' && /cannot listen/.test(e.message));
});

test('accessEvent: one line per connection (the destination side), every failure, nothing else', () => {
  const line = (o: Record<string, unknown>): string => JSON.stringify({ component: 'access', ...o });
  assert.equal(accessEvent('n', line({ msg: 'connection complete', direction: 'outbound' })), undefined);
  assert.match(accessEvent('n', line({ msg: 'connection complete', direction: 'inbound', 'src.workload': 'a', 'src.namespace': 'x', 'dst.workload': 'b', 'dst.namespace': 'x', bytes_sent: 5 }))?.text ?? '', /n inbound x\/a -> x\/b: 5 B sent/);
  assert.equal(accessEvent('n', line({ msg: 'connection failed', direction: 'outbound', response_flags: 'DENY' }))?.level, 'error');
  assert.equal(accessEvent('n', '{"component":"agent","msg":"x"}'), undefined);
  assert.equal(accessEvent('n', '{"component":"access", broken'), undefined);
});
