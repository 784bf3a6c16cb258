/**
 * End to end through real HBONE (mTLS 1.3 + HTTP/2 CONNECT over loopback):
 * client HbonePool ─► HboneServer (the waypoint's 15008, hooks from
 * Waypoint.hboneHooks) ─► waypoint L7 ─► HBONE re-originated by an
 * UpstreamDialer over a second HbonePool ─► a destination HboneServer (an
 * agent stand-in) ─► backend. Proves HBONE-in with the peer identity reaching
 * L7 policy and metrics, and HBONE-out through the injected dialer.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/common/logger.js';
import { HboneStatusError } from '../../src/hbone/errors.js';
import { HbonePool } from '../../src/hbone/pool.js';
import { HboneServer, type InboundRequest } from '../../src/hbone/server.js';
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';
import { compileL7Config } from '../../src/waypoint/config.js';
import { Waypoint } from '../../src/waypoint/server.js';
import type { UpstreamDialer } from '../../src/waypoint/upstream.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';
import { backend, closeBackends, counterSum, type Backend } from '../fixtures/waypoint/harness.js';

const TD = 'cluster.local';
const log = process.env.WP_DEBUG ? (await import('pino')).pino({ level: 'debug' }) : silentLogger();
let clientId: TlsIdentity;
let waypointId: TlsIdentity;
let destId: TlsIdentity;
let b: Backend;
let wp: Waypoint;
let registry: Registry;
let wpHbone: HboneServer;
let destHbone: HboneServer;
let wpHbonePort: number;
const destRequests: InboundRequest[] = [];
let clientPool: HbonePool;
let wpPool: HbonePool;

before(async () => {
  const ca = await ephemeralCa(TD);
  clientId = await issueIdentity(ca, TD, 'default', 'productpage');
  waypointId = await issueIdentity(ca, TD, 'default', 'waypoint');
  destId = await issueIdentity(ca, TD, 'default', 'reviews');
  b = await backend('reviews-v1');

  destHbone = new HboneServer({
    identityFor: () => destId,
    resolveTarget: (req) => {
      destRequests.push(req);
      return { kind: 'allow', host: req.authority.host, port: req.authority.port };
    },
    dial: (t) => netConnect({ host: t.host, port: t.port, allowHalfOpen: true }),
    logger: log,
  });
  const destPort = ((await destHbone.listen(0, '127.0.0.1')).address() as AddressInfo).port;

  wpPool = new HbonePool({ identityFor: () => Promise.resolve(waypointId), dial: (d) => netConnect({ host: d.host, port: d.port }), logger: log });
  const dialer: UpstreamDialer = (ep) => wpPool.openTunnel({ srcIdentity: waypointId.identity, dstIdentities: [destId.identity], dstHost: '127.0.0.1', dstPort: destPort }, `${ep.address}:${ep.port}`);

  registry = new Registry();
  wp = new Waypoint({
    config: compileL7Config({
      clusters: [{ name: 'reviews', endpoints: [{ address: '127.0.0.1', port: b.port, labels: { app: 'reviews', version: 'v1' }, principal: destId.identity }] }],
      services: [{
        hostname: 'reviews.default.svc.cluster.local', addresses: ['10.96.0.10'], port: 9080,
        routes: [{ name: 'all', backends: [{ cluster: 'reviews' }], responseHeaders: { set: { 'x-via': 'waypoint' } } }],
        authorization: [{ name: 'only-productpage', action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/productpage'] } }] }] }],
      }],
    }),
    logger: log,
    registry,
    dialer,
  });
  wpHbone = new HboneServer({ identityFor: () => waypointId, ...wp.hboneHooks(), logger: log });
  wpHbonePort = ((await wpHbone.listen(0, '127.0.0.1')).address() as AddressInfo).port;
  clientPool = new HbonePool({ identityFor: () => Promise.resolve(clientId), dial: (d) => netConnect({ host: d.host, port: d.port }), logger: log });
});

after(async () => {
  clientPool.destroy();
  wpPool.destroy();
  wpHbone.destroy();
  destHbone.destroy();
  await wp.close();
  await closeBackends(b);
});

const key = (): Parameters<HbonePool['openTunnel']>[0] => ({ srcIdentity: clientId.identity, dstIdentities: [waypointId.identity], dstHost: '127.0.0.1', dstPort: wpHbonePort });

describe('waypoint over HBONE', () => {
  test('HTTP/1.1 through the waypoint tunnel: L7 sees the peer identity, re-originates HBONE upstream', async () => {
    const baggage = 'k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=productpage-v1,service.name=productpage,service.version=v1';
    const tunnel = await clientPool.openTunnel(key(), '10.96.0.10:9080', { baggage });
    const res = await new Promise<{ status: number; via: string | undefined; body: string }>((resolve, reject) => {
      const req = httpRequest({ createConnection: () => tunnel, path: '/reviews/0', headers: { host: 'reviews:9080' } }, (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, via: r.headers['x-via'] as string | undefined, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      req.end();
    });
    tunnel.destroy();
    assert.equal(res.status, 200);
    assert.equal(res.via, 'waypoint');
    assert.match(res.body, /reviews-v1/);
    assert.equal(b.seen.at(-1)?.headers['x-forwarded-client-cert'], `URI=${clientId.identity}`);
    const last = destRequests.at(-1);
    assert.equal(last?.peerIdentity, waypointId.identity, 'the destination sees the waypoint identity');
    assert.equal(last?.authority.port, b.port);
    assert.equal(await counterSum(registry, 'istio_requests_total', {
      source_principal: clientId.identity, source_workload_namespace: 'default', source_workload: 'productpage-v1', source_canonical_service: 'productpage', source_canonical_revision: 'v1', source_cluster: 'Kubernetes',
      response_code: '200', connection_security_policy: 'mutual_tls', destination_principal: destId.identity,
    }), 1);
  });

  test('h2c through the waypoint tunnel', async () => {
    const tunnel = await clientPool.openTunnel(key(), '10.96.0.10:9080');
    const session = h2connect('http://reviews:9080', { createConnection: () => tunnel });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const s = session.request({ ':path': '/h2', ':authority': 'reviews:9080' });
        s.on('response', (h) => resolve(Number(h[':status'])));
        s.on('error', reject);
        s.resume();
        s.end();
      });
      assert.equal(status, 200);
      assert.equal(b.seen.at(-1)?.url, '/h2');
    } finally {
      session.destroy();
    }
  });

  test('a CONNECT to an address the waypoint does not serve is refused with 503', async () => {
    await assert.rejects(clientPool.openTunnel(key(), '10.96.0.99:9080'), (err: unknown) => err instanceof HboneStatusError && err.status === 503);
  });

  test('a direct (non-HBONE) client has no principal and is denied by the ALLOW policy', async () => {
    const srv = await wp.listen(0, '127.0.0.1');
    try {
      const port = (srv.address() as AddressInfo).port;
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: '/', headers: { host: 'reviews.default.svc.cluster.local' } }, (r) => {
          r.resume();
          resolve(r.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(status, 403);
    } finally {
      srv.close();
    }
  });
});
