// The CNI-side ZDS server (src/cni/zds-server.ts) against real SOCK_SEQPACKET
// sockets in a temp dir: (a) end to end with real agent clients driven by
// ZdsClientSession and real netns fds (root); (b) the client's wire-level
// answers to a raw server peer, byte by byte; (c) server robustness against
// bad, silent and non-acking clients.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fstatSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { CniAckTimeoutError, CniHelloError, CniNackError } from '../../src/cni/errors.js';
import { ZdsServer, type CniPod, type ZdsServerOptions } from '../../src/cni/zds-server.js';
import { loadNativeBinding } from '../../src/native/load.js';
import { SeqpacketServer, SeqpacketSocket, type SeqpacketMessage } from '../../src/native/seqpacket.js';
import { ZdsFdError } from '../../src/zds/errors.js';
import { decodeWorkloadResponse, encodeWorkloadRequest, encodeWorkloadResponse, type WorkloadRequest } from '../../src/zds/messages.js';
import { ZdsClientSession } from '../../src/zds/session.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';

const binding = loadNativeBinding();
const ACK_BYTES = Buffer.from([0x0a, 0x00]);
const HELLO_BYTES = Buffer.from([0x08, 0x01]);

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ambit-cni-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function tempSock(t: TestContext): string {
  return path.join(tempDir(t), 'ztunnel.sock');
}

