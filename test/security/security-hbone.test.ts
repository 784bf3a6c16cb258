/**
 * Hostile input against a real HboneServer (port 15008's code) over loopback
 * with real TLS 1.3 and HTTP/2: bad client certificates, HTTP/2 abuse
 * written as raw frames (HEADERS, CONTINUATION, rapid-reset, SETTINGS and
 * PING floods, an oversized header list, a zero window), slowloris
 * handshakes, and CONNECTs to places the agent must never dial (through the
 * agent's own inbound resolver). Every case must be a clean refusal, and a
 * good client must keep getting checksummed tunnels after each one.
 */
import assert from 'node:assert/strict';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { createInboundServer, type InboundDeps } from '../../src/agent/inbound.js';
import { silentLogger } from '../../src/common/logger.js';
import { HbonePool, type PoolKey } from '../../src/hbone/pool.js';
import { HboneServer, type InboundRequest } from '../../src/hbone/server.js';
import { DEFAULT_SERVER_MAX_CONCURRENT_STREAMS } from '../../src/hbone/settings.js';
import { secureContextFor, type TlsIdentity } from '../../src/hbone/tls-identity.js';
import type { LocalWorkload } from '../../src/state/local-config.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';
import { closeServer, echoServer, listen, payload, readAll, sha256 } from '../helpers/tcp.js';
import { FLAG, FRAME, RawH2, SETTING, frame, headerBlock, settingsPayload, u32 } from '../security/lib/h2-raw.js';
import { forgeLeaf, testRoot, type TestRoot } from '../security/lib/hostile-certs.js';
import { Tally } from '../security/lib/tally.js';

const TD = 'cluster.local';
const HANDSHAKE_TIMEOUT_MS = 800;
const IDLE_TIMEOUT_MS = 2000;
const log = silentLogger();
const tally = new Tally('hbone');

let root: TestRoot;
let serverId: TlsIdentity;
let clientId: TlsIdentity;
let hbone: HboneServer;
let hbonePort: number;
let registry: Registry;
let echoPort: number;
const requests: InboundRequest[] = [];
const servers: Server[] = [];

before(async () => {
  root = await testRoot(TD);
  serverId = await issueIdentity(root.ca, TD, 'default', 'server');
  clientId = await issueIdentity(root.ca, TD, 'default', 'client');
  registry = new Registry();
  hbone = new HboneServer({
    identityFor: () => serverId,
    resolveTarget: (req) => {
      requests.push(req);
      if (requests.length > 50_000) requests.splice(0, 25_000);
      return { kind: 'allow', host: req.authority.host, port: req.authority.port };
    },
    dial: (t) => netConnect({ host: t.host, port: t.port, allowHalfOpen: true }),
    logger: log,
    registry,
    handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
    idleTimeoutMs: IDLE_TIMEOUT_MS,
  });
  const srv = await hbone.listen(0, '127.0.0.1');
  hbonePort = (srv.address() as AddressInfo).port;
  echoPort = await target(echoServer());
});

after(async () => {
  tally.print();
  const refused = (await registry.metrics()).split('\n').filter((l) => l.startsWith('ambit_hbone_inbound_refused_total{'));
  console.log(`hbone refusals by reason: ${refused.map((l) => l.replace('ambit_hbone_inbound_refused_total', '')).join(' ')}`);
  hbone.destroy();
  await Promise.all(servers.map(closeServer));
});

async function target(s: Server): Promise<number> {
  servers.push(s);
  return listen(s);
}

function key(): PoolKey {
  return { srcIdentity: clientId.identity, dstIdentities: [serverId.identity], dstHost: '127.0.0.1', dstPort: hbonePort };
}

/** A good client still gets a checksummed 256 KiB round trip; a failure here is a crash in the tally. */
async function goodClientServed(name: string): Promise<void> {
  const pool = new HbonePool({ identityFor: () => Promise.resolve(clientId), dial: (d) => netConnect({ host: d.host, port: d.port }), logger: log });
  try {
    const s = await pool.openTunnel(key(), `127.0.0.1:${echoPort}`);
    const data = payload(256 * 1024);
    const got = readAll(s);
    s.end(data);
    const back = await got;
    assert.equal(sha256(back), sha256(data), `${name}: echo corrupted`);
  } catch (err) {
    tally.case(`${name} (good client after)`, { refused: false, crashed: true });
    throw err;
  } finally {
    pool.destroy();
  }
}

