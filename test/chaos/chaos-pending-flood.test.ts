/**
 * The per-pod pending-connection limit (issue 9, "Limits";
 * src/agent/pending-connections.ts PendingConnections, flag
 * --max-pending-per-pod, one cap per pod and direction).
 *
 * Outbound (15080/15001). Node-a's agent is
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
 *
 * Inbound plaintext (15006). Node-b's agent is relaunched with the same cap.
 * `legacy` (outside the mesh, node-a) opens 200 plaintext connections to
 * `server`:9300; each is captured on server's 15006, and the agent's dial to
 * the app never completes (a test-only nftables rule in server's netns drops
 * SYNs to 9300), so each stays pending until the 10 s connect timeout.
 * Expected: 50 pending (gauge {direction="inbound",pod="mesh/server"}), 150
 * reset and counted; during the flood `server2` on the same agent gets an
 * intact plaintext transfer from `legacy`, `client` still reaches `server`
 * over HBONE, and a new plaintext connection to `server` is reset.
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
const name = `rzmk${randomBytes(3).toString('hex')}`;
const PORT = 9200;
const STUCK_PORT = 9300;
const CAP = 50;
const FLOOD = 200;
const METRICS = 16220;
const tally = new Tally('chaos-pending-flood');
let lab: LabHandle | undefined;
let server: ChildProcess | undefined;
let server2: ChildProcess | undefined;
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
---
apiVersion: v1
kind: Pod
metadata: { name: server2, namespace: mesh, labels: { app: server2 } }
spec: { nodeName: node-b, serviceAccountName: server2 }
---
apiVersion: v1
kind: Namespace
metadata: { name: outside, labels: { istio.io/dataplane-mode: none } }
---
apiVersion: v1
kind: Pod
metadata: { name: legacy, namespace: outside, labels: { app: legacy } }
spec: { nodeName: node-a }
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

/** A checksummed fetch from `pod` (namespace/pod; mesh/ when no namespace) to `to`; outside the mesh it asks for the marker-free stream. */
async function fetch(pod: string, bytes: number, to = 'server'): Promise<Fetch> {
  const target = pod.includes('/') ? pod : `mesh/${pod}`;
  const plain = target.startsWith('outside/') ? ['--plain'] : [];
  const r = await lab!.exec(target, [process.execPath, streamScript, 'fetch', ip(to), String(PORT), String(bytes), ...plain], { timeoutMs: 70_000 });
  assert.equal(r.code, 0, `fetch did not run: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Fetch;
}

/** One series of node's agent metrics: `name` with (at least) these labels, in any order; 0 when absent. */
async function metric(name: string, labels: Record<string, string>, node = 'node-a'): Promise<number> {
  const r = await lab!.exec({ node }, ['curl', '-sS', '--max-time', '2', `http://127.0.0.1:${METRICS}/metrics`], { timeoutMs: 5_000 });
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = r.stdout.split('\n').find((l) => {
    const m = /^([a-z_]+)\{([^}]*)\} /.exec(l);
    return m?.[1] === name && want.every((w) => (m[2] ?? '').split(',').includes(w));
  });
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}
const OUT = (pod: string) => ({ pod, direction: 'outbound' });
const IN = (pod: string) => ({ pod, direction: 'inbound' });

