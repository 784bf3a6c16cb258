/**
 * HBONE server, client and pool over loopback: real TLS 1.3, real HTTP/2,
 * real sockets. The namespace (two-node) variant is hbone-lab.test.ts.
 */
import assert from 'node:assert/strict';
import { connect as h2connect, constants as h2c } from 'node:http2';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { HboneIdentityMismatchError, HbonePingTimeoutError, HboneStatusError, HboneTlsError } from '../../src/hbone/errors.js';
import { HbonePool, type PoolKey } from '../../src/hbone/pool.js';
import { HboneServer, type InboundRequest } from '../../src/hbone/server.js';
import { secureContextFor, type TlsIdentity } from '../../src/hbone/tls-identity.js';
import type { LocalCa } from '../../src/identity/local-ca.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';
import { closeServer, digestServer, duplexServer, echoServer, listen, payload, readAll, sha256 } from '../helpers/tcp.js';

const TD = 'cluster.local';
const log = silentLogger();

let ca: LocalCa;
let serverId: TlsIdentity;
let clientId: TlsIdentity;
let hbone: HboneServer;
let hbonePort: number;
let registry: Registry;
const requests: InboundRequest[] = [];
const servers: Server[] = [];

async function target(s: Server): Promise<number> {
  servers.push(s);
  return listen(s);
}

function newPool(opts: Partial<ConstructorParameters<typeof HbonePool>[0]> = {}, id: TlsIdentity = clientId): HbonePool {
  return new HbonePool({
    identityFor: () => Promise.resolve(id),
    dial: (dst) => netConnect({ host: dst.host, port: dst.port }),
    logger: log,
    ...opts,
  });
}

function key(over: Partial<PoolKey> = {}): PoolKey {
  return { srcIdentity: clientId.identity, dstIdentities: [serverId.identity], dstHost: '127.0.0.1', dstPort: hbonePort, ...over };
}

before(async () => {
  ca = await ephemeralCa(TD);
  serverId = await issueIdentity(ca, TD, 'default', 'server');
  clientId = await issueIdentity(ca, TD, 'default', 'client');
  registry = new Registry();
  hbone = new HboneServer({
    identityFor: () => serverId,
    resolveTarget: (req) => {
      requests.push(req);
      if (req.authority.port === 1) return { kind: 'deny', reason: 'test policy' };
      if (req.authority.host !== '127.0.0.1') return { kind: 'unavailable', reason: 'no such workload' };
      return { kind: 'allow', host: req.authority.host, port: req.authority.port };
    },
    dial: (t) => netConnect({ host: t.host, port: t.port, allowHalfOpen: true }),
    logger: log,
    registry,
  });
  const srv = await hbone.listen(0, '127.0.0.1');
  hbonePort = (srv.address() as AddressInfo).port;
});

after(async () => {
  hbone.destroy();
  await Promise.all(servers.map(closeServer));
});

