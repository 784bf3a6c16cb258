/**
 * Every limit in SECURITY.md's table must have a metric that moves when the
 * limit refuses something (issue 9, "Limits"). A real HboneServer on
 * loopback with small limits is pushed over each one, and the counter named
 * in the table, ambit_hbone_inbound_refused_total{reason}, must rise by the
 * expected reason: max_streams, headers_refused (header list and header
 * field), idle_timeout after a GOAWAY for an oversized frame, handshake_timeout (TLS, and the HTTP/2 preface), idle_timeout,
 * continuation_flood, flood, connect_failed (upstream connect timeout) and
 * bad_authority (over-long :authority). The per-pod pending-connection cap
 * (PendingConnections) is checked for both directions with its gauge and
 * counter. Loopback only.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Socket, connect as netConnect, createServer, type AddressInfo, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { PendingConnections } from '../../src/agent/pending-connections.js';
import { silentLogger } from '../../src/common/logger.js';
import { HboneServer, sessionErrorReason, type InboundRequest } from '../../src/hbone/server.js';
import { secureContextFor, type TlsIdentity } from '../../src/hbone/tls-identity.js';
import type { LocalWorkload } from '../../src/state/local-config.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';
import { FRAME, RawH2, frame, headerBlock } from './lib/h2-raw.js';
import { Tally } from './lib/tally.js';

const TD = 'cluster.local';
const MAX_STREAMS = 10;
const HANDSHAKE_TIMEOUT_MS = 300;
const IDLE_TIMEOUT_MS = 800;
const CONNECT_TIMEOUT_MS = 300;
/** A port the resolver sends to a socket that never connects (upstream connect timeout). */
const BLACKHOLE_PORT = 9;
const tally = new Tally('limits');

let serverId: TlsIdentity;
let clientId: TlsIdentity;
let registry: Registry;
let hbone: HboneServer;
let port: number;
let echo: Server;
let echoPort: number;
const requests: InboundRequest[] = [];

before(async () => {
  const ca = await ephemeralCa(TD);
  serverId = await issueIdentity(ca, TD, 'default', 'server');
  clientId = await issueIdentity(ca, TD, 'default', 'client');
  echo = createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as AddressInfo).port;
  registry = new Registry();
  hbone = new HboneServer({
    identityFor: () => serverId,
    resolveTarget: (req) => {
      requests.push(req);
      return { kind: 'allow', host: req.authority.host, port: req.authority.port };
    },
    // the blackhole port gets a socket that never connects: only the connect timeout ends it
    dial: (t) => (t.port === BLACKHOLE_PORT ? new Socket() : netConnect({ host: t.host, port: t.port, allowHalfOpen: true })),
    logger: silentLogger(),
    registry,
    maxConcurrentStreams: MAX_STREAMS,
    handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
    idleTimeoutMs: IDLE_TIMEOUT_MS,
    upstreamConnectTimeoutMs: CONNECT_TIMEOUT_MS,
  });
  port = ((await hbone.listen(0, '127.0.0.1')).address() as AddressInfo).port;
});

after(async () => {
  tally.print();
  const lines = (await registry.metrics()).split('\n').filter((l) => l.startsWith('ambit_hbone_inbound_refused_total{'));
  console.log(`limits: refusals by reason: ${lines.map((l) => l.replace('ambit_hbone_inbound_refused_total', '')).join(' ')}`);
  hbone.destroy();
  await new Promise((r) => echo.close(r));
});

async function refused(reason: string): Promise<number> {
  const v = (await registry.getSingleMetric('ambit_hbone_inbound_refused_total')?.get())?.values.find((x) => x.labels.reason === reason);
  return v?.value ?? 0;
}

/** Waits (up to `ms`) until the reason's counter passes `before`; returns the increase. */
async function rose(reason: string, before: number, ms = 3000): Promise<number> {
  const t0 = Date.now();
  while ((await refused(reason)) <= before && Date.now() - t0 < ms) await sleep(20);
  return (await refused(reason)) - before;
}

const connectTo = (p: number = echoPort, host = '127.0.0.1'): Array<[string, string]> => [
  [':method', 'CONNECT'],
  [':authority', `${host}:${p}`],
];

/**
 * Opens a raw HTTP/2 connection and waits until the server has processed our
 * ACK of its SETTINGS (so its advertised limits apply): RawH2 ACKs the
 * server's SETTINGS on receipt, and a PING sent after that is answered only
 * once the server read everything before it.
 */
