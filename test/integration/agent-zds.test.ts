/**
 * The agent enrolled by a CNI over real ZDS (--zds-socket): our ZdsServer
 * hands it pod network namespaces, and the agent's listeners appear in and
 * disappear from those namespaces. Covers an add for an unknown pod (NACKed
 * with the reason), the same uid re-added with a new netns (the proxy moves),
 * and del. Needs root (network namespaces).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent } from '../../src/agent/agent.js';
import type { AgentConfig } from '../../src/agent/config.js';
import { ZdsServer } from '../../src/cni/zds-server.js';
import { silentLogger } from '../../src/common/logger.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { loadNativeBinding } from '../../src/native/load.js';
import { ClusterState } from '../../src/state/cluster-state.js';
import { parseLocalClusterConfig } from '../../src/state/local-config.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';

// The lab's prefix, so `ambit lab down --all` sweeps leftovers of a crashed run.
const tag = `ambit-zt${randomBytes(2).toString('hex')}`;
const nsA = `${tag}-a`;
const nsB = `${tag}-b`;
let dir: string;
let server: ZdsServer | undefined;
let agent: Agent | undefined;
const registry = new Registry();

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

function listening(netns: string): number[] {
  const out = execFileSync('ip', ['netns', 'exec', netns, 'ss', '-ltnH'], { encoding: 'utf8' });
  return [...out.matchAll(/:(\d+)\s/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
}

async function until(what: string, check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeoutMs) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const cluster = new ClusterState(
  parseLocalClusterConfig({
    trustDomain: 'cluster.local',
    clusterDomain: 'cluster.local',
    nodes: [{ name: 'node-z', ip: '10.243.9.1' }],
    workloads: [{ uid: 'mesh/a', name: 'a', namespace: 'mesh', serviceAccount: 'a', node: 'node-z', ip: '10.244.99.2', labels: {} }],
    services: [],
  }),
);

describe('agent enrolled over zds by a cni', { ...requiresRoot(), ...requiresTool('ss') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-agent-zds-'));
    for (const ns of [nsA, nsB]) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    server = new ZdsServer().listen(join(dir, 'zds.sock'));
    const port = 20000 + Math.floor(Math.random() * 20000);
    const cfg: AgentConfig = {
      node: 'node-z',
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
      capture: false,
      splice: true,
      packetMark: 0x539,
      drainDeadlineMs: 500,
      certTtlSeconds: 3600,
    };
    const ca = await LocalCa.createEphemeral({ trustDomain: 'cluster.local' });
    agent = await Agent.start(cfg, { native: loadNativeBinding(), logger: silentLogger(), registry, certificateSource: ca }, cluster);
  });

  after(() => {
    agent?.destroy();
    server?.close();
    for (const ns of [nsA, nsB]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // not created
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('add, NACK for an unknown pod, re-add in a new netns, del', async (t) => {
    assertPrivileged(t);
    const s = server as ZdsServer;
    // The agent connects and, after the (empty) snapshot, reports ready.
    await until('agent ready after the zds snapshot', () => {
      try {
        return readFileSync(join(dir, 'ready'), 'utf8').trim() === String(process.pid);
      } catch {
        return false;
      }
    });

    const pod = { uid: 'mesh/a', name: 'a', namespace: 'mesh', serviceAccount: 'a' };
    const added = await s.addPod({ ...pod, netnsPath: `/var/run/netns/${nsA}` });
    assert.equal(added.outcome, 'ack', `add acked: ${added.error?.message ?? ''}`);
    // Acked only once the listeners accept: they are there now, with no wait.
    assert.deepEqual(listening(nsA), [15001, 15006, 15008, 15080]);

    const unknown = await s.addPod({ uid: 'mesh/ghost', name: 'ghost', namespace: 'mesh', serviceAccount: 'x', netnsPath: `/var/run/netns/${nsB}` });
    assert.equal(unknown.outcome, 'nack');
    assert.match(unknown.error?.message ?? '', /mesh\/ghost is not in the agent's cluster view/);
    assert.deepEqual(listening(nsB), [], 'nothing was started for the NACKed pod');
    const refusals = await registry.getSingleMetric('ambit_zds_refusals_total')?.get();
    assert.deepEqual(
      refusals?.values.map((v) => [v.labels['reason'], v.value]),
      [['proxy_start_failed', 1]],
      'the nack is counted',
    );

    // The pod was re-created: same uid, new netns. The proxy moves.
    const moved = await s.addPod({ ...pod, netnsPath: `/var/run/netns/${nsB}` });
    assert.equal(moved.outcome, 'ack');
    assert.deepEqual(listening(nsB), [15001, 15006, 15008, 15080]);
    await until('old netns released', () => listening(nsA).length === 0);

    const [del] = await s.removePod('mesh/a');
    assert.equal(del?.outcome, 'ack');
    await until('listeners closed after del', () => listening(nsB).length === 0);
    const dump = JSON.stringify(agent?.configDump());
    assert.match(dump, /"mesh\/a":\{"info":\{[^}]*\},"state":"Pending"\}/, 'config dump shows the pod is no longer up');
  });
});
