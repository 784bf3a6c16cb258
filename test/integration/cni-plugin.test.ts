/**
 * The CNI enrollment path end to end, on a real kernel (root): a lab network
 * (no mesh), the real node component (manifest pod source, real nftables
 * rules), a real agent enrolled over ZDS, and the `ambit-cni` executable run
 * as a container runtime runs it (env + stdin config, stdout result).
 *
 * Shows: ADD enrolls (listeners in the pod, rules installed, traffic
 * tunnelled), CHECK verifies, non-ambient pods pass straight through, the
 * error cases return spec error JSON with codes, the component restarts
 * with pods enrolled (rules stay, traffic still tunnelled, the new instance
 * resumes with a snapshot, a pod deleted meanwhile is cleaned up, a pod
 * already running is found through a fake /proc built here whose entries
 * point to real processes in real lab netns), DEL unenrolls, and ADD fails
 * with "mesh not ready" once the agent is down.
 */
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { Agent } from '../../src/agent/agent.js';
import type { AgentConfig } from '../../src/agent/config.js';
import { NodeComponent } from '../../src/cni/node-component.js';
import { ManifestPodSource } from '../../src/cni/pod-source.js';
import { silentLogger } from '../../src/common/logger.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { loadNativeBinding } from '../../src/native/load.js';
import { status as redirectStatus } from '../../src/redirect/installer.js';
import { ClusterState } from '../../src/state/cluster-state.js';
import { checkCniError, checkCniSuccess } from '../fixtures/cni/cni-schema.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const fixtures = join(repo, 'test/fixtures/');
const plugin = join(repo, 'bin/ambit-cni.js');
const prevResult = JSON.parse(readFileSync(join(fixtures, 'cni/prev-result.json'), 'utf8')) as Record<string, unknown>;
const name = `cn${randomBytes(2).toString('hex')}`;

let lab: LabHandle | undefined;
let dir = '';
let component: NodeComponent | undefined;
let agent: Agent | undefined;
let registry: Registry;
const children: ChildProcess[] = [];

const L = (): LabHandle => lab as LabHandle;
const netnsPath = (pod: string, ns = 'mesh'): string => `/var/run/netns/${L().podNetns(ns, pod)}`;
const podIp = (pod: string): string => L().cluster.workloads.find((w) => w.name === pod)?.ip ?? assert.fail(`no pod ${pod}`);

function listening(pod: string, ns = 'mesh'): number[] {
  const out = execFileSync('ip', ['netns', 'exec', L().podNetns(ns, pod), 'ss', '-ltnH'], { encoding: 'utf8' });
  return [...new Set([...out.matchAll(/:(\d+)\s/g)].map((m) => Number(m[1])))].filter((p) => p >= 15000 && p < 16000).sort((a, b) => a - b);
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 8_000): Promise<void> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface CniRun {
  code: number | null;
  stdout: string;
  json: Record<string, unknown> | undefined;
  ms: number;
}

/** Runs the plugin executable the way a container runtime does. */
function runCni(command: string, pod: { ns: string; name: string; netns: string; uid?: string }, config: Record<string, unknown> | string): Promise<CniRun> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [plugin], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        CNI_COMMAND: command,
        CNI_CONTAINERID: `sandbox-${pod.name}`,
        CNI_NETNS: pod.netns,
        CNI_IFNAME: 'eth0',
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.ns};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=sandbox-${pod.name};K8S_POD_UID=${pod.uid ?? 'x'}`,
        CNI_PATH: '/opt/cni/bin',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() === '' ? undefined : (JSON.parse(stdout) as Record<string, unknown>);
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, json, ms: Date.now() - t0 });
    });
    child.stdin.end(typeof config === 'string' ? config : JSON.stringify(config));
  });
}

const netConf = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  cniVersion: '1.0.0',
  name: 'k8s-pod-network',
  type: 'ambit-cni',
  nodeSocket: join(dir, 'cni.sock'),
  addTimeoutMs: 8000,
  excludeNamespaces: ['kube-system'],
  prevResult,
  ...extra,
});

async function openedTotal(): Promise<number> {
  const text = await registry.metrics();
  return text
    .split('\n')
    .filter((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="destination"') && l.includes('destination_workload="server"'))
    .reduce((a, l) => a + Number(l.split(' ').at(-1)), 0);
}

async function curlServer(): Promise<string> {
  const r = await L().exec({ namespace: 'mesh', pod: 'client' }, ['curl', '-sS', '--max-time', '5', `http://${podIp('server')}:8080/`], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
  return r.stdout;
}

