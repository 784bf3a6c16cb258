/**
 * The control plane driving a live lab (`lab up --control-plane`): two
 * agents in remote mode get workloads over delta xDS and certificates from
 * the Istio CA API of `ambit control-plane`, which watches the manifest
 * folder. Everything is asserted through traffic:
 * - a namespace that becomes ambient is tunnelled to within a second;
 * - a deleted Service's VIP stops resolving within a second;
 * - a malformed file and an invalid AuthorizationPolicy are reported
 *   precisely while the rest of the mesh is still served;
 * - with the control plane killed, new connections to known workloads still
 *   work; restarted, the agents resync with nothing resent.
 * Needs root (network namespaces, nftables).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labStartControlPlane, labStopControlPlane, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `xd${randomBytes(2).toString('hex')}`;
let lab: LabHandle;
let dir: string;
const servers: ChildProcess[] = [];

function ip(pod: string): string {
  const w = lab.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

/** Replaces a manifest file the way an editor does (write + rename). */
function edit(file: string, text: string): number {
  const tmp = join(dir, `.${file}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, join(dir, file));
  return Date.now();
}

async function curlOk(url: string): Promise<boolean> {
  const r = await lab.exec('mesh/client', ['curl', '-sS', '--max-time', '2', url], { timeoutMs: 5_000 });
  return r.code === 0 && r.stdout.includes(ip('client'));
}

async function httpJson(node: string, url: string): Promise<unknown> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', url]);
  assert.equal(r.code, 0, `${url}: ${r.stderr}`);
  return JSON.parse(r.stdout) as unknown;
}

async function counter(node: string, metric: string, ...fragments: string[]): Promise<number> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', node === 'node-a' && metric.startsWith('ambit_xds') ? `http://${lab.cluster.nodes[0]?.ip}:15014/metrics` : 'http://127.0.0.1:15020/metrics']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith(`${metric}{`) && fragments.every((f) => l.includes(f)))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

async function within(what: string, ms: number, since: number, check: () => Promise<boolean>): Promise<number> {
  while (!(await check())) {
    if (Date.now() - since > ms + 4_000) assert.fail(`${what}: not within ${ms} ms (gave up after ${Date.now() - since} ms)`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return Date.now() - since;
}

describe('control plane driving a live lab', { ...requiresRoot(), ...requiresTool('curl', 'nft') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-cp-lab-'));
    cpSync(`${fixtures}control-plane-lab`, dir, { recursive: true });
    await labDown(name);
    lab = await labUp({ manifests: dir, name, mesh: true, controlPlane: true });
    for (const pod of ['mesh/server', 'late/newcomer']) {
      const p = await startInPod(lab, pod, [process.execPath, `${fixtures}agent/whoami-server.mjs`, ip(pod.split('/')[1] as string), '8080']);
      servers.push(p);
    }
  });

  after(async () => {
    for (const p of servers) p.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the agents were configured by the control plane: mTLS by pod IP and service VIP', async (t) => {
    assertPrivileged(t);
    const mtls = () => counter('node-b', 'istio_tcp_connections_opened_total', 'reporter="destination"', 'destination_workload="server"', 'connection_security_policy="mutual_tls"');
    const before = await mtls();
    assert.equal(await curlOk(`http://${ip('server')}:8080/`), true);
    assert.equal(await curlOk('http://10.96.0.30/'), true);
    assert.equal(await mtls(), before + 2);
    const dump = JSON.stringify(await httpJson('node-a', 'http://127.0.0.1:15000/config_dump'));
    assert.match(dump, /Kubernetes\/\/Pod\/mesh\/server/, 'workloads carry istiod-style uids from xDS');
    const m = (await lab.exec({ node: 'node-a' }, ['curl', '-sS', 'http://127.0.0.1:15020/metrics'])).stdout;
    assert.match(m, /^workload_manager_active_proxy_count 1$/m, 'in-pod gauge: one enrolled pod on node-a');
    assert.match(m, /^istio_xds_message_total\{url="type.googleapis.com\/istio.workload.Address"\} [1-9]/m, 'xDS messages counted');
    assert.match(m, /^ambit_certificate_expiry_timestamp_seconds\{identity="spiffe:\/\/cluster.local\/ns\/mesh\/sa\/client"\} \d+/m, 'certificate expiry exported');
  });

  test('a namespace that becomes ambient is tunnelled to within 1 s of the edit', async (t) => {
    assertPrivileged(t);
    const url = `http://${ip('newcomer')}:8080/`;
    const mtls = () => counter('node-b', 'istio_tcp_connections_opened_total', 'reporter="destination"', 'destination_workload="newcomer"', 'connection_security_policy="mutual_tls"');
    assert.equal(await curlOk(url), true, 'reachable directly before it joins');
    assert.equal(await mtls(), 0, 'not through the mesh yet');
    const text = readFileSync(join(dir, 'mesh.yaml'), 'utf8');
    const joined = text.replace('  name: late\n', '  name: late\n  labels:\n    istio.io/dataplane-mode: ambient\n');
    assert.notEqual(joined, text);
    const since = edit('mesh.yaml', joined);
    const polls: string[] = [];
    const ms = await within('newcomer tunnelled over HBONE', 1_000, since, async () => {
      const ok = await curlOk(url);
      const n = ok ? await mtls() : -1;
      polls.push(`${Date.now() - since}:${n}`);
      return n > 0;
    });
    t.diagnostic(`polls (ms since edit:mTLS count): ${polls.join(' ')}`);
    t.diagnostic(`edit -> first mTLS connection to the newcomer: ${ms} ms`);
    assert.ok(ms <= 1_000, `took ${ms} ms`);
  });

  test('a deleted Service VIP stops resolving within 1 s of the edit', async (t) => {
    assertPrivileged(t);
    assert.equal(await curlOk('http://10.96.0.30/'), true);
    const since = edit('services.yaml', '# the server Service was deleted\n');
    const ms = await within('VIP gone', 1_000, since, async () => !(await curlOk('http://10.96.0.30/')));
    t.diagnostic(`edit -> VIP refused: ${ms} ms`);
    assert.ok(ms <= 1_000, `took ${ms} ms`);
    assert.equal(await curlOk(`http://${ip('server')}:8080/`), true, 'the pod itself is still reachable');
    edit('services.yaml', readFileSync(`${fixtures}control-plane-lab/services.yaml`, 'utf8'));
    await within('VIP back', 1_000, Date.now(), () => curlOk('http://10.96.0.30/'));
  });

  test('a malformed file and an invalid policy are reported precisely; the rest is still served', async (t) => {
    assertPrivileged(t);
    edit('broken.yaml', 'apiVersion: v1\nkind: Service\nmetadata: [unclosed\n');
    edit('authz.yaml', 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: bad-action\n  namespace: mesh\nspec:\n  action: BLOCK\n');
    const cp = `http://${lab.cluster.nodes[0]?.ip}:15014/debug/status`;
    let status: { issues: Array<{ text: string }> } = { issues: [] };
    await within('issues reported', 1_000, Date.now(), async () => {
      status = (await httpJson('node-a', cp)) as typeof status;
      return status.issues.length >= 2;
    });
    const texts = status.issues.map((i) => i.text).join('\n');
    assert.match(texts, /broken\.yaml/);
    assert.match(texts, /authz\.yaml: AuthorizationPolicy mesh\/bad-action: spec\.action/);
    const cli = await lab.exec({ node: 'node-a' }, [process.execPath, fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url)), 'control-plane', 'status', '--status-address', `${lab.cluster.nodes[0]?.ip}:15014`]);
    assert.equal(cli.code, 1, 'status exits 1 while there are issues');
    assert.match(cli.stdout, /bad-action/);
    assert.equal(await curlOk('http://10.96.0.30/'), true, 'still served');
    rmSync(join(dir, 'broken.yaml'));
    rmSync(join(dir, 'authz.yaml'));
  });

  test('control plane killed: new connections still work; restarted: agents resync with nothing resent', async (t) => {
    assertPrivileged(t);
    const workloadsBefore = JSON.stringify((await httpJson('node-a', 'http://127.0.0.1:15000/config_dump')) as { workloads: unknown }).length;
    await labStopControlPlane(name, { kill: true });
    for (let i = 0; i < 5; i++) {
      assert.equal(await curlOk('http://10.96.0.30/'), true, 'VIP on last-known-good state');
      assert.equal(await curlOk(`http://${ip('newcomer')}:8080/`), true, 'pod IP on last-known-good state');
    }
    await labStartControlPlane(name);
    const since = Date.now();
    await within('both agents reconnected', 20_000, since, async () => {
      const cfg = (await httpJson('node-a', `http://${lab.cluster.nodes[0]?.ip}:15014/debug/config`)) as { connections: unknown[] };
      return cfg.connections.length === 2;
    });
    await new Promise((r) => setTimeout(r, 300));
    const resent = await counter('node-a', 'ambit_xds_pushed_resources_total');
    t.diagnostic(`resources pushed after the restart: ${resent}`);
    assert.equal(resent, 0, 'initial_resource_versions: the agents already had every resource at its version');
    const workloadsAfter = JSON.stringify((await httpJson('node-a', 'http://127.0.0.1:15000/config_dump')) as { workloads: unknown }).length;
    assert.equal(workloadsAfter, workloadsBefore, 'same state after the resync');
    assert.equal(await curlOk('http://10.96.0.30/'), true);
  });
});
