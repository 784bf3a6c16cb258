/**
 * Hostile ZDS input against the agent's session logic (src/zds/session.ts):
 * an unknown oneof member, wrong wire types, truncation at every byte, zero
 * or two fds, fds that are not netns, del before add, and random sequences
 * of all of these. The invariants: never throws; before close, every
 * datagram gets exactly one ACK or NACK; every received fd is either handed
 * to the caller exactly once or closed; nothing is added without a netns fd.
 * The socket-level cases (SCM_RIGHTS, MSG_TRUNC) are in cni-zds.test.ts.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { decodeWorkloadResponse, encodeWorkloadRequest, type WorkloadRequest } from '../../src/zds/messages.js';
import { WireWriter } from '../../src/zds/wire.js';
import { ZdsClientSession, type ZdsAction, type ZdsDatagram } from '../../src/zds/session.js';
import { Tally } from '../security/lib/tally.js';

const tally = new Tally('zds');
after(() => tally.print());

const isNetns = (fd: number): boolean => fd >= 100;

function started(): ZdsClientSession {
  const s = new ZdsClientSession({ isNetns, disconnectOnInvalid: false });
  s.start();
  return s;
}

function answers(actions: readonly ZdsAction[]): string[] {
  return actions.flatMap((a) => {
    if (a.kind !== 'send') return [];
    const r = decodeWorkloadResponse(a.data);
    return r.ok ? [r.value.ack.error] : ['<undecodable>'];
  });
}

function refused(name: string, actions: readonly ZdsAction[], fds: readonly number[] = []): void {
  const a = answers(actions);
  const isNack = a.length === 1 && (a[0] ?? '') !== '';
  const closedFds = actions.filter((x) => x.kind === 'close_fd').map((x) => (x as { fd: number }).fd);
  tally.case(name, { refused: isNack });
  assert.ok(isNack, `${name}: answers ${JSON.stringify(a)}`);
  assert.deepEqual([...closedFds].sort(), [...fds].sort(), `${name}: fds not closed`);
  assert.ok(!actions.some((x) => x.kind === 'add'), `${name}: added anyway`);
}

const ADD = (uid = 'pod-1'): WorkloadRequest => ({ kind: 'add', uid, workloadInfo: { name: 'p', namespace: 'ns', serviceAccount: 'sa' } });

describe('zds hostile messages', () => {
  test('unknown oneof members (fields 4, 6, 7, 15, 1000) are NACKed', () => {
    for (const field of [4, 6, 7, 15, 1000]) {
      const s = started();
      const data = new WireWriter().message(field, new WireWriter().string(1, 'x').finish()).finish();
      refused(`unknown oneof field ${field}`, s.receive({ data, fds: [], truncated: false }));
    }
  });

  test('known members with the wrong wire type are NACKed', () => {
    for (const bytes of [[0x08, 0x01], [0x10, 0x05], [0x1d, 0, 0, 0, 0], [0x29, 0, 0, 0, 0, 0, 0, 0, 0]]) {
      refused(`wrong wire type ${bytes[0]}`, started().receive({ data: Buffer.from(bytes), fds: [], truncated: false }));
    }
  });

  test('an add truncated at every byte never adds and never leaks its fd', () => {
    const full = encodeWorkloadRequest(ADD());
    for (let n = 0; n < full.length; n++) {
      const s = started();
      const actions = s.receive({ data: full.subarray(0, n), fds: [100 + n], truncated: false });
      const added = actions.filter((a) => a.kind === 'add');
      const closedFd = actions.some((a) => a.kind === 'close_fd' && a.fd === 100 + n);
      tally.case(`add truncated to ${n} bytes`, { refused: added.length === 0 });
      // a prefix can still be a valid (shorter) message; then the fd is handed over, else closed
      assert.ok(added.length === 1 ? !closedFd : closedFd, `prefix ${n}: fd neither handed over nor closed`);
      assert.equal(answers(actions).length, 1, `prefix ${n}: not exactly one answer`);
    }
  });

  test('MSG_TRUNC/MSG_CTRUNC, zero fds, two fds, a non-netns fd, fds on del/keep are NACKed with fds closed', () => {
    const add = encodeWorkloadRequest(ADD());
    refused('truncated flag', started().receive({ data: add, fds: [101], truncated: true }), [101]);
    refused('add with zero fds', started().receive({ data: add, fds: [], truncated: false }));
    refused('add with two fds', started().receive({ data: add, fds: [101, 102], truncated: false }), [101, 102]);
    refused('add with a non-netns fd', started().receive({ data: add, fds: [5], truncated: false }), [5]);
    refused('del with an fd', started().receive({ data: encodeWorkloadRequest({ kind: 'del', uid: 'x' }), fds: [103], truncated: false }), [103]);
    refused('keep with three fds', started().receive({ data: encodeWorkloadRequest({ kind: 'keep', uid: 'x' }), fds: [1, 2, 3], truncated: false }), [1, 2, 3]);
    refused('oversized message', started().receive({ data: Buffer.alloc(4096, 0x0a), fds: [104], truncated: false }), [104]);
  });

  test('del before add is acknowledged as unknown and changes nothing', () => {
    const s = started();
    const actions = s.receive({ data: encodeWorkloadRequest({ kind: 'del', uid: 'ghost' }), fds: [], truncated: false });
    tally.case('del before add', { refused: false });
    assert.deepEqual(answers(actions), ['']);
    assert.ok(actions.some((a) => a.kind === 'del' && a.uid === 'ghost' && !a.known));
    const add = s.receive({ data: encodeWorkloadRequest(ADD('ghost')), fds: [150], truncated: false });
    assert.ok(add.some((a) => a.kind === 'add' && a.netnsFd === 150));
  });
});

describe('zds hostile sequences (property)', () => {
  const msgArb: fc.Arbitrary<Buffer> = fc.oneof(
    fc.constantFrom<WorkloadRequest>(ADD('a'), ADD('b'), { kind: 'del', uid: 'a' }, { kind: 'keep', uid: 'b' }, { kind: 'snapshot_sent' }).map((m) => encodeWorkloadRequest(m)),
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  );
  const dgramArb: fc.Arbitrary<ZdsDatagram> = fc.record({
    data: msgArb,
    fds: fc.array(fc.constantFrom(3, 4, 100, 101, 102), { maxLength: 3 }),
    truncated: fc.boolean(),
  });

  test('never throws; one answer per datagram; each fd handed over once or closed', () => {
    let datagrams = 0;
    fc.assert(
      fc.property(fc.array(dgramArb, { maxLength: 30 }), fc.boolean(), (dgrams, disconnect) => {
        const s = new ZdsClientSession({ isNetns, disconnectOnInvalid: disconnect });
        s.start();
        for (const d of dgrams) {
          datagrams++;
          const wasClosed = s.state === 'closed';
          const actions = s.receive({ ...d, fds: d.fds.map((fd, i) => fd + i * 1000) });
          const fds = d.fds.map((fd, i) => fd + i * 1000);
          const handed = actions.filter((a) => a.kind === 'add').map((a) => (a as { netnsFd: number }).netnsFd);
          const closed = actions.filter((a) => a.kind === 'close_fd').map((a) => (a as { fd: number }).fd);
          assert.deepEqual([...handed, ...closed].sort(), [...fds].sort());
          for (const fd of handed) assert.ok(isNetns(fd));
          assert.equal(answers(actions).length, wasClosed ? 0 : 1);
        }
      }),
      { numRuns: 500 },
    );
    tally.tried += datagrams;
  });
});
