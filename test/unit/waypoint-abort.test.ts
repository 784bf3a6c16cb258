/**
 * abort.ts: the request path's cheap AbortSignal stand-in keeps the
 * AbortSignal semantics the pipeline relies on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Abort, LinkedAbort } from '../../src/waypoint/abort.js';

test('listeners run once, in order; removed ones and late ones never run', () => {
  const a = new Abort();
  const seen: string[] = [];
  const x = (): void => void seen.push('x');
  const y = (): void => void seen.push('y');
  const z = (): void => void seen.push('z');
  a.addEventListener('abort', x);
  a.addEventListener('abort', y);
  a.addEventListener('abort', z);
  a.removeEventListener('abort', y);
  assert.equal(a.aborted, false);
  a.abort();
  a.abort();
  assert.equal(a.aborted, true);
  assert.deepEqual(seen, ['x', 'z']);
  a.addEventListener('abort', () => seen.push('late'));
  assert.deepEqual(seen, ['x', 'z']);
});

test('LinkedAbort follows its parent (AbortSignal or Abort) until unlinked', () => {
  const ctl = new AbortController();
  const l = new LinkedAbort(ctl.signal);
  ctl.abort();
  assert.equal(l.aborted, true);

  const p = new Abort();
  const l2 = new LinkedAbort(p);
  l2.unlink();
  p.abort();
  assert.equal(l2.aborted, false, 'unlinked: the parent no longer reaches it');

  const done = new Abort();
  done.abort();
  assert.equal(new LinkedAbort(done).aborted, true, 'an already aborted parent aborts at once');
});