/** Tries a CONNECT with the given client identity; 'served' only when a 200 arrived. */
async function tryClient(id: TlsIdentity, port = hbonePort): Promise<'served' | string> {
  const tls = tlsConnect({ host: '127.0.0.1', port, secureContext: secureContextFor(id), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
  tls.on('error', () => undefined);
  const session = h2connect(`https://127.0.0.1:${port}`, { createConnection: () => tls });
  session.on('error', () => undefined);
  try {
    return await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), 5000);
      const req = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${echoPort}` }, { endStream: false });
      req.on('error', (e: Error & { code?: string }) => {
        clearTimeout(timer);
        resolve(`error:${e.code ?? e.message}`);
      });
      req.once('response', (h) => {
        clearTimeout(timer);
        resolve(h[':status'] === 200 ? 'served' : `status:${String(h[':status'])}`);
      });
      session.once('close', () => {
        clearTimeout(timer);
        resolve('closed');
      });
    });
  } finally {
    session.destroy();
    tls.destroy();
  }
}

async function refusedCount(reason: string): Promise<number> {
  const m = (await registry.getSingleMetric('ambit_hbone_inbound_refused_total')?.get())?.values.find((v) => v.labels.reason === reason);
  return m?.value ?? 0;
}

describe('client certificates', () => {
  const DAY = 86_400_000;
  const id = (sa: string) => `spiffe://${TD}/ns/default/sa/${sa}`;
  const cases: Array<[string, () => Promise<TlsIdentity>, string]> = [
    ['expired certificate', () => forgeLeaf(root, { uris: [id('old')], notBefore: new Date(Date.now() - 2 * DAY), notAfter: new Date(Date.now() - DAY) }), 'tls_error'],
    ['not-yet-valid certificate', () => forgeLeaf(root, { uris: [id('future')], notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 2 * DAY) }), 'tls_error'],
    ['certificate from another CA', async () => issueIdentity(await ephemeralCa(TD), TD, 'default', 'client'), 'tls_error'],
    ['no SAN at all', () => forgeLeaf(root, { uris: [] }), 'trust_domain'],
    ['two SPIFFE SANs', () => forgeLeaf(root, { uris: [id('a'), id('b')] }), 'trust_domain'],
    ['a DNS SAN only', () => forgeLeaf(root, { dns: ['client.default.svc'] }), 'trust_domain'],
    ['a non-SPIFFE URI SAN', () => forgeLeaf(root, { uris: ['https://evil.example/ns/default/sa/a'] }), 'trust_domain'],
    ['another trust domain', () => forgeLeaf(root, { uris: ['spiffe://evil.local/ns/default/sa/a'] }), 'trust_domain'],
  ];
  for (const [name, make, reason] of cases) {
    test(`${name} is refused at the handshake and counted as ${reason}`, async () => {
      const cert = await make();
      const before = await refusedCount(reason);
      const seen = requests.length;
      const outcome = await tryClient(cert);
      tally.case(name, { refused: outcome !== 'served' });
      assert.notEqual(outcome, 'served', name);
      assert.equal(requests.length, seen, `${name}: a stream reached the resolver`);
      for (let i = 0; i < 50 && (await refusedCount(reason)) === before; i++) await sleep(10);
      assert.ok((await refusedCount(reason)) > before, `${name}: ${reason} not counted`);
      await goodClientServed(name);
    });
  }

  test('a good client certificate is served (control case)', async () => {
    assert.equal(await tryClient(clientId), 'served');
  });
});

