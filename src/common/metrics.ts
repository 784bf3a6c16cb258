/**
 * prom-client registries are created per process (or per test) and injected,
 * never taken from prom-client's global default, so two agents in one test
 * process do not share counters.
 *
 * Exposition: Prometheus text comes from prom-client as is. OpenMetrics is
 * rendered here from the registry's JSON, because prom-client's own
 * OpenMetrics mode renames counters in place (it strips `_total` from the
 * shared metric objects), which would break every later Prometheus scrape
 * of the same registry.
 */
import { Registry, collectDefaultMetrics } from 'prom-client';

export { Registry };

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

export function createRegistry(opts: { processMetrics: boolean } = { processMetrics: false }): Registry {
  const registry = new Registry();
  if (opts.processMetrics) collectDefaultMetrics({ register: registry });
  return registry;
}

/** Prometheus text exposition format 0.0.4. */
export async function prometheusText(registry: Registry): Promise<string> {
  return registry.metrics();
}

function escapeHelp(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabel(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** OpenMetrics 1.0 text: counters as `<family>` with `<family>_total` samples, ending in `# EOF`. */
export async function openMetricsText(registry: Registry): Promise<string> {
  const families = await registry.getMetricsAsJSON();
  const out: string[] = [];
  for (const f of families) {
    const type = String(f.type);
    const family = type === 'counter' ? f.name.replace(/_total$/, '') : f.name;
    out.push(`# HELP ${family} ${escapeHelp(f.help)}`, `# TYPE ${family} ${type}`);
    for (const v of f.values) {
      const name = (v as { metricName?: string }).metricName ?? (type === 'counter' ? `${family}_total` : f.name);
      const labels = Object.entries(v.labels ?? {})
        .filter(([, value]) => value !== undefined)
        .map(([k, value]) => `${k}="${escapeLabel(String(value))}"`);
      out.push(`${name}${labels.length > 0 ? `{${labels.join(',')}}` : ''} ${formatValue(v.value)}`);
    }
  }
  out.push('# EOF');
  return out.join('\n') + '\n';
}
