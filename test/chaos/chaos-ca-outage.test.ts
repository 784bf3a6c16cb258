/**
 * Chaos: the CA is unavailable while certificates approach expiry (issue 9,
 * "CA"). Agents run with 60 s certificates (--cert-ttl-seconds 60; the
 * control plane's --ca-max-ttl-seconds 60). The control plane (xDS + CA) is
 * killed:
 *   - while the certificates are still valid, checksummed transfers keep
 *     succeeding (the old certificates stay in use);
 *   - ambit_certificate_renewal_failures_total rises and
 *     ambit_certificate_expires_in_seconds counts down on both agents, and the
 *     agent logs each failed renewal with the time left;
 *   - once the certificates have expired, a new connection fails with an
 *     error (a reset, never a clean EOF) and nothing crosses the node link in
 *     clear (tcpdump);
 *   - after the control plane restarts, connections work again within a bound.
 * After expiry both kinds of connection fail closed: one that needs a new
 * HBONE connection (pod `fresh`, never contacted before), and one to a peer
 * whose HBONE connection was pooled before expiry (it drained at expiry:
 * pool invariant 8 in src/hbone/pool.ts).
 * Needs root, curl and tcpdump.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { labDown, labStartControlPlane, labStopControlPlane, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { Tally } from '../security/lib/tally.js';
import { agentCertificates, agentMetric, fetchFrom, podIp, sleep, startCapture, startInPodProcess, stopCapture, streamScript, type Fetch } from './ca-lab.js';

const name = `rzca${randomBytes(3).toString('hex')}`;
const PORT = 9300;
const XFER = 256 * 1024;
/** The control plane restart, ready file included, to a working connection. */
const RECOVERY_BOUND_MS = 20_000;
const tally = new Tally('chaos-ca-outage');
let lab: LabHandle | undefined;
let dir = '';
const servers: ChildProcess[] = [];
let stopped = false;

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
---
apiVersion: v1
kind: Pod
metadata: { name: fresh, namespace: mesh, labels: { app: fresh } }
spec: { nodeName: node-b, serviceAccountName: fresh }
`;

const ID = (sa: string): string => `spiffe://cluster.local/ns/mesh/sa/${sa}`;

