/**
 * The waypoint proxy runtime end to end on loopback: a real control plane
 * (DeltaXdsServer + IstioCaServer on one TLS gRPC port, node-token auth), the
 * proxy from startWaypointProxy (certificate from the CA, L7Config over delta
 * ADS encoded with l7-codec), a destination "agent" (HboneServer on
 * 127.0.0.2) in front of local HTTP backends and a TCP echo server, and a
 * client that opens HBONE CONNECTs to the waypoint with a service VIP:port
 * authority. Covers routing, config switch, NACK keeping the old config,
 * opaque TCP with a sha256 check, readiness, metrics and graceful close.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { CA_SERVER_CHANNEL_OPTIONS, IstioCaServer, nodeIdentityAuthorizer } from '../../src/ca/ca-server.js';
import { NodeTokenAuthenticator } from '../../src/ca/node-token-authenticator.js';
import { silentLogger } from '../../src/common/logger.js';
import { HbonePool } from '../../src/hbone/pool.js';
import { HboneServer, type InboundRequest } from '../../src/hbone/server.js';
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';
import { spiffeId } from '../../src/identity/spiffe.js';
import { encodeL7Config, L7_CONFIG_TYPE_URL } from '../../src/waypoint/l7-codec.js';
import { DeltaXdsServer } from '../../src/xds/delta-server.js';
import { startWaypointProxy, type WaypointProxyHandle } from '../../src/waypoint-proxy/waypoint-proxy.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';
import { backend, closeBackends, type Backend } from '../fixtures/waypoint/harness.js';

const TD = 'cluster.local';
const TOKEN = 'waypoint-test-node-token-0123456789';
const RESOURCE = 'default/waypoint';
const WAYPOINT_ID = spiffeId(TD, 'default', 'waypoint').toString();
const log = process.env.WP_DEBUG ? (await import('pino')).pino({ level: 'debug' }) : silentLogger();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let dir: string;
let grpcServer: grpc.Server;
let xds: DeltaXdsServer;
let cpAddress: string;
let clientId: TlsIdentity;
let reviewsId: TlsIdentity;
let v1: Backend;
let v2: Backend;
let echo: NetServer;
let echoPort: number;
let destHbone: HboneServer;
let destPort: number;
const destRequests: InboundRequest[] = [];
let clientPool: HbonePool;
let proxy: WaypointProxyHandle;
let registry: Registry;

function config(version: string, reviewsCluster: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const ep = (port: number, version: string): Record<string, unknown> => ({ address: '127.0.0.2', port, labels: { app: 'reviews', version }, workload: `reviews-${version}`, namespace: 'default', principal: reviewsId.identity });
  return {
    version,
    clusters: [
      { name: 'reviews-v1', endpoints: [ep(9080, 'v1')] },
      { name: 'reviews-v2', endpoints: [ep(9081, 'v2')] },
      { name: 'db', endpoints: [{ address: '127.0.0.2', port: 5432, workload: 'db', namespace: 'default', principal: reviewsId.identity }] },
    ],
    services: [
      { hostname: 'reviews.default.svc.cluster.local', addresses: ['10.96.0.10'], port: 9080, routes: [{ name: 'all', backends: [{ cluster: reviewsCluster }], responseHeaders: { set: { 'x-via': 'ambit-waypoint' } } }] },
      { hostname: 'db.default.svc.cluster.local', addresses: ['10.96.0.20'], port: 5432, protocol: 'tcp', routes: [{ backends: [{ cluster: 'db' }] }] },
    ],
    ...extra,
  };
}

function publish(version: string, cfg: Record<string, unknown>): void {
  xds.replaceAll(L7_CONFIG_TYPE_URL, [{ name: RESOURCE, version, body: Buffer.from(encodeL7Config(cfg)) }]);
}

function waitEvent<T>(emitter: { once(ev: string, cb: (v: T) => void): unknown }, ev: string, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${ev} within ${ms}ms`)), ms);
    emitter.once(ev, (v: T) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function tunnelKey(): Parameters<HbonePool['openTunnel']>[0] {
  return { srcIdentity: clientId.identity, dstIdentities: [WAYPOINT_ID], dstHost: '127.0.0.1', dstPort: proxy.ports.hbone };
}

/** One HTTP/1.1 request through a fresh HBONE tunnel to the waypoint. */
async function get(authority: string, urlPath: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const tunnel = await clientPool.openTunnel(tunnelKey(), authority);
  try {
    return await new Promise((resolve, reject) => {
      const req = httpRequest({ createConnection: () => tunnel, path: urlPath, headers: { host: 'reviews:9080' } }, (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      req.end();
    });
  } finally {
    tunnel.destroy();
  }
}

function plainGet(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: urlPath, agent: false }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'ambit-wp-proxy-'));
  const ca = await ephemeralCa(TD);
  clientId = await issueIdentity(ca, TD, 'default', 'productpage');
  reviewsId = await issueIdentity(ca, TD, 'default', 'reviews');
  const istiod = await issueIdentity(ca, TD, 'istio-system', 'istiod');
  writeFileSync(path.join(dir, 'root.pem'), ca.rootCertPem);
  writeFileSync(path.join(dir, 'token'), `${TOKEN}\n`);

  // control plane: CA + delta ADS on one TLS port, like istiod's 15012
  const caServer = new IstioCaServer({
    ca,
    trustDomain: TD,
    authenticate: NodeTokenAuthenticator.fromEntries([[TOKEN, 'node-a']]),
    // the CA must know that a pod running as the waypoint's service account is on node-a
    authorize: nodeIdentityAuthorizer((node) => (node === 'node-a' ? [spiffeId(TD, 'default', 'waypoint')] : [])),
    registry: new Registry(),
  });
  xds = new DeltaXdsServer({ typeUrls: [L7_CONFIG_TYPE_URL], debounceMs: 5, registry: new Registry() });
  grpcServer = new grpc.Server(CA_SERVER_CHANNEL_OPTIONS);
  for (const svc of [caServer.service(), xds.service()]) grpcServer.addService(svc.definition, svc.implementation);
  const creds = grpc.ServerCredentials.createSsl(Buffer.from(ca.rootCertPem), [{ private_key: Buffer.from(istiod.privateKeyPem), cert_chain: Buffer.from(istiod.certChainPem.join('')) }], false);
  const cpPort = await new Promise<number>((resolve, reject) => grpcServer.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? reject(e) : resolve(p))));
  cpAddress = `127.0.0.1:${cpPort}`;

  // destination side: HTTP backends, a TCP echo server, and an agent stand-in on 127.0.0.2
  v1 = await backend('reviews-v1');
  v2 = await backend('reviews-v2');
  echo = createNetServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  echoPort = await new Promise<number>((r) => echo.listen(0, '127.0.0.1', () => r((echo.address() as AddressInfo).port)));
  const appPorts: Record<number, number> = { 9080: v1.port, 9081: v2.port, 5432: echoPort };
  destHbone = new HboneServer({
    identityFor: () => reviewsId,
    resolveTarget: (req) => {
      destRequests.push(req);
      const port = appPorts[req.authority.port];
      return port ? { kind: 'allow', host: '127.0.0.1', port } : { kind: 'unavailable', reason: 'no such app port' };
    },
    dial: (t) => netConnect({ host: t.host, port: t.port, allowHalfOpen: true }),
    logger: log,
  });
  destPort = ((await destHbone.listen(0, '127.0.0.2')).address() as AddressInfo).port;

  registry = new Registry();
  proxy = await startWaypointProxy({
    name: 'waypoint', namespace: 'default', xdsAddress: cpAddress, rootCertFile: path.join(dir, 'root.pem'), tokenFile: path.join(dir, 'token'),
    trustDomain: TD, clusterId: 'Kubernetes', node: 'node-a', podIp: '127.0.0.1', podName: 'waypoint-0',
    hbonePort: 0, upstreamHbonePort: destPort, metricsPort: 0, statusPort: 0, adminHost: '127.0.0.1',
    readyFile: path.join(dir, 'ready'), drainDeadlineMs: 2000,
  }, { logger: log, registry, xdsBackoff: { initialMs: 20, maxMs: 200 } });
  clientPool = new HbonePool({ identityFor: () => Promise.resolve(clientId), dial: (d) => netConnect({ host: d.host, port: d.port }), logger: log });
});

