/**
 * The dashboard inside the control plane, without a lab: the flags, a start
 * that never rejects (bind and netns failures become a 'failed' status with
 * stable codes, reported by the control plane's status), the page served
 * with `server: ambit-control-plane/<pid>` on 127.0.0.1, the control plane's
 * status and policies read in process (and a policy appearing as an event),
 * no "down" alarms for components never seen up, the demo's flags for the
 * control plane, and the wait for a dashboard the control plane reports.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { ParsedArgs } from '../../src/cli/command.js';
import { ConfigError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import type { ControlPlaneStatus } from '../../src/control-plane/status.js';
import { waitForDashboard } from '../../src/dashboard/client.js';
import { Collector, policyChanges, type AuthorizationView, type DashboardTargets } from '../../src/dashboard/collector.js';
import {
  controlPlaneTargets,
  dashboardConfigFromArgs,
  parseListenAddress,
  reportDashboardInStatus,
  startControlPlaneDashboard,
  withDashboardStatus,
  type ControlPlaneDashboardConfig,
  type DashboardHost,
  type DashboardStatus,
} from '../../src/dashboard/control-plane-dashboard.js';
import { DashboardScrapeError } from '../../src/dashboard/errors.js';
import type { NetnsFetch } from '../../src/dashboard/netns-http.js';
import { nativeListenError } from '../../src/dashboard/server.js';
import { choosePort, dashboardControlPlaneArgs, hostNetnsPath } from '../../src/demo/living.js';
import { fakeNativeError, FakeNativeBinding } from '../../src/native/fake.js';

const logger = silentLogger();
const dir = mkdtempSync(join(tmpdir(), 'ambit-dash-cp-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function args(values: Record<string, string>): ParsedArgs {
  return { values, positionals: [], rest: [] };
}

function baseStatus(version = 1): ControlPlaneStatus {
  return { version, sources: ['manifests'], resources: {}, served: { workloads: 2, services: 1, authorizations: 0 }, issues: [], notes: ['a note'], rejections: 0 };
}

/** A control plane stand-in whose version and policies the test changes. */
function fakeHost(): DashboardHost & { version: number; policies: Map<string, AuthorizationView> } {
  const h = {
    version: 1,
    policies: new Map<string, AuthorizationView>(),
    status: (): ControlPlaneStatus => ({ ...baseStatus(h.version), served: { workloads: 2, services: 1, authorizations: h.policies.size } }),
    get translation() {
      return { authorizations: h.policies };
    },
  };
  return h;
}

const downFetch: NetnsFetch = async () => {
  throw new DashboardScrapeError('connect ECONNREFUSED');
};

function cfg(over: Partial<ControlPlaneDashboardConfig> = {}): ControlPlaneDashboardConfig {
  return { address: '127.0.0.1', port: 0, intervalMs: 60_000, title: 'unit', ...over };
}

