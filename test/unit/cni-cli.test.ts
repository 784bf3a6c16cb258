/**
 * The operator commands' output and exit codes without a cluster: `ambit
 * check` rendering (table/json, exit 1 on a failed check), `ambit install
 * --dry-run` (YAML stream and JSON List, refuses to apply), and argument
 * errors of enroll/waypoint.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { runCheck } from '../../src/cli/check-command.js';
import { runLabel } from '../../src/cli/enroll-command.js';
import { runInstall } from '../../src/cli/install-command.js';
import { runWaypoint } from '../../src/cli/waypoint-command.js';
import type { KubeOps } from '../../src/cni/kube-ops.js';
import type { PreflightResult } from '../../src/cni/preflight.js';

const capture = () => {
  let text = '';
  return { out: { write: (s: string) => void (text += s), colour: false }, text: () => text };
};
const args = (positionals: string[], values: Record<string, string | boolean> = {}) => ({ positionals, values, rest: [] });
const noOps = new Proxy({}, { get: () => () => Promise.reject(new Error('no api in this test')) }) as KubeOps;

describe('operator CLI output', () => {
  const results: PreflightResult[] = [
    { name: 'netns', status: 'ok', detail: 'fine' },
    { name: 'nft', status: 'warn', detail: 'iptables fallback' },
  ];

  test('check: a table on a terminal, exit 0 when nothing failed', async () => {
    const c = capture();
    assert.equal(await runCheck(args([]), c.out, results), 0);
    assert.match(c.text(), /^CHECK\s+STATUS\s+DETAIL\nnetns\s+OK\s+fine\nnft\s+WARN\s+iptables fallback\n\nthis node can run ambit\n$/);
  });

  test('check: exit 1 and a clear verdict when a check failed; -o json is the raw results', async () => {
    const failed = [...results, { name: 'SO_MARK', status: 'fail', detail: 'EPERM' } as const];
    const c = capture();
    assert.equal(await runCheck(args([]), c.out, failed), 1);
    assert.match(c.text(), /1 check\(s\) failed: this node cannot run ambit as is/);
    const j = capture();
    assert.equal(await runCheck(args([], { output: 'json' }), j.out, failed), 1);
    assert.deepEqual(JSON.parse(j.text()), failed);
  });

  test('install --dry-run: a YAML stream of valid documents, or a JSON List; without --dry-run it refuses', () => {
    const y = capture();
    assert.equal(runInstall(args([], { 'dry-run': true, namespace: 'mesh-system', image: 'img:1' }), y.out), 0);
    const docs = parseAllDocuments(y.text()).map((d) => d.toJS() as { kind: string; metadata: { namespace?: string } });
    assert.deepEqual([...new Set(docs.map((d) => d.kind))].sort(), ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet', 'Deployment', 'Namespace', 'Service', 'ServiceAccount']);
    const j = capture();
    runInstall(args([], { 'dry-run': true, output: 'json' }), j.out);
    assert.equal((JSON.parse(j.text()) as { kind: string; items: unknown[] }).items.length, docs.length);
    assert.throws(() => runInstall(args([]), capture().out), /only --dry-run is supported/);
  });

  test('enroll and waypoint argument errors', async () => {
    await assert.rejects(runLabel(args([]), capture().out, true, noOps), /give exactly one namespace/);
    await assert.rejects(runWaypoint(args(['apply']), capture().out, noOps), /-n <namespace> is required/);
    await assert.rejects(runWaypoint(args(['list']), capture().out, noOps), /give -n <namespace> or -A/);
    await assert.rejects(runWaypoint(args(['frob'], { namespace: 'x' }), capture().out, noOps), /unknown subcommand 'frob'/);
  });
});
