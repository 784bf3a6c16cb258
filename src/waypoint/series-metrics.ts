/**
 * Counter and histogram metrics with a per-series fast path, registered in a
 * prom-client Registry like its own metrics (same exposition, same get()
 * shape, so scrapes and tests cannot tell the difference).
 *
 * Why: istio_* request metrics carry 25 labels. prom-client validates and
 * hashes the whole label set on every inc()/observe() (labels() too), four
 * times per request here, which was a measurable slice of the waypoint's
 * CPU. Here the caller finds a series once per request by a cheap string key
 * and updates plain numbers; labels are only formatted at scrape time.
 */
import type { Metric, Registry } from 'prom-client';

type Labels = Readonly<Record<string, string>>;

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  /** Only in getForPromString(): the series' labels, printed after `labels` (as prom-client does). */
  sharedLabels?: Labels;
  metricName?: string;
}

interface MetricData {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: MetricValue[];
  aggregator: 'sum';
}

export interface CounterSeries {
  readonly labels: Labels;
  value: number;
}

export interface HistogramSeries {
  readonly labels: Labels;
  /** Non-cumulative counts per bucket; the last slot is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

abstract class SeriesMetric<S> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum' as const;
  protected readonly map = new Map<string, S>();

  constructor(o: { name: string; help: string; registry: Registry }) {
    this.name = o.name;
    this.help = o.help;
    o.registry.registerMetric(this as unknown as Metric);
  }

  /** Drops every series (Registry.resetMetrics). */
  reset(): void {
    this.map.clear();
  }

  abstract get(): Promise<MetricData>;
}

export class SeriesCounter extends SeriesMetric<CounterSeries> {
  readonly type = 'counter' as const;

  /** The series for `key` (created with `labels` the first time; the key must determine the labels). */
  seriesFor(key: string, labels: Labels): CounterSeries {
    let s = this.map.get(key);
    if (!s) {
      s = { labels: { ...labels }, value: 0 };
      this.map.set(key, s);
    }
    return s;
  }

  async get(): Promise<MetricData> {
    const values: MetricValue[] = [];
    for (const s of this.map.values()) values.push({ value: s.value, labels: { ...s.labels } });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

export class SeriesHistogram extends SeriesMetric<HistogramSeries> {
  readonly type = 'histogram' as const;
  readonly #bounds: readonly number[];

  constructor(o: { name: string; help: string; registry: Registry; buckets: readonly number[] }) {
    super(o);
    this.#bounds = [...o.buckets].sort((a, b) => a - b);
  }

  seriesFor(key: string, labels: Labels): HistogramSeries {
    let s = this.map.get(key);
    if (!s) {
      s = { labels: { ...labels }, counts: new Array<number>(this.#bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.map.set(key, s);
    }
    return s;
  }

  observe(s: HistogramSeries, v: number): void {
    if (!Number.isFinite(v)) return;
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && v > (b[i] as number)) i++;
    (s.counts as number[])[i] = (s.counts[i] ?? 0) + 1;
    s.sum += v;
    s.count++;
  }

  /** What the Registry prints: `le` first, then the series' labels. */
  async getForPromString(): Promise<MetricData> {
    const values: MetricValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.map.values()) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.counts[i] ?? 0;
        values.push({ value: acc, labels: { le: this.#bounds[i] as number }, sharedLabels: s.labels, metricName: bucket });
      }
      values.push({ value: s.count, labels: { le: '+Inf' }, sharedLabels: s.labels, metricName: bucket });
      values.push({ value: s.sum, labels: {}, sharedLabels: s.labels, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels: {}, sharedLabels: s.labels, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** prom-client's get() shape: one label set per value. */
  async get(): Promise<MetricData> {
    const data = await this.getForPromString();
    data.values = data.values.map(({ value, labels, sharedLabels, metricName }) => ({ value, labels: { ...labels, ...sharedLabels }, ...(metricName ? { metricName } : {}) }));
    return data;
  }
}
