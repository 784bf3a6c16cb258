/** RequestBody: live streaming with a bounded replay copy (pure streams). */
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { RequestBody } from '../../src/waypoint/request-body.js';

function collector(): Writable & { data: () => string; ended: boolean } {
  const chunks: Buffer[] = [];
  const w = new Writable({ write(c: Buffer, _e, cb) { chunks.push(c); cb(); } }) as Writable & { data: () => string; ended: boolean };
  w.ended = false;
  w.on('finish', () => (w.ended = true));
  w.data = () => Buffer.concat(chunks).toString();
  return w;
}

test('streams live, then replays the kept copy for a retry', async () => {
  const src = new PassThrough();
  const body = new RequestBody(src, 100);
  assert.equal(body.replayable, true, 'not started yet');
  const first = collector();
  body.pipeTo(first);
  src.write('hello ');
  assert.equal(body.replayable, false, 'still streaming');
  src.end('world');
  await body.whenEnded();
  await new Promise((r) => setImmediate(r));
  assert.equal(first.data(), 'hello world');
  assert.equal(body.replayable, true);
  const retry = collector();
  body.pipeTo(retry);
  await new Promise((r) => setImmediate(r));
  assert.equal(retry.data(), 'hello world');
  assert.ok(retry.ended);
  assert.equal(body.buffered()?.toString(), 'hello world');
});

test('a body over the replay limit streams but is not replayable', async () => {
  const src = new PassThrough();
  const body = new RequestBody(src, 4);
  const w = collector();
  body.pipeTo(w);
  src.end('0123456789');
  await body.whenEnded();
  await new Promise((r) => setImmediate(r));
  assert.equal(w.data(), '0123456789');
  assert.equal(body.size, 10);
  assert.equal(body.replayable, false);
  assert.equal(body.buffered(), undefined);
  assert.throws(() => body.pipeTo(collector()));
});

test('a client that goes away mid-body leaves a body that is never replayed', async () => {
  const src = new PassThrough();
  const body = new RequestBody(src, 100);
  body.pipeTo(collector());
  src.write('part');
  src.destroy();
  await body.whenEnded();
  assert.equal(body.replayable, false);
});

test('discard drains an unread body', async () => {
  const src = new PassThrough();
  const body = new RequestBody(src, 100);
  body.discard();
  src.end('x'.repeat(1000));
  await body.whenEnded();
  assert.equal(body.size, 1000);
  assert.equal(RequestBody.of(Buffer.from('abc')).buffered()?.toString(), 'abc');
});