describe('per-pod pending-connection limit', { ...requiresRoot(), ...requiresTool('curl') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = await mkdtemp(join(tmpdir(), 'ambit-pending-'));
    await writeFile(join(dir, 'pods.yaml'), MANIFEST);
    floodScript = join(dir, 'flood.mjs');
    await writeFile(floodScript, FLOOD_SCRIPT);
    lab = await labUp({ manifests: join(dir, 'pods.yaml'), name, mesh: true });
    for (const node of ['node-a', 'node-b']) {
      const restart = await labRestartAgent(name, node, { extraArgs: ['--admin-port', '16200', '--metrics-port', String(METRICS), '--readiness-port', '16221', '--max-pending-per-pod', String(CAP)] });
      await restart.oldExited;
    }
    server = await startInPod(lab, 'mesh/server', [process.execPath, streamScript, 'serve', ip('server'), String(PORT), String(64 * 1024 * 1024), '1']);
    server2 = await startInPod(lab, 'mesh/server2', [process.execPath, streamScript, 'serve', ip('server2'), String(PORT), String(64 * 1024 * 1024), '1']);
    // Test-only: the agent's dial to server:9300 (from inside server's netns) is dropped, so a
    // plaintext connection captured for that port stays pending until the agent's connect timeout.
    const nft = await lab.exec('mesh/server', ['nft', '-f', '-'], { input: `table inet rzmktest {\n\tchain out {\n\t\ttype filter hook output priority 0; policy accept;\n\t\ttcp dport ${STUCK_PORT} drop\n\t}\n}\n` });
    assert.equal(nft.code, 0, `nft: ${nft.stderr}`);
  });

  after(async () => {
    tally.print();
    server?.kill();
    server2?.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test(`a pod flooding its agent with ${FLOOD} stalled connections gets ${FLOOD - CAP} reset; another pod on the same agent is unaffected`, { timeout: 90_000 }, async (t) => {
    assertPrivileged(t);
    for (const pod of ['client', 'client2']) {
      const warm = await fetch(pod, 1024 * 1024);
      assert.deepEqual([warm.outcome, warm.intact], ['eof', true], `${pod} before the flood: ${JSON.stringify(warm)}`);
    }
    const refusedBefore = await metric('ambit_pending_connections_refused_total', OUT('mesh/client'));
    // SOCKS5 on 127.0.0.1:15080 inside the pod: no greeting is ever sent, so every connection stays pending.
    const flood = lab!.exec('mesh/client', [process.execPath, floodScript, '127.0.0.1', '15080', String(FLOOD), '1500', '7000'], { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 1800));
    const gauge = await metric('ambit_pending_connections', OUT('mesh/client'));
    const refused = (await metric('ambit_pending_connections_refused_total', OUT('mesh/client'))) - refusedBefore;
    // The same agent serves client2 in full, and its connections are never refused.
    const other = await fetch('client2', 8 * 1024 * 1024);
    const otherRefused = await metric('ambit_pending_connections_refused_total', OUT('mesh/client2'));
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
      left = await metric('ambit_pending_connections', OUT('mesh/client'));
      if (left !== 0) await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(left, 0, 'pending connections of the flooded pod did not drain');
    const again = await fetch('client', 4 * 1024 * 1024);
    assert.deepEqual([again.outcome, again.intact], ['eof', true], `client after the flood: ${JSON.stringify(again)}`);
  });

  test(`a non-mesh pod flooding a pod's plaintext inbound (15006) with ${FLOOD} connections gets ${FLOOD - CAP} reset; another pod on the same agent is unaffected`, { timeout: 90_000 }, async (t) => {
    assertPrivileged(t);
    const warm = await fetch('outside/legacy', 1024 * 1024, 'server2');
    assert.deepEqual([warm.outcome, warm.intact], ['eof', true], `legacy -> server2 before the flood: ${JSON.stringify(warm)}`);
    const refusedBefore = await metric('ambit_pending_connections_refused_total', IN('mesh/server'), 'node-b');
    const flood = lab!.exec('outside/legacy', [process.execPath, floodScript, ip('server'), String(STUCK_PORT), String(FLOOD), '2500', '8000'], { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 2800));
    const gauge = await metric('ambit_pending_connections', IN('mesh/server'), 'node-b');
    const refused = (await metric('ambit_pending_connections_refused_total', IN('mesh/server'), 'node-b')) - refusedBefore;
    // The same agent still serves another pod's plaintext inbound, and the flooded pod's mesh traffic.
    const other = await fetch('outside/legacy', 8 * 1024 * 1024, 'server2');
    const otherRefused = await metric('ambit_pending_connections_refused_total', IN('mesh/server2'), 'node-b');
    const mesh = await fetch('client', 1024 * 1024, 'server');
    // A new plaintext connection to the flooded pod is over the cap.
    const same = await fetch('outside/legacy', 1024 * 1024, 'server');
    const f = await flood;
    assert.equal(f.code, 0, `flood script: ${f.stderr}`);
    const seen = JSON.parse(f.stdout.trim()) as { open: number; closed: number; codes: Record<string, number> };
    t.diagnostic(`inbound flood: ${JSON.stringify(seen)}; gauge ${gauge}, refused ${refused}; legacy->server2: ${JSON.stringify(other)}; client->server (HBONE): ${JSON.stringify(mesh)}; legacy->server plaintext: ${JSON.stringify(same)}`);
    tally.case(`flood of ${FLOOD} stalled plaintext inbound connections`, { refused: refused === FLOOD - CAP });
    tally.case('other pod (plaintext inbound) during the flood', { refused: false, bytesLost: other.outcome === 'eof' && !other.intact ? 8 * 1024 * 1024 - other.bytes : 0 });
    tally.case('flooded pod: new plaintext connection', { refused: same.outcome === 'error' });

    assert.equal(seen.open, CAP, `${seen.open} plaintext connections stayed pending, expected the cap ${CAP}`);
    assert.equal(seen.codes.ECONNRESET, FLOOD - CAP, `the excess was not reset: ${JSON.stringify(seen.codes)}`);
    assert.equal(gauge, CAP, 'ambit_pending_connections{direction="inbound"} for the flooded pod');
    assert.equal(refused, FLOOD - CAP, 'ambit_pending_connections_refused_total{direction="inbound"} for the flooded pod');
    assert.deepEqual([other.outcome, other.intact], ['eof', true], `server2 during the flood: ${JSON.stringify(other)}`);
    assert.equal(otherRefused, 0, 'server2 had plaintext connections refused');
    assert.deepEqual([mesh.outcome, mesh.intact], ['eof', true], `HBONE to the flooded pod during the flood: ${JSON.stringify(mesh)}`);
    assert.equal(same.outcome, 'error', `a plaintext connection over the cap was served: ${JSON.stringify(same)}`);
    // The outbound count of the flooded pod is separate: untouched by an inbound flood.
    assert.equal(await metric('ambit_pending_connections_refused_total', OUT('mesh/server'), 'node-b'), 0);

    let left = -1;
    for (let i = 0; i < 20 && left !== 0; i++) {
      left = await metric('ambit_pending_connections', IN('mesh/server'), 'node-b');
      if (left !== 0) await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(left, 0, 'pending inbound connections of the flooded pod did not drain');
    const again = await fetch('outside/legacy', 1024 * 1024, 'server');
    assert.deepEqual([again.outcome, again.intact], ['eof', true], `legacy -> server after the flood: ${JSON.stringify(again)}`);
  });
});