describe('HTTP/2 abuse', () => {
  const connect = (port: number = echoPort): Array<[string, string]> => [
    [':method', 'CONNECT'],
    [':authority', `127.0.0.1:${port}`],
  ];

  test(`HEADERS flood: at most ${DEFAULT_SERVER_MAX_CONCURRENT_STREAMS} concurrent streams are accepted`, async () => {
    const c = await RawH2.open(hbonePort, clientId);
    const seen = requests.length;
    try {
      const batch: Buffer[] = [];
      for (let i = 0; i < 5000; i++) batch.push(c.headers(2 * i + 1, connect()));
      await c.write(Buffer.concat(batch));
      await c.waitClosed(1500);
      const accepted = requests.length - seen;
      const refusals = c.frames.filter((f) => f.type === FRAME.RST_STREAM).length;
      tally.case('HEADERS flood', { refused: c.isClosed || refusals > 0 });
      assert.ok(accepted <= DEFAULT_SERVER_MAX_CONCURRENT_STREAMS, `${accepted} streams reached the resolver`);
      assert.ok(c.isClosed || refusals > 0, 'no stream refused and the connection is still open');
    } finally {
      c.destroy();
    }
    await goodClientServed('HEADERS flood');
  });

  test('CONTINUATION flood: the connection is closed long before the flood ends', async () => {
    const c = await RawH2.open(hbonePort, clientId);
    let sent = 0;
    try {
      await c.write(frame(FRAME.HEADERS, 0, 1, headerBlock(connect())));
      const cont = frame(FRAME.CONTINUATION, 0, 1, headerBlock([[`x-junk`, 'j'.repeat(1000)]]));
      const t0 = Date.now();
      while (!c.isClosed && sent < 100_000 && Date.now() - t0 < 10_000) {
        await c.write(Buffer.concat(Array.from({ length: 100 }, () => cont)));
        sent += 100;
        if (sent % 1000 === 0) await sleep(1);
      }
      await c.waitClosed(2000);
      tally.case('CONTINUATION flood', { refused: c.isClosed });
      assert.ok(c.isClosed, `still open after ${sent} CONTINUATION frames (~${sent} KiB of headers)`);
      assert.ok(sent < 100_000, `the server read ${sent} CONTINUATION frames before closing`);
    } finally {
      c.destroy();
    }
    await goodClientServed('CONTINUATION flood');
  });

  test('oversized header list: refused with GOAWAY, never reaches the resolver, and the dead session is reaped', async () => {
    const c = await RawH2.open(hbonePort, clientId);
    const seen = requests.length;
    const idleBefore = await refusedCount('idle_timeout');
    try {
      await sleep(50); // let the SETTINGS exchange finish so the server's 1 MiB frame size applies
      // 200 KiB in one HEADERS frame: the server allows 1 MiB frames, but the list limit is 64 KiB.
      await c.write(c.headers(1, [...connect(7), ['x-big', 'b'.repeat(200 * 1024)]], FLAG.END_HEADERS));
      await c.waitClosed(IDLE_TIMEOUT_MS + 1500);
      const reached = requests.slice(seen).filter((r) => r.authority.port === 7).length;
      const refusedHere = c.goaway() !== undefined || c.frames.some((f) => f.type === FRAME.RST_STREAM && f.stream === 1);
      tally.case('oversized header list', { refused: reached === 0 && refusedHere });
      assert.equal(reached, 0, 'a 200 KiB header list reached the resolver');
      assert.ok(refusedHere, 'no GOAWAY or RST_STREAM for an oversized header list');
      // nghttp2 stops reading after that GOAWAY and Node reports nothing: the idle timeout must close it
      assert.ok(c.isClosed, 'the session that got a GOAWAY is held open');
      assert.ok((await refusedCount('idle_timeout')) > idleBefore, 'idle close not counted');
    } finally {
      c.destroy();
    }
    await goodClientServed('oversized header list');
  });

  test('rapid reset (CVE-2023-44487 style): 20,000 HEADERS+RST_STREAM pairs', async () => {
    const c = await RawH2.open(hbonePort, clientId);
    const goodDone = (async () => {
      for (let i = 0; i < 5; i++) await goodClientServed('during rapid reset');
    })();
    let pairs = 0;
    try {
      for (let b = 0; b < 20 && !c.isClosed; b++) {
        const chunk: Buffer[] = [];
        for (let i = 0; i < 1000; i++, pairs++) {
          const sid = 2 * pairs + 1;
          chunk.push(c.headers(sid, connect()), frame(FRAME.RST_STREAM, 0, sid, u32(0x8)));
        }
        await c.write(Buffer.concat(chunk));
      }
      await c.waitClosed(1500);
      tally.case('rapid reset', { refused: c.isClosed });
      if (c.isClosed) assert.ok(c.goaway() === undefined || c.goaway()?.code !== 0 || pairs > 0);
    } finally {
      c.destroy();
    }
    await goodDone;
    await goodClientServed('rapid reset');
  });

  for (const kind of ['SETTINGS', 'PING'] as const) {
    test(`${kind} flood from a client that never reads the ACKs is cut off`, async () => {
      const c = await RawH2.open(hbonePort, clientId);
      const one = kind === 'SETTINGS' ? frame(FRAME.SETTINGS, 0, 0, settingsPayload([[SETTING.ENABLE_PUSH, 0]])) : frame(FRAME.PING, 0, 0, Buffer.alloc(8, 7));
      let sent = 0;
      try {
        c.tls.pause();
        const chunk = Buffer.concat(Array.from({ length: 1000 }, () => one));
        const t0 = Date.now();
        while (!c.isClosed && sent < 2_000_000 && Date.now() - t0 < 8000) {
          await Promise.race([c.write(chunk), sleep(500)]);
          sent += 1000;
        }
        c.tls.resume();
        await c.waitClosed(2000);
        tally.case(`${kind} flood`, { refused: c.isClosed });
        assert.ok(c.isClosed, `still open after ${sent} ${kind} frames`);
      } finally {
        c.destroy();
      }
      await goodClientServed(`${kind} flood`);
    });
  }

  test('zero-window stall: the server applies backpressure to the upstream and frees it on close', async () => {
    let upstream: Socket | undefined;
    let upstreamClosed = false;
    const chunk = Buffer.alloc(1 << 20, 0x61);
    const fire = createServer((s) => {
      upstream = s;
      s.on('error', () => undefined);
      s.once('close', () => (upstreamClosed = true));
      const pump = (): void => {
        while (s.write(chunk));
      };
      s.on('drain', pump);
      pump();
    });
    const firePort = await target(fire);
    const c = await RawH2.open(hbonePort, clientId, [[SETTING.INITIAL_WINDOW_SIZE, 0]]);
    try {
      await c.write(c.headers(1, connect(firePort)));
      await sleep(1500);
      assert.ok(upstream, 'the upstream was never dialled');
      const pushed = upstream.bytesWritten - upstream.writableLength;
      tally.case('zero-window stall', { refused: pushed < 64 << 20 });
      assert.ok(pushed < 64 << 20, `the server read ${pushed} bytes from an upstream it cannot deliver`);
      const data = c.frames.filter((f) => f.type === FRAME.DATA && f.stream === 1).reduce((n, f) => n + f.payload.length, 0);
      assert.equal(data, 0, 'DATA sent into a zero window');
      await goodClientServed('zero-window stall');
    } finally {
      c.destroy();
    }
    for (let i = 0; i < 200 && !upstreamClosed; i++) await sleep(10);
    assert.ok(upstreamClosed, 'the upstream of a dead client connection was not closed');
  });
});

