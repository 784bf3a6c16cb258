/**
 * `ambit status --lab <name>` against a live lab with a control plane and a
 * waypoint (a pod labelled gateway.networking.k8s.io/gateway-name, which the
 * lab runs `ambit waypoint run` in): the control plane, both agents (reached
 * inside their node netns), enrolled pods, certificates, xDS connections and
 * the waypoint's pod and connection are reported and the exit code is 0; a
 * config error, a waypoint Gateway nobody runs and a stopped control plane
 * each turn it into exit 2 naming the problem, and fixing them turns it back.
 * Needs root (network namespaces, nftables).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ClusterStatus } from '../../src/cli/cluster-status.js';
import { parseCommandArgs } from '../../src/cli/command.js';
import { runStatus, statusCommand } from '../../src/cli/status-command.js';
import { labDown, labStartControlPlane, labStopControlPlane, labUp } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const bin = fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url));
const name = `ops${randomBytes(2).toString('hex')}`;
let dir = '';

/** Gateway + Service + the Pod that runs it (the lab starts `ambit waypoint run` in a pod with the gateway-name label). */
const WAYPOINT = [
  'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: wp\n  namespace: mesh\n  labels: { istio.io/waypoint-for: service }\nspec:\n  gatewayClassName: istio-waypoint\n  listeners:\n    - { name: mesh, port: 15008, protocol: HBONE }\n',
  'apiVersion: v1\nkind: Service\nmetadata:\n  name: wp\n  namespace: mesh\nspec:\n  clusterIP: 10.96.0.60\n  selector: { gateway.networking.k8s.io/gateway-name: wp }\n  ports:\n    - { name: mesh, port: 15008 }\n',
  'apiVersion: v1\nkind: Pod\nmetadata:\n  name: wp\n  namespace: mesh\n  labels: { gateway.networking.k8s.io/gateway-name: wp, istio.io/dataplane-mode: none }\nspec:\n  nodeName: node-a\n  serviceAccountName: wp\n',
].join('---\n');

async function status(...extra: string[]): Promise<{ code: number; report: ClusterStatus }> {
  let text = '';
  const code = await runStatus(parseCommandArgs(statusCommand, ['--lab', name, '-o', 'json', ...extra]), { write: (s) => void (text += s), colour: false });
  return { code, report: JSON.parse(text) as ClusterStatus };
}

