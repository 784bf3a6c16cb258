// The real addon's SOCK_SEQPACKET transport (ZDS) over unix sockets in a temp
// dir: framing, SCM_RIGHTS fd passing, truncation, EOF, backpressure, fd
// hygiene and a never-blocked event loop. Only the netns-fd tests are gated.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { Worker } from 'node:worker_threads';
import { NativeSocketClosedError, NativeSyscallError } from '../../src/native/errors.js';
import { loadNativeBinding } from '../../src/native/load.js';
import { SeqpacketServer, SeqpacketSocket, type SeqpacketMessage, type SeqpacketOptions } from '../../src/native/seqpacket.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';

const binding = loadNativeBinding();

function tempSock(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ambit-seqp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'zds.sock');
}

/** A listening server plus one connected pair (client, accepted). All closed after the test. */
async function pair(
  t: TestContext,
  opts: SeqpacketOptions = {},
): Promise<{ server: SeqpacketServer; client: SeqpacketSocket; peer: SeqpacketSocket; path: string }> {
  const sockPath = tempSock(t);
  const server = new SeqpacketServer(opts).listen(sockPath);
  t.after(() => server.close());
  const accepted = new Promise<SeqpacketSocket>((resolve) => server.once('connection', resolve));
  const client = SeqpacketSocket.connect(sockPath, opts);
  t.after(() => client.close());
  const peer = await accepted;
  t.after(() => peer.close());
  return { server, client, peer, path: sockPath };
}

/** Next `n` messages via the async iterator (which is then released). */
async function take(sock: SeqpacketSocket, n: number): Promise<SeqpacketMessage[]> {
  const out: SeqpacketMessage[] = [];
  if (n === 0) return out;
  for await (const m of sock) {
    out.push(m);
    if (out.length === n) break;
  }
  return out;
}

const fdCount = (): number => readdirSync('/proc/self/fd').length;

void test('messages round-trip in both directions', async (t) => {
  const { client, peer } = await pair(t);
  await client.send(Buffer.from('hello'));
  const [m1] = await take(peer, 1);
  assert.equal(m1?.data.toString(), 'hello');
  assert.deepEqual(m1?.fds, []);
  assert.equal(m1?.truncated, false);
  await peer.send(Buffer.from('world'));
  const [m2] = await take(client, 1);
  assert.equal(m2?.data.toString(), 'world');
});

void test('message boundaries are preserved: 3 sends give 3 receives', async (t) => {
  const { client, peer } = await pair(t);
  await Promise.all([client.send(Buffer.from('a')), client.send(Buffer.from('bb')), client.send(Buffer.from('ccc'))]);
  const got: string[] = [];
  await new Promise<void>((resolve) => {
    peer.on('message', (m: SeqpacketMessage) => {
      got.push(m.data.toString());
      if (got.length === 3) resolve();
    });
  });
  assert.deepEqual(got, ['a', 'bb', 'ccc']);
});

void test('an empty datagram is a message, not EOF; closing the peer gives EOF', async (t) => {
  const { client, peer } = await pair(t);
  await client.send(Buffer.alloc(0));
  await client.send(Buffer.from('x'));
  const msgs = await take(peer, 2);
  assert.deepEqual(
    msgs.map((m) => m.data.length),
    [0, 1],
  );
  const ended = new Promise<void>((resolve) => peer.once('end', resolve));
  const closed = new Promise<void>((resolve) => peer.once('close', resolve));
  client.close();
  // Like a stream, EOF is seen by reading: the iterator ends without a message.
  assert.deepEqual(await take(peer, 1), []);
  await ended;
  await closed;
  assert.equal(peer.isClosed, true);
  await assert.rejects(peer.send(Buffer.from('late')), NativeSocketClosedError);
});

void test('a message bigger than maxMessageBytes arrives truncated', async (t) => {
  const { client, peer } = await pair(t, { maxMessageBytes: 1024 });
  await client.send(Buffer.alloc(4096, 7));
  await client.send(Buffer.from('next'));
  const [big, next] = await take(peer, 2);
  assert.equal(big?.truncated, true);
  assert.equal(big?.data.length, 1024);
  assert.equal(next?.truncated, false);
  assert.equal(next?.data.toString(), 'next');
});