async function open(): Promise<RawH2> {
  const c = await RawH2.open(port, clientId);
  const until = async (what: string, ok: () => boolean): Promise<void> => {
    const t0 = Date.now();
    while (!ok()) {
      if (Date.now() - t0 > 5000 || c.isClosed) throw new Error(`no ${what} from the server`);
      await sleep(5);
    }
  };
  await until('SETTINGS', () => c.frames.some((f) => f.type === FRAME.SETTINGS && (f.flags & 1) === 0));
  await c.write(frame(FRAME.PING, 0, 0, Buffer.from('rzmkping')));
  await until('PING ACK', () => c.frames.some((f) => f.type === FRAME.PING && (f.flags & 1) === 1));
  return c;
}

async function status(c: RawH2, stream: number, ms = 2000): Promise<number | undefined> {
  const t0 = Date.now();
  for (;;) {
    const h = c.frames.find((f) => f.type === FRAME.HEADERS && f.stream === stream);
    if (h) {
      // ":status" comes first as an indexed field from the static table (0x88 = 200, 0x8c/0x8d.. others) or a literal
      const b = h.payload[0] ?? 0;
      const indexed: Record<number, number> = { 0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500 };
      if (indexed[b] !== undefined) return indexed[b];
      const m = /(\d{3})/.exec(h.payload.subarray(0, 8).toString('latin1'));
      return m ? Number(m[1]) : -1;
    }
    if (Date.now() - t0 > ms || c.isClosed) return undefined;
    await sleep(10);
  }
}