describe('flags', () => {
  test('--dashboard-listen takes ip:port, [ipv6]:port; anything else is a config error naming the flag', () => {
    assert.deepEqual(parseListenAddress('dashboard-listen', '127.0.0.1:20001'), { address: '127.0.0.1', port: 20001 });
    assert.deepEqual(parseListenAddress('dashboard-listen', '[::1]:0'), { address: '::1', port: 0 });
    for (const bad of ['localhost:20001', '127.0.0.1', '127.0.0.1:70000', ':80', '::1:80', '127.0.0.1:8o']) {
      assert.throws(() => parseListenAddress('dashboard-listen', bad), (e: unknown) => e instanceof ConfigError && /--dashboard-listen must be <ip>:<port>/.test(e.message), bad);
    }
  });

  test('no --dashboard-listen: no dashboard; its companions alone are an error', () => {
    assert.equal(dashboardConfigFromArgs(args({})), undefined);
    assert.throws(() => dashboardConfigFromArgs(args({ 'dashboard-netns': '/proc/1/ns/net' })), /--dashboard-netns needs --dashboard-listen/);
  });

  test('all flags', () => {
    assert.deepEqual(dashboardConfigFromArgs(args({ 'dashboard-listen': '127.0.0.1:0', 'dashboard-netns': '/proc/42/ns/net', 'dashboard-interval': '1000', 'dashboard-title': 'Lab x', 'dashboard-agent-logs': '/tmp/logs' })), {
      address: '127.0.0.1',
      port: 0,
      netns: '/proc/42/ns/net',
      intervalMs: 1000,
      title: 'Lab x',
      agentLogs: '/tmp/logs',
    });
    assert.deepEqual(dashboardConfigFromArgs(args({ 'dashboard-listen': '127.0.0.1:20001' })), { address: '127.0.0.1', port: 20001, intervalMs: 2000, title: 'Ambit' });
    assert.throws(() => dashboardConfigFromArgs(args({ 'dashboard-listen': '127.0.0.1:0', 'dashboard-interval': '5' })), /--dashboard-interval must be/);
    assert.throws(() => dashboardConfigFromArgs(args({ 'dashboard-listen': '127.0.0.1:0', 'dashboard-netns': '' })), /--dashboard-netns must be a netns path/);
  });

  test('the demo hands the control plane its own netns and the listen address', () => {
    assert.equal(hostNetnsPath(1234), '/proc/1234/ns/net');
    assert.equal(hostNetnsPath(), `/proc/${process.pid}/ns/net`);
    const argv = dashboardControlPlaneArgs({ address: '127.0.0.1', port: 20001, netns: '/proc/7/ns/net', intervalMs: 1000, title: 'Ambit demo (lab x)' });
    assert.deepEqual(argv, ['--dashboard-listen', '127.0.0.1:20001', '--dashboard-netns', '/proc/7/ns/net', '--dashboard-interval', '1000', '--dashboard-title', 'Ambit demo (lab x)']);
    const values: Record<string, string> = {};
    for (let i = 0; i < argv.length; i += 2) values[(argv[i] as string).slice(2)] = argv[i + 1] as string;
    assert.deepEqual(dashboardConfigFromArgs(args(values)), { address: '127.0.0.1', port: 20001, netns: '/proc/7/ns/net', intervalMs: 1000, title: 'Ambit demo (lab x)' }, 'what the demo passes parses back');
    assert.equal(dashboardControlPlaneArgs({ address: '::1', port: 0, netns: '/n', title: 't' })[1], '[::1]:0');
  });
});

