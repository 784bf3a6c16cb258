// ZdsServer logic against FakeNativeBinding (no addon, no real sockets, no
// netns): handshake, keep-only snapshots, serialization, NACK counting and
// option/error handling. test/integration/cni-zds.test.ts covers the real thing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CniAckTimeoutError, CniHelloError, CniNackError, CniNetnsOpenError, CniProtocolError, CniServerClosedError } from '../../src/cni/errors.js';
import { ZdsServer } from '../../src/cni/zds-server.js';
import { FakeNativeBinding } from '../../src/native/fake.js';
import { SeqpacketSocket, type SeqpacketMessage } from '../../src/native/seqpacket.js';
import { decodeWorkloadRequest, encodeWorkloadResponse, encodeZdsHello, type WorkloadRequest } from '../../src/zds/messages.js';

const pods = [
  { uid: 'a', name: 'a', namespace: 'ns', serviceAccount: 'sa' },
  { uid: 'b', name: 'b', namespace: 'ns', serviceAccount: 'sa' },
];

async function waitUntil(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A scripted client: sends the hello, answers each request with `reply(req)`. */
function client(fake: FakeNativeBinding, reply: (req: WorkloadRequest) => string | undefined): { got: WorkloadRequest[]; sock: SeqpacketSocket } {
  const sock = SeqpacketSocket.connect('/fake/cni.sock', { binding: fake });
  const got: WorkloadRequest[] = [];
  sock.on('message', (m: SeqpacketMessage) => {
    const r = decodeWorkloadRequest(m.data);
    assert.ok(r.ok);
    got.push(r.value);
    const error = reply(r.value);
    if (error !== undefined) void sock.send(encodeWorkloadResponse({ ack: { error } }));
  });
  void sock.send(encodeZdsHello());
  return { got, sock };
}

void test('cni zds server (fake): keep-only snapshot, NACK counted, serialized messages, broadcast del', async () => {
  const fake = new FakeNativeBinding();
  const server = new ZdsServer({ binding: fake, pods }).listen('/fake/cni.sock');
  const nacks: CniNackError[] = [];
  server.on('nack', (e: CniNackError) => nacks.push(e));
  const ready: number[] = [];
  server.on('ready', (r: { connectionId: number }) => ready.push(r.connectionId));
  const c = client(fake, (req) => (req.kind === 'keep' && req.uid === 'b' ? 'no such proxy' : ''));
  await waitUntil(() => ready.length === 1);
  assert.deepEqual(c.got, [{ kind: 'keep', uid: 'a' }, { kind: 'keep', uid: 'b' }, { kind: 'snapshot_sent' }]);
  assert.equal(nacks.length, 1);
  assert.equal(nacks[0]?.code, 'AMBIT_ERR_CNI_NACK');
  assert.equal(nacks[0]?.request, "keep 'b'");
  const ds = await Promise.all([server.removePod('a'), server.removePod('b')]);
  assert.deepEqual(
    ds.flat().map((d) => [d.request, d.outcome]),
    [
      ["del 'a'", 'ack'],
      ["del 'b'", 'ack'],
    ],
  );
  assert.deepEqual(server.stats(), { connections: 1, accepted: 1, sent: 5, acked: 4, nacked: 1, timeouts: 0, dropped: 0 });
  server.close();
  await waitUntil(() => server.stats().connections === 0);
  await assert.rejects(server.removePod('a'), CniServerClosedError);
  c.sock.close();
});

void test('cni zds server (fake): a non-acking client times out; pending removePod resolves timeout', async () => {
  const fake = new FakeNativeBinding();
  const server = new ZdsServer({ binding: fake, ackTimeoutMs: 50 }).listen('/fake/cni.sock');
  // Acks the snapshot, then goes mute.
  const c = client(fake, (req) => (req.kind === 'snapshot_sent' ? '' : undefined));
  await waitUntil(() => server.connections()[0]?.state === 'ready');
  const [[d], [queued]] = await Promise.all([server.removePod('x'), server.removePod('y')]);
  assert.equal(d?.outcome, 'timeout');
  assert.ok(d?.error instanceof CniAckTimeoutError);
  assert.equal(queued?.outcome, 'closed', 'a message queued behind the timed-out one is never sent');
  assert.deepEqual(c.got, [{ kind: 'snapshot_sent' }, { kind: 'del', uid: 'x' }]);
  assert.equal(server.stats().timeouts, 1);
  assert.equal(server.stats().connections, 0);
  server.close();
  c.sock.close();
});

void test('cni zds server: options and errors', () => {
  const fake = new FakeNativeBinding();
  assert.throws(() => new ZdsServer({ binding: fake, ackTimeoutMs: 0 }), RangeError);
  assert.throws(() => new ZdsServer({ binding: fake, helloTimeoutMs: Number.NaN }), RangeError);
  const s = new ZdsServer({ binding: fake }).listen('/fake/cni2.sock');
  assert.throws(() => s.listen('/fake/cni3.sock'), { code: 'AMBIT_ERR_CNI_SERVER_CLOSED' });
  s.close();
  assert.throws(() => s.listen('/fake/cni3.sock'), CniServerClosedError);
  const codes = [
    new CniHelloError(1, 'x').code,
    new CniAckTimeoutError(1, 'del', 5).code,
    new CniNackError(1, 'del', 'e').code,
    new CniProtocolError(1, 'x').code,
    new CniNetnsOpenError('u', '/p', { cause: new Error('ENOENT') }).code,
  ];
  assert.deepEqual(codes, ['AMBIT_ERR_CNI_HELLO', 'AMBIT_ERR_CNI_ACK_TIMEOUT', 'AMBIT_ERR_CNI_NACK', 'AMBIT_ERR_CNI_PROTOCOL', 'AMBIT_ERR_CNI_NETNS_OPEN']);
  assert.match(new CniNetnsOpenError('u', '/p', { cause: new Error('ENOENT') }).message, /ENOENT/);
});

void test('cni zds server: addPod with no connection records the pod for the next snapshot', async () => {
  const fake = new FakeNativeBinding();
  const server = new ZdsServer({ binding: fake });
  const d = await server.addPod({ uid: 'p', name: 'p', namespace: 'n', serviceAccount: 's', netnsPath: '/nonexistent' });
  assert.equal(d.outcome, 'no_connection');
  assert.deepEqual(
    server.podSet().map((p) => p.uid),
    ['p'],
  );
  server.close();
});