describe('hbone tunnel bytes', () => {
  test('16 MiB each way at once arrive intact', async () => {
    const up = payload(16 << 20);
    const down = payload(16 << 20);
    let received: { digest: string; bytes: number } | undefined;
    const port = await target(duplexServer(down, (digest, bytes) => (received = { digest, bytes })));
    const pool = newPool();
    try {
      const stream = await pool.openTunnel(key(), `127.0.0.1:${port}`);
      const got = readAll(stream);
      stream.end(up);
      const back = await got;
      assert.equal(back.length, down.length);
      assert.equal(sha256(back), sha256(down));
      await sleep(20);
      assert.deepEqual(received, { digest: sha256(up), bytes: up.length });
    } finally {
      pool.destroy();
    }
  });

  test('half-close: the client ends its side and still receives the whole reply', async () => {
    const reply = payload(1 << 20);
    const port = await target(digestServer(reply));
    const pool = newPool();
    try {
      const stream = await pool.openTunnel(key(), `127.0.0.1:${port}`);
      const sent = payload(300_000);
      const got = readAll(stream);
      stream.end(sent);
      const back = await got;
      const nl = back.indexOf('\n');
      assert.equal(back.subarray(0, nl).toString(), `${sha256(sent)} ${sent.length}`);
      assert.equal(sha256(back.subarray(nl + 1)), sha256(reply));
    } finally {
      pool.destroy();
    }
  });

  test('200 concurrent tunnels carry checksummed payloads over exactly 2 connections', async () => {
    const port = await target(echoServer());
    const pool = newPool();
    try {
      const results = await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const stream = await pool.openTunnel(key(), `127.0.0.1:${port}`);
          const data = payload(4096 + i);
          const got = readAll(stream);
          stream.end(data);
          return sha256(await got) === sha256(data);
        }),
      );
      assert.equal(results.filter(Boolean).length, 200);
      assert.equal(pool.connectionCount(key()), 2);
    } finally {
      pool.destroy();
    }
  });

  test('a reset by the target resets the client stream, and a client reset reaches the target', async () => {
    const conns: Array<{ sock: Socket; closedWithError: Promise<boolean> }> = [];
    const port = await target(
      createServer({ allowHalfOpen: true }, (sock) => {
        sock.on('error', () => undefined);
        conns.push({ sock, closedWithError: new Promise((resolve) => sock.once('close', resolve)) });
      }),
    );
    const nthConn = async (i: number) => {
      for (let n = 0; n < 500 && conns.length <= i; n++) await sleep(2);
      const c = conns[i];
      assert.ok(c, `target connection ${i} never arrived`);
      return c;
    };
    const pool = newPool();
    try {
      // the target resets: the client stream closes with an error code, not a clean end
      const s1 = await pool.openTunnel(key(), `127.0.0.1:${port}`);
      s1.on('error', () => undefined);
      const s1Closed = new Promise<number>((resolve) => s1.once('close', () => resolve(s1.rstCode ?? 0)));
      (await nthConn(0)).sock.resetAndDestroy();
      assert.notEqual(await s1Closed, h2c.NGHTTP2_NO_ERROR);

      // the client resets: the target sees an abortive close (RST), not a FIN
      const s2 = await pool.openTunnel(key(), `127.0.0.1:${port}`);
      s2.on('error', () => undefined);
      const c2 = await nthConn(1);
      s2.destroy(new Error('client aborted')); // RST_STREAM without END_STREAM
      assert.equal(await c2.closedWithError, true, 'target should see a reset, not a clean close');
    } finally {
      pool.destroy();
    }
  });

  test('the server reads forwarded, baggage and traceparent', async () => {
    const port = await target(echoServer());
    const pool = newPool();
    try {
      const before = requests.length;
      const stream = await pool.openTunnel(key(), `127.0.0.1:${port}`, {
        forwarded: 'for="10.244.1.5:43210";host=echo.default.svc.cluster.local',
        baggage: 'k8s.namespace.name=default,k8s.pod.name=client-1,service.name=client',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00',
      });
      stream.end();
      await readAll(stream);
      const req = requests[before];
      assert.ok(req);
      assert.equal(req.peerIdentity, clientId.identity);
      assert.deepEqual(req.forwarded, { for: '10.244.1.5:43210', host: 'echo.default.svc.cluster.local' });
      assert.equal(req.baggage.get('k8s.pod.name'), 'client-1');
      assert.equal(req.traceparent?.traceId, '0af7651916cd43dd8448eb211c80319c');
    } finally {
      pool.destroy();
    }
  });
});

