/**
 * deploy/prometheus-rules.yaml alerts only on metrics the agent really
 * exports: every metric name in every expression must be registered by
 * AgentMetrics (a renamed metric would otherwise silently disable an alert).
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { parse } from 'yaml';
import { AgentMetrics } from '../../src/agent/agent-metrics.js';
import { DEPLOY_DIR } from '../../src/cni/deploy-render.js';

interface Rule {
  alert?: string;
  expr?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const PROMQL_FUNCTIONS = new Set(['increase', 'rate', 'time', 'on', 'and', 'or', 'unless', 'by', 'without', 'sum', 'max', 'min', 'ignoring']);

function metricNames(expr: string): string[] {
  // Identifiers that start a selector: a name followed by { or [ or whitespace/operator, not a label inside {...}.
  const stripped = expr.replace(/\{[^}]*\}/g, '{}').replace(/\[[^\]]*\]/g, '[]').replace(/on\([^)]*\)/g, '');
  return [...stripped.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b/g)].map((m) => m[1] as string).filter((n) => !PROMQL_FUNCTIONS.has(n) && !/^\d/.test(n) && n.includes('_'));
}

void describe('deploy/prometheus-rules.yaml', () => {
  const doc = parse(readFileSync(join(DEPLOY_DIR, 'prometheus-rules.yaml'), 'utf8')) as { kind: string; apiVersion: string; spec: { groups: Array<{ name: string; rules: Rule[] }> } };
  const rules = doc.spec.groups.flatMap((g) => g.rules);

  void it('is a PrometheusRule with the certificate alerts', () => {
    assert.equal(doc.kind, 'PrometheusRule');
    assert.equal(doc.apiVersion, 'monitoring.coreos.com/v1');
    const alerts = rules.map((r) => r.alert);
    for (const a of ['AmbitCertificateExpiringSoon', 'AmbitCertificateRenewalFailing', 'AmbitCertificateExpired']) assert.ok(alerts.includes(a), `${a} is defined`);
    for (const r of rules) {
      assert.ok(r.expr && r.expr.length > 0, `${r.alert} has an expression`);
      assert.ok(r.labels?.severity, `${r.alert} has a severity`);
      assert.ok(r.annotations?.summary, `${r.alert} has a summary`);
    }
  });

  void it('uses only metrics the agent registers', async () => {
    const registry = new Registry();
    new AgentMetrics(registry, { pods: () => [], certificates: () => [] });
    const known = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    const used = new Set(rules.flatMap((r) => metricNames(r.expr ?? '')));
    assert.ok(used.size >= 3, `found the metric names (${[...used].join(', ')})`);
    for (const name of used) assert.ok(known.has(name), `${name} (used by an alert) is registered by the agent; known: ${[...known].join(', ')}`);
  });

  void it('the name check itself catches an unknown metric', () => {
    assert.deepEqual(metricNames('increase(ambit_nope_total{identity="x"}[5m]) > 0 and on(instance) time() - ambit_certificate_expires_in_seconds'), ['ambit_nope_total', 'ambit_certificate_expires_in_seconds']);
  });
});
