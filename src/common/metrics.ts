/**
 * prom-client registries are created per process (or per test) and injected,
 * never taken from prom-client's global default, so two agents in one test
 * process do not share counters.
 */
import { Registry, collectDefaultMetrics } from 'prom-client';

export { Registry };

export function createRegistry(opts: { processMetrics: boolean } = { processMetrics: false }): Registry {
  const registry = new Registry();
  if (opts.processMetrics) collectDefaultMetrics({ register: registry });
  return registry;
}