describe('hbone identity checks', () => {
  test('a server whose SAN is not expected is refused with a typed error', async () => {
    const pool = newPool();
    try {
      await assert.rejects(pool.openTunnel(key({ dstIdentities: ['spiffe://cluster.local/ns/default/sa/someone-else'] }), '127.0.0.1:9'), (err: unknown) => {
        assert.ok(err instanceof HboneIdentityMismatchError, String(err));
        assert.equal(err.code, 'AMBIT_ERR_HBONE_IDENTITY_MISMATCH');
        assert.deepEqual(err.presented, [serverId.identity]);
        return true;
      });
    } finally {
      pool.destroy();
    }
  });

  test('a client certificate from another root is refused at the handshake', async () => {
    const otherCa = await ephemeralCa(TD);
    const stranger = await issueIdentity(otherCa, TD, 'default', 'client');
    // The stranger trusts our root so only the server-side check can refuse it.
    const pool = newPool({}, { ...stranger, rootsPem: [...serverId.rootsPem] });
    try {
      await assert.rejects(pool.openTunnel(key({ srcIdentity: stranger.identity }), '127.0.0.1:9'), (err: unknown) => {
        assert.ok(err instanceof HboneTlsError || (err as { code?: string }).code === 'AMBIT_ERR_HBONE_STREAM_RESET' || (err as { code?: string }).code === 'AMBIT_ERR_HBONE_CONNECTION_CLOSED', String(err));
        return true;
      });
    } finally {
      pool.destroy();
    }
  });

  test('a client certificate from another trust domain is refused', async () => {
    const foreign = await ephemeralCa('other.example');
    const alien = await issueIdentity(foreign, 'other.example', 'default', 'client');
    const pool = newPool({}, { ...alien, rootsPem: [...serverId.rootsPem] });
    // Make the server trust the foreign root too, so the trust-domain check is what refuses it.
    const td = new HboneServer({
      identityFor: () => ({ ...serverId, rootsPem: [...serverId.rootsPem, ...alien.rootsPem] }),
      resolveTarget: () => ({ kind: 'allow', host: '127.0.0.1', port: 9 }),
      dial: (t) => netConnect(t.port, t.host),
      logger: log,
    });
    const srv = await td.listen(0, '127.0.0.1');
    try {
      await assert.rejects(pool.openTunnel(key({ srcIdentity: alien.identity, dstPort: (srv.address() as AddressInfo).port }), '127.0.0.1:9'));
    } finally {
      pool.destroy();
      td.destroy();
    }
  });

  test('the client sends no SNI and offers only h2 with TLS 1.3', async () => {
    let seen: { servername: unknown; protocol: unknown; alpn: unknown } | undefined;
    const probe = tlsCreateServer({ key: serverId.privateKeyPem, cert: serverId.certChainPem.join(''), ALPNProtocols: ['h2'] }, (s) => {
      seen = { servername: s.servername, protocol: s.getProtocol(), alpn: s.alpnProtocol };
      s.destroy();
    });
    const port = await target(probe);
    const pool = newPool({ connectTimeoutMs: 2000 });
    try {
      await pool.openTunnel(key({ dstPort: port }), '127.0.0.1:9').catch(() => undefined);
      assert.ok(seen);
      assert.equal(seen.servername, false);
      assert.equal(seen.protocol, 'TLSv1.3');
      assert.equal(seen.alpn, 'h2');
    } finally {
      pool.destroy();
    }
  });
});