describe('listen errors', () => {
  test('entering the netns vs binding: two codes, lowercase messages naming the errno', () => {
    const gone = nativeListenError(fakeNativeError('ENOENT', 'open'), '/proc/99/ns/net', '127.0.0.1', 20001);
    assert.equal(gone.code, 'AMBIT_ERR_DASHBOARD_NETNS');
    assert.match(gone.message, /^the dashboard cannot listen in netns \/proc\/99\/ns\/net \(ENOENT at open\): .*process has exited/);
    assert.equal(nativeListenError(fakeNativeError('EPERM', 'setns'), '/n', '127.0.0.1', 1).code, 'AMBIT_ERR_DASHBOARD_NETNS');
    const busy = nativeListenError(fakeNativeError('EADDRINUSE', 'bind'), '/proc/1/ns/net', '127.0.0.1', 20001);
    assert.equal(busy.code, 'AMBIT_ERR_DASHBOARD_BIND');
    assert.match(busy.message, /^the dashboard cannot listen on 127\.0\.0\.1:20001 in netns \/proc\/1\/ns\/net \(EADDRINUSE at bind\); choose another port/);
  });

  test('a failed bind in the netns never rejects: the status says failed, with the code, and the control plane status carries it', async () => {
    const binding = new FakeNativeBinding().failNext('listenTcpInNetns', fakeNativeError('EADDRINUSE', 'bind'));
    const d = await startControlPlaneDashboard(cfg({ netns: '/proc/1/ns/net', port: 20001 }), fakeHost(), { logger, binding, fetch: downFetch, pid: 77 });
    assert.equal(d.status.state, 'failed');
    assert.equal(d.status.error?.code, 'AMBIT_ERR_DASHBOARD_BIND');
    assert.equal(d.status.listen, '127.0.0.1:20001');
    assert.equal(d.status.netns, '/proc/1/ns/net');
    assert.equal(d.collector, undefined, 'no collector left running');
    await d.close();

    const host = fakeHost();
    reportDashboardInStatus(host, () => d.status);
    const st = host.status() as ControlPlaneStatus & { dashboard?: DashboardStatus };
    assert.equal(st.dashboard?.state, 'failed');
    assert.equal(st.version, 1, 'the control plane status itself is intact');
    assert.ok(st.notes.includes('a note'));
    assert.ok(st.notes.some((n) => n.startsWith('dashboard not served: the dashboard cannot listen on 127.0.0.1:20001') && n.endsWith('(AMBIT_ERR_DASHBOARD_BIND)')), st.notes.join('\n'));
  });

  test('a netns that is gone, and an address that is not an IP, fail the same way', async () => {
    const binding = new FakeNativeBinding(new Set(['/proc/1/ns/net']));
    const gone = await startControlPlaneDashboard(cfg({ netns: '/proc/999999/ns/net' }), fakeHost(), { logger, binding, fetch: downFetch });
    assert.equal(gone.status.error?.code, 'AMBIT_ERR_DASHBOARD_NETNS');
    const name = await startControlPlaneDashboard(cfg({ netns: '/proc/1/ns/net', address: 'localhost' }), fakeHost(), { logger, binding, fetch: downFetch });
    assert.equal(name.status.error?.code, 'AMBIT_ERR_DASHBOARD_BIND');
    assert.match(name.status.error?.message ?? '', /must be an IP literal/);
  });

  test('a port in use in the own netns (plain listen) fails with AMBIT_ERR_DASHBOARD_BIND', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (blocker.address() as { port: number }).port;
      const d = await startControlPlaneDashboard(cfg({ port }), fakeHost(), { logger, fetch: downFetch });
      assert.equal(d.status.state, 'failed');
      assert.equal(d.status.error?.code, 'AMBIT_ERR_DASHBOARD_BIND');
      assert.match(d.status.error?.message ?? '', new RegExp(`127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\)`));
      await assert.rejects(choosePort('127.0.0.1', port), (e: unknown) => (e as { code?: string }).code === 'AMBIT_ERR_DASHBOARD_BIND' && /--port/.test((e as Error).message));
      const free = await choosePort('127.0.0.1', 0);
      assert.ok(free > 0, 'port 0 becomes a concrete free port');
      assert.equal(await choosePort('127.0.0.1', free), free);
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });
});

