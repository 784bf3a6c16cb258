/**
 * Certificate expiry on live HBONE connections (issue 9, "CA unavailable":
 * after expiry, connections fail closed). TLS checks validity only during the
 * handshake, so a connection opened before a certificate expired would keep
 * carrying new tunnels after it. Both ends therefore stop taking new streams
 * at the earlier of the two leaves' notAfter: the pool's connection drains
 * and the server sends GOAWAY, while tunnels already open finish intact.
 *
 * A real HboneServer and HbonePool on loopback with real TLS 1.3; only time is
 * injected (a FakeClock on each side) so "24 h later" takes no time, while the
 * handshakes see genuinely valid certificates.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { ClientHttp2Stream } from 'node:http2';
import { after, before, test } from 'node:test';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { HboneCertificateExpiredError } from '../../src/hbone/errors.js';
import { HbonePool, type PoolKey } from '../../src/hbone/pool.js';
import { HboneServer } from '../../src/hbone/server.js';
import { connectionValidUntil, type TlsIdentity } from '../../src/hbone/tls-identity.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';

let echo: Server;
let echoPort: number;
let serverId: TlsIdentity;
let clientId: TlsIdentity;
const sessionsSeen: Socket[] = [];

before(async () => {
  const ca = await ephemeralCa('cluster.local');
  serverId = await issueIdentity(ca, 'cluster.local', 'default', 'server');
  clientId = await issueIdentity(ca, 'cluster.local', 'default', 'client');
  echo = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined); // tunnels reset at teardown
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as AddressInfo).port;
});

after(() => new Promise<void>((r) => echo.close(() => r())));

async function startServer(clock: FakeClock): Promise<{ server: HboneServer; port: number }> {
  const server = new HboneServer({
    identityFor: () => serverId,
    resolveTarget: (req) => ({ kind: 'allow', host: req.authority.host, port: req.authority.port }),
    dial: (t) => netConnect({ host: t.host, port: t.port, allowHalfOpen: true }),
    logger: silentLogger(),
    clock,
  });
  const port = ((await server.listen(0, '127.0.0.1')).address() as AddressInfo).port;
  return { server, port };
}

function startPool(clock: FakeClock): HbonePool {
  return new HbonePool({
    identityFor: () => Promise.resolve(clientId),
    dial: (d) => {
      const s = netConnect({ host: d.host, port: d.port });
      sessionsSeen.push(s);
      return s;
    },
    logger: silentLogger(),
    clock,
    // keepalive PINGs would fire on every big advance(); they are not what is tested
    pingIntervalMs: 365 * 24 * 3600_000,
  });
}

/** Sends `bytes` through the tunnel and checks the echo's checksum. */
async function roundTrip(t: ClientHttp2Stream, bytes: Buffer): Promise<void> {
  const want = createHash('sha256').update(bytes).digest('hex');
  const got = createHash('sha256');
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      got.update(d);
      n += d.length;
      if (n >= bytes.length) {
        t.off('data', onData);
        resolve();
      }
    };
    t.on('data', onData);
    t.once('error', reject);
  });
  t.write(bytes);
  await done;
  assert.equal(got.digest('hex'), want, 'echoed bytes differ');
}

/** A server and a pool on loopback, each on its own fake clock starting now; both torn down after `body`. */
async function withPair(body: (p: { now: number; clientClock: FakeClock; serverClock: FakeClock; pool: HbonePool; key: PoolKey }) => Promise<void>): Promise<void> {
  const now = Date.now();
  const clientClock = new FakeClock(now);
  const serverClock = new FakeClock(now);
  const { server, port } = await startServer(serverClock);
  const pool = startPool(clientClock);
  try {
    await body({ now, clientClock, serverClock, pool, key: { srcIdentity: clientId.identity, dstIdentities: [serverId.identity], dstHost: '127.0.0.1', dstPort: port } });
  } finally {
    pool.destroy();
    server.destroy();
  }
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 50));

test('connectionValidUntil is the earlier notAfter of our leaf and the peer leaf', async () => {
  const { X509Certificate } = await import('node:crypto');
  const ours = Date.parse(new X509Certificate(clientId.certChainPem[0] as string).validTo);
  const peer = new X509Certificate(serverId.certChainPem[0] as string);
  assert.equal(connectionValidUntil(clientId, peer), Math.min(ours, Date.parse(peer.validTo)));
  assert.equal(connectionValidUntil(clientId, undefined), ours);
});

test('once our certificate expired the pool opens no new tunnel (fail closed); open tunnels finish intact', () =>
  withPair(async ({ now, clientClock, pool, key }) => {
    const dialsBefore = sessionsSeen.length;
    const first = await pool.openTunnel(key, `127.0.0.1:${echoPort}`);
    await roundTrip(first, randomBytes(64 * 1024));
    const second = await pool.openTunnel(key, `127.0.0.1:${echoPort}`);
    assert.equal(sessionsSeen.length - dialsBefore, 1, 'both tunnels share one pooled connection before expiry');
    second.destroy();

    // Only the client's clock passes notAfter: its connection must drain by itself.
    const until = connectionValidUntil(clientId, undefined) as number;
    clientClock.advance(until - now + 1000);
    await tick();
    assert.equal(pool.connectionCount(key), 1, 'the expired connection stays open for its tunnel');
    await assert.rejects(pool.openTunnel(key, `127.0.0.1:${echoPort}`), (e: unknown) => e instanceof HboneCertificateExpiredError && /our certificate expired/.test(e.message));
    assert.equal(sessionsSeen.length - dialsBefore, 1, 'no handshake was even tried with the expired certificate');
    // The tunnel opened before expiry still carries bytes intact.
    await roundTrip(first, randomBytes(64 * 1024));
    first.end();
  }));

test('the server sends GOAWAY when a certificate of a session expires; the open tunnel finishes intact', () =>
  withPair(async ({ now, serverClock, pool, key }) => {
    const dialsBefore = sessionsSeen.length;
    const first = await pool.openTunnel(key, `127.0.0.1:${echoPort}`);
    await roundTrip(first, randomBytes(32 * 1024));
    // Only the server's clock passes notAfter: its GOAWAY makes the client drain the connection.
    const until = connectionValidUntil(serverId, undefined) as number;
    serverClock.advance(until - now + 1000);
    await tick();
    const next = await pool.openTunnel(key, `127.0.0.1:${echoPort}`);
    assert.equal(sessionsSeen.length - dialsBefore, 2, 'after the GOAWAY a new tunnel needed a new handshake');
    await roundTrip(first, randomBytes(32 * 1024));
    first.end();
    next.destroy();
  }));