describe('CA unavailable while certificates expire', { ...requiresRoot(), ...requiresTool('curl', 'tcpdump') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-ca-outage-'));
    writeFileSync(join(dir, 'mesh.yaml'), MANIFEST);
    lab = await labUp({
      manifests: dir,
      name,
      mesh: true,
      controlPlane: true,
      controlPlaneArgs: ['--ca-max-ttl-seconds', '60'],
      agentArgs: ['--cert-ttl-seconds', '60'],
    });
    for (const pod of ['server', 'fresh']) servers.push(await startInPodProcess(lab, `mesh/${pod}`, [process.execPath, streamScript, 'serve', podIp(lab, pod), String(PORT), String(XFER), '1']));
  });

  after(async () => {
    tally.print();
    if (stopped) await labStartControlPlane(name).catch(() => undefined);
    for (const s of servers) s.kill();
    if (process.getuid?.() === 0) await labDown(name).catch(() => undefined);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('old certificates serve until expiry, then connections fail closed; service resumes after the CA returns', { timeout: 200_000 }, async (t) => {
    assertPrivileged(t);
    const l = lab as LabHandle;
    const started = Date.now();
    const warm = await fetchFrom(l, 'mesh/client', podIp(l, 'server'), PORT, XFER);
    assert.deepEqual([warm.outcome, warm.intact], ['eof', true], `before the outage: ${JSON.stringify(warm)}`);

    await labStopControlPlane(name, { kill: true });
    stopped = true;
    const downAt = Date.now();
    // What each agent holds now; nothing can renew it until the control plane is back.
    const notAfterOf = async (node: string, sa: string): Promise<number> => {
      const c = (await agentCertificates(l, node)).find((x) => x.identity === ID(sa));
      assert.ok(c?.certificate, `${node} holds no certificate for ${sa}: ${JSON.stringify(c)}`);
      return Date.parse(c.certificate.notAfter);
    };
    const expiryClient = await notAfterOf('node-a', 'client');
    const expiryServer = await notAfterOf('node-b', 'server');
    const firstExpiry = Math.min(expiryClient, expiryServer);
    const lastExpiry = Math.max(expiryClient, expiryServer, await notAfterOf('node-b', 'fresh'));
    t.diagnostic(`control plane killed; certificates expire in ${Math.round((expiryClient - downAt) / 1000)} s (client) and ${Math.round((expiryServer - downAt) / 1000)} s (server)`);
    assert.ok(lastExpiry - downAt <= 62_000, 'the certificates live 60 s');

    // While valid: transfers keep working on the old certificates.
    const during: Array<Fetch & { at: number; end: number }> = [];
    while (Date.now() < firstExpiry - 3_000) {
      const at = Date.now();
      const r = await fetchFrom(l, 'mesh/client', podIp(l, 'server'), PORT, XFER);
      during.push({ ...r, at, end: Date.now() });
      await sleep(500);
    }
    const bad = during.filter((r) => r.end < firstExpiry && !(r.outcome === 'eof' && r.intact));
    for (const r of during) tally.case(`valid certificate, ca down: transfer ${r.outcome}`, { refused: r.outcome !== 'eof', bytesLost: r.outcome === 'eof' && !r.intact ? XFER - r.bytes : 0 });
    t.diagnostic(`${during.length} transfers while the ca was down and the certificates valid; ${bad.length} failed`);
    assert.ok(during.length >= 5, `only ${during.length} transfers ran before expiry`);
    assert.deepEqual(bad, [], 'a transfer failed while the old certificates were still valid');

    // Metrics: renewals fail and are counted; the time left is visible.
    const failures = await agentMetric(l, 'node-a', 'ambit_certificate_renewal_failures_total');
    const left = await agentMetric(l, 'node-a', 'ambit_certificate_expires_in_seconds');
    const clientFailures = failures.get(`{identity="${ID('client')}"}`) ?? 0;
    const clientLeft = left.get(`{identity="${ID('client')}"}`);
    t.diagnostic(`node-a: renewal failures ${clientFailures}, expires in ${clientLeft} s`);
    assert.ok(clientFailures >= 2, `renewal failures are counted (${clientFailures})`);
    const expectLeft = (expiryClient - Date.now()) / 1000;
    assert.ok(clientLeft !== undefined && Math.abs(clientLeft - expectLeft) <= 3, `the expiry gauge shows the time left (${clientLeft} s, expected about ${Math.round(expectLeft)} s)`);
    const nodeBFailures = (await agentMetric(l, 'node-b', 'ambit_certificate_renewal_failures_total')).get(`{identity="${ID('server')}"}`) ?? 0;
    assert.ok(nodeBFailures >= 2, `node-b counts its failures too (${nodeBFailures})`);
    const logA = readFileSync(join(l.stateDir, 'agent-node-a.log'), 'utf8');
    assert.match(logA, /workload certificate renewal failed: the ca is unreachable; the current certificate expires in \d+ s/);

    // After expiry: a new connection fails with an error, and nothing goes out in clear.
    await sleep(Math.max(0, lastExpiry - Date.now() + 1_500));
    const pcap = join(dir, 'node-a.pcap');
    const dump = await startCapture(l, 'node-a', pcap);
    const marker = `AMBIT-CANARY-CA-${randomBytes(8).toString('hex')}`;
    let expired: Fetch;
    let pooled: Fetch;
    let probe: string;
    try {
      expired = await fetchFrom(l, 'mesh/client', podIp(l, 'fresh'), PORT, XFER);
      probe = (await l.exec('mesh/client', [process.execPath, streamScript, 'send', podIp(l, 'fresh'), String(PORT), marker.repeat(100)], { timeoutMs: 10_000 })).stdout.trim();
      pooled = await fetchFrom(l, 'mesh/client', podIp(l, 'server'), PORT, XFER);
      await sleep(300);
    } finally {
      await stopCapture(dump);
    }
    const leaked = readFileSync(pcap).includes(Buffer.from(marker));
    t.diagnostic(`after expiry: new peer ${JSON.stringify(expired)}, marker probe ${probe}, peer with a pooled connection ${JSON.stringify(pooled)}`);
    tally.case('expired certificate: new connection', { refused: expired.outcome === 'error', bytesLost: expired.outcome === 'eof' && !expired.intact ? XFER - expired.bytes : 0 });
    tally.case('expired certificate: plaintext probe', { refused: !leaked });
    tally.case('expired certificate: peer pooled before expiry', { refused: pooled.outcome === 'error', bytesLost: pooled.outcome === 'eof' && !pooled.intact ? XFER - pooled.bytes : 0 });
    assert.equal(expired.outcome, 'error', `a connection made after expiry did not fail: ${JSON.stringify(expired)}`);
    assert.equal(expired.bytes, 0);
    assert.equal(pooled.outcome, 'error', `a connection over an hbone connection pooled before expiry did not fail: ${JSON.stringify(pooled)}`);
    assert.equal(pooled.bytes, 0);
    assert.notEqual((JSON.parse(probe || '{}') as { outcome?: string }).outcome, 'timeout', 'a connection after expiry hung instead of failing');
    assert.equal(leaked, false, 'a connection made after expiry crossed the node link in clear');
    const metricsAfter = await agentMetric(l, 'node-a', 'ambit_certificate_expires_in_seconds');
    assert.ok((metricsAfter.get(`{identity="${ID('client')}"}`) ?? 1) < 0, 'the gauge goes negative once expired');
    const state = await agentMetric(l, 'node-a', 'ambit_certificate_state');
    assert.equal(state.get(`{identity="${ID('client')}",state="Unavailable"}`), 1);
    const logAfter = readFileSync(join(l.stateDir, 'agent-node-a.log'), 'utf8');
    assert.match(logAfter, /workload certificate expired without a renewal; new connections for this identity fail closed/);

    // The CA comes back: connections work again within the bound.
    const restartAt = Date.now();
    await labStartControlPlane(name);
    stopped = false;
    const readyMs = Date.now() - restartAt;
    let back: Fetch | undefined;
    let attempts = 0;
    while (Date.now() - restartAt < RECOVERY_BOUND_MS + 10_000) {
      attempts++;
      back = await fetchFrom(l, 'mesh/client', podIp(l, 'fresh'), PORT, XFER);
      if (back.outcome === 'eof' && back.intact) break;
      await sleep(250);
    }
    const recoveredMs = Date.now() - restartAt;
    t.diagnostic(`control plane ready ${readyMs} ms after the restart; new connections work again ${recoveredMs} ms after it (${attempts} attempts); outage lasted ${Math.round((restartAt - downAt) / 1000)} s; test ran ${Math.round((Date.now() - started) / 1000)} s`);
    tally.case('after the ca returns: new connection', { refused: !(back?.outcome === 'eof' && back.intact) });
    assert.deepEqual([back?.outcome, back?.intact], ['eof', true], `connections did not recover: ${JSON.stringify(back)}`);
    assert.ok(recoveredMs <= RECOVERY_BOUND_MS, `recovery took ${recoveredMs} ms (bound ${RECOVERY_BOUND_MS} ms)`);
    const again = await fetchFrom(l, 'mesh/client', podIp(l, 'server'), PORT, XFER);
    assert.deepEqual([again.outcome, again.intact], ['eof', true], `the first peer after recovery: ${JSON.stringify(again)}`);
  });
});