/** Polls until `check` holds (the control plane and agents react within a second or two). */
async function eventually(what: string, check: (s: { code: number; report: ClusterStatus }) => boolean, timeoutMs = 15_000): Promise<{ code: number; report: ClusterStatus }> {
  const t0 = Date.now();
  let last: { code: number; report: ClusterStatus } | undefined;
  for (;;) {
    last = await status();
    if (check(last)) return last;
    if (Date.now() - t0 > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms; last status: ${JSON.stringify(last.report, null, 2)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('ambit status --lab (live lab with a control plane)', { ...requiresRoot(), ...requiresTool('nft') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-status-lab-'));
    cpSync(`${fixtures}control-plane-lab`, dir, { recursive: true });
    writeFileSync(join(dir, 'waypoint.yaml'), WAYPOINT);
    await labDown(name);
    await labUp({ manifests: dir, name, mesh: true, controlPlane: true });
  });

  after(async () => {
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('healthy: control plane, both agents with their pods, certificates and xDS, the waypoint; exit 0', async (t) => {
    assertPrivileged(t);
    const { code, report } = await eventually('healthy with certificates', (s) => s.code === 0 && s.report.agents.every((a) => a.soonestExpiry !== undefined));
    assert.equal(code, 0);
    assert.equal(report.mode, 'lab');
    assert.equal(report.controlPlane?.reachable, true);
    assert.equal(report.controlPlane?.ready, true);
    assert.ok(report.controlPlane?.configVersion !== undefined);
    assert.equal(report.controlPlane?.connectedAgents, 2);
    assert.equal(report.controlPlane?.connectedWaypoints, 1);
    assert.deepEqual(report.configErrors, []);
    assert.deepEqual(
      report.agents.map((a) => [a.node, a.ready, a.xds]),
      [
        ['node-a', true, 'connected'],
        ['node-b', true, 'connected'],
      ],
    );
    const a = report.agents[0];
    assert.deepEqual(a?.pods, ['mesh/client (Up)']);
    assert.equal(a?.enrolledUp, 1);
    assert.match(a?.soonestExpiry?.identity ?? '', /^spiffe:\/\/cluster\.local\/ns\/mesh\/sa\/client$/);
    assert.ok((a?.soonestExpiry?.remainingMs ?? 0) > 60 * 60_000, 'fresh certificate');
    assert.deepEqual(
      report.waypoints.map((w) => [w.namespace, w.name, w.podsReady, w.pods, w.xdsConnections, w.healthy]),
      [['mesh', 'wp', 1, 1, 1, true]],
    );
    // The real binary, table on a non-TTY.
    const r = await promisify(execFile)(process.execPath, [bin, 'status', '--lab', name]);
    assert.match(r.stdout, new RegExp(`^lab ${name}: healthy$`, 'm'));
    assert.match(r.stdout, /^node-a +yes +1\/1 +connected +1 /m);
    assert.match(r.stdout, /^mesh +wp +service +1\/1 +1 +ok$/m);
  });

  test('a config error: exit 2 naming it; fixed: exit 0 again', async (t) => {
    assertPrivileged(t);
    writeFileSync(join(dir, 'authz.yaml'), 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: bad-action\n  namespace: mesh\nspec:\n  action: BLOCK\n');
    const bad = await eventually('config error reported', (s) => s.report.configErrors.length > 0);
    assert.equal(bad.code, 2);
    assert.match(bad.report.configErrors.join('\n'), /authz\.yaml: AuthorizationPolicy mesh\/bad-action: spec\.action/);
    assert.ok(bad.report.problems.some((p) => p.startsWith('config error: ')));
    rmSync(join(dir, 'authz.yaml'));
    await eventually('healthy again', (s) => s.code === 0);
  });

  test('a waypoint Gateway that nothing runs: exit 2; removed: exit 0', async (t) => {
    assertPrivileged(t);
    writeFileSync(
      join(dir, 'waypoint2.yaml'),
      'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: wp2\n  namespace: mesh\nspec:\n  gatewayClassName: istio-waypoint\n  listeners:\n    - name: mesh\n      port: 15008\n      protocol: HBONE\n',
    );
    const s = await eventually('second waypoint listed', (x) => x.report.waypoints.length === 2);
    assert.equal(s.code, 2);
    assert.deepEqual(
      s.report.waypoints.map((w) => [w.name, w.healthy]),
      [
        ['wp', true],
        ['wp2', false],
      ],
    );
    assert.deepEqual(s.report.problems, ['waypoint mesh/wp2: no ready pod (0/0)']);
    rmSync(join(dir, 'waypoint2.yaml'));
    await eventually('healthy again', (x) => x.code === 0 && x.report.waypoints.length === 1);
  });

  test('control plane stopped: exit 2, unreachable; restarted: agents reconnect and exit 0', async (t) => {
    assertPrivileged(t);
    await labStopControlPlane(name, { kill: true });
    try {
      const down = await status();
      assert.equal(down.code, 2);
      assert.equal(down.report.controlPlane?.reachable, false);
      assert.match(down.report.problems[0] ?? '', /^control plane at .* unreachable/);
      assert.ok(down.report.agents.every((a) => a.ready && a.xds === 'unknown'), 'agents keep serving; xDS unknown, not a false alarm');
    } finally {
      await labStartControlPlane(name);
    }
    const back = await eventually('agents reconnected', (s) => s.code === 0, 30_000);
    assert.equal(back.report.controlPlane?.connectedAgents, 2);
  });
});