after(async () => {
  clientPool?.destroy();
  proxy?.destroy();
  destHbone?.destroy();
  xds?.close();
  grpcServer?.forceShutdown();
  echo?.close();
  if (v1 && v2) await closeBackends(v1, v2);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('waypoint proxy', () => {
  test('before the first config: certificate from the CA, not ready, CONNECT gets 503', async () => {
    await until(() => /no l7 config/.test(proxy.notReadyReason() ?? ''), 'the waypoint certificate');
    assert.equal(proxy.identity, WAYPOINT_ID);
    const ready = await plainGet(proxy.ports.status, '/healthz/ready');
    assert.equal(ready.status, 503);
    assert.match(ready.body, /no l7 config default\/waypoint/);
    await assert.rejects(clientPool.openTunnel(tunnelKey(), '10.96.0.10:9080'), /503/);
  });

  test('the first config makes it ready and routes over HBONE to the destination', async () => {
    publish('1', config('1', 'reviews-v1'));
    await proxy.whenReady();
    assert.equal((await plainGet(proxy.ports.status, '/healthz/ready')).status, 200);
    assert.ok(existsSync(path.join(dir, 'ready')), 'ready file written');
    const r = await get('10.96.0.10:9080', '/reviews/1');
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-via'], 'ambit-waypoint');
    assert.match(r.body, /reviews-v1/);
    const last = destRequests.at(-1);
    assert.equal(last?.peerIdentity, WAYPOINT_ID, 'the destination sees the waypoint identity');
    assert.equal(`${last?.authority.host}:${last?.authority.port}`, '127.0.0.2:9080');
  });

  test('a config update switches the route', async () => {
    const applied = waitEvent<{ version: string }>(proxy.xds, 'applied');
    publish('2', config('2', 'reviews-v2'));
    assert.equal((await applied).version, '2');
    const r = await get('10.96.0.10:9080', '/reviews/2');
    assert.equal(r.status, 200);
    assert.match(r.body, /reviews-v2/);
  });

  test('an invalid config is NACKed with the reason and the previous one keeps serving', async () => {
    const nack = waitEvent<{ message: string }>(proxy.xds, 'nack-sent');
    const serverNack = waitEvent<{ message: string }>(xds, 'nack');
    const bad = config('3', 'reviews-v1');
    (bad.services as Array<Record<string, unknown>>)[0]!.routes = [{ backends: [{ cluster: 'no-such-cluster' }] }];
    publish('3', bad);
    assert.match((await nack).message, /unknown cluster 'no-such-cluster'/);
    assert.match((await serverNack).message, /no-such-cluster/);
    assert.equal(proxy.xds.version, '2');
    const r = await get('10.96.0.10:9080', '/reviews/3');
    assert.equal(r.status, 200);
    assert.match(r.body, /reviews-v2/);
    assert.equal(proxy.notReadyReason(), undefined, 'still ready');
  });

  test('a tcp service passes bytes through unchanged, with forwarded for the client', async () => {
    publish('4', config('4', 'reviews-v2'));
    await until(() => proxy.xds.version === '4', 'config 4');
    const data = randomBytes(512 * 1024);
    const tunnel = await clientPool.openTunnel(tunnelKey(), '10.96.0.20:5432');
    const got: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => {
      tunnel.on('data', (c: Buffer) => got.push(c));
      tunnel.on('end', () => resolve());
      tunnel.on('error', reject);
    });
    tunnel.end(data);
    await done;
    tunnel.destroy();
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(Buffer.concat(got)), sha(data));
    const last = destRequests.at(-1);
    assert.equal(`${last?.authority.host}:${last?.authority.port}`, '127.0.0.2:5432');
    assert.equal(last?.peerIdentity, WAYPOINT_ID);
    assert.equal(last?.forwarded.for, '127.0.0.1', 'the original client address is forwarded');
    assert.equal(last?.forwarded.host, 'db.default.svc.cluster.local');
  });

  test('metrics: istio_requests_total and istio_tcp_* with reporter="waypoint"', async () => {
    await sleep(100);
    const m = await plainGet(proxy.ports.metrics, '/stats/prometheus');
    assert.equal(m.status, 200);
    assert.match(m.body, /istio_requests_total\{[^}]*reporter="waypoint"[^}]*response_code="200"[^}]*\} [1-9]/);
    assert.match(m.body, /istio_tcp_received_bytes_total\{[^}]*reporter="waypoint"[^}]*destination_service="db\.default\.svc\.cluster\.local"[^}]*\} 524288/);
    assert.match(m.body, /istio_tcp_sent_bytes_total\{[^}]*reporter="waypoint"[^}]*\} 524288/);
    assert.match(m.body, /istio_tcp_connections_closed_total\{[^}]*reporter="waypoint"[^}]*\} 1/);
    assert.equal((await plainGet(proxy.ports.metrics, '/metrics')).status, 200);
  });

  test('removal of the resource leaves no services (503)', async () => {
    const removed = waitEvent(proxy.xds, 'removed');
    xds.replaceAll(L7_CONFIG_TYPE_URL, []);
    await removed;
    await assert.rejects(clientPool.openTunnel(tunnelKey(), '10.96.0.10:9080'), /503/);
    publish('5', config('5', 'reviews-v1'));
    await until(() => proxy.xds.version === '5', 'config 5');
    assert.match((await get('10.96.0.10:9080', '/back')).body, /reviews-v1/);
  });

  test('close() drains gracefully and stops listening', async () => {
    const port = proxy.ports.hbone;
    const t0 = Date.now();
    await proxy.close();
    assert.ok(Date.now() - t0 < 5000);
    await assert.rejects(new Promise((resolve, reject) => {
      const s = netConnect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(undefined);
      });
      s.on('error', reject);
    }), /ECONNREFUSED/);
  });

  test('`ambit waypoint run` becomes ready and exits 0 on SIGTERM', async () => {
    const free = async (): Promise<number> => {
      const s = createNetServer();
      const p = await new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
      await new Promise((r) => s.close(r));
      return p;
    };
    const [hb, mp, sp] = [await free(), await free(), await free()];
    const readyFile = path.join(dir, 'cli-ready');
    const bin = fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url));
    const child = spawn(process.execPath, [bin, 'waypoint', 'run', '--name', 'waypoint', '--namespace', 'default', '--xds-address', cpAddress,
      '--root-cert', path.join(dir, 'root.pem'), '--token-file', path.join(dir, 'token'), '--node', 'node-a', '--pod-ip', '127.0.0.1',
      '--hbone-port', String(hb), '--metrics-port', String(mp), '--status-port', String(sp), '--ready-file', readyFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await until(() => existsSync(readyFile) || child.exitCode !== null, 'the CLI ready file', 20_000);
      assert.ok(existsSync(readyFile), `not ready; output:\n${output}`);
      assert.equal((await plainGet(sp, '/healthz/ready')).status, 200);
      // the CLI dials destinations on the default HBONE port 15008, where nothing listens in this test:
      // a 503 connect failure proves the config arrived and the route was taken
      const r = await get2(hb, '10.96.0.10:9080');
      assert.equal(r.status, 503);
      assert.match(r.body, /connection failure/);
      child.kill('SIGTERM');
      assert.equal(await exited, 0, output);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

/** Like get(), against another waypoint HBONE port. */
async function get2(port: number, authority: string): Promise<{ status: number; body: string }> {
  const tunnel = await clientPool.openTunnel({ ...tunnelKey(), dstPort: port }, authority);
  try {
    return await new Promise((resolve, reject) => {
      const req = httpRequest({ createConnection: () => tunnel, path: '/cli', headers: { host: 'reviews:9080' } }, (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      req.end();
    });
  } finally {
    tunnel.destroy();
  }
}
