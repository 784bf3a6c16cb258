/**
 * The ambit-cni plugin's CNI spec handling with the node component replaced
 * by an injected call: VERSION, env and config errors with their codes,
 * chained passthrough, excluded namespaces, mesh-not-ready, DEL idempotence.
 * Plus the pieces around it: CNI_ARGS, cgroup pod UIDs, the conflist edit,
 * the node state file, the ambient decision.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { installCniConfig, uninstallCniConfig } from '../../src/cni/cni-install.js';
import { podUidFromCgroup } from '../../src/cni/netns-discovery.js';
import { readNodeState, writeNodeState } from '../../src/cni/node-state.js';
import { parseCniArgs, runPlugin, type NodeRequest, type NodeResponse } from '../../src/cni/plugin.js';
import { isAmbient, podFromObject, type NodePod } from '../../src/cni/pod-source.js';
import { checkCniError, checkCniSuccess, checkCniVersionResult } from '../fixtures/cni/cni-schema.js';

const prevResult = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/proc/1/ns/net' }], ips: [{ address: '10.1.0.5/24', interface: 0 }] };
const conf = (extra: Record<string, unknown> = {}): string => JSON.stringify({ cniVersion: '1.0.0', name: 'net', type: 'ambit-cni', nodeSocket: '/x.sock', prevResult, ...extra });
const env = (cmd: string, extra: Record<string, string> = {}): Record<string, string> => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: 'c1',
  CNI_NETNS: '/proc/self/ns/net',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=a;K8S_POD_UID=u1',
  CNI_PATH: '/opt/cni/bin',
  ...extra,
});

function answering(r: NodeResponse | Error, seen: NodeRequest[] = []) {
  return (_path: string, req: NodeRequest): Promise<NodeResponse> => {
    seen.push(req);
    return r instanceof Error ? Promise.reject(r) : Promise.resolve(r);
  };
}

async function errorOf(p: Promise<{ stdout: string; exitCode: number }>): Promise<{ code: number; msg: string }> {
  const r = await p;
  assert.equal(r.exitCode, 1, r.stdout);
  const j = JSON.parse(r.stdout) as { code: number; msg: string };
  assert.deepEqual(checkCniError(j), []);
  return j;
}

describe('ambit-cni plugin', () => {
  test('VERSION lists the supported versions', async () => {
    const r = await runPlugin({ env: { CNI_COMMAND: 'VERSION' }, stdin: '{"cniVersion":"1.0.0"}' });
    assert.equal(r.exitCode, 0);
    const j = JSON.parse(r.stdout) as { supportedVersions: string[] };
    assert.deepEqual(checkCniVersionResult(j), []);
    assert.ok(j.supportedVersions.includes('0.4.0') && j.supportedVersions.includes('1.1.0'));
  });

  test('ADD asks the node component and passes prevResult through', async () => {
    const seen: NodeRequest[] = [];
    const r = await runPlugin({ env: env('ADD'), stdin: conf(), call: answering({ ok: true, enrolled: true }, seen) });
    assert.equal(r.exitCode, 0);
    const j = JSON.parse(r.stdout) as unknown;
    assert.deepEqual(checkCniSuccess(j), []);
    assert.deepEqual(j, prevResult);
    assert.deepEqual(seen, [{ op: 'add', containerId: 'c1', netns: '/proc/self/ns/net', ifName: 'eth0', podNamespace: 'mesh', podName: 'a', podUid: 'u1' }]);
  });

  test('an older cniVersion in the config is what the result carries', async () => {
    const r = await runPlugin({ env: env('ADD'), stdin: conf({ cniVersion: '0.4.0' }), call: answering({ ok: true, enrolled: false }) });
    assert.equal((JSON.parse(r.stdout) as { cniVersion: string }).cniVersion, '0.4.0');
  });

  test('excluded namespaces and non-Kubernetes containers never reach the node component', async () => {
    const seen: NodeRequest[] = [];
    const call = answering(new Error('must not be called'), seen);
    assert.equal((await runPlugin({ env: env('ADD'), stdin: conf({ excludeNamespaces: ['mesh'] }), call })).exitCode, 0);
    assert.equal((await runPlugin({ env: env('ADD', { CNI_ARGS: '' }), stdin: conf(), call })).exitCode, 0);
    assert.equal(seen.length, 0);
  });

  test('error codes: decode 6, env 4, version 1, config 7, container 3, not ready 11, enroll 100, check 101', async () => {
    assert.equal((await errorOf(runPlugin({ env: env('ADD'), stdin: 'nope' }))).code, 6);
    assert.equal((await errorOf(runPlugin({ env: {}, stdin: conf() }))).code, 4);
    assert.equal((await errorOf(runPlugin({ env: env('ADD', { CNI_CONTAINERID: '' }), stdin: conf() }))).code, 4);
    assert.equal((await errorOf(runPlugin({ env: env('ADD'), stdin: conf({ cniVersion: '2.0.0' }) }))).code, 1);
    assert.equal((await errorOf(runPlugin({ env: env('ADD'), stdin: conf({ addTimeoutMs: -1 }) }))).code, 7);
    assert.equal((await errorOf(runPlugin({ env: env('ADD', { CNI_NETNS: '/nonexistent/netns' }), stdin: conf() }))).code, 3);
    assert.equal((await errorOf(runPlugin({ env: env('ADD'), stdin: conf(), call: answering(new Error('ECONNREFUSED')) }))).code, 11);
    const nr = await errorOf(runPlugin({ env: env('ADD'), stdin: conf(), call: answering({ ok: false, code: 'not_ready', msg: 'no agent' }) }));
    assert.equal(nr.code, 11);
    assert.match(nr.msg, /mesh is not ready: no agent/);
    assert.equal((await errorOf(runPlugin({ env: env('ADD'), stdin: conf(), call: answering({ ok: false, code: 'enroll_failed', msg: 'nack' }) }))).code, 100);
    assert.equal((await errorOf(runPlugin({ env: env('CHECK'), stdin: conf(), call: answering({ ok: false, code: 'check_failed', msg: 'no rules' }) }))).code, 101);
    assert.equal((await errorOf(runPlugin({ env: env('CHECK'), stdin: conf({ prevResult: undefined }) }))).code, 7);
    assert.equal((await errorOf(runPlugin({ env: env('FROB'), stdin: conf() }))).code, 4);
  });

  test('DEL succeeds when the component is unreachable or the netns is gone, and prints nothing', async () => {
    const r = await runPlugin({ env: env('DEL', { CNI_NETNS: '' }), stdin: conf(), call: answering(new Error('ECONNREFUSED')) });
    assert.deepEqual(r, { stdout: '', exitCode: 0 });
  });

  test('STATUS reports plugin-not-available (50) without an agent; GC is a no-op', async () => {
    assert.equal((await errorOf(runPlugin({ env: { CNI_COMMAND: 'STATUS' }, stdin: conf(), call: answering({ ok: false, code: 'not_ready', msg: 'x' }) }))).code, 50);
    assert.deepEqual(await runPlugin({ env: { CNI_COMMAND: 'STATUS' }, stdin: conf(), call: answering({ ok: true, enrolled: false }) }), { stdout: '', exitCode: 0 });
    assert.deepEqual(await runPlugin({ env: { CNI_COMMAND: 'GC' }, stdin: conf() }), { stdout: '', exitCode: 0 });
  });

  test('CNI_ARGS parsing keeps values with = and skips junk', () => {
    const m = parseCniArgs('A=1;;junk;B=x=y;K8S_POD_NAME=p');
    assert.deepEqual([...m], [['A', '1'], ['B', 'x=y'], ['K8S_POD_NAME', 'p']]);
  });
});

describe('cni helpers', () => {
  test('pod UIDs from cgroup lines (cgroupfs and systemd drivers)', () => {
    assert.equal(podUidFromCgroup('0::/kubepods/besteffort/pod3f1c2a4e-1b2c-4d5e-8f90-0123456789ab/abc\n'), '3f1c2a4e-1b2c-4d5e-8f90-0123456789ab');
    assert.equal(podUidFromCgroup('0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2a4e_1b2c_4d5e_8f90_0123456789ab.slice/cri-containerd-x.scope'), '3f1c2a4e-1b2c-4d5e-8f90-0123456789ab');
    assert.equal(podUidFromCgroup('0::/system.slice/containerd.service\n'), undefined);
  });

  test('conflist: append after the primary plugin, replace on reinstall, convert a .conf, uninstall', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-cni-conf-'));
    try {
      writeFileSync(join(dir, '10-flannel.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'cbr0', plugins: [{ type: 'flannel' }, { type: 'portmap' }] }));
      writeFileSync(join(dir, '99-other.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'x', plugins: [{ type: 'x' }] }));
      installCniConfig(dir, { nodeSocket: '/s.sock' });
      installCniConfig(dir, { nodeSocket: '/s.sock' });
      const j = JSON.parse(readFileSync(join(dir, '10-flannel.conflist'), 'utf8')) as { plugins: Array<{ type: string; nodeSocket?: string }> };
      assert.deepEqual(j.plugins.map((p) => p.type), ['flannel', 'portmap', 'ambit-cni']);
      assert.equal(j.plugins[2]?.nodeSocket, '/s.sock');
      assert.deepEqual(uninstallCniConfig(dir), [join(dir, '10-flannel.conflist')]);
      assert.deepEqual((JSON.parse(readFileSync(join(dir, '10-flannel.conflist'), 'utf8')) as { plugins: Array<{ type: string }> }).plugins.map((p) => p.type), ['flannel', 'portmap']);
      rmSync(join(dir, '10-flannel.conflist'));
      writeFileSync(join(dir, '05-bridge.conf'), JSON.stringify({ cniVersion: '0.4.0', name: 'br', type: 'bridge', bridge: 'cni0' }));
      assert.equal(installCniConfig(dir), join(dir, '05-bridge.conflist'));
      assert.deepEqual(readdirSync(dir).sort(), ['05-bridge.conflist', '99-other.conflist']);
      const c = JSON.parse(readFileSync(join(dir, '05-bridge.conflist'), 'utf8')) as { cniVersion: string; plugins: Array<{ type: string }> };
      assert.equal(c.cniVersion, '0.4.0');
      assert.deepEqual(c.plugins.map((p) => p.type), ['bridge', 'ambit-cni']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('conflist install errors carry AMBIT_ERR_CNI_CONFIG_INSTALL', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-cni-conf-'));
    try {
      assert.throws(() => installCniConfig(dir), { code: 'AMBIT_ERR_CNI_CONFIG_INSTALL', message: /no CNI configuration/ });
      writeFileSync(join(dir, '10-x.conflist'), '{ not json');
      assert.throws(() => installCniConfig(dir), { code: 'AMBIT_ERR_CNI_CONFIG_INSTALL', message: /not valid JSON/ });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('node state file round trip; junk reads as empty', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-cni-state-'));
    try {
      const f = join(dir, 's.json');
      assert.deepEqual(readNodeState(f), []);
      const pods = [{ uid: 'mesh/a', name: 'a', namespace: 'mesh', serviceAccount: 'sa', netnsPath: '/var/run/netns/x' }];
      writeNodeState(f, pods);
      assert.deepEqual(readNodeState(f), pods);
      writeFileSync(f, '{"version":1,"pods":[{"uid":3}]}');
      assert.deepEqual(readNodeState(f), []);
      writeFileSync(f, 'garbage');
      assert.deepEqual(readNodeState(f), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('ambient decision: namespace label, pod opt-in/opt-out, host network', () => {
    const pod = (labels: Record<string, string>, ns = 'mesh', hostNetwork = false): NodePod =>
      podFromObject({ metadata: { name: 'p', namespace: ns, labels }, spec: { nodeName: 'n', hostNetwork } }) as NodePod;
    const view = { pods: new Map(), namespaceLabels: new Map([['mesh', { 'istio.io/dataplane-mode': 'ambient' }]]) };
    assert.equal(isAmbient(pod({}), view), true);
    assert.equal(isAmbient(pod({ 'istio.io/dataplane-mode': 'none' }), view), false);
    assert.equal(isAmbient(pod({}, 'other'), view), false);
    assert.equal(isAmbient(pod({ 'istio.io/dataplane-mode': 'ambient' }, 'other'), view), true);
    assert.equal(isAmbient(pod({}, 'mesh', true), view), false);
  });
});