void test('a netns fd passed with a message arrives as a new fd of type CLONE_NEWNET', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const { client, peer } = await pair(t);
  const nsFd = openSync('/proc/self/ns/net', 'r');
  t.after(() => closeSync(nsFd));
  await client.send(Buffer.from('add'), nsFd);
  const [m] = await take(peer, 1);
  assert.equal(m?.fds.length, 1);
  const got = m?.fds[0] ?? -1;
  assert.notEqual(got, nsFd);
  assert.equal(binding.nsType(got), binding.CLONE_NEWNET);
  binding.closeFd(got);
  assert.equal(binding.nsType(nsFd), binding.CLONE_NEWNET, 'the sender keeps its fd');
});

void test('a message carrying 2 fds is received with both (so the protocol can NACK it)', async (t) => {
  const sockPath = tempSock(t);
  const server = new SeqpacketServer().listen(sockPath);
  t.after(() => server.close());
  const accepted = new Promise<SeqpacketSocket>((resolve) => server.once('connection', resolve));
  // Another implementation (CPython's socket.send_fds) sends 2 fds in one message.
  const py = spawn('python3', [
    '-c',
    [
      'import socket, os, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)',
      's.connect(sys.argv[1])',
      "a = os.open('/proc/self/ns/net', os.O_RDONLY)",
      "b = os.open('/dev/null', os.O_RDONLY)",
      "socket.send_fds(s, [b'two'], [a, b])",
      's.recv(16)',
    ].join('\n'),
    sockPath,
  ]);
  t.after(() => py.kill());
  const peer = await accepted;
  t.after(() => peer.close());
  const [m] = await take(peer, 1);
  assert.equal(m?.data.toString(), 'two');
  assert.equal(m?.truncated, false);
  assert.equal(m?.fds.length, 2);
  for (const fd of m?.fds ?? []) binding.closeFd(fd);
  await peer.send(Buffer.from('nack'));
  const code = await new Promise<number | null>((resolve) => py.once('exit', resolve));
  assert.equal(code, 0);
});

void test('sends beyond the socket buffer queue until writable and arrive in order', async (t) => {
  const { client, peer } = await pair(t);
  const count = 400;
  const sends = Array.from({ length: count }, (_, i) => client.send(Buffer.alloc(32 * 1024, i & 0xff)));
  // Nothing reads yet, so the kernel buffer fills and later sends wait for POLL_WRITABLE.
  await new Promise((resolve) => setTimeout(resolve, 20));
  const msgs = await take(peer, count);
  await Promise.all(sends);
  assert.equal(msgs.length, count);
  msgs.forEach((m, i) => {
    assert.equal(m.data.length, 32 * 1024);
    assert.equal(m.data[0], i & 0xff);
  });
});

void test('no fds leak over 500 fd passes and 20 connections', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const nsFd = openSync('/proc/self/ns/net', 'r');
  t.after(() => closeSync(nsFd));
  {
    // warm up: Node may lazily open fds of its own on the first use
    const { client, peer } = await pair(t);
    await client.send(Buffer.from('w'), nsFd);
    const [w] = await take(peer, 1);
    for (const fd of w?.fds ?? []) binding.closeFd(fd);
    client.close();
    peer.close();
  }
  const before = fdCount();
  const sockPath = tempSock(t);
  const server = new SeqpacketServer().listen(sockPath);
  for (let c = 0; c < 20; c++) {
    const accepted = new Promise<SeqpacketSocket>((resolve) => server.once('connection', resolve));
    const client = SeqpacketSocket.connect(sockPath);
    const peer = await accepted;
    const received = take(peer, 25);
    for (let i = 0; i < 25; i++) await client.send(Buffer.from(`m${i}`), nsFd);
    for (const m of await received) {
      assert.equal(m.fds.length, 1);
      for (const fd of m.fds) binding.closeFd(fd);
    }
    client.close();
    peer.close();
  }
  server.close();
  assert.equal(existsSync(sockPath), false, 'server.close removes its socket file');
  assert.equal(fdCount(), before);
});

void test('the event loop keeps ticking while a socket waits for messages', async (t) => {
  const { client, peer } = await pair(t);
  let ticks = 0;
  const iv = setInterval(() => ticks++, 5);
  t.after(() => clearInterval(iv));
  setTimeout(() => void client.send(Buffer.from('late')), 200);
  const [m] = await take(peer, 1);
  assert.equal(m?.data.toString(), 'late');
  assert.ok(ticks >= 10, `only ${ticks} interval ticks while waiting`);
});