async function startComponent(opts: { discovery?: { procRoot: string; netnsDir: string; hostNetns: string } } = {}): Promise<NodeComponent> {
  const source = new ManifestPodSource({ node: 'node-a', file: join(dir, 'pods.yaml'), logger: silentLogger(), pollMs: 100 });
  return NodeComponent.start({
    node: 'node-a',
    zdsSocket: join(dir, 'zds.sock'),
    pluginSocket: join(dir, 'cni.sock'),
    stateFile: join(dir, 'state.json'),
    source,
    logger: silentLogger(),
    zdsUid: (ns, n) => `${ns}/${n}`,
    discovery: opts.discovery ?? false,
    addTimeoutMs: 6000,
    retryMs: 300,
    podWaitMs: 500,
  });
}

describe('ambit-cni and the node component on a lab node', { ...requiresRoot(), ...requiresTool('ss', 'nft', 'curl') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-cni-'));
    writeFileSync(join(dir, 'pods.yaml'), readFileSync(join(fixtures, 'cni/mesh.yaml')));
    lab = await labUp({ manifests: join(fixtures, 'cni/mesh.yaml'), name, mesh: false, stateDir: join(dir, 'lab') });
    const server = await startInPod(L(), { namespace: 'mesh', pod: 'server' }, [process.execPath, join(fixtures, 'agent/whoami-server.mjs'), podIp('server'), '8080']);
    children.push(server);
    component = await startComponent();
    const port = 20000 + Math.floor(Math.random() * 20000);
    const cfg: AgentConfig = {
      node: 'node-a',
      clusterFile: '',
      trustDomain: 'cluster.local',
      caDir: dir,
      zdsSocket: join(dir, 'zds.sock'),
      readyFile: join(dir, 'ready'),
      logLevel: 'error',
      logFormat: 'json',
      adminPort: port,
      metricsPort: port + 1,
      readinessPort: port + 2,
      socks5Port: 15080,
      inboundPort: 15008,
      capture: true,
      splice: true,
      packetMark: 0x539,
      drainDeadlineMs: 300,
      certTtlSeconds: 3600,
    };
    registry = new Registry();
    const ca = await LocalCa.createEphemeral({ trustDomain: 'cluster.local' });
    agent = await Agent.start(cfg, { native: loadNativeBinding(), logger: silentLogger(), registry, certificateSource: ca }, new ClusterState(L().cluster));
    await until('agent connected to the node component', () => component?.status().agentReady === true);
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    agent?.destroy();
    await component?.close({ unenroll: true }).catch(() => undefined);
    if (lab) await labDown(name).catch((e: unknown) => console.error(`cleanup of lab ${name} failed:`, e));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('ADD enrolls an ambient pod: listeners, rules, traffic tunnelled; the result is prevResult per the spec', async (t) => {
    assertPrivileged(t);
    for (const pod of ['server', 'client']) {
      const r = await runCni('ADD', { ns: 'mesh', name: pod, netns: netnsPath(pod) }, netConf());
      assert.equal(r.code, 0, `ADD ${pod}: ${r.stdout}`);
      assert.deepEqual(checkCniSuccess(r.json), []);
      assert.deepEqual(r.json, prevResult, 'the previous result passes through unchanged');
      // ADD returns only after the agent acked and the rules are in: no waiting here.
      assert.deepEqual(listening(pod), [15001, 15006, 15008, 15080]);
      const s = await redirectStatus(netnsPath(pod));
      assert.equal(s.matches, true, s.differences.join('; '));
    }
    const before = await openedTotal();
    const body = JSON.parse(await curlServer()) as { client: string };
    assert.equal(body.client, podIp('client'), 'the server sees the real client address');
    assert.ok((await openedTotal()) > before, 'the connection went through the agent (destination metrics)');
  });

  test('CHECK verifies an enrolled pod and fails for one without rules', async (t) => {
    assertPrivileged(t);
    const ok = await runCni('CHECK', { ns: 'mesh', name: 'client', netns: netnsPath('client') }, netConf());
    assert.equal(ok.code, 0, ok.stdout);
    assert.equal(ok.stdout, '', 'CHECK prints nothing on success');
    const bad = await runCni('CHECK', { ns: 'mesh', name: 'early', netns: netnsPath('early') }, netConf());
    assert.equal(bad.code, 1);
    assert.deepEqual(checkCniError(bad.json), []);
    assert.equal(bad.json?.code, 101);
    assert.match(String(bad.json?.msg), /not enrolled/);
  });

  test('a pod outside the mesh passes straight through', async (t) => {
    assertPrivileged(t);
    const r = await runCni('ADD', { ns: 'plain', name: 'legacy', netns: netnsPath('legacy', 'plain') }, netConf());
    assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(r.json, prevResult);
    assert.deepEqual(listening('legacy', 'plain'), []);
    assert.equal((await redirectStatus(netnsPath('legacy', 'plain'))).rules, false);
  });

  test('errors are CNI error JSON with spec codes: bad JSON, missing netns, component unreachable, bad version', async (t) => {
    assertPrivileged(t);
    const pod = { ns: 'mesh', name: 'client', netns: netnsPath('client') };
    const cases: Array<[string, Promise<CniRun>, number, RegExp]> = [
      ['bad json', runCni('ADD', pod, '{"cniVersion": "1.0.0", '), 6, /decode/],
      ['missing netns', runCni('ADD', { ...pod, netns: '/var/run/netns/ambit-does-not-exist' }, netConf()), 3, /does not exist/],
      ['component unreachable', runCni('ADD', pod, netConf({ nodeSocket: join(dir, 'nobody.sock') })), 11, /not ready/],
      ['bad version', runCni('ADD', pod, netConf({ cniVersion: '9.9.9' })), 1, /not supported/],
    ];
    for (const [what, p, code, msg] of cases) {
      const r = await p;
      assert.equal(r.code, 1, `${what}: exit code`);
      assert.deepEqual(checkCniError(r.json), [], `${what}: ${r.stdout}`);
      assert.equal(r.json?.code, code, `${what}: ${r.stdout}`);
      assert.match(String(r.json?.msg), msg, what);
    }
  });

  test('node component restart: rules stay, traffic flows, snapshot resumes, deleted pod cleaned, running pod discovered via fake /proc', async (t) => {
    assertPrivileged(t);
    await component?.close();
    component = undefined;
    // Down: the pods stay protected and traffic still goes through the agent.
    assert.equal((await redirectStatus(netnsPath('client'))).matches, true);
    const before = await openedTotal();
    await curlServer();
    assert.ok((await openedTotal()) > before, 'still tunnelled while the component is down');

    // While it is down, the server pod is deleted from the API (its netns lingers, as a dying sandbox would).
    const docs = readFileSync(join(dir, 'pods.yaml'), 'utf8').split('\n---\n');
    writeFileSync(join(dir, 'pods.yaml'), docs.filter((d) => !/name: server\n/.test(d)).join('\n---\n'));

    // A fake /proc: pid 4242 is a pod process of 'early' whose ns/net is a real process in early's netns.
    const sleeper = L().spawn({ namespace: 'mesh', pod: 'early' }, ['sleep', '300'], { stdio: 'ignore' });
    children.push(sleeper);
    await until('sleeper running', () => {
      try {
        return readFileSync(`/proc/${sleeper.pid}/cmdline`, 'utf8').startsWith('sleep');
      } catch {
        return false;
      }
    });
    const proc = join(dir, 'proc');
    mkdirSync(join(proc, '4242', 'ns'), { recursive: true });
    writeFileSync(join(proc, '4242', 'cgroup'), '0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0c1e0000_0000_4000_8000_000000000003.slice/cri-containerd-abc.scope\n');
    symlinkSync(`/proc/${sleeper.pid}/ns/net`, join(proc, '4242', 'ns', 'net'));
    // A host process (not in a pod) and one in the host netns: both ignored.
    mkdirSync(join(proc, '1', 'ns'), { recursive: true });
    writeFileSync(join(proc, '1', 'cgroup'), '0::/init.scope\n');
    symlinkSync('/proc/self/ns/net', join(proc, '1', 'ns', 'net'));

    component = await startComponent({ discovery: { procRoot: proc, netnsDir: '/var/run/netns', hostNetns: '/proc/self/ns/net' } });
    const st = component.status();
    assert.deepEqual(st.cleanedAtStart, ['mesh/server'], 'the deleted pod was cleaned up at start');
    assert.equal((await redirectStatus(netnsPath('server'))).rules, false, "the deleted pod's rules are gone");
    await until('agent resumed with a snapshot', () => component?.status().agentReady === true);
    await until('client and the discovered pod enrolled', () => component?.waitSynced(50) ?? false);
    const pods = component.status().pods;
    assert.deepEqual(pods.map((p) => p.uid).sort(), ['mesh/client', 'mesh/early']);
    assert.equal(pods.find((p) => p.uid === 'mesh/early')?.netns, netnsPath('early'), 'the named netns is preferred over the /proc path');
    assert.deepEqual(listening('early'), [15001, 15006, 15008, 15080]);
    assert.equal((await redirectStatus(netnsPath('early'))).matches, true);
    await until('the agent dropped the deleted pod after the snapshot', () => listening('server').length === 0);
    const ok = await runCni('CHECK', { ns: 'mesh', name: 'client', netns: netnsPath('client') }, netConf());
    assert.equal(ok.code, 0, ok.stdout);
  });

  test('a label change unenrolls; DEL unenrolls and is idempotent', async (t) => {
    assertPrivileged(t);
    const c = component as NodeComponent;
    const text = readFileSync(join(dir, 'pods.yaml'), 'utf8');
    writeFileSync(join(dir, 'pods.yaml'), text.replace('labels: { app: early }', "labels: { app: early, 'istio.io/dataplane-mode': none }"));
    await until('early unenrolled after its label changed', async () => !c.status().pods.some((p) => p.uid === 'mesh/early') && !(await redirectStatus(netnsPath('early'))).rules);
    await until('early listeners closed', () => listening('early').length === 0);

    for (let i = 0; i < 2; i++) {
      const r = await runCni('DEL', { ns: 'mesh', name: 'client', netns: netnsPath('client') }, netConf());
      assert.equal(r.code, 0, r.stdout);
      assert.equal(r.stdout, '');
    }
    assert.equal((await redirectStatus(netnsPath('client'))).rules, false);
    await until('client listeners closed', () => listening('client').length === 0);
    const gone = await runCni('DEL', { ns: 'mesh', name: 'client', netns: '/var/run/netns/ambit-gone' }, netConf());
    assert.equal(gone.code, 0, 'DEL with a vanished netns succeeds');
  });

  test('agent down: ADD fails with "mesh not ready" and leaves nothing behind', async (t) => {
    assertPrivileged(t);
    agent?.destroy();
    agent = undefined;
    await until('the component noticed', () => component?.status().agentReady === false);
    const r = await runCni('ADD', { ns: 'mesh', name: 'client', netns: netnsPath('client') }, netConf());
    assert.equal(r.code, 1);
    assert.deepEqual(checkCniError(r.json), []);
    assert.equal(r.json?.code, 11);
    assert.match(String(r.json?.msg), /mesh is not ready/);
    assert.equal((await redirectStatus(netnsPath('client'))).rules, false, 'no rules for a pod the agent does not serve');
  });
});
