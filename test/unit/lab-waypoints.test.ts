/**
 * Waypoint pods in the lab, without root: the manifest renderer, the argv
 * of `ambit waypoint run`, and the orchestration (up starts one process per
 * pod labelled gateway.networking.k8s.io/gateway-name in the pod's netns,
 * apply starts/stops them on label changes, down stops them) against a fake
 * `ip` and stub processes started by an injected spawnAgent.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { processAlive, type AgentExit, type AgentLaunch, type SpawnAgent } from '../../src/lab/agents.js';
import { LabWaypointError } from '../../src/lab/errors.js';
import type { CommandRunner, RunResult } from '../../src/lab/ip.js';
import { labApply, labDown, labStatus, labUp, type LabEnvOptions } from '../../src/lab/lab.js';
import { parseManifests } from '../../src/lab/manifests.js';
import { readLabState } from '../../src/lab/state.js';
import { renderWaypointManifest, waypointArgv, waypointPods, type LabWaypointPod } from '../../src/lab/waypoints.js';
import { parseManifestText } from '../../src/control-plane/manifest-source.js';

const BASE = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}}
---
kind: Pod
metadata: {name: client, namespace: shop}
spec: {nodeName: node-a}
---
kind: Pod
metadata: {name: backend, namespace: shop, labels: {app: backend}}
spec: {nodeName: node-b}
`;

function specText(withWaypointLabel = true): string {
  const wp = renderWaypointManifest({ namespace: 'shop', name: 'wp', node: 'node-b' });
  return `${BASE}---\n${withWaypointLabel ? wp : wp.replace('gateway.networking.k8s.io/gateway-name: "wp"\n    istio.io', 'istio.io')}`;
}

/** Stub processes: write the ready file given after --ready-file (unless the argv holds `waypoint` and STUB_FAIL is set), exit on SIGTERM. */
const STUB = `
const a = process.argv.slice(1);
const rf = a[a.indexOf('--ready-file') + 1];
console.log('stub ' + a.join(' '));
if (a.includes('waypoint') && process.env.STUB_FAIL) { console.error('stub waypoint: no certificate'); process.exit(4); }
process.on('SIGTERM', () => process.exit(0));
require('node:fs').writeFileSync(rf, process.pid + '\\n');
setInterval(() => {}, 60000);
`;

function stubSpawn(fail = false): SpawnAgent & { launches: AgentLaunch[] } {
  const launches: AgentLaunch[] = [];
  const fn = (launch: AgentLaunch) => {
    launches.push(launch);
    const fd = openSync(launch.logFile, 'a');
    const child = spawn(process.execPath, ['-e', STUB, ...launch.argv.slice(2)], { stdio: ['ignore', fd, fd], env: { ...process.env, ...(fail ? { STUB_FAIL: '1' } : {}) } });
    closeSync(fd);
    const exited = new Promise<AgentExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    return { pid: child.pid ?? -1, exited };
  };
  return Object.assign(fn, { launches });
}

const fakeRunner: CommandRunner = (argv) => {
  const ok = (stdout = ''): Promise<RunResult> => Promise.resolve({ code: 0, stdout, stderr: '' });
  const [, a1, a2, , a4] = argv;
  if (a1 === '-j' && a2 === 'netns') return ok('[]');
  if (a1 === '-j' && a2 === 'route' && (a4 === 'exact' || a4 === 'root')) return ok('[]');
  return ok();
};

let dir: string;
let env: LabEnvOptions;
let manifests: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lab-wp-'));
  env = { stateRoot: join(dir, 'state'), etcNetnsDir: join(dir, 'etc-netns'), runner: fakeRunner, stopGraceMs: 500 };
  manifests = join(dir, 'm.yaml');
});

