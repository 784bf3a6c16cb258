/**
 * What `ambit control-plane status` shows and what the control plane
 * exports as metrics: resources per kind, the served address/authorization
 * counts, the current ConfigIssues (each rendered as one line naming file,
 * kind, namespace/name and field), translation notes, and rejections
 * (resources agents NACKed).
 *
 * Metrics: `ambit_control_plane_config_errors{kind}` (gauge, current issues;
 * kind `yaml` for file-level problems) and
 * `ambit_control_plane_rejections_total{type}` (counter; type `address`,
 * `authorization` or `l7` for waypoint configs).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ResourceStore } from './resource-store.js';
import type { Translation } from './translate.js';
import { formatIssue, type ConfigIssue } from './validation.js';

export interface ControlPlaneStatus {
  readonly version: number;
  readonly sources: readonly string[];
  /** Valid resources per kindId. */
  readonly resources: Readonly<Record<string, number>>;
  /** `waypoints`: L7 configs served, one per waypoint Gateway (set by the control plane server). */
  readonly served: { readonly workloads: number; readonly services: number; readonly authorizations: number; readonly waypoints?: number };
  readonly issues: ReadonlyArray<ConfigIssue & { readonly text: string }>;
  readonly notes: readonly string[];
  readonly rejections: number;
}

export class ControlPlaneMetrics {
  readonly #errors: Gauge<'kind'>;
  readonly #rejections: Counter<'type'>;
  #total = 0;

  constructor(registry: Registry) {
    this.#errors = new Gauge({ name: 'ambit_control_plane_config_errors', help: 'Current configuration issues (invalid resources and unreadable files), by kind', labelNames: ['kind'], registers: [registry] });
    this.#rejections = new Counter({ name: 'ambit_control_plane_rejections_total', help: 'Resources rejected (NACKed) by node agents, by type', labelNames: ['type'], registers: [registry] });
  }

  /** Sets the gauge to the current issue list (kinds no longer present drop to 0). */
  setIssues(issues: readonly ConfigIssue[]): void {
    const by = new Map<string, number>();
    for (const i of issues) {
      const k = i.kind === '' ? 'yaml' : i.kind;
      by.set(k, (by.get(k) ?? 0) + 1);
    }
    this.#errors.reset();
    for (const [kind, n] of by) this.#errors.set({ kind }, n);
  }

  countRejection(type: 'address' | 'authorization' | 'l7', n = 1): void {
    this.#rejections.inc({ type }, n);
    this.#total += n;
  }

  get rejections(): number {
    return this.#total;
  }
}

export function buildStatus(store: ResourceStore, translation: Translation | undefined, metrics?: ControlPlaneMetrics, waypoints?: number): ControlPlaneStatus {
  const snap = store.snapshot();
  let workloads = 0;
  let services = 0;
  for (const a of translation?.addresses.values() ?? []) {
    if (a.type === 'workload') workloads++;
    else services++;
  }
  return {
    version: snap.version,
    sources: store.sources(),
    resources: snap.counts(),
    served: { workloads, services, authorizations: translation?.authorizations.size ?? 0, ...(waypoints !== undefined ? { waypoints } : {}) },
    issues: store.issues().map((i) => ({ ...i, text: formatIssue(i) })),
    notes: translation?.notes ?? [],
    rejections: metrics?.rejections ?? 0,
  };
}

/** Human-readable form for the CLI. */
export function formatStatus(s: ControlPlaneStatus): string {
  const lines = [`config version ${s.version}, ${s.sources.length} source(s)`, 'resources:'];
  for (const [k, n] of Object.entries(s.resources).sort()) lines.push(`  ${k}: ${n}`);
  lines.push(`served: ${s.served.workloads} workload(s), ${s.served.services} service(s), ${s.served.authorizations} authorization(s)${s.served.waypoints !== undefined ? `, ${s.served.waypoints} waypoint config(s)` : ''}`);
  lines.push(`rejected by agents: ${s.rejections}`);
  lines.push(s.issues.length === 0 ? 'issues: none' : `issues (${s.issues.length}):`);
  for (const i of s.issues) lines.push(`  ${i.text}`);
  if (s.notes.length > 0) lines.push(`notes (${s.notes.length}):`, ...s.notes.map((n) => `  ${n}`));
  return lines.join('\n');
}
