/**
 * Agent restart with overlap, as a DaemonSet rollout with surge: a new agent
 * starts next to the old one (SO_REUSEPORT listeners in every pod), and only
 * when it is ready is the old one stopped, which then drains. An iperf3
 * stream established before the restart runs to completion through the old
 * agent; new connections opened all along never fail, and those opened after
 * the switch are served by the new agent. Done for the client's node (the
 * outbound side) and then the server's (the inbound side). Needs root.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labRestartAgent, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `rs${randomBytes(2).toString('hex')}`;
let lab: LabHandle;
let server: ChildProcess | undefined;

function ip(pod: string): string {
  const w = lab.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

async function opened(node: string, metricsPort: number): Promise<number> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', `http://127.0.0.1:${metricsPort}/metrics`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('destination_workload="server"') && l.includes('mutual_tls'))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

/** Opens a new connection (one curl) every `everyMs` until stopped; records each outcome. */
function connectionLoop(url: string, everyMs: number): { stop: () => Promise<{ ok: number; failures: string[] }> } {
  let running = true;
  let ok = 0;
  const failures: string[] = [];
  const loop = (async () => {
    while (running) {
      const r = await lab.exec('mesh/client', ['curl', '-sS', '--max-time', '5', url], { timeoutMs: 10_000 });
      if (r.code === 0 && r.stdout.includes(ip('client'))) ok++;
      else failures.push(`exit ${r.code}: ${r.stderr.trim()}`);
      await new Promise((res) => setTimeout(res, everyMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { ok, failures };
    },
  };
}

describe('agent restart with overlap', { ...requiresRoot(), ...requiresTool('curl', 'iperf3') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    await labDown(name);
    lab = await labUp({ manifests: `${fixtures}agent/capture.yaml`, name, mesh: true });
    server = await startInPod(lab, 'mesh/server', [process.execPath, `${fixtures}agent/whoami-server.mjs`, ip('server'), '8080']);
  });

  after(async () => {
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
  });

  for (const [i, node] of (['node-a', 'node-b'] as const).entries()) {
    test(`restarting ${node}'s agent: the established iperf3 stream completes, no new connection fails, the new agent takes over`, async (t) => {
      assertPrivileged(t);
      // The CNI role set this with the rules: queued connections of a closing listener move to the new agent's.
      assert.equal((await lab.exec('mesh/client', ['sysctl', '-n', 'net.ipv4.tcp_migrate_req'])).stdout.trim(), '1');
      const port = 5201 + i;
      const iperfServer = lab.spawn('mesh/server', ['iperf3', '-s', '-1', '-B', ip('server'), '-p', String(port)], { stdio: 'ignore' });
      try {
        await new Promise((r) => setTimeout(r, 300));
        const stream = lab.exec('mesh/client', ['iperf3', '-c', ip('server'), '-p', String(port), '-t', '4', '-J'], { timeoutMs: 30_000 });
        const loop = connectionLoop(`http://${ip('server')}:8080/`, 50);
        await new Promise((r) => setTimeout(r, 700));

        // The replacement listens on other admin ports: both run in the node's netns during the overlap.
        const base = 16000 + i * 100;
        const restart = await labRestartAgent(name, node, { extraArgs: ['--admin-port', String(base), '--metrics-port', String(base + 20), '--readiness-port', String(base + 21)] });
        t.diagnostic(`${node}: old agent ${restart.oldPid}, new agent ${restart.newPid}`);
        const newBefore = await opened(node, base + 20);
        await new Promise((r) => setTimeout(r, 1_000));
        const result = await loop.stop();
        const newAfter = await opened(node, base + 20);

        const report = await stream;
        assert.equal(report.code, 0, `the iperf3 stream established before the restart failed: ${report.stdout.slice(0, 400)} ${report.stderr}`);
        const bytes = (JSON.parse(report.stdout) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes;
        assert.ok(bytes > 1_000_000, `iperf3 moved ${bytes} bytes`);
        assert.deepEqual(result.failures, [], `no new connection failed during the overlap (${result.ok} succeeded)`);
        assert.ok(result.ok >= 10, `enough new connections were tried (${result.ok})`);
        assert.ok(newAfter > newBefore, `new connections after the switch went through the new agent (${newBefore} -> ${newAfter})`);
        const how = await restart.oldExited;
        assert.equal(how, 'terminated', 'the old agent drained and exited by itself');
        t.diagnostic(`${node}: ${result.ok} new connections, none failed; iperf3 ${(bytes / 1e6).toFixed(0)} MB intact; old agent ${how}`);
      } finally {
        iperfServer.kill();
      }
    });
  }

  test('rolling restart under load: 50 clients open new connections in a loop while node-a agent is replaced, and none fails', async (t) => {
    assertPrivileged(t);
    const storm = lab.exec('mesh/client', [process.execPath, `${fixtures}agent/conn-storm.mjs`, ip('server'), '8080', '50', '6000'], { timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 1_500));
    const restart = await labRestartAgent(name, 'node-a', { extraArgs: ['--admin-port', '16200', '--metrics-port', '16220', '--readiness-port', '16221'] });
    const how = await restart.oldExited;
    const out = await storm;
    assert.equal(out.code, 0, out.stderr);
    const r = JSON.parse(out.stdout) as { ok: number; failed: number; errors: Record<string, number> };
    t.diagnostic(`50 clients over 6 s: ${r.ok} connections ok, ${r.failed} failed ${JSON.stringify(r.errors)}; old agent ${how}`);
    assert.equal(r.failed, 0, `failed connections: ${JSON.stringify(r.errors)}`);
    assert.ok(r.ok > 200, `enough connections were made (${r.ok})`);
    assert.equal(how, 'terminated', 'the old agent drained and exited by itself');
  });
});