afterEach(async () => {
  for (const n of ['tw', 'tx']) await labDown(n, env).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

void describe('waypoint manifests', () => {
  void it('renders a Gateway, Service and Pod the lab and the control plane both read', () => {
    const text = renderWaypointManifest({ namespace: 'shop', name: 'wp', node: 'node-b', for: 'all', clusterIP: '10.96.0.99' });
    const spec = parseManifests([{ file: 'wp.yaml', text }]);
    const pod = spec.pods.find((p) => p.name === 'wp');
    assert.deepEqual(pod?.labels, { 'gateway.networking.k8s.io/gateway-name': 'wp', 'istio.io/dataplane-mode': 'none' });
    assert.equal(pod?.serviceAccount, 'wp');
    assert.equal(pod?.node, 'node-b');
    assert.deepEqual(spec.services[0]?.ports, [{ name: 'mesh', port: 15008, targetPort: 15008, protocol: 'TCP' }]);
    assert.equal(spec.services[0]?.clusterIP, '10.96.0.99');
    assert.match(spec.warnings.join('\n'), /ignoring Gateway shop\/wp/);
    const cp = parseManifestText('wp.yaml', text);
    assert.deepEqual(cp.issues, []);
    const gw = cp.resources.find((r) => r.kindId === 'Gateway.gateway.networking.k8s.io');
    assert.ok(gw, 'the control plane reads the Gateway');
    assert.equal(gw.labels['istio.io/waypoint-for'], 'all');
    assert.equal((gw.spec as { gatewayClassName: string }).gatewayClassName, 'istio-waypoint');
    assert.deepEqual((gw.spec as { listeners: unknown[] }).listeners, [{ name: 'mesh', port: 15008, protocol: 'HBONE' }]);
  });

  void it('finds waypoint pods by label and builds the waypoint argv', () => {
    const pods = waypointPods([
      { namespace: 'shop', name: 'wp', node: 'node-b', ip: '10.244.2.3', netns: 'x-p', labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' } },
      { namespace: 'shop', name: 'client', node: 'node-a', ip: '10.244.1.2', netns: 'x-q', labels: { app: 'client' } },
      { namespace: 'shop', name: 'blank', node: 'node-a', ip: '10.244.1.3', netns: 'x-r', labels: { 'gateway.networking.k8s.io/gateway-name': '' } },
    ]);
    assert.deepEqual(pods, [{ gateway: 'wp', namespace: 'shop', pod: 'wp', node: 'node-b', ip: '10.244.2.3', netns: 'x-p' }]);
    const argv = waypointArgv(['node', 'ambit.js'], pods[0] as LabWaypointPod, { xdsAddress: '10.243.0.1:15012', rootCert: '/s/ca/root-cert.pem', tokenFile: (n) => `/s/agent-token-${n}`, stateDir: '/s', extraArgs: ['--otlp-endpoint', 'http://127.0.0.1:4318/v1/traces'] });
    assert.deepEqual(argv, [
      'node', 'ambit.js', 'waypoint', 'run', '--name', 'wp', '--namespace', 'shop', '--xds-address', '10.243.0.1:15012', '--root-cert', '/s/ca/root-cert.pem',
      '--token-file', '/s/agent-token-node-b', '--pod-ip', '10.244.2.3', '--node', 'node-b', '--ready-file', '/s/waypoint-shop-wp.ready', '--otlp-endpoint', 'http://127.0.0.1:4318/v1/traces',
    ]);
  });
});

void describe('waypoint processes (fake ip, stub processes)', () => {
  void it('up starts the waypoint in its pod netns after the control plane and agents; apply follows the label; down stops it', async () => {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(manifests, specText(true));
    const spawnAgent = stubSpawn();
    const lab = await labUp({ ...env, manifests, name: 'tw', controlPlane: true, spawnAgent, waypointArgs: ['--log-level', 'debug'] });
    assert.deepEqual(spawnAgent.launches.map((l) => l.node), ['control-plane', 'node-a', 'node-b', 'node-b']);
    const wl = spawnAgent.launches[3] as AgentLaunch;
    const podNetns = lab.podNetns('shop', 'wp');
    assert.equal(wl.netns, podNetns, 'the waypoint runs in the waypoint pod netns');
    const podIp = lab.cluster.workloads.find((w) => w.name === 'wp')?.ip;
    const nodeIp = readLabState(env.stateRoot as string, 'tw')?.nodes[0]?.ip;
    assert.deepEqual(wl.argv.slice(2), [
      'waypoint', 'run', '--name', 'wp', '--namespace', 'shop', '--xds-address', `${nodeIp}:15012`, '--root-cert', join(lab.stateDir, 'ca', 'root-cert.pem'),
      '--token-file', join(lab.stateDir, 'agent-token-node-b'), '--pod-ip', podIp, '--node', 'node-b', '--ready-file', join(lab.stateDir, 'waypoint-shop-wp.ready'), '--log-level', 'debug',
    ]);
    const st = readLabState(env.stateRoot as string, 'tw');
    assert.equal(st?.waypoints.length, 1);
    const rec = st?.waypoints[0];
    assert.ok(rec && processAlive(rec.pid, rec.startTime));
    assert.equal(rec.logFile, join(lab.stateDir, 'waypoint-shop-wp.log'));
    assert.match(readFileSync(rec.logFile, 'utf8'), /stub waypoint run --name wp/);
    const status = await labStatus('tw', env);
    assert.deepEqual(status.waypoints.map((w) => [w.namespace, w.pod, w.gateway, w.alive]), [['shop', 'wp', 'wp', true]]);

    // The label goes away: the process stops. It comes back: a new one starts.
    writeFileSync(manifests, specText(false));
    const off = await labApply('tw', { manifests }, { ...env, spawnAgent });
    assert.deepEqual(off.waypoints, { started: [], stopped: ['shop/wp=wp'] });
    assert.equal(processAlive(rec.pid, rec.startTime), false);
    assert.equal(readLabState(env.stateRoot as string, 'tw')?.waypoints.length, 0);
    writeFileSync(manifests, specText(true));
    const on = await labApply('tw', { manifests }, { ...env, spawnAgent });
    assert.deepEqual(on.waypoints, { started: ['shop/wp=wp'], stopped: [] });
    const again = await labApply('tw', { manifests }, { ...env, spawnAgent });
    assert.deepEqual(again.waypoints, { started: [], stopped: [] }, 'no change, no restart');
    const rec2 = readLabState(env.stateRoot as string, 'tw')?.waypoints[0];
    assert.ok(rec2 && processAlive(rec2.pid, rec2.startTime));

    const report = await lab.down();
    const wpStop = report.processes.find((p) => p.where === 'waypoint shop/wp');
    assert.equal(wpStop?.result, 'terminated');
    assert.equal(processAlive(rec2.pid, rec2.startTime), false);
  });

  void it('a waypoint that exits before it is ready fails up with its log tail, and the lab is torn down', async () => {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(manifests, specText(true));
    await assert.rejects(labUp({ ...env, manifests, name: 'tx', controlPlane: true, spawnAgent: stubSpawn(true) }), (err: Error) => {
      assert.ok(err instanceof LabWaypointError, String(err));
      assert.equal(err.code, 'AMBIT_ERR_LAB_WAYPOINT_FAILED');
      assert.match(err.message, /the waypoint shop\/wp in pod shop\/wp exited with code 4 before it was ready/);
      assert.match(err.message, /stub waypoint: no certificate/);
      return true;
    });
    assert.equal(readLabState(env.stateRoot as string, 'tx'), undefined, 'the failed lab was removed');
  });

  void it('without a control plane, waypoint pods run no waypoint (nothing to configure them)', async () => {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(manifests, specText(true));
    const spawnAgent = stubSpawn();
    const lab = await labUp({ ...env, manifests, name: 'tw', spawnAgent });
    assert.deepEqual(spawnAgent.launches.map((l) => l.node), ['node-a', 'node-b']);
    await lab.down();
  });
});
