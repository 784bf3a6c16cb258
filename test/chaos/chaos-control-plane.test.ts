/**
 * Chaos: the control plane is away for 60 s (issue 9, "Control plane").
 * A lab driven by `ambit control-plane` (xDS + CA) runs three lanes of
 * back-to-back checksummed downloads from `client` (node-a) to `server`
 * (node-b) before, during and after the outage: every transfer, including
 * the ones that open new connections while the control plane is down, must
 * end intact (the data path runs on the agents' last-known-good state and
 * cached certificates). During the outage a Service is added to the manifest
 * folder; its VIP must not work while the control plane is down and must
 * work (intact) soon after the restart, with both agents reconnected: the
 * agents converge on the state that changed while they were cut off.
 * Needs root.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labStartControlPlane, labStopControlPlane, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';
import { Tally } from '../security/lib/tally.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const streamScript = fileURLToPath(new URL('../../../test/chaos/stream.mjs', import.meta.url));
const name = `rzcp${randomBytes(3).toString('hex')}`;
const PORT = 9300;
const NEW_VIP = '10.96.0.31';
const OUTAGE_MS = 60_000;
const LANES = 3;
const XFER = 8 * 1024 * 1024;
const tally = new Tally('chaos-control-plane');
let lab: LabHandle | undefined;
let dir = '';
let server: ChildProcess | undefined;
let stopped = false;

interface Fetch {
  outcome: 'eof' | 'error';
  bytes: number;
  intact: boolean;
  code?: string;
}

function ip(pod: string): string {
  const w = lab?.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

async function fetch(host: string, port: number, bytes: number): Promise<Fetch> {
  const r = await lab!.exec('mesh/client', [process.execPath, streamScript, 'fetch', host, String(port), String(bytes)], { timeoutMs: 70_000 });
  assert.equal(r.code, 0, `fetch did not run: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Fetch;
}

async function xdsConnections(): Promise<number> {
  const r = await lab!.exec({ node: 'node-a' }, ['curl', '-sS', '--max-time', '2', `http://${lab!.cluster.nodes[0]?.ip}:15014/debug/config`], { timeoutMs: 5_000 });
  if (r.code !== 0) return -1;
  return ((JSON.parse(r.stdout) as { connections?: unknown[] }).connections ?? []).length;
}

describe('control plane away for 60 s', { ...requiresRoot(), ...requiresTool('curl', 'nft') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-cp-chaos-'));
    cpSync(`${fixtures}control-plane-lab`, dir, { recursive: true });
    lab = await labUp({ manifests: dir, name, mesh: true, controlPlane: true });
    // 64 KiB every 20 ms: an 8 MiB transfer takes ~2.6 s, so each lane keeps a transfer in flight at all times.
    server = await startInPod(lab, 'mesh/server', [process.execPath, streamScript, 'serve', ip('server'), String(PORT), String(XFER), '20']);
  });

  after(async () => {
    tally.print();
    if (stopped) await labStartControlPlane(name).catch(() => undefined);
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('transfers stay intact through the outage; a manifest change made during it applies after the restart', { timeout: 180_000 }, async (t) => {
    assertPrivileged(t);
    const warm = await fetch(ip('server'), PORT, XFER);
    assert.deepEqual([warm.outcome, warm.intact], ['eof', true], `before the outage: ${JSON.stringify(warm)}`);
    assert.equal(await xdsConnections(), 2, 'both agents connected to the control plane before the outage');

    let running = true;
    const results: Array<Fetch & { phase: string }> = [];
    let phase = 'before';
    const lanes = Array.from({ length: LANES }, async () => {
      while (running) {
        const p = phase;
        const r = await fetch(ip('server'), PORT, XFER);
        results.push({ ...r, phase: p === phase ? p : `${p}->${phase}` });
      }
    });
    try {
      await new Promise((r) => setTimeout(r, 3_000));
      await labStopControlPlane(name, { kill: true });
      stopped = true;
      phase = 'outage';
      const downAt = Date.now();
      t.diagnostic('control plane killed');
      await new Promise((r) => setTimeout(r, 2_000));
      assert.equal(await xdsConnections(), -1, 'the control plane still answers after the kill');

      // A new Service, written while nobody serves xDS.
      const tmp = join(dir, '.data.yaml.tmp');
      writeFileSync(
        tmp,
        `apiVersion: v1\nkind: Service\nmetadata:\n  name: data\n  namespace: mesh\nspec:\n  clusterIP: ${NEW_VIP}\n  selector: { app: server }\n  ports:\n    - name: tcp-data\n      port: 80\n      targetPort: ${PORT}\n`,
      );
      renameSync(tmp, join(dir, 'data.yaml'));
      await new Promise((r) => setTimeout(r, 3_000));
      const early = await fetch(NEW_VIP, 80, 1024 * 1024);
      t.diagnostic(`new VIP during the outage: ${JSON.stringify(early)}`);
      assert.notEqual(early.outcome === 'eof' && early.intact, true, 'the new VIP worked while the control plane was down: the test cannot tell a resync apart');

      await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - downAt))));
      t.diagnostic(`control plane down for ${Date.now() - downAt} ms; restarting`);
      await labStartControlPlane(name);
      stopped = false;
      phase = 'after';
      const upAt = Date.now();

      let reconnectedMs = -1;
      let vip: Fetch | undefined;
      while (Date.now() - upAt < 30_000) {
        if (reconnectedMs < 0 && (await xdsConnections()) === 2) reconnectedMs = Date.now() - upAt;
        if (reconnectedMs >= 0) {
          vip = await fetch(NEW_VIP, 80, 1024 * 1024);
          if (vip.outcome === 'eof' && vip.intact) break;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      const convergedMs = Date.now() - upAt;
      t.diagnostic(`after the restart: both agents reconnected in ${reconnectedMs} ms; the new VIP served intact after ${convergedMs} ms: ${JSON.stringify(vip)}`);
      tally.case('control plane away: manifest change applied after restart', { refused: false, crashed: !(vip?.outcome === 'eof' && vip.intact) });
      assert.ok(reconnectedMs >= 0, 'the agents did not reconnect within 30 s of the restart');
      assert.deepEqual([vip?.outcome, vip?.intact], ['eof', true], `the Service added during the outage never worked: ${JSON.stringify(vip)}`);
      await new Promise((r) => setTimeout(r, 3_000));
    } finally {
      running = false;
      await Promise.all(lanes);
    }

    const byPhase = new Map<string, { n: number; bad: number }>();
    for (const r of results) {
      const b = byPhase.get(r.phase) ?? { n: 0, bad: 0 };
      b.n++;
      if (!(r.outcome === 'eof' && r.intact)) b.bad++;
      byPhase.set(r.phase, b);
    }
    t.diagnostic(`transfers by phase: ${JSON.stringify(Object.fromEntries(byPhase))}`);
    for (const r of results) {
      const truncated = r.outcome === 'eof' && !r.intact;
      tally.case(`${r.phase}: transfer ${r.outcome}`, { refused: r.outcome !== 'eof', bytesLost: truncated ? XFER - r.bytes : 0 });
    }
    const bad = results.filter((r) => !(r.outcome === 'eof' && r.intact));
    assert.deepEqual(bad, [], 'transfers failed or were damaged across the control-plane outage');
    assert.ok((byPhase.get('outage')?.n ?? 0) >= 10, `only ${byPhase.get('outage')?.n ?? 0} transfers ran entirely inside the outage`);
  });
});
