/**
 * The agent's own gauges and counters beside the Istio TCP metrics, with
 * ztunnel's names where ztunnel has one (reference ztunnel.md §7.1):
 * - in-pod: workload_manager_active_proxy_count / pending_proxy_count,
 *   proxies_started_total / proxies_stopped_total;
 * - xDS counters live with the xDS client (control-plane-client.ts);
 * - certificates: ambit_certificate_expiry_timestamp_seconds{identity},
 *   ambit_certificate_expires_in_seconds{identity} (negative once expired),
 *   ambit_certificate_state{identity,state} and
 *   ambit_certificate_renewal_failures_total{identity} (ztunnel has none; an
 *   operator alerts on expiry approaching while the CA is unreachable:
 *   deploy/prometheus-rules.yaml, docs/CERTIFICATES.md).
 * Gauges are computed at scrape time from the live objects; the failure
 * counter follows the secret manager's per-identity total (it never goes
 * down: the manager keeps each identity's total across forget()).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CertificateDumpEntry } from '../identity/secret-manager.js';

export interface AgentMetricSources {
  readonly pods: () => ReadonlyArray<{ readonly state: string }>;
  readonly certificates: () => readonly CertificateDumpEntry[];
}

export class AgentMetrics {
  readonly proxiesStarted: Counter;
  readonly proxiesStopped: Counter;

  constructor(registry: Registry, src: AgentMetricSources) {
    const registers = [registry];
    new Gauge({
      name: 'workload_manager_active_proxy_count',
      help: 'Enrolled pods whose proxy is up',
      registers,
      collect() {
        this.set(src.pods().filter((p) => p.state === 'up').length);
      },
    });
    new Gauge({
      name: 'workload_manager_pending_proxy_count',
      help: 'Enrolled pods whose proxy is still starting',
      registers,
      collect() {
        this.set(src.pods().filter((p) => p.state !== 'up').length);
      },
    });
    this.proxiesStarted = new Counter({ name: 'workload_manager_proxies_started_total', help: 'Pod proxies started', registers });
    this.proxiesStopped = new Counter({ name: 'workload_manager_proxies_stopped_total', help: 'Pod proxies stopped', registers });
    new Gauge({
      name: 'ambit_certificate_expiry_timestamp_seconds',
      help: 'When each workload certificate held by the agent expires (unix seconds)',
      labelNames: ['identity'],
      registers,
      collect() {
        this.reset();
        for (const c of src.certificates()) if (c.certificate) this.set({ identity: c.identity }, Date.parse(c.certificate.notAfter) / 1000);
      },
    });
    new Gauge({
      name: 'ambit_certificate_expires_in_seconds',
      help: 'Seconds until each workload certificate held by the agent expires (negative once expired)',
      labelNames: ['identity'],
      registers,
      collect() {
        this.reset();
        for (const c of src.certificates()) if (c.renewal.expiresInSeconds !== undefined) this.set({ identity: c.identity }, c.renewal.expiresInSeconds);
      },
    });
    // Counted at scrape time from the secret manager's totals; `seen` keeps it monotonic.
    const seen = new Map<string, number>();
    new Counter({
      name: 'ambit_certificate_renewal_failures_total',
      help: 'Failed workload certificate requests (first issue or renewal), by identity',
      labelNames: ['identity'],
      registers,
      collect() {
        for (const c of src.certificates()) {
          const total = c.renewal.failuresTotal;
          const before = seen.get(c.identity) ?? 0;
          this.inc({ identity: c.identity }, Math.max(0, total - before));
          seen.set(c.identity, Math.max(total, before));
        }
      },
    });
    new Gauge({
      name: 'ambit_certificate_state',
      help: 'Workload certificate state (1 for the current state): Initializing, Available or Unavailable',
      labelNames: ['identity', 'state'],
      registers,
      collect() {
        this.reset();
        for (const c of src.certificates()) this.set({ identity: c.identity, state: c.state.split(':')[0] ?? c.state }, 1);
      },
    });
  }
}