void test('listen replaces a stale socket file but refuses to delete a regular file', async (t) => {
  const sockPath = tempSock(t);
  const fd = binding.seqpacketListen(sockPath, 4);
  binding.closeFd(fd); // leaves the socket file behind, like a crashed agent
  assert.ok(existsSync(sockPath));
  const server = new SeqpacketServer().listen(sockPath);
  t.after(() => server.close());
  const got = new Promise<SeqpacketSocket>((resolve) => server.once('connection', resolve));
  const client = SeqpacketSocket.connect(sockPath);
  t.after(() => client.close());
  (await got).close();

  const filePath = `${sockPath}.txt`;
  writeFileSync(filePath, 'keep me');
  assert.throws(() => new SeqpacketServer().listen(filePath), (err) => {
    assert.ok(err instanceof NativeSyscallError);
    assert.equal(err.errno, 'EEXIST');
    assert.equal(err.syscall, 'unlink');
    return true;
  });
  assert.ok(existsSync(filePath));
  assert.throws(() => SeqpacketSocket.connect(`${sockPath}.missing`), (err) => {
    assert.ok(err instanceof NativeSyscallError);
    assert.equal(err.errno, 'ENOENT');
    return true;
  });
});

void test('raw binding: EAGAIN is -1/null, bad arguments are TypeErrors, Poller follows its rules', async (t) => {
  const sockPath = tempSock(t);
  const lfd = binding.seqpacketListen(sockPath, 4);
  t.after(() => binding.closeFd(lfd));
  assert.equal(binding.seqpacketAccept(lfd), -1);
  const cfd = binding.seqpacketConnect(sockPath);
  t.after(() => binding.closeFd(cfd));
  const afd = binding.seqpacketAccept(lfd);
  assert.ok(afd >= 0);
  t.after(() => binding.closeFd(afd));
  assert.equal(binding.seqpacketRecv(afd, 16), null);
  assert.throws(() => binding.seqpacketSend(cfd, 'str' as unknown as Buffer), TypeError);
  assert.throws(() => binding.seqpacketRecv(afd, 0), TypeError);
  assert.throws(() => new binding.Poller(-1, () => undefined), TypeError);

  const poller = new binding.Poller(afd, () => undefined);
  assert.equal(poller.fd, afd);
  assert.throws(() => poller.start(16), TypeError);
  const ready = new Promise<[number, number]>((resolve) => {
    const p2 = new binding.Poller(cfd, (status, events) => {
      p2.close();
      resolve([status, events]);
    });
    p2.start(2);
  });
  assert.deepEqual(await ready, [0, 2]);
  poller.close();
  poller.close();
  assert.throws(() => poller.start(1), /closed/);
  assert.equal(binding.seqpacketSend(cfd, Buffer.from('x')), 1);
  const r = binding.seqpacketRecv(afd, 16);
  assert.ok(r !== null && r.eof !== true);
  assert.equal(r.data.toString(), 'x');
});

void test('a worker terminated with live pollers tears down cleanly (env cleanup hook)', async (t) => {
  const sockPath = tempSock(t);
  const moduleUrl = new URL('../../src/native/seqpacket.js', import.meta.url).href;
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.moduleUrl).then(({ SeqpacketServer, SeqpacketSocket }) => {
      const server = new SeqpacketServer().listen(workerData.path);
      server.on('connection', (c) => c.on('message', () => undefined));
      const client = SeqpacketSocket.connect(workerData.path);
      client.on('message', () => undefined);
      void client.send(Buffer.from('x')).then(() => parentPort.postMessage('ready'));
    });`;
  const worker = new Worker(code, { eval: true, workerData: { moduleUrl, path: sockPath } });
  await new Promise((resolve, reject) => (worker.once('message', resolve), worker.once('error', reject)));
  await worker.terminate();
  // The main thread's loop and addon instance are unaffected.
  const { client, peer } = await pair(t);
  await client.send(Buffer.from('still fine'));
  assert.equal((await take(peer, 1))[0]?.data.toString(), 'still fine');
});