describe('HBONE server limits each move their refusal metric', () => {
  test(`concurrent streams: stream ${MAX_STREAMS + 1} on one connection is max_streams`, async () => {
    const before = await refused('max_streams');
    const seen = requests.length;
    const c = await open();
    try {
      await c.write(Buffer.concat(Array.from({ length: MAX_STREAMS + 2 }, (_, i) => c.headers(2 * i + 1, connectTo()))));
      await c.waitClosed(2000);
      const up = await rose('max_streams', before);
      tally.case('streams over the cap', { refused: up >= 1 });
      assert.ok(requests.length - seen <= MAX_STREAMS, `${requests.length - seen} streams reached the resolver`);
      assert.equal(up, 1, 'max_streams not counted (once per session)');
      assert.ok(c.isClosed, 'the connection over the cap stayed open');
    } finally {
      c.destroy();
    }
  });

  test('header list over 64 KiB (many small fields): the stream never reaches us and is counted as headers_refused at the next stream', async () => {
    const before = await refused('headers_refused');
    const seen = requests.length;
    const c = await open();
    try {
      const fields = Array.from({ length: 100 }, (_, i): [string, string] => [`x-h${i}`, 'v'.repeat(1000)]);
      await c.write(c.headers(1, [...connectTo(7), ...fields]));
      await sleep(100);
      await c.write(c.headers(3, connectTo()));
      assert.equal(await status(c, 3), 200, 'the next stream was not served');
      const up = await rose('headers_refused', before);
      tally.case('header list over the limit', { refused: up === 1 });
      assert.equal(requests.slice(seen).filter((r) => r.authority.port === 7).length, 0, 'the oversized header list reached the resolver');
      assert.equal(up, 1);
      assert.ok(c.frames.some((f) => f.type === FRAME.RST_STREAM && f.stream === 1), 'no RST_STREAM for the oversized stream');
    } finally {
      c.destroy();
    }
  });

  test('one header field over the HPACK limit: GOAWAY, then the dead session is reaped: headers_refused and idle_timeout', async () => {
    const [hrBefore, idleBefore] = [await refused('headers_refused'), await refused('idle_timeout')];
    const c = await open();
    try {
      await c.write(c.headers(1, [...connectTo(7), ['x-big', 'b'.repeat(200 * 1024)]]));
      await c.waitClosed(IDLE_TIMEOUT_MS + 2000);
      const [hr, idle] = [await rose('headers_refused', hrBefore), await rose('idle_timeout', idleBefore)];
      tally.case('header field over the limit', { refused: hr === 1 });
      assert.ok(c.goaway() !== undefined, 'no GOAWAY');
      assert.ok(c.isClosed, 'the GOAWAY-ed session was not reaped');
      assert.equal(hr, 1, 'headers_refused not counted');
      assert.equal(idle, 1, 'idle_timeout not counted');
    } finally {
      c.destroy();
    }
  });

  test('a frame over the 1 MiB frame size: GOAWAY FRAME_SIZE_ERROR, then the dead session is reaped: idle_timeout', async () => {
    const before = await refused('idle_timeout');
    const c = await open();
    try {
      await c.write(frame(FRAME.DATA, 0, 1, Buffer.alloc(2 * 1024 * 1024)));
      await c.waitClosed(IDLE_TIMEOUT_MS + 2000);
      const up = await rose('idle_timeout', before);
      tally.case('frame over the size limit', { refused: c.goaway()?.code === 6 });
      assert.equal(c.goaway()?.code, 6, 'no GOAWAY FRAME_SIZE_ERROR');
      assert.ok(c.isClosed, 'the GOAWAY-ed session was not reaped');
      assert.equal(up, 1);
    } finally {
      c.destroy();
    }
  });

  test('TLS handshake never finished: handshake_timeout', async () => {
    const before = await refused('handshake_timeout');
    const s = netConnect(port, '127.0.0.1');
    s.on('error', () => undefined);
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    try {
      s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
      const done = await Promise.race([closed.then(() => true), sleep(HANDSHAKE_TIMEOUT_MS * 6).then(() => false)]);
      const up = await rose('handshake_timeout', before);
      tally.case('partial TLS handshake', { refused: done });
      assert.ok(done, 'a partial handshake was held open');
      assert.equal(up, 1);
    } finally {
      s.destroy();
    }
  });

  test('TLS done but no HTTP/2 preface: handshake_timeout', async () => {
    const before = await refused('handshake_timeout');
    const tls = tlsConnect({ host: '127.0.0.1', port, secureContext: secureContextFor(clientId), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    tls.on('error', () => undefined);
    tls.on('data', () => undefined);
    const closed = new Promise<void>((r) => tls.once('close', () => r()));
    try {
      const done = await Promise.race([closed.then(() => true), sleep(HANDSHAKE_TIMEOUT_MS * 6).then(() => false)]);
      const up = await rose('handshake_timeout', before);
      tally.case('no HTTP/2 preface', { refused: done });
      assert.ok(done);
      assert.equal(up, 1);
    } finally {
      tls.destroy();
    }
  });

  test('a session with no stream and no traffic: idle_timeout', async () => {
    const before = await refused('idle_timeout');
    const c = await open();
    try {
      const closed = await c.waitClosed(IDLE_TIMEOUT_MS * 4);
      const up = await rose('idle_timeout', before);
      tally.case('idle session', { refused: closed });
      assert.ok(closed, 'an idle session was held open');
      assert.equal(up, 1);
    } finally {
      c.destroy();
    }
  });

  test('CONTINUATION flood: continuation_flood', async () => {
    const before = await refused('continuation_flood');
    const c = await open();
    try {
      await c.write(frame(FRAME.HEADERS, 0, 1, headerBlock(connectTo())));
      const cont = frame(FRAME.CONTINUATION, 0, 1, headerBlock([['x-junk', 'j'.repeat(100)]]));
      for (let i = 0; i < 50 && !c.isClosed; i++) await c.write(Buffer.concat(Array.from({ length: 100 }, () => cont)));
      await c.waitClosed(2000);
      const up = await rose('continuation_flood', before);
      tally.case('CONTINUATION flood', { refused: up === 1 });
      assert.ok(c.isClosed);
      assert.equal(up, 1);
    } finally {
      c.destroy();
    }
  });

  test('PING flood from a client that never reads the ACKs: flood', async () => {
    const before = await refused('flood');
    const c = await open();
    try {
      c.tls.pause();
      const chunk = Buffer.concat(Array.from({ length: 1000 }, () => frame(FRAME.PING, 0, 0, Buffer.alloc(8, 7))));
      const t0 = Date.now();
      while (!c.isClosed && Date.now() - t0 < 8000) await Promise.race([c.write(chunk), sleep(500)]);
      c.tls.resume();
      await c.waitClosed(2000);
      const up = await rose('flood', before);
      tally.case('PING flood', { refused: up === 1 });
      assert.ok(c.isClosed);
      assert.equal(up, 1);
    } finally {
      c.destroy();
    }
  });

  test('upstream connect timeout: 503 and connect_failed', async () => {
    const before = await refused('connect_failed');
    const c = await open();
    try {
      await c.write(c.headers(1, connectTo(BLACKHOLE_PORT)));
      const t0 = Date.now();
      const st = await status(c, 1, CONNECT_TIMEOUT_MS * 10);
      const took = Date.now() - t0;
      const up = await rose('connect_failed', before);
      tally.case('upstream connect timeout', { refused: st === 503 });
      assert.equal(st, 503);
      assert.ok(took >= CONNECT_TIMEOUT_MS - 50, `answered after ${took} ms, before the timeout`);
      assert.equal(up, 1);
    } finally {
      c.destroy();
    }
  });

  test(':authority over 64 characters: 400 and bad_authority', async () => {
    const before = await refused('bad_authority');
    const c = await open();
    try {
      await c.write(c.headers(1, [
        [':method', 'CONNECT'],
        [':authority', `${'1'.repeat(70)}:80`],
      ]));
      const st = await status(c, 1);
      const up = await rose('bad_authority', before);
      tally.case('long authority', { refused: st === 400 });
      assert.equal(st, 400);
      assert.equal(up, 1);
    } finally {
      c.destroy();
    }
  });

  test('session errors are classified by what nghttp2/Node reported', () => {
    const e = (code: string, message: string): Error & { code: string } => Object.assign(new Error(message), { code });
    assert.equal(sessionErrorReason(e('ERR_HTTP2_ERROR', 'Protocol error'), true), 'max_streams');
    assert.equal(sessionErrorReason(e('ERR_HTTP2_TOO_MANY_INVALID_FRAMES', 'Too many invalid HTTP/2 frames'), true), 'max_streams');
    assert.equal(sessionErrorReason(e('ERR_HTTP2_TOO_MANY_INVALID_FRAMES', 'Too many invalid HTTP/2 frames'), false), 'invalid_frames');
    assert.equal(sessionErrorReason(e('ERR_HTTP2_ERROR', 'Flooding was detected in this HTTP/2 session, and it must be closed'), false), 'flood');
    assert.equal(sessionErrorReason(e('ERR_HTTP2_ERROR', 'Too many CONTINUATION frames following a HEADER frame'), false), 'continuation_flood');
    assert.equal(sessionErrorReason(e('ERR_HTTP2_ERROR', 'Protocol error'), false), 'session_error');
  });

  test('a good client is still served after all of it', async () => {
    const c = await open();
    try {
      await c.write(c.headers(1, connectTo()));
      assert.equal(await status(c, 1), 200);
    } finally {
      c.destroy();
    }
  });
});

describe('per-pod pending-connection cap, by direction', () => {
  const pod = (name: string): LocalWorkload => ({ uid: `uid-${name}`, name, namespace: 'mesh' }) as unknown as LocalWorkload;
  const sock = (): Socket & EventEmitter => new EventEmitter() as unknown as Socket & EventEmitter;

  test('each direction has its own cap, gauge and refusal counter', async () => {
    const reg = new Registry();
    const p = new PendingConnections({ maxPerPod: 2, registry: reg });
    const a = pod('a');
    const out = [sock(), sock(), sock()];
    const admittedOut = out.map((s) => p.admit(a, s, 'outbound'));
    assert.deepEqual(admittedOut.map((r) => r !== undefined), [true, true, false]);
    // the outbound cap does not touch inbound, and another pod is separate
    const inb = [sock(), sock(), sock(), sock()];
    assert.deepEqual(inb.map((s) => p.admit(a, s, 'inbound') !== undefined), [true, true, false, false]);
    assert.ok(p.admit(pod('b'), sock(), 'inbound'));
    const text = await reg.metrics();
    const val = (name: string, labels: string[]): number => {
      const l = text.split('\n').find((x) => x.startsWith(`${name}{`) && labels.every((w) => x.includes(w)));
      return l ? Number(l.slice(l.lastIndexOf(' ') + 1)) : 0;
    };
    assert.equal(val('ambit_pending_connections', ['pod="mesh/a"', 'direction="outbound"']), 2);
    assert.equal(val('ambit_pending_connections', ['pod="mesh/a"', 'direction="inbound"']), 2);
    assert.equal(val('ambit_pending_connections_refused_total', ['pod="mesh/a"', 'direction="outbound"']), 1);
    assert.equal(val('ambit_pending_connections_refused_total', ['pod="mesh/a"', 'direction="inbound"']), 2);
    assert.equal(val('ambit_pending_connections_refused_total', ['pod="mesh/b"', 'direction="inbound"']), 0);
    // release by function (idempotent) and by close
    admittedOut[0]?.();
    admittedOut[0]?.();
    inb[0]?.emit('close');
    inb[1]?.emit('close');
    assert.equal(p.count(a, 'outbound'), 1);
    assert.equal(p.count(a, 'inbound'), 0);
    assert.ok(p.admit(a, sock(), 'inbound'), 'a released slot is not reusable');
    tally.case('pending cap by direction', { refused: true });
  });
});