describe('hbone server refuses bad input and keeps serving', () => {
  async function rawExchange(data: Buffer): Promise<Buffer> {
    const s = netConnect(hbonePort, '127.0.0.1');
    s.on('error', () => undefined);
    s.end(data);
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.once('close', () => resolve(Buffer.concat(chunks)));
    });
  }

  function h2Session(id: TlsIdentity = clientId, alpn = ['h2']) {
    const tls = tlsConnect({ host: '127.0.0.1', port: hbonePort, secureContext: secureContextFor(id), ALPNProtocols: alpn, checkServerIdentity: () => undefined });
    return h2connect(`https://127.0.0.1:${hbonePort}`, { createConnection: () => tls });
  }

  async function requestStatus(headers: Record<string, string>): Promise<number> {
    const session = h2Session();
    try {
      const req = session.request(headers, { endStream: false });
      return await new Promise<number>((resolve, reject) => {
        req.once('response', (h) => resolve(Number(h[':status'])));
        req.once('error', reject);
      });
    } finally {
      session.destroy();
    }
  }

  async function goodTunnelWorks(): Promise<void> {
    const port = await target(echoServer());
    const pool = newPool();
    try {
      const s = await pool.openTunnel(key(), `127.0.0.1:${port}`);
      const data = payload(100_000);
      const got = readAll(s);
      s.end(data);
      assert.equal(sha256(await got), sha256(data));
    } finally {
      pool.destroy();
    }
  }

  test('plain TCP garbage is dropped', async () => {
    const back = await rawExchange(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n' + 'x'.repeat(5000)));
    // a TLS alert at most; never an HTTP answer
    assert.ok(!back.toString('latin1').includes('HTTP/'), 'no http response to garbage');
    await goodTunnelWorks();
  });

  test('TLS without a client certificate is refused', async () => {
    const tls = tlsConnect({ host: '127.0.0.1', port: hbonePort, ca: serverId.rootsPem as string[], ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    tls.on('error', () => undefined);
    const outcome = await new Promise<string>((resolve) => {
      tls.once('secureConnect', () => tls.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
      tls.once('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
      tls.once('close', () => resolve('closed'));
    });
    assert.notEqual(outcome, '');
    assert.equal(tls.destroyed || outcome !== '', true);
    await goodTunnelWorks();
  });

  test('HTTP/1.1 over TLS is refused (no h2 ALPN)', async () => {
    const tls = tlsConnect({ host: '127.0.0.1', port: hbonePort, secureContext: secureContextFor(clientId), ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined });
    const outcome = await new Promise<string>((resolve) => {
      tls.once('secureConnect', () => {
        tls.write('CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n');
        tls.once('data', (d: Buffer) => resolve(`data:${d.toString()}`));
      });
      tls.once('error', (e: Error & { code?: string }) => resolve(`error:${e.code ?? e.message}`));
      tls.once('close', () => resolve('closed'));
    });
    assert.ok(!outcome.startsWith('data:'), `got ${outcome}`);
    await goodTunnelWorks();
  });

  test('an HTTP/2 GET gets 400', async () => {
    assert.equal(await requestStatus({ ':method': 'GET', ':path': '/', ':scheme': 'https', ':authority': '127.0.0.1:9' }), 400);
    await goodTunnelWorks();
  });

  test('a CONNECT with a malformed authority gets 400', async () => {
    for (const authority of ['not-an-ip:80', '127.0.0.1', '127.0.0.1:99999', '[::1', 'a'.repeat(100) + ':80']) {
      assert.equal(await requestStatus({ ':method': 'CONNECT', ':authority': authority }), 400, authority);
    }
    await goodTunnelWorks();
  });

  test('a CONNECT to a closed port gets 503, a denied one 401', async () => {
    const closed = createServer();
    const port = await listen(closed);
    await closeServer(closed);
    assert.equal(await requestStatus({ ':method': 'CONNECT', ':authority': `127.0.0.1:${port}` }), 503);
    assert.equal(await requestStatus({ ':method': 'CONNECT', ':authority': '127.0.0.2:80' }), 503);
    assert.equal(await requestStatus({ ':method': 'CONNECT', ':authority': '127.0.0.1:1' }), 401);
    const pool = newPool();
    try {
      await assert.rejects(pool.openTunnel(key(), `127.0.0.1:${port}`), (e: unknown) => e instanceof HboneStatusError && e.status === 503);
    } finally {
      pool.destroy();
    }
    await goodTunnelWorks();
  });

  test('10,000 streams opened and reset do not stop a good client', async () => {
    const port = await target(echoServer());
    const goodDone = (async () => {
      for (let i = 0; i < 20; i++) await goodTunnelWorks();
    })();
    const session = h2Session();
    session.on('error', () => undefined);
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
    let opened = 0;
    try {
      for (let i = 0; i < 10_000 && !session.destroyed; i++) {
        const req = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${port}` }, { endStream: false });
        req.on('error', () => undefined);
        req.close(h2c.NGHTTP2_CANCEL);
        opened++;
        if (i % 200 === 0) await sleep(1);
      }
    } catch {
      // the server may GOAWAY an abusive session; that is an acceptable refusal
    } finally {
      session.destroy();
    }
    assert.ok(opened > 0);
    await goodDone;
    await goodTunnelWorks();
  });

  test('refusals are counted by reason', async () => {
    const text = await registry.metrics();
    assert.match(text, /ambit_hbone_inbound_refused_total\{reason="bad_method"\} [1-9]/);
    assert.match(text, /ambit_hbone_inbound_refused_total\{reason="bad_authority"\} [1-9]/);
    assert.match(text, /ambit_hbone_inbound_refused_total\{reason="connect_failed"\} [1-9]/);
  });
});

describe('hbone pool lifecycle', () => {
  test('an idle connection is released after the idle timeout', async () => {
    const clock = new FakeClock(Date.now());
    const port = await target(echoServer());
    const pool = newPool({ clock, connectTimeoutMs: 60_000 });
    try {
      const s = await pool.openTunnel(key(), `127.0.0.1:${port}`);
      s.end('x');
      await readAll(s);
      await sleep(20);
      assert.equal(pool.connectionCount(key()), 1);
      // Step through fake time so the real PING acks arrive between ticks.
      const step = async (ms: number): Promise<void> => {
        for (let t = 0; t < ms; t += 5000) {
          clock.advance(5000);
          await sleep(2);
        }
      };
      await step(295_000);
      assert.equal(pool.connectionCount(key()), 1, 'still pooled just before the idle timeout');
      await step(10_000);
      for (let i = 0; i < 100 && pool.connectionCount(key()) > 0; i++) await sleep(10);
      assert.equal(pool.connectionCount(key()), 0);
    } finally {
      pool.destroy();
    }
  });

  test('GOAWAY drains: open streams finish, new tunnels use a new connection', async () => {
    const port = await target(echoServer());
    const drainingServer = new HboneServer({
      identityFor: () => serverId,
      resolveTarget: (r) => ({ kind: 'allow', host: r.authority.host, port: r.authority.port }),
      dial: (t) => netConnect({ host: t.host, port: t.port, allowHalfOpen: true }),
      logger: log,
    });
    const srv = await drainingServer.listen(0, '127.0.0.1');
    const k = key({ dstPort: (srv.address() as AddressInfo).port });
    const pool = newPool();
    try {
      const s1 = await pool.openTunnel(k, `127.0.0.1:${port}`);
      const got1 = readAll(s1);
      s1.write('before ');
      // graceful close sends GOAWAY; the listener stops, so reopen another listener on the same port
      const closing = drainingServer.close();
      await sleep(50);
      s1.end('after');
      assert.equal((await got1).toString(), 'before after');
      await closing;
      for (let i = 0; i < 100 && pool.connectionCount(k) > 0; i++) await sleep(10);
      assert.equal(pool.connectionCount(k), 0);
      // a new tunnel needs a new connection, and the old listener is gone
      await assert.rejects(pool.openTunnel(k, `127.0.0.1:${port}`));
    } finally {
      pool.destroy();
      drainingServer.destroy();
    }
  });

  test('a peer that stops answering PINGs is dropped after the ping timeout', async () => {
    const clock = new FakeClock(Date.now());
    // A loopback relay we can freeze, standing in for a dead network path.
    let frozen = false;
    const relay = createServer((down) => {
      const up = netConnect(hbonePort, '127.0.0.1');
      down.on('error', () => undefined);
      up.on('error', () => undefined);
      down.on('data', (c: Buffer) => !frozen && up.write(c));
      up.on('data', (c: Buffer) => !frozen && down.write(c));
      down.once('close', () => up.destroy());
      up.once('close', () => down.destroy());
    });
    const relayPort = await target(relay);
    const port = await target(echoServer());
    const pool = newPool({ clock, connectTimeoutMs: 60_000 });
    const k = key({ dstPort: relayPort });
    try {
      const s = await pool.openTunnel(k, `127.0.0.1:${port}`);
      s.on('error', () => undefined);
      const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
      frozen = true;
      clock.advance(10_000); // first ping goes out and is never answered
      await sleep(20);
      assert.equal(pool.connectionCount(k), 1);
      clock.advance(20_000);
      await closed;
      assert.equal(pool.connectionCount(k), 0);
      assert.ok(HbonePingTimeoutError);
    } finally {
      pool.destroy();
    }
  });
});
