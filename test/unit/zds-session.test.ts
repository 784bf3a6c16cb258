/** The ZDS client state machine: hello, snapshot, steady state, fd hygiene, rejections. */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ZdsDecodeError, ZdsFdError, ZdsProtocolError, ZdsSessionClosedError } from '../../src/zds/errors.js';
import { decodeWorkloadResponse, encodeWorkloadRequest, type WorkloadRequest } from '../../src/zds/messages.js';
import { ZdsClientSession, type ZdsAction, type ZdsSessionOptions } from '../../src/zds/session.js';

/** In these tests, fds >= 100 are network namespaces. */
const isNetns = (fd: number): boolean => fd >= 100;

function session(opts: Partial<ZdsSessionOptions> = {}): ZdsClientSession {
  const s = new ZdsClientSession({ isNetns, ...opts });
  const hello = s.start();
  assert.equal(hello.length, 1);
  assert.deepEqual(hello[0], { kind: 'send', data: Buffer.from([0x08, 0x01]) });
  assert.equal(s.state, 'hello_sent');
  return s;
}

function recv(s: ZdsClientSession, msg: WorkloadRequest | Buffer, fds: number[] = [], truncated = false): ZdsAction[] {
  const data = Buffer.isBuffer(msg) ? msg : encodeWorkloadRequest(msg);
  return s.receive({ data, fds, truncated });
}

/** The decoded Ack errors of every `send` action ('' = ACK). */
function acks(actions: readonly ZdsAction[]): string[] {
  return actions.flatMap((a) => {
    if (a.kind !== 'send') return [];
    const r = decodeWorkloadResponse(a.data);
    assert.ok(r.ok, 'every send is a WorkloadResponse');
    return [r.value.ack.error];
  });
}

function closed(actions: readonly ZdsAction[]): number[] {
  return actions.flatMap((a) => (a.kind === 'close_fd' ? [a.fd] : []));
}

function errorOf(actions: readonly ZdsAction[]): Extract<ZdsAction, { kind: 'protocol_error' }> {
  const e = actions.find((a) => a.kind === 'protocol_error');
  assert.ok(e && e.kind === 'protocol_error', `expected a protocol_error in ${JSON.stringify(actions)}`);
  return e;
}

function assertNack(actions: readonly ZdsAction[]): void {
  const a = acks(actions);
  assert.equal(a.length, 1, 'exactly one ack');
  assert.ok((a[0] ?? '').length > 0, 'the ack is a nack');
}

function assertAck(actions: readonly ZdsAction[]): void {
  assert.deepEqual(acks(actions), ['']);
}