/** Creates a netns, deleted after the test. */
function makeNetns(t: TestContext): string {
  const name = `amb-zd-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', name]);
  t.after(() => {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  });
  return `/var/run/netns/${name}`;
}

/** Open fds of this process that refer to a network namespace. */
function netnsFdCount(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('net:[')) n++;
    } catch {
      // closed meanwhile (the readdir fd itself)
    }
  }
  return n;
}

async function waitUntil(what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

type AgentEvent =
  | { kind: 'add'; uid: string; name: string | undefined; nsType: number; ino: number; dev: number }
  | { kind: 'keep'; uid: string }
  | { kind: 'del'; uid: string; known: boolean }
  | { kind: 'snapshot_done'; keep: string[] }
  | { kind: 'close_fd'; fd: number }
  | { kind: 'protocol_error'; reason: string; fatal: boolean };

/**
 * A real agent: SeqpacketSocket.connect + ZdsClientSession. Executes the
 * session's send actions on the socket, records everything else, and closes
 * every fd it is handed (after stat-ing add fds).
 */
class TestAgent {
  readonly socket: SeqpacketSocket;
  readonly session = new ZdsClientSession({ isNetns: (fd) => binding.nsType(fd) === binding.CLONE_NEWNET });
  readonly events: AgentEvent[] = [];
  readonly sent: Buffer[] = [];
  ended = false;
  private lastSend: Promise<void> = Promise.resolve();

  constructor(sockPath: string, opts: { start?: boolean; maxMessageBytes?: number } = {}) {
    this.socket = SeqpacketSocket.connect(sockPath, { maxMessageBytes: opts.maxMessageBytes ?? 1024 });
    this.socket.on('close', () => (this.ended = true));
    this.socket.on('error', () => undefined);
    if (opts.start ?? true) this.run(this.session.start());
    this.socket.on('message', (m: SeqpacketMessage) => this.run(this.session.receive(m)));
  }

  private run(actions: ReturnType<ZdsClientSession['start']>): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'send':
          this.sent.push(a.data);
          this.lastSend = this.socket.send(a.data).catch(() => undefined);
          break;
        case 'add': {
          const st = fstatSync(a.netnsFd);
          const viaProc = statSync(`/proc/self/fd/${a.netnsFd}`);
          assert.equal(viaProc.ino, st.ino);
          this.events.push({ kind: 'add', uid: a.uid, name: a.info?.name, nsType: binding.nsType(a.netnsFd), ino: st.ino, dev: st.dev });
          binding.closeFd(a.netnsFd);
          break;
        }
        case 'keep':
          this.events.push({ kind: 'keep', uid: a.uid });
          break;
        case 'del':
          this.events.push({ kind: 'del', uid: a.uid, known: a.known });
          break;
        case 'snapshot_done':
          this.events.push({ kind: 'snapshot_done', keep: [...a.keep].sort() });
          break;
        case 'close_fd':
          this.events.push({ kind: 'close_fd', fd: a.fd });
          binding.closeFd(a.fd);
          break;
        case 'protocol_error':
          this.events.push({ kind: 'protocol_error', reason: a.reason, fatal: a.fatal });
          if (a.fatal) {
            const sock = this.socket;
            void this.lastSend.finally(() => sock.close());
          }
          break;
      }
    }
  }

  has(kind: AgentEvent['kind'], uid?: string): boolean {
    return this.events.some((e) => e.kind === kind && (uid === undefined || ('uid' in e && e.uid === uid)));
  }

  async waitFor(kind: AgentEvent['kind'], uid?: string): Promise<void> {
    await waitUntil(`${kind}${uid ? ` ${uid}` : ''}`, () => this.has(kind, uid));
  }

  close(): void {
    this.socket.close();
  }
}

function startServer(t: TestContext, opts: ZdsServerOptions = {}): { server: ZdsServer; sockPath: string } {
  const sockPath = tempSock(t);
  const server = new ZdsServer(opts).listen(sockPath);
  t.after(() => server.close());
  return { server, sockPath };
}

function agent(t: TestContext, sockPath: string, opts?: { start?: boolean; maxMessageBytes?: number }): TestAgent {
  const a = new TestAgent(sockPath, opts);
  t.after(() => a.close());
  return a;
}

function pod(uid: string, netnsPath?: string): CniPod {
  return { uid, name: `${uid}-name`, namespace: 'default', serviceAccount: 'sa', ...(netnsPath === undefined ? {} : { netnsPath }) };
}

// ---------------------------------------------------------------- (a) end to end

void test('(a) snapshot adds carry exactly one netns fd of the right namespace; add goes to the newest agent, del to all; all acked', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const baseline = netnsFdCount();
  const ns1 = makeNetns(t);
  const ns2 = makeNetns(t);
  const ns3 = makeNetns(t);
  const { server, sockPath } = startServer(t, { pods: [pod('pod-1', ns1), pod('pod-2', ns2)] });

  const first = agent(t, sockPath);
  await first.waitFor('snapshot_done');
  const adds = first.events.filter((e) => e.kind === 'add');
  assert.deepEqual(
    adds.map((e) => e.uid),
    ['pod-1', 'pod-2'],
  );
  for (const [i, ns] of [ns1, ns2].entries()) {
    const e = adds[i];
    assert.ok(e?.kind === 'add');
    assert.equal(e.nsType, binding.CLONE_NEWNET);
    const st = statSync(ns);
    assert.equal(e.ino, st.ino, 'same netns inode');
    assert.equal(e.dev, st.dev, 'same netns dev');
    assert.equal(e.name, `pod-${i + 1}-name`);
  }
  assert.deepEqual(first.events.at(-1), { kind: 'snapshot_done', keep: ['pod-1', 'pod-2'] });
  assert.equal(first.events.filter((e) => e.kind === 'close_fd' || e.kind === 'protocol_error').length, 0);

  // A second (newer) agent: same snapshot; then add goes only to it.
  const second = agent(t, sockPath);
  await second.waitFor('snapshot_done');
  await waitUntil('both ready', () => server.connections().every((c) => c.state === 'ready') && server.connections().length === 2);

  const d = await server.addPod({ ...pod('pod-3'), netnsPath: ns3 });
  assert.equal(d.outcome, 'ack');
  assert.ok(second.has('add', 'pod-3'));
  assert.ok(!first.has('add', 'pod-3'), 'add goes to the newest connection only');
  const e3 = second.events.find((e) => e.kind === 'add' && e.uid === 'pod-3');
  assert.ok(e3?.kind === 'add');
  assert.equal(e3.ino, statSync(ns3).ino);

  const dels = await server.removePod('pod-1');
  assert.deepEqual(
    dels.map((x) => x.outcome),
    ['ack', 'ack'],
  );
  assert.deepEqual(
    [first, second].map((a) => a.events.find((e) => e.kind === 'del')),
    [
      { kind: 'del', uid: 'pod-1', known: true },
      { kind: 'del', uid: 'pod-1', known: true },
    ],
  );
  assert.deepEqual(
    server.podSet().map((p) => p.uid),
    ['pod-2', 'pod-3'],
  );

  const s = server.stats();
  // 2 × (2 adds + snapshot_sent) + 1 add + 2 dels
  assert.equal(s.sent, 9);
  assert.equal(s.acked, 9);
  assert.equal(s.nacked, 0);
  assert.equal(s.timeouts, 0);
  assert.equal(s.dropped, 0);
  assert.equal(s.connections, 2);
  // Every ack the agents sent is exactly `0a 00`.
  for (const a of [first, second]) {
    assert.deepEqual(a.sent[0], HELLO_BYTES);
    for (const b of a.sent.slice(1)) assert.deepEqual(b, ACK_BYTES);
  }
  assert.equal(netnsFdCount(), baseline, 'server and agents closed every netns fd');

  // The server going away ends the agents' connections.
  server.close();
  await waitUntil('agents see EOF', () => first.ended && second.ended);
});

void test('(a) a pod without a netns is sent as keep; an unopenable netns path is keep plus netns_error; addPod of a missing netns rejects', async (t) => {
  const dir = tempDir(t);
  const { server, sockPath } = startServer(t, { pods: [pod('kept'), pod('gone', path.join(dir, 'no-such-netns'))] });
  const netnsErrors: Error[] = [];
  server.on('netns_error', (e: Error) => netnsErrors.push(e));
  const a = agent(t, sockPath);
  await a.waitFor('snapshot_done');
  assert.deepEqual(a.events, [
    { kind: 'keep', uid: 'kept' },
    { kind: 'keep', uid: 'gone' },
    { kind: 'snapshot_done', keep: ['gone', 'kept'] },
  ]);
  assert.equal(netnsErrors.length, 1);
  assert.equal((netnsErrors[0] as Error & { code: string }).code, 'AMBIT_ERR_CNI_NETNS_OPEN');
  await assert.rejects(server.addPod({ ...pod('x'), netnsPath: path.join(dir, 'nope') }), { code: 'AMBIT_ERR_CNI_NETNS_OPEN' });
  assert.ok(!server.podSet().some((p) => p.uid === 'x'));
  assert.deepEqual(server.stats().sent, 3);
});

void test('(a) a NACK (add whose fd is not a netns) is counted and emitted, not fatal', async (t) => {
  const dir = tempDir(t);
  const notNs = path.join(dir, 'plain-file');
  writeFileSync(notNs, 'x');
  const { server, sockPath } = startServer(t, { pods: [pod('bad', notNs), pod('good')] });
  const nacks: CniNackError[] = [];
  server.on('nack', (e: CniNackError) => nacks.push(e));
  const a = agent(t, sockPath);
  await a.waitFor('snapshot_done');
  assert.equal(nacks.length, 1);
  assert.ok(nacks[0] instanceof CniNackError);
  assert.equal(nacks[0].code, 'AMBIT_ERR_CNI_NACK');
  assert.match(nacks[0].agentError, /not a network namespace/);
  const s = server.stats();
  assert.equal(s.nacked, 1);
  assert.equal(s.acked, 2);
  assert.equal(s.connections, 1);
  assert.deepEqual(server.connections()[0]?.state, 'ready');
  // The session NACKed, closed the fd, and went on.
  assert.ok(a.has('close_fd'));
  assert.ok(a.has('keep', 'good'));
  const d = await server.removePod('good');
  assert.equal(d[0]?.outcome, 'ack');
});

// ---------------------------------------------------------------- (b) wire level

/** A raw ZDS server peer on the seqpacket transport (no ZdsServer, no session). */
async function rawPeer(t: TestContext, agentOpts?: { start?: boolean; maxMessageBytes?: number }) {
  const sockPath = tempSock(t);
  const listener = new SeqpacketServer({ maxMessageBytes: 65536 }).listen(sockPath);
  t.after(() => listener.close());
  const accepted = new Promise<SeqpacketSocket>((resolve) => listener.once('connection', resolve));
  const a = agent(t, sockPath, agentOpts);
  const peer = await accepted;
  t.after(() => peer.close());
  const inbox: SeqpacketMessage[] = [];
  const state = { ended: false };
  const attach = (): void => {
    peer.on('message', (m: SeqpacketMessage) => inbox.push(m));
    peer.on('end', () => (state.ended = true));
  };
  const next = async (): Promise<Buffer> => {
    await waitUntil('a message from the agent', () => inbox.length > 0);
    const m = inbox.shift() as SeqpacketMessage;
    assert.deepEqual(m.fds, [], 'the agent never sends fds');
    assert.equal(m.truncated, false);
    return m.data;
  };
  const req = (r: WorkloadRequest, fd?: number): Promise<void> => peer.send(encodeWorkloadRequest(r), fd);
  return { a, peer, inbox, state, attach, next, req };
}

const NS_SELF = '/proc/self/ns/net';

void test('(b) wire: hello is 08 01; add with one netns fd, keep, unknown del, snapshot_sent and steady del are each ACKed with exactly 0a 00', async (t) => {
  const { a, attach, next, req } = await rawPeer(t);
  attach();
  assert.deepEqual(await next(), HELLO_BYTES);
  const fd = openSync(NS_SELF, 'r');
  try {
    await req({ kind: 'add', uid: 'u1', workloadInfo: { name: 'n', namespace: 'ns', serviceAccount: 'sa' } }, fd);
  } finally {
    closeSync(fd);
  }
  assert.deepEqual(await next(), ACK_BYTES);
  await req({ kind: 'keep', uid: 'u2' });
  assert.deepEqual(await next(), ACK_BYTES);
  await req({ kind: 'del', uid: 'never-added' });
  assert.deepEqual(await next(), ACK_BYTES);
  await req({ kind: 'snapshot_sent' });
  assert.deepEqual(await next(), ACK_BYTES);
  await req({ kind: 'del', uid: 'u1' });
  assert.deepEqual(await next(), ACK_BYTES);
  assert.deepEqual(a.events, [
    { kind: 'add', uid: 'u1', name: 'n', nsType: binding.CLONE_NEWNET, ino: statSync(NS_SELF).ino, dev: statSync(NS_SELF).dev },
    { kind: 'keep', uid: 'u2' },
    { kind: 'del', uid: 'never-added', known: false },
    { kind: 'snapshot_done', keep: ['u1', 'u2'] },
    { kind: 'del', uid: 'u1', known: true },
  ]);
});

void test('(b) wire: add with TWO fds is NACKed (Ack.error set), both fds closed, connection dropped', requiresTool('python3'), async (t) => {
  const baseline = netnsFdCount();
  const { a, peer, attach, next, state } = await rawPeer(t);
  attach();
  assert.deepEqual(await next(), HELLO_BYTES);
  // The addon passes one fd per message; Python's socket.send_fds sends two on a shared copy of the peer's fd.
  const data = encodeWorkloadRequest({ kind: 'add', uid: 'two' });
  const script = [
    'import os, socket, sys',
    's = socket.socket(fileno=3)',
    'a = os.open(sys.argv[2], os.O_RDONLY)',
    'b = os.open(sys.argv[2], os.O_RDONLY)',
    'socket.send_fds(s, [bytes.fromhex(sys.argv[1])], [a, b])',
  ].join('\n');
  const child = spawn('python3', ['-c', script, data.toString('hex'), NS_SELF], { stdio: ['ignore', 'inherit', 'inherit', peer.fd] });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0);

  const nack = await next();
  const reason = new ZdsFdError("add for 'two' carries 2 fds, expected 1").message;
  assert.deepEqual(nack, encodeWorkloadResponse({ ack: { error: reason } }));
  assert.equal(nack[0], 0x0a, 'WorkloadResponse.ack, field 1, LEN');
  const decoded = decodeWorkloadResponse(nack);
  assert.ok(decoded.ok);
  assert.notEqual(decoded.value.ack.error, '');
  await waitUntil('connection dropped', () => state.ended);
  assert.equal(a.events.filter((e) => e.kind === 'close_fd').length, 2);
  assert.ok(a.events.some((e) => e.kind === 'protocol_error' && e.fatal));
  assert.equal(netnsFdCount(), baseline, 'both received fds were closed');
});

void test('(b) wire: a request sent before the server reads the hello is still ACKed (the client is past hello)', async (t) => {
  const { peer, attach, next, req } = await rawPeer(t);
  await req({ kind: 'del', uid: 'early' });
  attach();
  assert.deepEqual(await next(), HELLO_BYTES);
  assert.deepEqual(await next(), ACK_BYTES);
  assert.equal(peer.isClosed, false);
});

void test('(b) wire: a message reaching a client that has not sent its hello gets no answer; its fd is closed and the connection dropped', async (t) => {
  const baseline = netnsFdCount();
  const { a, attach, inbox, state, req } = await rawPeer(t, { start: false });
  attach();
  const fd = openSync(NS_SELF, 'r');
  try {
    await req({ kind: 'add', uid: 'too-early' }, fd);
  } finally {
    closeSync(fd);
  }
  await waitUntil('connection dropped', () => state.ended);
  assert.equal(inbox.length, 0, 'no ack, no hello');
  assert.equal(a.sent.length, 0);
  assert.equal(a.events.filter((e) => e.kind === 'close_fd').length, 1);
  assert.ok(a.events.some((e) => e.kind === 'protocol_error' && e.fatal && /before hello/.test(e.reason)));
  assert.equal(netnsFdCount(), baseline);
});

for (const [label, maxMessageBytes, pattern] of [
  ['truncated (MSG_TRUNC at the 1024-byte buffer)', 1024, /truncated/],
  ['oversized (read whole, over the 1024-byte limit)', 4096, /limit is 1024/],
] as const) {
  void test(`(b) wire: a ${label} datagram is NACKed and the connection dropped`, async (t) => {
    const { attach, next, state, peer } = await rawPeer(t, { maxMessageBytes });
    attach();
    assert.deepEqual(await next(), HELLO_BYTES);
    await peer.send(Buffer.alloc(1500, 0x42));
    const nack = await next();
    assert.equal(nack[0], 0x0a);
    const decoded = decodeWorkloadResponse(nack);
    assert.ok(decoded.ok);
    assert.match(decoded.value.ack.error, pattern);
    await waitUntil('connection dropped', () => state.ended);
  });
}

void test('(b) wire: an fd on a del is NACKed, the fd closed, the connection dropped', async (t) => {
  const baseline = netnsFdCount();
  const { a, attach, next, state, req } = await rawPeer(t);
  attach();
  assert.deepEqual(await next(), HELLO_BYTES);
  const fd = openSync(NS_SELF, 'r');
  try {
    await req({ kind: 'del', uid: 'x' }, fd);
  } finally {
    closeSync(fd);
  }
  const decoded = decodeWorkloadResponse(await next());
  assert.ok(decoded.ok);
  assert.match(decoded.value.ack.error, /del carries 1 fds, expected none/);
  await waitUntil('connection dropped', () => state.ended);
  assert.equal(a.events.filter((e) => e.kind === 'close_fd').length, 1);
  assert.equal(netnsFdCount(), baseline);
});

// ---------------------------------------------------------------- (c) robustness

type Drop = { connectionId: number; error?: Error };

function drops(server: ZdsServer): Drop[] {
  const out: Drop[] = [];
  server.on('drop', (d: Drop) => out.push(d));
  return out;
}

function rawClient(t: TestContext, sockPath: string): { sock: SeqpacketSocket; got: SeqpacketMessage[]; state: { ended: boolean } } {
  const sock = SeqpacketSocket.connect(sockPath, { maxMessageBytes: 1024 });
  t.after(() => sock.close());
  const got: SeqpacketMessage[] = [];
  const state = { ended: false };
  sock.on('message', (m: SeqpacketMessage) => got.push(m));
  sock.on('end', () => (state.ended = true));
  sock.on('close', () => (state.ended = true));
  return { sock, got, state };
}

void test('(c) a client sending garbage instead of a hello is dropped; a good client is unaffected', async (t) => {
  const { server, sockPath } = startServer(t, { pods: [pod('p1')], helloTimeoutMs: 2000 });
  const dropped = drops(server);
  const bad = rawClient(t, sockPath);
  await bad.sock.send(Buffer.from([0xff, 0xff, 0xff, 0xff]));
  const good = agent(t, sockPath);
  await good.waitFor('snapshot_done');
  await waitUntil('garbage client dropped', () => bad.state.ended);
  assert.equal(bad.got.length, 0, 'nothing was sent to the bad client');
  assert.equal(dropped.length, 1);
  assert.ok(dropped[0]?.error instanceof CniHelloError);
  assert.equal((dropped[0].error as CniHelloError).code, 'AMBIT_ERR_CNI_HELLO');
  assert.match(dropped[0].error.message, /bad hello/);
  assert.deepEqual(server.stats().connections, 1);
});

void test('(c) a wrong-version hello and a silent client are dropped (the latter after the hello deadline); a good client is unaffected', async (t) => {
  const { server, sockPath } = startServer(t, { pods: [pod('p1')], helloTimeoutMs: 150 });
  const dropped = drops(server);
  const v2 = rawClient(t, sockPath);
  await v2.sock.send(Buffer.from([0x08, 0x02]));
  const started = Date.now();
  const silent = rawClient(t, sockPath);
  const good = agent(t, sockPath);
  await good.waitFor('snapshot_done');
  await waitUntil('silent client dropped', () => silent.state.ended && v2.state.ended);
  assert.ok(Date.now() - started >= 140, 'dropped only after the deadline');
  const reasons = dropped.map((d) => d.error?.message ?? '').sort();
  assert.equal(reasons.length, 2);
  assert.match(reasons.join('\n'), /no hello within 150 ms/);
  assert.match(reasons.join('\n'), /unsupported zds version 2/);
  assert.ok(dropped.every((d) => d.error instanceof CniHelloError));
  const dels = await server.removePod('p1');
  assert.deepEqual(
    dels.map((d) => d.outcome),
    ['ack'],
  );
  assert.ok(good.has('del', 'p1'));
});

void test('(c) a client that never acks is timed out and dropped; the server keeps serving the others', async (t) => {
  const { server, sockPath } = startServer(t, { pods: [pod('p1'), pod('p2')], ackTimeoutMs: 200 });
  const dropped = drops(server);
  const good = agent(t, sockPath);
  await good.waitFor('snapshot_done');
  const mute = rawClient(t, sockPath);
  await mute.sock.send(HELLO_BYTES);
  await waitUntil('mute client dropped', () => mute.state.ended, 3000);
  assert.equal(mute.got.length, 1, 'one outstanding message until its ack: the second snapshot message was never sent');
  assert.equal(dropped.length, 1);
  assert.ok(dropped[0]?.error instanceof CniAckTimeoutError);
  assert.equal(dropped[0].error.code, 'AMBIT_ERR_CNI_ACK_TIMEOUT');
  assert.match(dropped[0].error.message, /keep 'p1'/);
  const s = server.stats();
  assert.equal(s.timeouts, 1);
  assert.equal(s.dropped, 1);
  assert.equal(s.connections, 1);
  // The good agent still gets steady-state messages.
  const dels = await server.removePod('p2');
  assert.deepEqual(
    dels.map((d) => d.outcome),
    ['ack'],
  );
  assert.ok(good.has('del', 'p2'));
});

void test('(c) a timed-out newest connection resolves a pending addPod as timeout; unsolicited data drops a connection', async (t) => {
  const dir = tempDir(t);
  const fakeNs = path.join(dir, 'f');
  writeFileSync(fakeNs, '');
  const { server, sockPath } = startServer(t, { ackTimeoutMs: 200 });
  const dropped = drops(server);
  // Empty pod set: the snapshot is only snapshot_sent, which this client acks by hand, then goes mute.
  const mute = rawClient(t, sockPath);
  await mute.sock.send(HELLO_BYTES);
  await waitUntil('snapshot_sent', () => mute.got.length === 1);
  await mute.sock.send(ACK_BYTES);
  await waitUntil('ready', () => server.connections()[0]?.state === 'ready');
  const d = await server.addPod({ ...pod('p'), netnsPath: fakeNs });
  assert.equal(d.outcome, 'timeout');
  assert.ok(d.error instanceof CniAckTimeoutError);
  assert.equal(server.stats().connections, 0);
  assert.equal((await server.addPod({ ...pod('q'), netnsPath: fakeNs })).outcome, 'no_connection');

  const chatty = rawClient(t, sockPath);
  await chatty.sock.send(HELLO_BYTES);
  // Snapshot: add p, add q (both recorded earlier), snapshot_sent; acked one at a time.
  for (let i = 1; i <= 3; i++) {
    await waitUntil(`snapshot message ${i}`, () => chatty.got.length === i);
    await chatty.sock.send(ACK_BYTES);
  }
  assert.deepEqual(
    chatty.got.map((m) => m.fds.length),
    [1, 1, 0],
  );
  for (const m of chatty.got) for (const fd of m.fds) binding.closeFd(fd);
  await waitUntil('ready', () => server.connections()[0]?.state === 'ready');
  await chatty.sock.send(ACK_BYTES); // nothing outstanding
  await waitUntil('chatty dropped', () => chatty.state.ended);
  assert.equal((dropped.at(-1)?.error as (Error & { code?: string }) | undefined)?.code, 'AMBIT_ERR_CNI_PROTOCOL');
});
