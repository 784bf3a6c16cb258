// SeqpacketServer/SeqpacketSocket logic against FakeNativeBinding: no addon,
// no real sockets. The integration test covers the real thing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NativeSocketClosedError, NativeSyscallError } from '../../src/native/errors.js';
import { FakeNativeBinding, fakeNativeError } from '../../src/native/fake.js';
import { SeqpacketServer, SeqpacketSocket, type SeqpacketMessage } from '../../src/native/seqpacket.js';

async function fakePair(fake: FakeNativeBinding, maxMessageBytes?: number): Promise<[SeqpacketServer, SeqpacketSocket, SeqpacketSocket]> {
  const opts = maxMessageBytes === undefined ? { binding: fake } : { binding: fake, maxMessageBytes };
  const server = new SeqpacketServer(opts).listen('/fake/zds.sock');
  const accepted = new Promise<SeqpacketSocket>((resolve) => server.once('connection', resolve));
  const client = SeqpacketSocket.connect('/fake/zds.sock', opts);
  return [server, client, await accepted];
}

async function take(sock: SeqpacketSocket, n: number): Promise<SeqpacketMessage[]> {
  const out: SeqpacketMessage[] = [];
  for await (const m of sock) {
    out.push(m);
    if (out.length === n) break;
  }
  return out;
}

void test('fake seqpacket: round trip, fd passing, truncation and EOF', async () => {
  const fake = new FakeNativeBinding();
  fake.addNetnsFd(3);
  const [server, client, peer] = await fakePair(fake, 8);
  await client.send(Buffer.from('hello'), 3);
  await client.send(Buffer.from('much too long'));
  const [m1, m2] = await take(peer, 2);
  assert.equal(m1?.data.toString(), 'hello');
  assert.equal(m1?.fds.length, 1);
  assert.equal(fake.nsType(m1?.fds[0] ?? -1), fake.CLONE_NEWNET);
  assert.equal(m2?.truncated, true);
  assert.equal(m2?.data.toString(), 'much too');
  await peer.send(Buffer.from('ack'));
  assert.equal((await take(client, 1))[0]?.data.toString(), 'ack');

  const injected = fake.injectSeqpacket(peer.fd, Buffer.from('two'), 2);
  const [m3] = await take(peer, 1);
  assert.deepEqual(m3?.fds, injected);
  for (const fd of injected) fake.closeFd(fd);
  fake.closeFd(m1?.fds[0] ?? -1);

  const ended = new Promise((resolve) => peer.once('end', resolve));
  client.close();
  assert.deepEqual(await take(peer, 1), []);
  await ended;
  assert.equal(peer.isClosed, true);
  server.close();
  assert.equal(fake.openFds.size, 0);
});

void test('fake seqpacket: sends wait for writability when the peer is full, in order', async () => {
  const fake = new FakeNativeBinding();
  fake.seqpacketCapacity = 2;
  const [server, client, peer] = await fakePair(fake);
  const sends = Array.from({ length: 10 }, (_, i) => client.send(Buffer.from(String(i))));
  const msgs = await take(peer, 10);
  await Promise.all(sends);
  assert.deepEqual(
    msgs.map((m) => m.data.toString()),
    ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
  );
  assert.ok(fake.calls.filter((c) => c.method === 'seqpacketSend').length > 10, 'some sends hit EAGAIN and were retried');
  // Pending sends reject when the socket closes.
  fake.seqpacketCapacity = 0;
  const stuck = client.send(Buffer.from('stuck'));
  client.close();
  await assert.rejects(stuck, NativeSocketClosedError);
  peer.close();
  server.close();
});

void test('fake seqpacket: native errors become NativeSyscallError', async () => {
  const fake = new FakeNativeBinding();
  assert.throws(() => SeqpacketSocket.connect('/nowhere', { binding: fake }), (err) => {
    assert.ok(err instanceof NativeSyscallError);
    assert.equal(err.errno, 'ENOENT');
    assert.equal(err.syscall, 'connect');
    return true;
  });
  const [server, client, peer] = await fakePair(fake);
  fake.failNext('seqpacketSend', fakeNativeError('EMSGSIZE', 'sendmsg'));
  await assert.rejects(client.send(Buffer.from('x')), (err) => err instanceof NativeSyscallError && err.errno === 'EMSGSIZE');
  await client.send(Buffer.from('y'));
  fake.failNext('seqpacketRecv', fakeNativeError('ECONNRESET', 'recvmsg'));
  const errored = new Promise<Error>((resolve) => peer.once('error', resolve));
  peer.on('message', () => undefined);
  const err = await errored;
  assert.ok(err instanceof NativeSyscallError);
  assert.equal(peer.isClosed, true);
  client.close();
  server.close();
});