describe('serving', () => {
  test('the page answers with the control plane pid; status and policies are read in process; a new policy is an event', async () => {
    const host = fakeHost();
    const d = await startControlPlaneDashboard(cfg(), host, { logger, fetch: downFetch, pid: 4242 });
    try {
      assert.equal(d.status.state, 'serving');
      assert.match(d.status.url ?? '', /^http:\/\/127\.0\.0\.1:\d+\/$/);
      assert.equal(d.status.pid, 4242);
      const c = d.collector as Collector;
      await c.scrapeOnce();
      const res = await fetch(`${d.status.url}api/health`);
      assert.equal(res.headers.get('server'), 'ambit-control-plane/4242');
      const health = (await res.json()) as { controlPlane: { up: boolean; version: number; policies: unknown[] }; scrape: { servedBy?: string } };
      assert.equal(health.controlPlane.up, true);
      assert.equal(health.controlPlane.version, 1);
      assert.deepEqual(health.controlPlane.policies, []);
      assert.equal(health.scrape.servedBy, 'ambit-control-plane/4242');

      host.policies.set('demo/deny-rogue', { name: 'deny-rogue', namespace: 'demo', action: 'DENY', scope: 'WORKLOAD_SELECTOR', rules: [{}] });
      host.version = 2;
      await c.scrapeOnce();
      assert.deepEqual(c.health().controlPlane?.policies, [{ namespace: 'demo', name: 'deny-rogue', action: 'DENY', scope: 'WORKLOAD_SELECTOR', rules: 1 }]);
      const texts = c.events().map((e) => e.text);
      assert.ok(texts.includes('policy demo/deny-rogue (DENY) is served'), texts.join('\n'));
      assert.ok(texts.some((t) => t.startsWith('configuration version 2: 1 authorization policy')), texts.join('\n'));

      host.policies.clear();
      host.version = 3;
      await c.scrapeOnce();
      assert.ok(c.events().some((e) => e.text === 'policy demo/deny-rogue (DENY) is no longer served'));
    } finally {
      await d.close();
    }
    assert.equal(d.status.state, 'stopped');
    await assert.rejects(fetch(`${d.status.url}healthz`), 'the socket is closed');
  });

  test('the lab cluster file gives the targets; agent logs default to its folder', () => {
    const file = join(dir, 'cluster.json');
    writeFileSync(
      file,
      JSON.stringify({
        trustDomain: 'cluster.local',
        clusterDomain: 'cluster.local',
        nodes: [{ name: 'node-a', ip: '10.1.0.2', netns: '/var/run/netns/x-n-node-a' }],
        workloads: [{ uid: 'u1', name: 'wp', namespace: 'demo', node: 'node-a', ip: '10.244.1.5', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } }],
        services: [],
      }),
    );
    const t = controlPlaneTargets(cfg(), file);
    assert.equal(t.controlPlane, undefined, 'the control plane is read in process, not over HTTP');
    assert.deepEqual(t.agents.map((a) => [a.node, a.netns, a.host]), [['node-a', '/var/run/netns/x-n-node-a', '127.0.0.1']]);
    assert.deepEqual(t.waypoints.map((w) => [w.name, w.host, w.port]), [['wp', '10.244.1.5', 15020]]);
    assert.deepEqual(t.accessLogs, [{ node: 'node-a', file: join(dir, 'agent-node-a.log') }]);
    assert.deepEqual(controlPlaneTargets(cfg({ agentLogs: '/logs' }), file).accessLogs, [{ node: 'node-a', file: '/logs/agent-node-a.log' }]);
    assert.deepEqual(controlPlaneTargets(cfg(), undefined), { agents: [], waypoints: [], inventory: { workloads: [], services: [] } });
  });

  test('withDashboardStatus adds no note while serving', () => {
    const s = withDashboardStatus(baseStatus(), { state: 'serving', listen: '127.0.0.1:1', pid: 1, url: 'http://127.0.0.1:1/' });
    assert.deepEqual(s.notes, ['a note']);
    assert.equal(s.dashboard.url, 'http://127.0.0.1:1/');
  });
});

