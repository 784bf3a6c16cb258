/**
 * The waypoint engine's opaque TCP paths through real HBONE on loopback:
 * non-HTTP bytes to an 'http' service fall back to TCP passthrough, a
 * workload bound to the waypoint is passed through on any port, a 'tcp'
 * service enforces L4 authorization at CONNECT time (401), and a dead
 * endpoint is retried on another one and then ejected. Also: drain() lets an
 * in-flight request finish and then closes the idle connection.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/common/logger.js';
import { HbonePool } from '../../src/hbone/pool.js';
import { HboneServer } from '../../src/hbone/server.js';
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';
import { compileL7Config } from '../../src/waypoint/config.js';
import { Waypoint } from '../../src/waypoint/server.js';
import { tcpDialer } from '../../src/waypoint/upstream.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';
import { request as httpRequest, Agent } from 'node:http';
import { backend, closeBackends, counterSum } from '../fixtures/waypoint/harness.js';

const TD = 'cluster.local';
const log = silentLogger();
let alice: TlsIdentity;
let bob: TlsIdentity;
let wpId: TlsIdentity;
let echo: NetServer;
let echoPort: number;
let deadPort: number;
let wp: Waypoint;
let registry: Registry;
let hbone: HboneServer;
let hbonePort: number;
const pools: HbonePool[] = [];

before(async () => {
  const ca = await ephemeralCa(TD);
  alice = await issueIdentity(ca, TD, 'default', 'alice');
  bob = await issueIdentity(ca, TD, 'other', 'bob');
  wpId = await issueIdentity(ca, TD, 'default', 'waypoint');
  echo = createNetServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  echoPort = await new Promise<number>((r) => echo.listen(0, '127.0.0.1', () => r((echo.address() as AddressInfo).port)));
  const tmp = createNetServer();
  deadPort = await new Promise<number>((r) => tmp.listen(0, '127.0.0.1', () => r((tmp.address() as AddressInfo).port)));
  await new Promise((r) => tmp.close(r));
  registry = new Registry();
  wp = new Waypoint({
    config: compileL7Config({
      clusters: [
        { name: 'echo', endpoints: [{ address: '127.0.0.1', port: echoPort, workload: 'echo', namespace: 'default' }] },
        { name: 'flaky', loadBalancer: { simple: 'ROUND_ROBIN' }, outlierDetection: { consecutive5xxErrors: 1, baseEjectionTime: '30s', maxEjectionPercent: 100 }, endpoints: [{ address: '127.0.0.1', port: deadPort }, { address: '127.0.0.1', port: echoPort }] },
      ],
      services: [
        { hostname: 'web.default.svc.cluster.local', addresses: ['10.96.0.1'], port: 80, routes: [{ backends: [{ cluster: 'echo' }] }] },
        {
          hostname: 'db.default.svc.cluster.local', addresses: ['10.96.0.2'], port: 5432, protocol: 'tcp', routes: [{ backends: [{ cluster: 'echo' }] }],
          authorization: [{ name: 'default-ns', action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['default'] } }] }] }],
        },
        { hostname: 'flaky.default.svc.cluster.local', addresses: ['10.96.0.3'], port: 9000, protocol: 'tcp', routes: [{ backends: [{ cluster: 'flaky' }] }] },
      ],
      workloads: [{ address: '127.0.0.1', principal: 'spiffe://cluster.local/ns/default/sa/echo', namespace: 'default', name: 'echo-0' }],
    }),
    logger: log,
    registry,
    dialer: tcpDialer(2000),
  });
  hbone = new HboneServer({ identityFor: () => wpId, ...wp.hboneHooks(), logger: log });
  hbonePort = ((await hbone.listen(0, '127.0.0.1')).address() as AddressInfo).port;
});

after(async () => {
  for (const p of pools) p.destroy();
  hbone?.destroy();
  await wp?.close();
  echo?.close();
});

function open(as: TlsIdentity, authority: string): Promise<Duplex> {
  const pool = new HbonePool({ identityFor: () => Promise.resolve(as), dial: (d) => netConnect({ host: d.host, port: d.port }), logger: log });
  pools.push(pool);
  return pool.openTunnel({ srcIdentity: as.identity, dstIdentities: [wpId.identity], dstHost: '127.0.0.1', dstPort: hbonePort }, authority);
}

async function roundTrip(t: Duplex, data: Buffer): Promise<Buffer> {
  const got: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    t.on('data', (c: Buffer) => got.push(c));
    t.on('end', () => resolve());
    t.on('error', reject);
  });
  t.end(data);
  await done;
  t.destroy();
  return Buffer.concat(got);
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('waypoint opaque TCP', () => {
  test('non-HTTP bytes to an http service fall back to TCP passthrough', async () => {
    const data = Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), randomBytes(200_000)]);
    const got = await roundTrip(await open(alice, '10.96.0.1:80'), data);
    assert.equal(sha(got), sha(data));
    assert.equal(await counterSum(registry, 'istio_tcp_connections_opened_total', { reporter: 'waypoint', destination_service: 'web.default.svc.cluster.local', destination_workload: 'echo' }), 1);
  });

  test('a workload bound to the waypoint is passed through on any port', async () => {
    const data = randomBytes(50_000);
    const got = await roundTrip(await open(alice, `127.0.0.1:${echoPort}`), data);
    assert.equal(sha(got), sha(data));
    assert.equal(await counterSum(registry, 'istio_tcp_received_bytes_total', { destination_workload: 'echo-0', destination_principal: 'spiffe://cluster.local/ns/default/sa/echo' }), 50_000);
  });

  test('a tcp service enforces L4 authorization at CONNECT (401 for another namespace)', async () => {
    const data = randomBytes(10_000);
    assert.equal(sha(await roundTrip(await open(alice, '10.96.0.2:5432'), data)), sha(data));
    await assert.rejects(open(bob, '10.96.0.2:5432'), /401/);
  });

  test('a dead endpoint is retried on another and then ejected', async () => {
    for (let i = 0; i < 3; i++) {
      const data = randomBytes(1000);
      assert.equal(sha(await roundTrip(await open(alice, '10.96.0.3:9000'), data)), sha(data));
    }
    assert.equal(wp.clusterState('flaky')?.ejectedCount(), 1);
    assert.equal(await counterSum(registry, 'istio_tcp_connections_failed_total'), 0, 'no connection failed for the client');
  });
});

describe('waypoint drain', () => {
  test('drain() lets an in-flight request finish, then closes the idle keep-alive connection', async () => {
    const slow = await backend('slow', { delayMs: 300 });
    const w = new Waypoint({
      config: compileL7Config({ clusters: [{ name: 's', endpoints: [{ address: '127.0.0.1', port: slow.port }] }], services: [{ hostname: 'slow.default.svc.cluster.local', port: 80, routes: [{ backends: [{ cluster: 's' }] }] }] }),
      logger: log,
      registry: new Registry(),
    });
    const agent = new Agent({ keepAlive: true });
    try {
      const port = ((await w.listen(0, '127.0.0.1')).address() as AddressInfo).port;
      let sockClosed = false;
      const res = new Promise<number>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: '/', agent, headers: { host: 'slow.default.svc.cluster.local' } }, (r) => {
          r.socket.once('close', () => (sockClosed = true));
          r.resume();
          r.on('end', () => resolve(r.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(w.openConnections, 1);
      const t0 = Date.now();
      await w.drain(3000);
      assert.equal(await res, 200, 'the in-flight request completed');
      assert.ok(Date.now() - t0 < 2000, 'drain ended when the connection went idle, before the deadline');
      assert.equal(w.openConnections, 0);
      await new Promise((r) => setTimeout(r, 50));
      assert.ok(sockClosed, 'the keep-alive connection was closed');
    } finally {
      agent.destroy();
      await w.close();
      await closeBackends(slow);
    }
  });
});
