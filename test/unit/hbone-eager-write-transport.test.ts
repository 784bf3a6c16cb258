/**
 * EagerWriteTransport: writes complete at once, and the writes of one
 * event-loop turn reach the inner socket as one batch (one TLS write).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { EagerWriteTransport } from '../../src/hbone/eager-write-transport.js';

/** An inner "socket" that records each write call it receives as a batch. */
function recorder(): { inner: Duplex; batches: string[][]; ended: () => boolean } {
  const batches: string[][] = [];
  let ended = false;
  const inner = new Duplex({
    read() {},
    write(chunk: Buffer, _e, cb) {
      batches.push([chunk.toString()]);
      cb();
    },
    writev(chunks, cb) {
      batches.push(chunks.map((c) => (c.chunk as Buffer).toString()));
      cb();
    },
    final(cb) {
      ended = true;
      cb();
    },
  });
  return { inner, batches, ended: () => ended };
}

test('writes in one turn are flushed together after the turn; callbacks are immediate', async () => {
  const r = recorder();
  const t = new EagerWriteTransport(r.inner as unknown as TLSSocket);
  let acked = 0;
  t.write(Buffer.from('a'), () => acked++);
  t.write(Buffer.from('b'), () => acked++);
  t.write(Buffer.from('c'), () => acked++);
  assert.deepEqual(r.batches, [], 'nothing reaches the socket within the turn');
  await new Promise((res) => setImmediate(res));
  await new Promise((res) => setImmediate(res));
  assert.equal(acked, 3);
  assert.deepEqual(r.batches.flat(), ['a', 'b', 'c']);
  assert.equal(r.batches.length, 1, 'one batch for the turn');
  // a later turn gets its own batch
  t.write(Buffer.from('d'));
  await new Promise((res) => setImmediate(res));
  assert.deepEqual(r.batches.flat(), ['a', 'b', 'c', 'd']);
  assert.equal(r.batches.length, 2);
  t.destroy();
});

test('end flushes what is pending before ending the inner socket', async () => {
  const r = recorder();
  const t = new EagerWriteTransport(r.inner as unknown as TLSSocket);
  t.write(Buffer.from('x'));
  await new Promise<void>((res) => t.end(() => res()));
  assert.deepEqual(r.batches.flat(), ['x']);
  assert.equal(r.ended(), true);
  t.destroy();
});

test('reads pass through', async () => {
  const r = recorder();
  const t = new EagerWriteTransport(r.inner as unknown as TLSSocket);
  const got = new Promise<string>((res) => t.once('data', (c: Buffer) => res(c.toString())));
  r.inner.emit('data', Buffer.from('hello'));
  assert.equal(await got, 'hello');
  t.destroy();
});
