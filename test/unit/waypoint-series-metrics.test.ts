/**
 * series-metrics.ts must expose exactly what prom-client's own Counter and
 * Histogram would for the same updates (text exposition and get()).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from 'prom-client';
import { SeriesCounter, SeriesHistogram } from '../../src/waypoint/series-metrics.js';

const BUCKETS = [1, 10, 100, 1000];
const A = { code: '200', svc: 'a' };
const B = { code: '503', svc: 'b"x\\y' };

function feed(): { ours: Registry; theirs: Registry } {
  const ours = new Registry();
  const theirs = new Registry();
  const oc = new SeriesCounter({ name: 'req_total', help: 'Requests', registry: ours });
  const oh = new SeriesHistogram({ name: 'dur_ms', help: 'Duration', buckets: BUCKETS, registry: ours });
  const tc = new Counter({ name: 'req_total', help: 'Requests', labelNames: ['code', 'svc'], registers: [theirs] });
  const th = new Histogram({ name: 'dur_ms', help: 'Duration', labelNames: ['code', 'svc'], buckets: BUCKETS, registers: [theirs] });
  const obs: Array<[typeof A, number]> = [[A, 0.5], [A, 1], [B, 10.5], [A, 1000], [B, 5000], [A, 7]];
  for (const [l, v] of obs) {
    const key = `${l.code}|${l.svc}`;
    oc.seriesFor(key, l).value++;
    oh.observe(oh.seriesFor(key, l), v);
    tc.inc(l);
    th.observe(l, v);
  }
  return { ours, theirs };
}

test('text exposition equals prom-client for counters and histograms', async () => {
  const { ours, theirs } = feed();
  assert.equal(await ours.metrics(), await theirs.metrics());
});

test('get() values equal prom-client (what counterSum-style readers see)', async () => {
  const { ours, theirs } = feed();
  for (const name of ['req_total', 'dur_ms']) {
    const a = await ours.getSingleMetric(name)?.get();
    const b = await theirs.getSingleMetric(name)?.get();
    assert.ok(a && b);
    const shape = (vs: typeof a.values): unknown[] => vs.map((v) => ({ value: v.value, labels: v.labels, metricName: (v as { metricName?: string }).metricName }));
    assert.deepEqual(shape(a.values), shape(b.values));
    assert.equal(a.type, b.type);
  }
});

test('a series is created once per key; resetMetrics clears it', async () => {
  const reg = new Registry();
  const c = new SeriesCounter({ name: 'x_total', help: 'x', registry: reg });
  const s1 = c.seriesFor('k', { a: '1' });
  assert.equal(c.seriesFor('k', { a: '1' }), s1);
  s1.value += 2;
  assert.match(await reg.metrics(), /x_total\{a="1"\} 2/);
  reg.resetMetrics();
  assert.doesNotMatch(await reg.metrics(), /x_total\{/);
});

test('non-finite observations are ignored', async () => {
  const reg = new Registry();
  const h = new SeriesHistogram({ name: 'h', help: 'h', buckets: [1], registry: reg });
  const s = h.seriesFor('k', {});
  h.observe(s, Number.NaN);
  h.observe(s, 0.5);
  assert.equal(s.count, 1);
  assert.equal(s.sum, 0.5);
});