describe('slow and silent clients', () => {
  test(`slowloris: 100 partial TLS handshakes are closed after the ${HANDSHAKE_TIMEOUT_MS} ms handshake timeout`, async () => {
    const before = await refusedCount('handshake_timeout');
    const socks = await Promise.all(
      Array.from({ length: 100 }, () => {
        const s = netConnect(hbonePort, '127.0.0.1');
        s.on('error', () => undefined);
        const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
        // the first bytes of a TLS ClientHello record, then silence
        s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
        return Promise.resolve({ s, closed });
      }),
    );
    try {
      await goodClientServed('slowloris (while held)');
      const t0 = Date.now();
      await Promise.race([Promise.all(socks.map((x) => x.closed)), sleep(HANDSHAKE_TIMEOUT_MS * 5)]);
      const open = socks.filter((x) => !x.s.destroyed && x.s.readyState === 'open').length;
      tally.case('slowloris handshake x100', { refused: open === 0 });
      assert.equal(open, 0, `${open} half-handshakes still open after ${Date.now() - t0} ms`);
      assert.ok((await refusedCount('handshake_timeout')) >= before + 100, 'handshake timeouts not counted');
    } finally {
      for (const x of socks) x.s.destroy();
    }
    await goodClientServed('slowloris');
  });

  test('a client that completes TLS but never sends the HTTP/2 preface is closed', async () => {
    const tls = tlsConnect({ host: '127.0.0.1', port: hbonePort, secureContext: secureContextFor(clientId), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    tls.on('error', () => undefined);
    tls.on('data', () => undefined); // read, so the server's close is seen
    const closed = new Promise<void>((resolve) => tls.once('close', () => resolve()));
    try {
      await new Promise<void>((resolve) => tls.once('secureConnect', () => resolve()));
      const before = (await refusedCount('handshake_timeout')) - 1;
      const r = await Promise.race([closed.then(() => true), sleep(HANDSHAKE_TIMEOUT_MS * 4).then(() => false)]);
      tally.case('TLS without h2 preface', { refused: r });
      assert.ok(r, 'a silent TLS client is held open forever');
      assert.ok((await refusedCount('handshake_timeout')) > before);
    } finally {
      tls.destroy();
    }
    await goodClientServed('silent TLS client');
  });
});

describe("CONNECT targets through the agent's inbound resolver", () => {
  const POD_IP = '127.0.0.2';
  let inbound: HboneServer;
  let inboundPort: number;
  let failed: string[] = [];
  let checked: Array<{ srcIp: string; peerIdentity?: string; dstPort: number }> = [];
  let appPort: number;

  before(async () => {
    appPort = await target(echoServer());
    const w = { uid: 'default/server', name: 'server', namespace: 'default', serviceAccount: 'server', node: 'n1', ip: POD_IP, labels: {} } as LocalWorkload;
    const deps = {
      state: { workloadByIp: (ip: string) => (ip === POD_IP ? w : undefined), identityOf: () => serverId.identity },
      node: 'n1',
      certs: { current: () => serverId },
      native: {},
      telemetry: { failed: (_r: unknown, flags: string, error: string) => failed.push(`${flags} ${error}`), opened: () => ({}), closed: () => undefined },
      logger: log,
      registry: new Registry(),
      packetMark: 0x539,
      splice: false,
      captured: () => false,
      netnsOf: () => undefined,
      authz: {
        check: (_w: unknown, a: { srcIp: string; peerIdentity?: string; dstPort: number }) => {
          checked.push(a);
          return a.dstPort === 81 ? { allowed: false, reason: 'denied by test policy' } : { allowed: true, reason: 'ok' };
        },
        checkWaypoint: () => undefined,
        track: () => () => undefined,
      },
    } as unknown as InboundDeps;
    inbound = createInboundServer(deps);
    inboundPort = (((await inbound.listen(0, POD_IP)).address()) as AddressInfo).port;
  });

  after(() => inbound.destroy());

  async function status(authority: string, extra: Record<string, string> = {}): Promise<string> {
    const tls = tlsConnect({ host: POD_IP, port: inboundPort, secureContext: secureContextFor(clientId), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    tls.on('error', () => undefined);
    const session = h2connect(`https://${POD_IP}:${inboundPort}`, { createConnection: () => tls });
    session.on('error', () => undefined);
    try {
      return await new Promise<string>((resolve) => {
        const req = session.request({ ':method': 'CONNECT', ':authority': authority, ...extra }, { endStream: false });
        req.on('error', (e: Error & { code?: string }) => resolve(`error:${e.code ?? e.message}`));
        req.once('response', (h) => resolve(String(h[':status'])));
      });
    } finally {
      session.destroy();
    }
  }

  const cases: Array<[string, (app: number) => string, string]> = [
    ['CONNECT to 127.0.0.1 (the node loopback)', (app) => `127.0.0.1:${app}`, '400'],
    ['CONNECT to a non-local IP', () => '10.99.0.7:80', '400'],
    ['CONNECT to an IPv6 loopback', () => '[::1]:80', '400'],
    ["CONNECT to the agent's outbound port 15001", () => `${POD_IP}:15001`, '503'],
    ["CONNECT to the agent's inbound plaintext port 15006", () => `${POD_IP}:15006`, '503'],
    ["CONNECT to the agent's HBONE port 15008 (a loop)", () => `${POD_IP}:15008`, '503'],
    ["CONNECT to the agent's socks port 15080", () => `${POD_IP}:15080`, '503'],
    ['CONNECT denied by policy', () => `${POD_IP}:81`, '401'],
    ['CONNECT with a hostname authority', () => 'server.default.svc:80', '400'],
  ];
  for (const [name, authority, want] of cases) {
    test(`${name} gets ${want}`, async () => {
      failed = [];
      const got = await status(authority(appPort));
      tally.case(name, { refused: got === want });
      assert.equal(got, want, name);
      if (want !== '400' || !name.includes('hostname')) assert.ok(failed.length <= 1);
    });
  }

  test('policy sees only the TLS identity and the real source address, never baggage or forwarded claims', async () => {
    checked = [];
    const lie = {
      baggage: 'k8s.namespace.name=kube-system,k8s.pod.name=admin,service.name=istiod,k8s.cluster.name=other',
      forwarded: 'for="10.0.0.99:1234";host=istiod.istio-system.svc',
      'x-forwarded-client-cert': 'By=spiffe://cluster.local/ns/kube-system/sa/admin',
      'x-spiffe-id': 'spiffe://cluster.local/ns/kube-system/sa/admin',
    };
    const got = await status(`${POD_IP}:81`, lie);
    const seen = checked.at(-1);
    tally.case('identity claimed in baggage/forwarded headers', { refused: got === '401' && seen?.peerIdentity === clientId.identity });
    assert.equal(got, '401');
    assert.equal(seen?.peerIdentity, clientId.identity, 'the policy saw a claimed identity');
    assert.equal(seen?.srcIp.replace(/^::ffff:/, ''), '127.0.0.1', 'the policy saw a claimed source address');
  });

  test('the pod itself is still reachable through the same resolver (control case)', async () => {
    // the dial has no netns in this harness, so an allowed CONNECT ends in 503 "not enrolled", after policy passed
    const got = await status(`${POD_IP}:${appPort}`);
    assert.equal(got, '503');
    assert.ok(failed.some((f) => f.includes('not enrolled') || f.includes('connect')), failed.join('; '));
  });
});
