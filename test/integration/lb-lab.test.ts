/**
 * Service load balancing with real connections in a live lab (control plane
 * + agents): 1,000 new connections through the client's agent to a Service
 * whose endpoints have capacities 1, 1 and 2 (WorkloadEntry weights) split
 * within statistical tolerance; a not-ready endpoint gets none; with
 * PreferClose (FAILOVER by zone) the same-zone endpoint takes everything
 * while it exists, and traffic fails over when it goes away. Needs root.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `lb${randomBytes(2).toString('hex')}`;
let lab: LabHandle;
let dir: string;
const servers: ChildProcess[] = [];

function ip(pod: string): string {
  const w = lab.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

function write(file: string, text: string): void {
  const tmp = join(dir, `.${file}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, join(dir, file));
}

async function tally(url: string, n: number): Promise<{ counts: Record<string, number>; failed: number }> {
  const r = await lab.exec('mesh/client', [process.execPath, `${fixtures}agent/tally-client.mjs`, url, String(n)], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { counts: Record<string, number>; failed: number };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('service load balancing in a live lab', requiresRoot(), () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-lb-lab-'));
    cpSync(`${fixtures}lb-lab`, dir, { recursive: true });
    await labDown(name);
    lab = await labUp({ manifests: dir, name, mesh: true, controlPlane: true });
    for (const [pod, label] of [
      ['mesh/web-a1', 'web-a1'],
      ['mesh/web-b1', 'web-b1'],
      ['mesh/web-b2', 'web-b2'],
      ['mesh/web-sick', 'web-sick'],
      ['backends/w1', 'w1'],
      ['backends/w2', 'w2'],
      ['backends/w3', 'w3'],
    ] as const) {
      const p = await startInPod(lab, pod, [process.execPath, `${fixtures}agent/name-server.mjs`, ip(label), '8080', label]);
      servers.push(p);
    }
  });

  after(async () => {
    for (const p of servers) p.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('ready endpoints share the traffic; the not-ready one gets none', async (t) => {
    assertPrivileged(t);
    const r = await tally('http://10.96.0.50/', 300);
    t.diagnostic(JSON.stringify(r));
    assert.equal(r.failed, 0);
    assert.equal(r.counts['web-sick'] ?? 0, 0, 'the unready endpoint got no connection');
    for (const k of ['web-a1', 'web-b1', 'web-b2']) assert.ok((r.counts[k] ?? 0) > 50, `${k}: ${r.counts[k] ?? 0} of 300`);
  });

  test('PreferClose (FAILOVER by zone): the same-zone endpoint while it exists, then the other zone', async (t) => {
    assertPrivileged(t);
    const close = await tally('http://10.96.0.51/', 100);
    assert.deepEqual(close, { counts: { 'web-a1': 100 }, failed: 0 }, 'all to the zone-a endpoint');
    // web-a1 stops being ready: traffic fails over to zone-b.
    const text = readFileSync(join(dir, 'mesh.yaml'), 'utf8');
    const marker = 'metadata: { name: web-a1, namespace: mesh, labels: { app: web } }\nspec: { nodeName: node-a, serviceAccountName: web }\n';
    assert.ok(text.includes(marker));
    write('mesh.yaml', text.replace(marker, `${marker}status:\n  conditions: [{ type: Ready, status: "False" }]\n`));
    await until('failover', async () => {
      const r = await tally('http://10.96.0.51/', 10);
      return (r.counts['web-a1'] ?? 0) === 0 && r.failed === 0;
    });
    const over = await tally('http://10.96.0.51/', 100);
    t.diagnostic(JSON.stringify(over));
    assert.equal(over.failed, 0);
    assert.equal((over.counts['web-b1'] ?? 0) + (over.counts['web-b2'] ?? 0), 100, 'all to zone-b once zone-a has no ready endpoint');
  });

  test('1,000 connections over capacities 1, 1 and 2 split within tolerance', async (t) => {
    assertPrivileged(t);
    const we = (n: number, weight: number): string =>
      `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: { name: we-${n}, namespace: backends, labels: { app: weighted } }\nspec:\n  address: ${ip(`w${n}`)}\n  weight: ${weight}\n`;
    const svc = 'apiVersion: v1\nkind: Service\nmetadata: { name: weighted, namespace: backends }\nspec:\n  clusterIP: 10.96.0.60\n  selector: { app: weighted }\n  ports: [{ name: http, port: 80, targetPort: 8080 }]\n';
    write('weighted.yaml', [svc, we(1, 1), we(2, 1), we(3, 2)].join('---\n'));
    let probe: unknown;
    await until(
      'weighted service served',
      async () => {
        const p = await tally('http://10.96.0.60/', 4);
        probe = p;
        return p.failed === 0;
      },
      10_000,
    ).catch((e: Error) => assert.fail(`${e.message}; last probe ${JSON.stringify(probe)}`));
    const r = await tally('http://10.96.0.60/', 1000);
    t.diagnostic(JSON.stringify(r));
    assert.equal(r.failed, 0);
    const c = (k: string): number => r.counts[k] ?? 0;
    // Binomial: sd(250) = 13.7, sd(500) = 15.8; 4 sigma.
    assert.ok(Math.abs(c('w1') - 250) < 55, `w1 ${c('w1')}`);
    assert.ok(Math.abs(c('w2') - 250) < 55, `w2 ${c('w2')}`);
    assert.ok(Math.abs(c('w3') - 500) < 64, `w3 ${c('w3')}`);
  });
});
