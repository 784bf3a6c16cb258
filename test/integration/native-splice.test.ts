// The splice pump over loopback TCP: a client talks to a front server whose
// accepted socket is spliced to a connection to an upstream server.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { FakeNativeBinding } from '../../src/native/fake.js';
import { splicePump, type SplicePumpOptions, type SpliceResult } from '../../src/native/splice.js';

interface Rig {
  client: net.Socket;
  upstream: net.Socket;
  result: Promise<SpliceResult>;
}

async function listen(t: TestContext, onConn: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, onConn);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

/** client → front (spliced) → upstream. `early` is written by the client before the pump starts. */
async function rig(t: TestContext, opts: SplicePumpOptions = {}, early?: Buffer): Promise<Rig> {
  let upstreamResolve!: (s: net.Socket) => void;
  const upstreamP = new Promise<net.Socket>((resolve) => (upstreamResolve = resolve));
  const upPort = await listen(t, (s) => {
    t.after(() => s.destroy());
    upstreamResolve(s);
  });
  let resultResolve!: (r: { p: Promise<SpliceResult> }) => void;
  const resultP = new Promise<{ p: Promise<SpliceResult> }>((resolve) => (resultResolve = resolve));
  const frontPort = await listen(t, (front) => {
    front.pause();
    const up = net.connect({ port: upPort, host: '127.0.0.1', allowHalfOpen: true });
    up.once('connect', () => {
      // Give `early` bytes time to land in Node's buffer so the prefix path runs.
      setTimeout(() => resultResolve({ p: splicePump(front, up, opts) }), early ? 50 : 0);
    });
  });
  const client = net.connect({ port: frontPort, host: '127.0.0.1', allowHalfOpen: true });
  t.after(() => client.destroy());
  await new Promise((resolve) => client.once('connect', resolve));
  if (early) client.write(early);
  const upstream = await upstreamP;
  return { client, upstream, result: (await resultP).p };
}

/** Collects until 'end'; resolves with sha256 and length. */
function collect(sock: net.Socket): Promise<{ hash: string; length: number }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let length = 0;
    sock.on('data', (c: Buffer) => {
      h.update(c);
      length += c.length;
    });
    sock.once('end', () => resolve({ hash: h.digest('hex'), length }));
    sock.once('error', reject);
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function bothWays(t: TestContext, opts: SplicePumpOptions): Promise<SpliceResult> {
  const early = Buffer.from('early bytes Node read before the pump');
  const { client, upstream, result } = await rig(t, opts, early);
  const up = randomBytes(16 * 1024 * 1024);
  const down = randomBytes(16 * 1024 * 1024);
  const atUpstream = collect(upstream);
  const atClient = collect(client);
  client.end(up);
  upstream.end(down);
  const [u, d, r] = await Promise.all([atUpstream, atClient, result]);
  assert.equal(u.length, early.length + up.length);
  assert.equal(u.hash, sha(Buffer.concat([early, up])));
  assert.equal(d.length, down.length);
  assert.equal(d.hash, sha(down));
  assert.equal(r.error, undefined);
  assert.equal(r.aToB, early.length + up.length);
  assert.equal(r.bToA, down.length);
  return r;
}

void test('16 MiB each way arrive intact through splice', async (t) => {
  const before = readdirSync('/proc/self/fd').length;
  const r = await bothWays(t, {});
  assert.equal(r.mode, 'splice');
  // pipes and dup'd fds are all closed again (sockets of the rig are closed by t.after later)
  assert.ok(readdirSync('/proc/self/fd').length <= before + 4);
});

void test('16 MiB each way arrive intact through the JS copy fallback (splice unavailable)', async (t) => {
  const r = await bothWays(t, { binding: new FakeNativeBinding() });
  assert.equal(r.mode, 'copy');
});

void test('half-close: EOF from the client reaches upstream, which can still answer', async (t) => {
  const { client, upstream, result } = await rig(t);
  const atClient = collect(client);
  client.end('ping');
  const got = await collect(upstream);
  assert.equal(got.length, 4);
  // Upstream saw FIN and still writes back over the same connection.
  upstream.end('pong after your FIN');
  const back = await atClient;
  assert.equal(back.hash, sha(Buffer.from('pong after your FIN')));
  const r = await result;
  assert.equal(r.error, undefined);
  assert.deepEqual([r.aToB, r.bToA, r.mode], [4, 19, 'splice']);
});

void test('a reset on one side resets the other and reports the error', async (t) => {
  const { client, upstream, result } = await rig(t);
  const upstreamErr = new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    upstream.once('error', resolve);
    upstream.once('close', () => resolve(undefined));
  });
  upstream.resume();
  client.write('some data');
  await new Promise((resolve) => setTimeout(resolve, 50));
  client.resetAndDestroy();
  const r = await result;
  assert.ok(r.error, 'the pump reports the reset');
  assert.match(r.error.message, /ECONNRESET|EPIPE/);
  assert.equal((await upstreamErr)?.code, 'ECONNRESET');
});

void test('the event loop stays responsive while splicing', async (t) => {
  const { client, upstream, result } = await rig(t);
  let ticks = 0;
  const iv = setInterval(() => ticks++, 5);
  t.after(() => clearInterval(iv));
  const atUpstream = collect(upstream);
  const atClient = collect(client);
  // Paced writes over ~200 ms.
  for (let i = 0; i < 20; i++) {
    client.write(randomBytes(64 * 1024));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  client.end();
  upstream.end();
  await Promise.all([atUpstream, atClient, result]);
  assert.ok(ticks >= 10, `only ${ticks} ticks`);
});
