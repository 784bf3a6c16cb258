/**
 * `ambit cni` as a real process, killed with SIGKILL while pods are enrolled
 * (no chance to clean up): the pod keeps its rules and its traffic still goes
 * through the agent; a new process resumes from the state file, the agent
 * gets its snapshot, and `ambit cni status` reports the pod enrolled. Needs
 * root (lab network namespaces, nftables).
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { Agent } from '../../src/agent/agent.js';
import type { AgentConfig } from '../../src/agent/config.js';
import { silentLogger } from '../../src/common/logger.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { loadNativeBinding } from '../../src/native/load.js';
import { status as redirectStatus } from '../../src/redirect/installer.js';
import { ClusterState } from '../../src/state/cluster-state.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const ambit = join(repo, 'bin/ambit.js');
const name = `cn${randomBytes(2).toString('hex')}`;
let lab: LabHandle | undefined;
let dir = '';
let agent: Agent | undefined;
let registry: Registry;
const procs: ChildProcess[] = [];
const L = (): LabHandle => lab as LabHandle;
const netns = (pod: string): string => `/var/run/netns/${L().podNetns('mesh', pod)}`;
const podIp = (pod: string): string => L().cluster.workloads.find((w) => w.name === pod)?.ip ?? assert.fail(pod);

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function startCni(): ChildProcess {
  const p = spawn(
    process.execPath,
    [ambit, 'cni', '--node', 'node-a', '--pods', join(dir, 'pods.yaml'), '--zds-socket', join(dir, 'zds.sock'), '--plugin-socket', join(dir, 'cni.sock'), '--state-file', join(dir, 'state.json'), '--cluster-id', 'lab', '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  procs.push(p);
  return p;
}

async function cniStatus(): Promise<{ code: number; json: { agentReady: boolean; pods: Array<{ uid: string; phase: string }> } | undefined }> {
  try {
    const r = await run(process.execPath, [ambit, 'cni', 'status', '--plugin-socket', join(dir, 'cni.sock'), '-o', 'json']);
    return { code: 0, json: JSON.parse(r.stdout) as never };
  } catch (e) {
    const err = e as { code?: number; stdout?: string };
    let json;
    try {
      json = JSON.parse(err.stdout ?? '') as never;
    } catch {
      json = undefined;
    }
    return { code: typeof err.code === 'number' ? err.code : 1, json };
  }
}

function cniAdd(pod: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [join(repo, 'bin/ambit-cni.js')], {
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `s-${pod}`, CNI_NETNS: netns(pod), CNI_IFNAME: 'eth0', CNI_ARGS: `K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=${pod}`, CNI_PATH: '/opt/cni/bin' },
    });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += String(d)));
    c.on('close', (code) => resolve({ code: code ?? -1, stdout: out }));
    c.stdin.end(JSON.stringify({ cniVersion: '1.0.0', name: 'net', type: 'ambit-cni', nodeSocket: join(dir, 'cni.sock'), prevResult: { cniVersion: '1.0.0' } }));
  });
}

async function opened(): Promise<number> {
  return (await registry.metrics())
    .split('\n')
    .filter((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="destination"'))
    .reduce((a, l) => a + Number(l.split(' ').at(-1)), 0);
}

describe('ambit cni process killed and restarted', { ...requiresRoot(), ...requiresTool('nft', 'curl') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-cni-proc-'));
    writeFileSync(join(dir, 'pods.yaml'), readFileSync(join(repo, 'test/fixtures/cni/mesh.yaml')));
    lab = await labUp({ manifests: join(repo, 'test/fixtures/cni/mesh.yaml'), name, mesh: false, stateDir: join(dir, 'lab') });
    const server = L().spawn({ namespace: 'mesh', pod: 'server' }, [process.execPath, join(repo, 'test/fixtures/agent/whoami-server.mjs'), podIp('server'), '8080'], { stdio: ['ignore', 'pipe', 'ignore'] });
    procs.push(server);
    await new Promise<void>((r) => server.stdout?.once('data', () => r()));
    // The lab's workload uids are <ns>/<name>; `--cluster-id lab` is ignored by them, so rename: the agent's view uses lab//Pod/<ns>/<name>.
    const cluster = { ...L().cluster, workloads: L().cluster.workloads.map((w) => ({ ...w, uid: `lab//Pod/${w.namespace}/${w.name}` })) };
    startCni();
    await until('node component listening', async () => (await cniStatus()).json !== undefined);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const cfg: AgentConfig = {
      node: 'node-a', clusterFile: '', trustDomain: 'cluster.local', caDir: dir, zdsSocket: join(dir, 'zds.sock'), logLevel: 'error', logFormat: 'json',
      adminPort: port, metricsPort: port + 1, readinessPort: port + 2, socks5Port: 15080, inboundPort: 15008, capture: true, splice: true, packetMark: 0x539, drainDeadlineMs: 300, certTtlSeconds: 3600,
    };
    registry = new Registry();
    agent = await Agent.start(cfg, { native: loadNativeBinding(), logger: silentLogger(), registry, certificateSource: await LocalCa.createEphemeral({ trustDomain: 'cluster.local' }) }, new ClusterState(cluster));
    await until('agent connected', async () => (await cniStatus()).json?.agentReady === true);
  });

  after(async () => {
    for (const p of procs) p.kill('SIGKILL');
    agent?.destroy();
    if (lab) {
      for (const pod of ['client', 'server']) await run('nsenter', [`--net=${netns(pod)}`, 'nft', 'delete', 'table', 'inet', 'ambit']).catch(() => undefined);
      await labDown(name).catch((e: unknown) => console.error(`cleanup of lab ${name} failed:`, e));
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('SIGKILL with pods enrolled: rules and tunnelling survive; the next process resumes', async (t) => {
    assertPrivileged(t);
    for (const pod of ['server', 'client']) {
      const r = await cniAdd(pod);
      assert.equal(r.code, 0, r.stdout);
    }
    const st = await cniStatus();
    assert.equal(st.code, 0);
    assert.deepEqual(st.json?.pods.map((p) => `${p.uid}:${p.phase}`).sort(), ['lab//Pod/mesh/client:enrolled', 'lab//Pod/mesh/server:enrolled']);

    const first = procs.at(-1) as ChildProcess;
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    assert.equal((await redirectStatus(netns('client'))).matches, true, 'rules stay after a crash');
    const before = await opened();
    const r = await L().exec({ namespace: 'mesh', pod: 'client' }, ['curl', '-sS', '--max-time', '5', `http://${podIp('server')}:8080/`], { timeoutMs: 10_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await opened()) > before, 'still tunnelled through the agent while the component is dead');

    startCni();
    await until('the new process has the agent back and both pods enrolled', async () => {
      const s = await cniStatus();
      return s.code === 0 && s.json?.agentReady === true && s.json.pods.length === 2;
    });
    assert.equal((await redirectStatus(netns('server'))).matches, true);
  });
});