describe('ZdsClientSession', () => {
  test('full sequence: hello, snapshot (add + keep), snapshot_sent, steady add/del', () => {
    const s = session();

    const info = { name: 'web-0', namespace: 'default', serviceAccount: 'web' };
    let out = recv(s, { kind: 'add', uid: 'pod-a', workloadInfo: info }, [100]);
    assert.deepEqual(out[0], { kind: 'add', uid: 'pod-a', info, netnsFd: 100 });
    assertAck(out);
    assert.deepEqual(closed(out), []);
    assert.equal(s.state, 'snapshot');

    out = recv(s, { kind: 'keep', uid: 'pod-b' });
    assert.deepEqual(out[0], { kind: 'keep', uid: 'pod-b' });
    assertAck(out);

    out = recv(s, { kind: 'snapshot_sent' });
    assert.equal(out[0]?.kind, 'snapshot_done');
    assert.ok(out[0]?.kind === 'snapshot_done');
    assert.deepEqual([...out[0].keep].sort(), ['pod-a', 'pod-b']);
    assertAck(out);
    assert.equal(s.state, 'steady');

    out = recv(s, { kind: 'add', uid: 'pod-c' }, [101]);
    assert.deepEqual(out[0], { kind: 'add', uid: 'pod-c', info: undefined, netnsFd: 101 });
    assertAck(out);

    out = recv(s, { kind: 'del', uid: 'pod-a' });
    assert.deepEqual(out[0], { kind: 'del', uid: 'pod-a', known: true });
    assertAck(out);

    // a second del of the same uid is idempotent: acked, reported as unknown.
    out = recv(s, { kind: 'del', uid: 'pod-a' });
    assert.deepEqual(out[0], { kind: 'del', uid: 'pod-a', known: false });
    assertAck(out);
    assert.equal(s.state, 'steady');
  });

  test('an empty snapshot goes straight to steady with an empty keep set', () => {
    const s = session();
    const out = recv(s, { kind: 'snapshot_sent' });
    assert.ok(out[0]?.kind === 'snapshot_done');
    assert.equal(out[0].keep.size, 0);
    assertAck(out);
    assert.equal(s.state, 'steady');
  });

  test('a del during the snapshot removes the uid from the keep set', () => {
    const s = session();
    recv(s, { kind: 'add', uid: 'a' }, [100]);
    recv(s, { kind: 'keep', uid: 'b' });
    assertAck(recv(s, { kind: 'del', uid: 'a' }));
    const out = recv(s, { kind: 'snapshot_sent' });
    assert.ok(out[0]?.kind === 'snapshot_done');
    assert.deepEqual([...out[0].keep], ['b']);
  });

  test('add with 2 fds: nack, both fds closed, connection dropped', () => {
    const s = session();
    const out = recv(s, { kind: 'add', uid: 'a' }, [100, 101]);
    assert.deepEqual(closed(out).sort(), [100, 101]);
    assertNack(out);
    assert.equal(out.some((a) => a.kind === 'add'), false);
    const e = errorOf(out);
    assert.ok(e.error instanceof ZdsFdError);
    assert.equal(e.error.code, 'AMBIT_ERR_ZDS_FD');
    assert.equal(e.fatal, true);
    assert.equal(s.state, 'closed');
    // the fds are closed before the nack is sent.
    assert.equal(out[0]?.kind, 'close_fd');
  });

  test('add with no fd: nack', () => {
    const s = session();
    const out = recv(s, { kind: 'add', uid: 'a' });
    assertNack(out);
    assert.match(acks(out)[0] ?? '', /0 fds, expected 1/);
    assert.ok(errorOf(out).error instanceof ZdsFdError);
  });

  test('an fd on del: nack and the fd is closed', () => {
    const s = session();
    recv(s, { kind: 'snapshot_sent' });
    const out = recv(s, { kind: 'del', uid: 'a' }, [100]);
    assert.deepEqual(closed(out), [100]);
    assertNack(out);
    assert.equal(out.some((a) => a.kind === 'del'), false);
    assert.ok(errorOf(out).error instanceof ZdsFdError);
  });

  test('fds on keep and snapshot_sent: nack and closed', () => {
    for (const msg of [{ kind: 'keep', uid: 'a' }, { kind: 'snapshot_sent' }] as const) {
      const s = session();
      const out = recv(s, msg, [100, 7]);
      assert.deepEqual(closed(out), [100, 7]);
      assertNack(out);
      assert.equal(s.state, 'closed');
    }
  });

  test('an fd that is not a netns: nack, fd closed, session goes on', () => {
    const s = session();
    const out = recv(s, { kind: 'add', uid: 'a' }, [5]);
    assert.deepEqual(closed(out), [5]);
    assertNack(out);
    const e = errorOf(out);
    assert.equal(e.fatal, false);
    assert.match(e.reason, /not a network namespace/);
    assert.equal(s.state, 'hello_sent');
    assertAck(recv(s, { kind: 'add', uid: 'a' }, [100]));
  });

  test('an isNetns that throws counts as not a netns', () => {
    const s = session({
      isNetns: () => {
        throw new Error('EBADF');
      },
    });
    const out = recv(s, { kind: 'add', uid: 'a' }, [100]);
    assert.deepEqual(closed(out), [100]);
    assertNack(out);
  });

  test('del of an unknown uid is acked and reported as unknown', () => {
    const s = session();
    recv(s, { kind: 'snapshot_sent' });
    const out = recv(s, { kind: 'del', uid: 'ghost' });
    assert.deepEqual(out[0], { kind: 'del', uid: 'ghost', known: false });
    assertAck(out);
  });

  test('uids known from an earlier connection are reported as known on del', () => {
    const s = session({ knownUids: ['old'] });
    recv(s, { kind: 'snapshot_sent' });
    assert.deepEqual(recv(s, { kind: 'del', uid: 'old' })[0], { kind: 'del', uid: 'old', known: true });
  });

  test('truncated datagram: nack, fds closed, connection dropped (ztunnel rejects MSG_TRUNC/MSG_CTRUNC)', () => {
    const s = session();
    const out = recv(s, { kind: 'add', uid: 'a' }, [100], true);
    assert.deepEqual(closed(out), [100]);
    assertNack(out);
    assert.match(acks(out)[0] ?? '', /truncated/);
    const e = errorOf(out);
    assert.ok(e.error instanceof ZdsDecodeError);
    assert.equal(e.fatal, true);
    assert.equal(s.state, 'closed');
  });

  test('undecodable message: nack', () => {
    const s = session();
    const out = recv(s, Buffer.from([0x0a, 0x05, 0x01]), [100]);
    assert.deepEqual(closed(out), [100]);
    assertNack(out);
    assert.equal(errorOf(out).error.code, 'AMBIT_ERR_ZDS_DECODE');
  });

  test('a message with no known payload: nack', () => {
    const s = session();
    const out = recv(s, Buffer.from([0x22, 0x00]));
    assertNack(out);
    assert.match(errorOf(out).reason, /no known payload/);
  });

  test('oversized datagram: nack', () => {
    const s = session();
    const out = recv(s, Buffer.alloc(1025));
    assertNack(out);
    assert.match(errorOf(out).reason, /1025 bytes/);
  });

  test('keep after the snapshot and a second snapshot_sent are protocol errors', () => {
    let s = session();
    recv(s, { kind: 'snapshot_sent' });
    let out = recv(s, { kind: 'keep', uid: 'a' });
    assertNack(out);
    assert.ok(errorOf(out).error instanceof ZdsProtocolError);
    assert.equal(s.state, 'closed');

    s = session();
    recv(s, { kind: 'snapshot_sent' });
    out = recv(s, { kind: 'snapshot_sent' });
    assertNack(out);
    assert.equal(errorOf(out).error.code, 'AMBIT_ERR_ZDS_PROTOCOL');
  });

  test('with disconnectOnInvalid: false, rejections are nacked and the session goes on', () => {
    const s = session({ disconnectOnInvalid: false });
    let out = recv(s, { kind: 'add', uid: 'a' }, [100, 101]);
    assertNack(out);
    assert.deepEqual(closed(out), [100, 101]);
    assert.equal(errorOf(out).fatal, false);
    out = recv(s, Buffer.from([0xff]), [], true);
    assertNack(out);
    assert.equal(s.state, 'hello_sent');
    assertAck(recv(s, { kind: 'add', uid: 'a' }, [100]));
    assert.equal(s.state, 'snapshot');
  });

  test('message before hello: no ack, fds closed, session closed', () => {
    const s = new ZdsClientSession({ isNetns });
    assert.equal(s.state, 'new');
    const out = s.receive({ data: encodeWorkloadRequest({ kind: 'add', uid: 'a' }), fds: [100], truncated: false });
    assert.deepEqual(acks(out), []);
    assert.deepEqual(closed(out), [100]);
    assert.ok(errorOf(out).error instanceof ZdsProtocolError);
    assert.match(errorOf(out).reason, /before hello/);
    assert.equal(s.state, 'closed');
    assert.deepEqual(s.start(), []);
  });

  test('message after close: no ack, fds closed', () => {
    const s = session();
    s.close();
    assert.equal(s.state, 'closed');
    const out = recv(s, { kind: 'add', uid: 'a' }, [100, 101]);
    assert.deepEqual(acks(out), []);
    assert.deepEqual(closed(out), [100, 101]);
    assert.ok(errorOf(out).error instanceof ZdsSessionClosedError);
    assert.equal(errorOf(out).error.code, 'AMBIT_ERR_ZDS_SESSION_CLOSED');
  });

  test('start twice sends hello once', () => {
    const s = session();
    assert.deepEqual(s.start(), []);
  });

  test('a nack for a very long uid still fits in one datagram', () => {
    const s = session();
    const uid = 'é'.repeat(480);
    const out = recv(s, { kind: 'add', uid }, [100, 101]);
    const send = out.find((a) => a.kind === 'send');
    assert.ok(send && send.kind === 'send');
    assert.ok(send.data.length <= 1024);
    assertNack(out);
    assert.ok(!(acks(out)[0] ?? '').includes('\uFFFD'));
  });

  test('property: never throws, every datagram before close gets exactly one ack, every fd is either handed over or closed', () => {
    const datagram = fc.record({
      data: fc.oneof(
        fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
        fc
          .oneof(
            fc.record({ kind: fc.constant('add' as const), uid: fc.string({ maxLength: 4 }) }),
            fc.record({ kind: fc.constant('keep' as const), uid: fc.string({ maxLength: 4 }) }),
            fc.record({ kind: fc.constant('del' as const), uid: fc.string({ maxLength: 4 }) }),
            fc.constant({ kind: 'snapshot_sent' as const }),
          )
          .map((m) => encodeWorkloadRequest(m)),
      ),
      fds: fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 3 }),
      truncated: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.boolean(), fc.array(datagram, { maxLength: 12 }), (disconnectOnInvalid, dgrams) => {
        const s = session({ disconnectOnInvalid });
        for (const d of dgrams) {
          const wasOpen = s.state !== 'closed';
          const out = s.receive(d);
          assert.equal(acks(out).length, wasOpen ? 1 : 0);
          const handed = out.flatMap((a) => (a.kind === 'add' ? [a.netnsFd] : []));
          assert.deepEqual([...handed, ...closed(out)].sort(), [...d.fds].sort());
        }
      }),
      { numRuns: 500 },
    );
  });
});
