/**
 * The suite's wire audit, end to end (issue 9): a lab brought up with a wire
 * tap (its own temporary audit dir) captures every frame on the bridge.
 * Marker-bearing traffic between meshed pods (HBONE) must leave 0 hits with
 * plenty of bytes captured; the same marker sent in clear from a pod outside
 * the mesh to another node's pod must be found (the positive control: an
 * audit that cannot see plaintext would otherwise pass silently). `labDown`
 * stops the tap, which then writes its final report. Needs root and tcpdump.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { processAlive } from '../../src/lab/agents.js';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { DEFAULT_STATE_ROOT, readLabState, type WireTapRecord } from '../../src/lab/state.js';
import { WIRE_MARKER, type WireTapReport } from '../../src/lab/wire-tap.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const streamScript = fileURLToPath(new URL('../../../test/chaos/stream.mjs', import.meta.url));
const name = `rzwa${randomBytes(2).toString('hex')}`;
const PORT = 9000;
const MESH_BYTES = 4 * 1024 * 1024;
const stateRoot = process.env.AMBIT_LAB_STATE_ROOT ?? DEFAULT_STATE_ROOT;
let lab: LabHandle | undefined;
let server: ChildProcess | undefined;
let auditDir = '';
let tap: WireTapRecord | undefined;
let meshSnapshot: WireTapReport | undefined;

function ip(pod: string): string {
  const w = lab?.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

function reports(): WireTapReport[] {
  return readdirSync(auditDir)
    .filter((f) => f.startsWith(`${name}-`) && f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(auditDir, f), 'utf8')) as WireTapReport);
}

async function fetch(pod: string, bytes: number, plain: boolean): Promise<{ outcome: string; intact: boolean; bytes: number }> {
  const r = await lab!.exec(pod, [process.execPath, streamScript, 'fetch', ip('server'), String(PORT), String(bytes), ...(plain ? ['--plain'] : [])], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `fetch from ${pod}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { outcome: string; intact: boolean; bytes: number };
}

describe('suite-wide wire audit: a tap on the lab bridge', { ...requiresRoot(), ...requiresTool('tcpdump') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    auditDir = mkdtempSync(join(tmpdir(), 'ambit-wire-audit-'));
    lab = await labUp({ manifests: `${fixtures}agent/capture.yaml`, name, mesh: true, wireAuditDir: auditDir });
    tap = readLabState(stateRoot, name)?.wireTap;
    server = await startInPod(lab, 'mesh/server', [process.execPath, streamScript, 'serve', ip('server'), String(PORT), String(64 * 1024 * 1024), '0']);
  });

  after(async () => {
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (auditDir) rmSync(auditDir, { recursive: true, force: true });
  });

  test('the lab records a running tap that reports on the bridge', (t) => {
    assertPrivileged(t);
    assert.ok(tap, 'the lab state records the wire tap');
    assert.ok(processAlive(tap.pid, tap.startTime), 'the tap process runs');
    assert.equal(tap.outDir, auditDir);
    const [r] = reports();
    assert.equal(r?.status, 'running', 'the tap wrote its first snapshot');
    assert.equal(r?.iface, 'br0');
  });

  test('marker-bearing traffic between meshed pods crosses the bridge with 0 hits; marker-free plaintext from outside the mesh too', async (t) => {
    assertPrivileged(t);
    const mesh = await fetch('mesh/client', MESH_BYTES, false);
    assert.deepEqual([mesh.outcome, mesh.intact], ['eof', true], `mesh fetch: ${JSON.stringify(mesh)}`);
    const plain = await fetch('outside/legacy', 1024 * 1024, true);
    assert.deepEqual([plain.outcome, plain.intact], ['eof', true], `plaintext fetch (no marker): ${JSON.stringify(plain)}`);
    // Ask the tap for its running counts.
    await new Promise((r) => setTimeout(r, 500));
    const before = reports()[0];
    process.kill(tap!.pid, 'SIGUSR2');
    for (let i = 0; i < 50; i++) {
      const now = reports()[0];
      if (now && now.bytes !== before?.bytes && now.bytes >= MESH_BYTES) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    meshSnapshot = reports()[0];
    t.diagnostic(`after the mesh and marker-free transfers: ${JSON.stringify({ packets: meshSnapshot?.packets, bytes: meshSnapshot?.bytes, markerHits: meshSnapshot?.markerHits, firstHitContext: meshSnapshot?.firstHitContext })}`);
    assert.ok(meshSnapshot, 'a snapshot report');
    assert.ok(meshSnapshot.bytes > MESH_BYTES, `the tap captured the transfers (${meshSnapshot.bytes} bytes)`);
    assert.equal(meshSnapshot.markerHits, 0, `mesh traffic leaked the marker: ${meshSnapshot.firstHitContext}`);
  });

  test('the marker sent in clear from a pod outside the mesh to another node is found (positive control)', async (t) => {
    assertPrivileged(t);
    const text = `probe ${WIRE_MARKER}-${randomBytes(4).toString('hex')}\n`;
    const r = await lab!.exec('outside/legacy', [process.execPath, streamScript, 'send', ip('server'), String(PORT), text], { timeoutMs: 10_000 });
    assert.equal(r.code, 0, r.stderr);
    await new Promise((res) => setTimeout(res, 300));
    const pid = tap!.pid;
    const [legacyIp, serverIp] = [ip('legacy'), ip('server')];
    server?.kill();
    server = undefined;
    const down = await labDown(name);
    lab = undefined;
    assert.deepEqual(down.wireTap, { where: 'wire-tap', pid, result: 'terminated' }, 'labDown stopped the tap with SIGTERM');
    assert.ok(!down.processes.some((p) => p.pid === pid), 'the tap is not counted among the lab processes');
    assert.equal(processAlive(pid), false, 'the tap is gone after labDown');
    const all = reports();
    assert.equal(all.length, 1, 'one report for the lab');
    const final = all[0]!;
    t.diagnostic(`final report: ${JSON.stringify({ packets: final.packets, bytes: final.bytes, markerHits: final.markerHits, kernelDropped: final.kernelDropped, firstHitContext: final.firstHitContext })}`);
    assert.equal(final.status, 'stopped');
    assert.ok(final.stoppedAt, 'stoppedAt is set');
    assert.equal(final.error, undefined, `the pcap stream parsed cleanly: ${final.error}`);
    assert.ok(final.markerHits >= 1, 'the plaintext marker was found on the bridge');
    assert.ok(final.packets > (meshSnapshot?.packets ?? 0));
    assert.match(final.firstHitContext ?? '', new RegExp(`^tcp ${legacyIp.replaceAll('.', '\\.')}:\\d+ > ${serverIp.replaceAll('.', '\\.')}:${PORT}: .*${WIRE_MARKER}`));
  });
});