describe('collector events', () => {
  test('components never seen up raise no alarm; once up, going down does', async () => {
    let up = false;
    const f: NetnsFetch = async (t, path) => {
      if (!up) throw new DashboardScrapeError('connect ECONNREFUSED');
      if (path === '/healthz/ready') return { status: 200, body: '{"ready":true,"pending":[]}' };
      if (path === '/config_dump') return { status: 200, body: JSON.stringify({ workloads: [], certificates: [] }) };
      return { status: 200, body: '' };
    };
    const targets: DashboardTargets = {
      agents: [{ node: 'node-a', netns: 'a', host: '127.0.0.1', metricsPort: 15020, adminPort: 15000, readinessPort: 15021 }],
      waypoints: [{ namespace: 'demo', name: 'wp', netns: 'a', host: '10.0.0.9', port: 15020, path: '/stats/prometheus' }],
      inventory: { workloads: [], services: [] },
    };
    const c = new Collector({ targets, fetch: f });
    await c.scrapeOnce();
    await c.scrapeOnce();
    assert.deepEqual(c.events(), [], 'nothing came up yet: no events');
    up = true;
    await c.scrapeOnce();
    assert.deepEqual(c.events().map((e) => e.text), ['agent on node-a is ready', 'waypoint demo/wp is up']);
    up = false;
    await c.scrapeOnce();
    const texts = c.events().map((e) => e.text);
    assert.ok(texts.some((t) => t.startsWith('agent on node-a is down')), texts.join('\n'));
    assert.ok(texts.includes('waypoint demo/wp is down'));
  });

  test('policyChanges', () => {
    const p = (name: string, action = 'DENY'): { namespace: string; name: string; action: string; scope: string; rules: number } => ({ namespace: 'ns', name, action, scope: 'NAMESPACE', rules: 1 });
    assert.deepEqual(policyChanges([p('a'), p('b')], [p('b'), p('c', 'ALLOW')]), ['policy ns/c (ALLOW) is served', 'policy ns/a (DENY) is no longer served']);
    assert.deepEqual(policyChanges([p('a')], [p('a')]), []);
  });
});

describe('waiting for the control plane dashboard', () => {
  const cpTarget = { netns: 'node-a', host: '10.0.0.1', port: 15014 };
  const statusFetch = (dashboard: unknown): NetnsFetch => async (_t, path) => (path === '/debug/status' ? { status: 200, body: JSON.stringify({ version: 1, ...(dashboard ? { dashboard } : {}) }) } : { status: 404, body: '' });

  test('a dashboard the control plane could not serve fails at once with its reason and code', async () => {
    const t0 = Date.now();
    await assert.rejects(
      waitForDashboard({ fetch: statusFetch({ state: 'failed', listen: '127.0.0.1:20001', pid: 5, error: { code: 'AMBIT_ERR_DASHBOARD_BIND', message: 'the dashboard cannot listen on 127.0.0.1:20001 (EADDRINUSE)' } }), controlPlane: cpTarget, timeoutMs: 10_000 }),
      (e: unknown) => (e as { code?: string }).code === 'AMBIT_ERR_DASHBOARD_UNAVAILABLE' && /EADDRINUSE.*AMBIT_ERR_DASHBOARD_BIND/.test((e as Error).message),
    );
    assert.ok(Date.now() - t0 < 2000);
    await assert.rejects(waitForDashboard({ fetch: statusFetch(undefined), controlPlane: cpTarget, timeoutMs: 10_000 }), /runs without a dashboard/);
  });

  test('resolves once the reported URL answers /healthz as the control plane', async () => {
    const host = fakeHost();
    const d = await startControlPlaneDashboard(cfg(), host, { logger, fetch: downFetch, pid: 31337 });
    try {
      await (d.collector as Collector).scrapeOnce();
      const ready = await waitForDashboard({ fetch: statusFetch(d.status), controlPlane: cpTarget, timeoutMs: 5000, everyMs: 50 });
      assert.equal(ready.url, d.status.url);
      assert.equal(ready.servedByPid, 31337);
    } finally {
      await d.close();
    }
  });

  test('times out with the last reason when the URL answers as someone else', async () => {
    const other = (await import('node:http')).createServer((_q, r) => r.end('ok'));
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(other.address() as { port: number }).port}/`;
      await assert.rejects(waitForDashboard({ fetch: statusFetch({ state: 'serving', listen: 'x', pid: 1, url }), controlPlane: cpTarget, timeoutMs: 300, everyMs: 50 }), /not ready within 300 ms: .*healthz answered 200/);
    } finally {
      other.closeAllConnections();
      await new Promise<void>((r) => other.close(() => r()));
    }
  });
});
