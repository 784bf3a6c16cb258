/**
 * The per-pod pending-connection limit (issue 9, "Limits"; src/agent/outbound.ts
 * PendingConnections, flag --max-pending-per-pod). Node-a's agent is
 * relaunched with a cap of 50; pod `client` then opens 200 connections to its
 * SOCKS5 port and never sends the greeting, so each stays "accepted but not
 * tunnelled" until the 10 s handshake timeout. Expected:
 *   - exactly 50 stay pending, the other 150 are reset at once (ECONNRESET),
 *     counted in ambit_pending_connections_refused_total{pod="mesh/client"},
 *     and ambit_pending_connections{pod="mesh/client"} reads 50;
 *   - during the flood, `client2` on the same node (same agent) gets an
 *     intact checksummed transfer to node-b, and nothing of it is refused;
 *   - during the flood a new captured connection from `client` is refused
 *     (the cap is real on 15001 too), and once the flood ends the gauge
 *     is back to 0 and `client` transfers intact again.
 * Needs root.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labRestartAgent, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';
import { Tally } from '../security/lib/tally.js';

const streamScript = fileURLToPath(new URL('../../../test/chaos/stream.mjs', import.meta.url));
const name = `rzpf${randomBytes(3).toString('hex')}`;
const PORT = 9200;
const CAP = 50;
const FLOOD = 200;
const METRICS = 16220;
const tally = new Tally('chaos-pending-flood');
let lab: LabHandle | undefined;
let server: ChildProcess | undefined;
let dir = '';
let floodScript = '';

const MANIFEST = `apiVersion: v1
kind: Namespace
metadata:
  name: mesh
  labels:
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: mesh, labels: { app: client } }
spec: { nodeName: node-a, serviceAccountName: client }
---
apiVersion: v1
kind: Pod
metadata: { name: client2, namespace: mesh, labels: { app: client2 } }
spec: { nodeName: node-a, serviceAccountName: client2 }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: mesh, labels: { app: server } }
spec: { nodeName: node-b, serviceAccountName: server }
`;

// Opens <count> connections to <host>:<port>, sends nothing, and after <settleMs> reports how many
// are still open and how many were reset; holds the open ones until <holdMs>, then exits.
const FLOOD_SCRIPT = `
import { connect } from 'node:net';
const [host, port, count, settleMs, holdMs] = process.argv.slice(2);
const socks = [];
const codes = {};
let closed = 0;
for (let i = 0; i < Number(count); i++) {
  const s = connect({ host, port: Number(port) });
  s.on('error', (e) => { codes[e.code ?? e.message] = (codes[e.code ?? e.message] ?? 0) + 1; });
  s.on('close', () => closed++);
  socks.push(s);
}
setTimeout(() => {
  console.log(JSON.stringify({ open: socks.length - closed, closed, codes }));
  setTimeout(() => { for (const s of socks) s.destroy(); process.exit(0); }, Number(holdMs) - Number(settleMs));
}, Number(settleMs));
`;

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

async function fetch(pod: string, bytes: number): Promise<Fetch> {
  const r = await lab!.exec(`mesh/${pod}`, [process.execPath, streamScript, 'fetch', ip('server'), String(PORT), String(bytes)], { timeoutMs: 70_000 });
  assert.equal(r.code, 0, `fetch did not run: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Fetch;
}

async function metric(series: string): Promise<number> {
  const r = await lab!.exec({ node: 'node-a' }, ['curl', '-sS', '--max-time', '2', `http://127.0.0.1:${METRICS}/metrics`], { timeoutMs: 5_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('per-pod pending-connection limit', { ...requiresRoot(), ...requiresTool('curl') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = await mkdtemp(join(tmpdir(), 'ambit-pending-'));
    await writeFile(join(dir, 'pods.yaml'), MANIFEST);
    floodScript = join(dir, 'flood.mjs');
    await writeFile(floodScript, FLOOD_SCRIPT);
    lab = await labUp({ manifests: join(dir, 'pods.yaml'), name, mesh: true });
    const restart = await labRestartAgent(name, 'node-a', { extraArgs: ['--admin-port', '16200', '--metrics-port', String(METRICS), '--readiness-port', '16221', '--max-pending-per-pod', String(CAP)] });
    await restart.oldExited;
    server = await startInPod(lab, 'mesh/server', [process.execPath, streamScript, 'serve', ip('server'), String(PORT), String(64 * 1024 * 1024), '1']);
  });

  after(async () => {
    tally.print();
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test(`a pod flooding its agent with ${FLOOD} stalled connections gets ${FLOOD - CAP} reset; another pod on the same agent is unaffected`, { timeout: 90_000 }, async (t) => {
    assertPrivileged(t);
    for (const pod of ['client', 'client2']) {
      const warm = await fetch(pod, 1024 * 1024);
      assert.deepEqual([warm.outcome, warm.intact], ['eof', true], `${pod} before the flood: ${JSON.stringify(warm)}`);
    }
    const refusedBefore = await metric('ambit_pending_connections_refused_total{pod="mesh/client"}');
    // SOCKS5 on 127.0.0.1:15080 inside the pod: no greeting is ever sent, so every connection stays pending.
    const flood = lab!.exec('mesh/client', [process.execPath, floodScript, '127.0.0.1', '15080', String(FLOOD), '1500', '7000'], { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 1800));
    const gauge = await metric('ambit_pending_connections{pod="mesh/client"}');
    const refused = (await metric('ambit_pending_connections_refused_total{pod="mesh/client"}')) - refusedBefore;
    // The same agent serves client2 in full, and its connections are never refused.
    const other = await fetch('client2', 8 * 1024 * 1024);
    const otherRefused = await metric('ambit_pending_connections_refused_total{pod="mesh/client2"}');
    // The flooded pod's own new captured connection is over the cap too.
    const same = await fetch('client', 1024 * 1024);
    const f = await flood;
    assert.equal(f.code, 0, `flood script: ${f.stderr}`);
    const seen = JSON.parse(f.stdout.trim()) as { open: number; closed: number; codes: Record<string, number> };
    t.diagnostic(`flood: ${JSON.stringify(seen)}; gauge ${gauge}, refused ${refused}; client2 during the flood: ${JSON.stringify(other)}; client during the flood: ${JSON.stringify(same)}`);
    tally.case(`flood of ${FLOOD} stalled SOCKS connections`, { refused: refused === FLOOD - CAP });
    tally.case('other pod during the flood', { refused: false, bytesLost: other.outcome === 'eof' && !other.intact ? 8 * 1024 * 1024 - other.bytes : 0 });
    tally.case('flooded pod: new captured connection', { refused: same.outcome === 'error' });

    assert.equal(seen.open, CAP, `${seen.open} connections stayed pending, expected the cap ${CAP}`);
    assert.equal(seen.closed, FLOOD - CAP);
    assert.equal(seen.codes.ECONNRESET, FLOOD - CAP, `the excess was not reset: ${JSON.stringify(seen.codes)}`);
    assert.equal(gauge, CAP, 'ambit_pending_connections for the flooded pod');
    assert.equal(refused, FLOOD - CAP, 'ambit_pending_connections_refused_total for the flooded pod');
    assert.deepEqual([other.outcome, other.intact], ['eof', true], `client2 during the flood: ${JSON.stringify(other)}`);
    assert.equal(otherRefused, 0, 'client2 had connections refused');
    assert.equal(same.outcome, 'error', `the flooded pod's captured connection was served: ${JSON.stringify(same)}`);
    assert.ok(same.code === 'ECONNRESET' || same.code === 'EPIPE', `the flooded pod's captured connection was not reset at once: ${JSON.stringify(same)}`);

    // The flood is gone: the pending count drains to 0 and the pod is served again.
    let left = -1;
    for (let i = 0; i < 20 && left !== 0; i++) {
      left = await metric('ambit_pending_connections{pod="mesh/client"}');
      if (left !== 0) await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(left, 0, 'pending connections of the flooded pod did not drain');
    const again = await fetch('client', 4 * 1024 * 1024);
    assert.deepEqual([again.outcome, again.intact], ['eof', true], `client after the flood: ${JSON.stringify(again)}`);
  });
});
