/**
 * The dashboard's scrape plumbing without a lab: the lab target list (agents
 * per node netns, waypoint pods by label, the control plane on the first
 * node) and both fetch paths against a loopback server (the netns-less
 * branch of the native fetch, and the curl fallback).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { labTargets } from '../../src/dashboard/lab-targets.js';
import { execFetch, fetchOk, nativeFetch } from '../../src/dashboard/netns-http.js';
import { FakeNativeBinding } from '../../src/native/fake.js';
import type { LocalClusterConfig } from '../../src/state/local-config.js';
import { hasTool } from '../helpers/privileged.js';

let server: Server;
let port: number;

before(async () => {
  server = createServer((req, res) => {
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`accept=${req.headers.accept ?? ''}\n`);
    } else {
      res.writeHead(503);
      res.end('not ready\n');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
after(() => server.close());

test('lab targets: an agent per node netns, waypoint pods by label, the control plane on the first node', () => {
  const cluster = {
    clusterId: 'Kubernetes',
    trustDomain: 'cluster.local',
    nodes: [
      { name: 'node-a', ip: '10.0.0.1', netns: '/var/run/netns/x-n-node-a' },
      { name: 'node-b', ip: '10.0.0.2', netns: '/var/run/netns/x-n-node-b' },
    ],
    workloads: [
      { uid: 'demo/app', name: 'app', namespace: 'demo', serviceAccount: 'app', node: 'node-a', ip: '10.1.0.2', labels: { app: 'app', version: 'v2' } },
      { uid: 'demo/wp', name: 'wp', namespace: 'demo', serviceAccount: 'wp', node: 'node-b', ip: '10.1.1.2', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } },
    ],
    services: [{ name: 'app', namespace: 'demo', hostname: 'app.demo.svc.cluster.local', vips: ['10.96.0.1'], ports: [], selector: {} }],
  } as unknown as LocalClusterConfig;
  const t = labTargets(cluster, { stateDir: '/s' });
  assert.deepEqual(t.agents.map((a) => [a.node, a.netns, a.host, a.metricsPort, a.adminPort, a.readinessPort]), [
    ['node-a', '/var/run/netns/x-n-node-a', '127.0.0.1', 15020, 15000, 15021],
    ['node-b', '/var/run/netns/x-n-node-b', '127.0.0.1', 15020, 15000, 15021],
  ]);
  assert.deepEqual(t.waypoints, [{ namespace: 'demo', name: 'wp', netns: '/var/run/netns/x-n-node-b', host: '10.1.1.2', port: 15020, path: '/stats/prometheus' }]);
  assert.deepEqual(t.controlPlane, { netns: '/var/run/netns/x-n-node-a', host: '10.0.0.1', port: 15014 });
  assert.deepEqual(t.accessLogs, [{ node: 'node-a', file: '/s/agent-node-a.log' }, { node: 'node-b', file: '/s/agent-node-b.log' }]);
  assert.deepEqual(t.inventory.workloads.find((w) => w.name === 'app'), { namespace: 'demo', name: 'app', node: 'node-a', app: 'app', version: 'v2' });
  assert.equal(t.inventory.workloads.find((w) => w.name === 'wp')?.waypoint, true);
  assert.equal(labTargets(cluster, { controlPlane: false }).controlPlane, undefined);
});

test('native fetch without a netns: a plain loopback request; non-200 is an error from fetchOk', async () => {
  const f = nativeFetch(new FakeNativeBinding());
  assert.equal((await f({ host: '127.0.0.1', port }, '/metrics', { accept: 'text/plain' })).body, 'accept=text/plain\n');
  await assert.rejects(fetchOk(f, { host: '127.0.0.1', port }, '/other'), (e: Error & { code?: string }) => e.code === 'AMBIT_ERR_DASHBOARD_SCRAPE' && /answered 503/.test(e.message));
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  const dead = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  await assert.rejects(f({ host: '127.0.0.1', port: dead }, '/metrics'), /cannot fetch 127\.0\.0\.1:\d+\/metrics: connect ECONNREFUSED/);
});

test('curl fallback: status and body', { skip: hasTool('curl') ? undefined : 'needs curl' }, async () => {
  const f = execFetch();
  assert.deepEqual(await f({ host: '127.0.0.1', port }, '/metrics', { accept: 'x/y' }), { status: 200, body: 'accept=x/y\n' });
  assert.equal((await f({ host: '127.0.0.1', port }, '/nope')).status, 503);
});
