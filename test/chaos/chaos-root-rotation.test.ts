/**
 * Chaos: the mesh root is rotated with live traffic (issue 9, "Root
 * rotation"). Agents hold 60 s certificates, so each renews every 30 s and
 * several times per phase. Throughout `ambit ca rotate --phase add`, then
 * `activate`, then `retire` (each once `ambit ca status` says it is safe):
 *   - two lanes of long checksummed downloads (13 s each, back to back) and a
 *     lane of short ones on new connections never stop;
 *   - at every stage a pod that has not talked yet makes its first connection
 *     (a fresh HBONE handshake with the certificates and bundles of that
 *     moment);
 * and then the control plane is restarted: the agents, whose --root-cert file
 * was read before the rotation (old root only), must reconnect to it (its
 * serving certificate comes from the new root, sent with the cross-certificate).
 * Every transfer must end intact, none may fail, and at the end every
 * certificate the agents hold chains to the new root. Needs root and curl.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { splitPemCertificates } from '../../src/ca/ca-client.js';
import type { RotationStatus } from '../../src/ca/ca-roots.js';
import { labDown, labStartControlPlane, labStopControlPlane, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { Tally } from '../security/lib/tally.js';
import { agentCertificates, ambitBin, fetchFrom, podIp, signedBy, sleep, startInPodProcess, streamScript, type Fetch } from './ca-lab.js';

const name = `rzca${randomBytes(3).toString('hex')}`;
const SLOW_PORT = 9300;
const FAST_PORT = 9301;
const LONG = 16 * 1024 * 1024;
const SHORT = 256 * 1024;
const tally = new Tally('chaos-root-rotation');
let lab: LabHandle | undefined;
let dir = '';
const servers: ChildProcess[] = [];
let cpStopped = false;

const PROBES = ['p0', 'p1', 'p2', 'p3', 'p4'];
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
metadata: { name: server, namespace: mesh, labels: { app: server } }
spec: { nodeName: node-b, serviceAccountName: server }
${PROBES.map((p) => `---
apiVersion: v1
kind: Pod
metadata: { name: ${p}, namespace: mesh, labels: { app: probe } }
spec: { nodeName: node-a, serviceAccountName: probe }
`).join('')}`;

describe('root rotation with live traffic', { ...requiresRoot(), ...requiresTool('curl') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-root-rotation-'));
    writeFileSync(join(dir, 'mesh.yaml'), MANIFEST);
    lab = await labUp({ manifests: dir, name, mesh: true, controlPlane: true, controlPlaneArgs: ['--ca-max-ttl-seconds', '60'], agentArgs: ['--cert-ttl-seconds', '60'] });
    const ip = podIp(lab, 'server');
    // 64 KiB every 50 ms: a 16 MiB download takes ~13 s.
    servers.push(await startInPodProcess(lab, 'mesh/server', [process.execPath, streamScript, 'serve', ip, String(SLOW_PORT), String(LONG), '50']));
    servers.push(await startInPodProcess(lab, 'mesh/server', [process.execPath, streamScript, 'serve', ip, String(FAST_PORT), String(SHORT), '1']));
  });

  after(async () => {
    tally.print();
    if (cpStopped) await labStartControlPlane(name).catch(() => undefined);
    for (const s of servers) s.kill();
    if (process.getuid?.() === 0) await labDown(name).catch(() => undefined);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('add, activate, retire: no connection fails, every byte intact, every certificate from the new root', { timeout: 240_000 }, async (t) => {
    assertPrivileged(t);
    const l = lab as LabHandle;
    const started = Date.now();
    const cpIp = l.cluster.nodes[0]?.ip as string;
    const caDir = join(l.stateDir, 'ca');
    const ambit = async (...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      l.exec({ node: 'node-a' }, [process.execPath, ambitBin, 'ca', ...args, '--address', `${cpIp}:15014`, '--ca-dir', caDir, '--json'], { timeoutMs: 40_000 });
    const status = async (): Promise<RotationStatus> => {
      const r = await ambit('status');
      assert.equal(r.code, 0, `ambit ca status: ${r.stderr}`);
      return JSON.parse(r.stdout) as RotationStatus;
    };
    const rotate = async (phase: string): Promise<RotationStatus> => {
      const r = await ambit('rotate', '--phase', phase);
      assert.equal(r.code, 0, `ambit ca rotate --phase ${phase}: ${r.stderr}`);
      return JSON.parse(r.stdout) as RotationStatus;
    };
    const waitSafe = async (): Promise<number> => {
      const t0 = Date.now();
      for (;;) {
        const s = await status();
        if (s.nextPhaseSafeInSeconds === 0) return Date.now() - t0;
        await sleep(Math.min(2_000, s.nextPhaseSafeInSeconds * 1000));
      }
    };
    const oldRoot = (await status()).roots;
    assert.equal(oldRoot.length, 1);

    const warm = await fetchFrom(l, 'mesh/client', podIp(l, 'server'), FAST_PORT, SHORT);
    assert.deepEqual([warm.outcome, warm.intact], ['eof', true], `warm-up: ${JSON.stringify(warm)}`);

    let running = true;
    let stage = 'stable';
    const results: Array<Fetch & { lane: string; stage: string }> = [];
    const lane = (label: string, port: number, bytes: number, pauseMs: number) =>
      (async () => {
        while (running) {
          const s = stage;
          const r = await fetchFrom(l, 'mesh/client', podIp(l, 'server'), port, bytes);
          results.push({ ...r, lane: label, stage: s === stage ? s : `${s}->${stage}` });
          if (pauseMs > 0) await sleep(pauseMs);
        }
      })();
    const lanes = [lane('long-1', SLOW_PORT, LONG, 0), lane('long-2', SLOW_PORT, LONG, 0), lane('short', FAST_PORT, SHORT, 200)];
    const probes: Array<Fetch & { pod: string; stage: string }> = [];
    const probe = async (pod: string): Promise<void> => {
      const r = await fetchFrom(l, `mesh/${pod}`, podIp(l, 'server'), FAST_PORT, SHORT);
      probes.push({ ...r, pod, stage });
    };
    const timings: Record<string, number> = {};
    try {
      await probe('p0');
      await sleep(2_000);
      const added = await rotate('add');
      stage = 'added';
      assert.equal(added.roots.length, 2);
      const early = await ambit('rotate', '--phase', 'activate');
      assert.equal(early.code, 1, 'activate right after add must be refused');
      assert.match(early.stderr, /too early to activate/);
      await probe('p1');
      timings.addToActivateWaitMs = await waitSafe();
      const activated = await rotate('activate');
      stage = 'activated';
      const newRoot = activated.roots.find((r) => r.active);
      assert.ok(newRoot && newRoot.fingerprint !== oldRoot[0]?.fingerprint, 'the new root signs');
      await probe('p2');
      timings.activateToRetireWaitMs = await waitSafe();
      const retired = await rotate('retire');
      stage = 'retired';
      assert.deepEqual(retired.roots.map((r) => r.fingerprint), [newRoot.fingerprint]);
      await probe('p3');
      await sleep(2_000);

      // The agents read --root-cert (the old root alone) at start; the restarted control plane serves from the new root.
      const cpDown = Date.now();
      await labStopControlPlane(name);
      cpStopped = true;
      await labStartControlPlane(name);
      cpStopped = false;
      stage = 'cp-restarted';
      let reconnected = -1;
      while (Date.now() - cpDown < 30_000) {
        const r = await l.exec({ node: 'node-a' }, ['curl', '-sS', '--max-time', '2', `http://${cpIp}:15014/debug/config`], { timeoutMs: 5_000 });
        if (r.code === 0 && ((JSON.parse(r.stdout) as { connections?: unknown[] }).connections ?? []).length === 2) {
          reconnected = Date.now() - cpDown;
          break;
        }
        await sleep(250);
      }
      timings.cpRestartReconnectMs = reconnected;
      assert.ok(reconnected >= 0, 'the agents (trusting only the old root from --root-cert) did not reconnect to the restarted control plane');
      await probe('p4');
      await sleep(1_000);
    } finally {
      running = false;
      await Promise.all(lanes);
    }

    const roots = splitPemCertificates(readFileSync(join(caDir, 'root-cert.pem'), 'utf8'));
    assert.equal(roots.length, 1, 'root-cert.pem holds the new root alone after retire');
    const newRootPem = roots[0] as string;
    const held: string[] = [];
    for (const node of ['node-a', 'node-b']) {
      for (const c of await agentCertificates(l, node)) {
        assert.ok(c.certificate, `${node} ${c.identity}: no certificate (${c.state})`);
        assert.equal(c.state, 'Available', `${node} ${c.identity}`);
        assert.ok(signedBy(c.certificate.certChainPem[0] as string, newRootPem), `${node} ${c.identity}: the certificate does not chain to the new root`);
        held.push(`${node}:${c.identity.split('/').at(-1)}`);
      }
    }

    const byStage: Record<string, { n: number; bad: number }> = {};
    for (const r of results) {
      const b = (byStage[`${r.lane}@${r.stage}`] ??= { n: 0, bad: 0 });
      b.n++;
      if (!(r.outcome === 'eof' && r.intact)) b.bad++;
      tally.case(`${r.lane} ${r.stage}: ${r.outcome}`, { refused: r.outcome !== 'eof', bytesLost: r.outcome === 'eof' && !r.intact ? (r.lane === 'short' ? SHORT : LONG) - r.bytes : 0 });
    }
    for (const p of probes) tally.case(`first connection of ${p.pod} (${p.stage}): ${p.outcome}`, { refused: p.outcome !== 'eof' });
    const bytes = results.reduce((n, r) => n + r.bytes, 0);
    t.diagnostic(`transfers: ${results.length} (${(bytes / 1048576).toFixed(0)} MiB) by lane@stage ${JSON.stringify(byStage)}; probes ${JSON.stringify(probes.map((p) => [p.pod, p.stage, p.outcome, p.intact]))}; timings ${JSON.stringify(timings)}; certificates from the new root: ${held.join(', ')}; test ran ${Math.round((Date.now() - started) / 1000)} s`);
    const failed = [...results, ...probes].filter((r) => !(r.outcome === 'eof' && r.intact));
    assert.deepEqual(failed, [], 'connections failed or were damaged during the root rotation');
    assert.equal(probes.length, PROBES.length);
    assert.ok(results.filter((r) => r.lane === 'short').length >= 30, 'the short lane ran');
    assert.ok(held.length >= 3, `the agents hold certificates (client, probe, server) (${held.join(', ')})`);
  });
});
