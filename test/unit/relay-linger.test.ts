/**
 * Abortive close of relayed app sockets (src/native/linger.ts, src/agent/relay.ts)
 * over real loopback sockets and the real addon:
 * - arming sets SO_LINGER {on, 0}; a graceful end() turns it off right before
 *   the FIN, so a slow reader still gets every byte of a transfer the relay
 *   ended (with linger left on, the close would discard the unsent tail: RST);
 * - resetSocket() resets even after our FIN went out;
 * - relayHbone: RST_STREAM or a lost session resets the app (ECONNRESET),
 *   a clean END_STREAM ends it with every byte;
 * - with the fake binding and with an addon lacking setLinger, nothing breaks.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http2 from 'node:http2';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { armAppSocket, relayHbone, relayTcp } from '../../src/agent/relay.js';
import type { NativeBinding } from '../../src/native/binding.js';
import { FakeNativeBinding } from '../../src/native/fake.js';
import { abortiveCloseArmed, disarmAbortiveClose, resetSocket } from '../../src/native/linger.js';
import { loadNativeBinding } from '../../src/native/load.js';
import { socketFd } from '../../src/native/sockets.js';

let native: NativeBinding;
let server: Server;
let port = 0;
const waiting: Array<(s: Socket) => void> = [];
const all: Socket[] = [];

before(async () => {
  native = loadNativeBinding();
  server = createServer({ allowHalfOpen: true }, (s) => {
    all.push(s);
    waiting.shift()?.(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  for (const s of all) s.destroy();
  server.close();
  await once(server, 'close');
});

/** A connected loopback pair [client, accepted], both allowHalfOpen. */
async function pair(): Promise<[Socket, Socket]> {
  const accepted = new Promise<Socket>((resolve) => waiting.push(resolve));
  const c = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  all.push(c);
  await once(c, 'connect');
  return [c, await accepted];
}

function payload(n: number): Buffer {
  return randomBytes(n);
}

/**
 * Reads `s` to its end (or error): nothing for `delayMs`, then (if `throttle`)
 * one chunk per 2 ms, so the sender's kernel queue still holds unsent bytes
 * when the relay ends the connection. Resolves with what arrived and how it ended.
 */
function slowRead(s: Socket, delayMs: number, throttle = false): Promise<{ data: Buffer; how: 'end' | string }> {
  s.pause();
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      if (!throttle) return;
      s.pause();
      setTimeout(() => s.resume(), 2);
    });
    s.once('end', () => resolve({ data: Buffer.concat(chunks), how: 'end' }));
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ data: Buffer.concat(chunks), how: e.code ?? e.message }));
    setTimeout(() => s.resume(), delayMs);
  });
}

describe('abortive close of relayed app sockets', () => {
  test('arming sets SO_LINGER {on, 0}; end() turns it off before the FIN', async () => {
    const [c, s] = await pair();
    assert.equal(armAppSocket(native, s), true);
    assert.deepEqual(native.getLinger(socketFd(s)), { on: true, seconds: 0 });
    assert.equal(abortiveCloseArmed(s), true);
    s.end('bye');
    await once(s, 'finish');
    assert.deepEqual(native.getLinger(socketFd(s)), { on: false, seconds: 0 });
    assert.equal(abortiveCloseArmed(s), false);
    c.resume();
    await once(c, 'end');
  });

  for (const splice of [false, true]) {
    test(`relayTcp (${splice ? 'splice' : 'copy'}): a slow reader gets every byte of a transfer the relay ended`, async () => {
      const [appA, relayA] = await pair();
      const [relayB, appB] = await pair();
      const relayed = relayTcp(relayA, relayB, native, splice);
      const body = payload(32 * 1024 * 1024);
      appA.end(); // the request is complete at once: the relay's A socket closes as soon as its end is out
      const reading = slowRead(appA, 300, true);
      appB.end(body);
      const got = await reading;
      assert.equal(got.how, 'end');
      assert.equal(got.data.length, body.length);
      assert.ok(got.data.equals(body), 'payload differs');
      const r = await relayed;
      assert.equal(r.error, undefined);
      assert.equal(r.bytesBtoA, body.length);
    });
  }

  test('resetSocket resets a socket whose FIN already went out (libuv alone cannot)', async () => {
    const [c, s] = await pair();
    armAppSocket(native, s);
    c.resume();
    const finished = once(s, 'finish');
    s.end();
    await Promise.all([once(c, 'end'), finished]);
    resetSocket(s);
    // The peer still writes: the reset makes that fail at once instead of being absorbed.
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      c.once('error', resolve);
      const tick = setInterval(() => c.write(Buffer.alloc(1024)), 5);
      c.once('close', () => clearInterval(tick));
    });
    assert.match(err.code ?? '', /ECONNRESET|EPIPE/);
  });

  test('disarm is idempotent and unarmed sockets are left alone', async () => {
    const [c, s] = await pair();
    disarmAbortiveClose(s);
    assert.deepEqual(native.getLinger(socketFd(s)), { on: false, seconds: 0 });
    armAppSocket(native, s);
    disarmAbortiveClose(s);
    disarmAbortiveClose(s);
    assert.deepEqual(native.getLinger(socketFd(s)), { on: false, seconds: 0 });
    c.destroy();
    s.destroy();
  });

  test('fake binding records the option; an addon without setLinger leaves the socket working', async () => {
    const fake = new FakeNativeBinding();
    const [c, s] = await pair();
    assert.equal(armAppSocket(fake, s), true);
    assert.deepEqual(fake.getLinger(socketFd(s)), { on: true, seconds: 0 });
    const stale = Object.create(native, { setLinger: { value: undefined } }) as NativeBinding;
    const [c2, s2] = await pair();
    assert.equal(armAppSocket(stale, s2), false);
    s2.end('ok');
    c2.resume();
    await once(c2, 'end');
    for (const x of [c, s, c2, s2]) x.destroy();
  });
});

