/** Trace header extraction and injection (W3C traceparent, B3 single and multi). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { extractTrace, injectTrace, WaypointTracer } from '../../src/waypoint/tracing.js';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const S = '00f067aa0ba902b7';

test('extract: traceparent first, then b3, then x-b3-*; malformed ignored', () => {
  assert.deepEqual(extractTrace({ traceparent: `00-${T}-${S}-01`, b3: `${T}-aaaaaaaaaaaaaaaa-1` }), { traceId: T, parentSpanId: S, sampled: true });
  assert.deepEqual(extractTrace({ traceparent: `00-${T}-${S}-00`, tracestate: 'k=v' }), { traceId: T, parentSpanId: S, sampled: false, tracestate: 'k=v' });
  assert.deepEqual(extractTrace({ b3: `${T}-${S}-0` }), { traceId: T, parentSpanId: S, sampled: false });
  assert.deepEqual(extractTrace({ 'x-b3-traceid': 'a3ce929d0e0e4736', 'x-b3-spanid': S }), { traceId: `0000000000000000a3ce929d0e0e4736`, parentSpanId: S, sampled: true });
  assert.equal(extractTrace({ traceparent: `00-${'0'.repeat(32)}-${S}-01` }), undefined);
  assert.equal(extractTrace({ traceparent: 'garbage' }), undefined);
  assert.equal(extractTrace({}), undefined);
});

test('inject writes W3C and B3 for our span and drops a stale single b3', () => {
  const h: Record<string, string> = { b3: 'old' };
  injectTrace(h, T, 'bbbbbbbbbbbbbbbb', S, true);
  assert.deepEqual(h, { traceparent: `00-${T}-bbbbbbbbbbbbbbbb-01`, 'x-b3-traceid': T, 'x-b3-spanid': 'bbbbbbbbbbbbbbbb', 'x-b3-parentspanid': S, 'x-b3-sampled': '1' });
});

test('without an exporter, ids are generated and the caller trace is continued', () => {
  const t = new WaypointTracer();
  const s = t.start('x', { traceId: T, parentSpanId: S, sampled: true }, {});
  assert.equal(s.traceId, T);
  assert.equal(s.parentSpanId, S);
  assert.match(s.spanId, /^[0-9a-f]{16}$/);
  const root = t.start('x', undefined, {});
  assert.match(root.traceId, /^[0-9a-f]{32}$/);
  assert.equal(root.parentSpanId, undefined);
});