describe('relayHbone: remote failures reset the app, a clean end ends it', () => {
  let h2: http2.Http2Server;
  let h2Port = 0;
  let onStream: (stream: http2.ServerHttp2Stream) => void = () => undefined;
  const rawSockets = new Set<Socket>();
  before(async () => {
    h2 = http2.createServer();
    h2.on('connection', (sock: Socket) => rawSockets.add(sock.once('close', () => rawSockets.delete(sock))));
    h2.on('stream', (st) => onStream(st));
    h2.on('session', (sess) => sess.on('error', () => undefined));
    h2.listen(0, '127.0.0.1');
    await once(h2, 'listening');
    h2Port = (h2.address() as AddressInfo).port;
  });
  after(() => h2.close());

  async function tunnel(): Promise<{ app: Socket; session: http2.ClientHttp2Session; remote: http2.ServerHttp2Stream; done: ReturnType<typeof relayHbone> }> {
    const [app, relayed] = await pair();
    const remote = new Promise<http2.ServerHttp2Stream>((resolve) => (onStream = resolve));
    const session = http2.connect(`http://127.0.0.1:${h2Port}`);
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'POST', ':path': '/t' });
    stream.on('error', () => undefined);
    const r = await remote;
    r.on('error', () => undefined);
    r.respond({ ':status': 200 });
    await once(stream, 'response');
    return { app, session, remote: r, done: relayHbone(relayed, stream, native) };
  }

  // What a peer agent does when its side fails (h2Side.reset: RST_STREAM alone), a peer agent that
  // dies, and our own agent dropping its pool at the end of a drain (Node then ends the stream with
  // rstCode 0, which must not pass for an END_STREAM). `halfClosed`: the app already sent its FIN.
  type Tunnel = Awaited<ReturnType<typeof tunnel>>;
  const cases: Array<[string, (t: Tunnel) => void, boolean]> = [
    ['RST_STREAM from the peer', (t) => t.remote.destroy(new Error('upstream reset')), false],
    ['the peer agent process is gone (its TCP connection closes)', () => rawSockets.forEach((x) => x.destroy()), false],
    ['the peer session is destroyed', (t) => t.remote.session?.destroy(), false],
    ['the peer session is destroyed, app half-closed', (t) => t.remote.session?.destroy(), true],
    ['our session is destroyed (pool dropped at the drain deadline)', (t) => t.session.destroy(undefined, http2.constants.NGHTTP2_CANCEL), false],
    ['our session is destroyed, app half-closed', (t) => t.session.destroy(undefined, http2.constants.NGHTTP2_CANCEL), true],
  ];
  for (const [name, fail, halfClosed] of cases) {
    test(`${name}: the app sees ECONNRESET, not a clean end`, async () => {
      const t = await tunnel();
      try {
        if (halfClosed) {
          t.remote.resume();
          t.app.end();
          await once(t.remote, 'end');
        }
        let seen = 0;
        t.app.on('data', (c: Buffer) => (seen += c.length));
        const reading = slowRead(t.app, 0);
        // Less than a flow-control window, and all of it read: the stream is idle, not backed up.
        t.remote.write(payload(16 * 1024));
        while (seen < 16 * 1024) await new Promise((r) => setTimeout(r, 5));
        fail(t);
        const got = await reading;
        assert.equal(got.how, 'ECONNRESET', `the app saw ${got.how} after ${got.data.length} bytes`);
        assert.ok((await t.done).error, 'the relay reports the failure');
      } finally {
        t.session.destroy();
      }
    });
  }

  for (const goaway of [undefined, 'peer', 'ours'] as const) {
    test(`a clean END_STREAM ends the app with every byte (slow reader${goaway ? `, ${goaway === 'peer' ? 'the peer closes its' : 'we close our'} session gracefully` : ''})`, async () => {
      const t = await tunnel();
      try {
        const body = payload(4 * 1024 * 1024);
        t.app.end();
        const reading = slowRead(t.app, 300, true);
        t.remote.resume();
        t.remote.end(body);
        // A draining agent (either side): GOAWAY, then the session ends once this stream is done.
        if (goaway === 'peer') t.remote.session?.close();
        if (goaway === 'ours') t.session.close();
        const got = await reading;
        assert.equal(got.how, 'end');
        assert.ok(got.data.equals(body), `payload differs (${got.data.length} bytes)`);
        assert.equal((await t.done).error, undefined);
      } finally {
        t.session.destroy();
      }
    });
  }
});
