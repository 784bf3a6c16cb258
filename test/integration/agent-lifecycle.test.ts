/**
 * Pod lifecycle with real agents: a pod that leaves the ambient mesh (a
 * manifest change applied to the running lab) loses its rules and its
 * listeners, and its traffic then goes direct; when it comes back it is
 * captured and tunnelled again. Needs root (network namespaces, nftables).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labApply, labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `lc${randomBytes(2).toString('hex')}`;
let lab: LabHandle;
let server: ChildProcess | undefined;
let dir: string;

function ip(pod: string): string {
  const w = lab.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

async function curl(pod: string, url: string): Promise<{ client: string }> {
  const r = await lab.exec(pod, ['curl', '-sS', '--max-time', '10', url], { timeoutMs: 15_000 });
  assert.equal(r.code, 0, `curl in ${pod} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { client: string };
}

/** Sum of a counter's samples whose labels contain every fragment. */
async function counter(node: string, metric: string, ...fragments: string[]): Promise<number> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith(`${metric}{`) && fragments.every((f) => l.includes(f)))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

async function listening(pod: string): Promise<number[]> {
  const r = await lab.exec(pod, ['ss', '-ltnH']);
  assert.equal(r.code, 0, r.stderr);
  return [...r.stdout.matchAll(/:(\d+)\s/g)].map((m) => Number(m[1]));
}

async function rulesInstalled(pod: string): Promise<boolean> {
  return (await lab.exec(pod, ['nft', 'list', 'table', 'inet', 'ambit'])).code === 0;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 3_000): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

describe('pods leaving and rejoining the mesh', { ...requiresRoot(), ...requiresTool('curl', 'ss', 'nft') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = await mkdtemp(join(tmpdir(), 'ambit-lifecycle-'));
    await labDown(name);
    lab = await labUp({ manifests: `${fixtures}agent/capture.yaml`, name, mesh: true });
    server = await startInPod(lab, 'mesh/server', [process.execPath, `${fixtures}agent/whoami-server.mjs`, ip('server'), '8080']);
  });

  after(async () => {
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('leaving removes rules and listeners and traffic goes direct; rejoining captures it again', async (t) => {
    assertPrivileged(t);
    const url = `http://${ip('server')}:8080/`;
    const viaMesh = () => counter('node-a', 'istio_tcp_connections_opened_total', 'reporter="source"', 'destination_workload="server"', 'connection_security_policy="mutual_tls"');
    const plaintextAtServer = () => counter('node-b', 'istio_tcp_connections_opened_total', 'reporter="destination"', 'destination_workload="server"', 'connection_security_policy="unknown"');

    // In the mesh: rules and the agent's listeners are in the client pod, and curl is tunnelled.
    assert.equal(await rulesInstalled('mesh/client'), true, 'rules installed while enrolled');
    for (const port of [15001, 15006, 15008]) assert.ok((await listening('mesh/client')).includes(port), `listener on ${port} while enrolled`);
    const mesh0 = await viaMesh();
    assert.equal((await curl('mesh/client', url)).client, ip('client'));
    assert.equal(await viaMesh(), mesh0 + 1, 'the request went through node-a agent over HBONE');

    // Leave: the pod opts out with the Istio label, applied to the running lab.
    const text = await readFile(`${fixtures}agent/capture.yaml`, 'utf8');
    const optedOut = text.replace('labels: { app: client }', "labels: { app: client, istio.io/dataplane-mode: none }");
    assert.notEqual(optedOut, text, 'the fixture has the client labels this test edits');
    await writeFile(join(dir, 'opted-out.yaml'), optedOut);
    const applied = await labApply(name, { manifests: join(dir, 'opted-out.yaml') });
    assert.deepEqual(applied.membership, { 'mesh/client': 'left' });
    const leftMs = await until('rules and listeners removed', async () => !(await rulesInstalled('mesh/client')) && !(await listening('mesh/client')).some((p) => [15001, 15006, 15008, 15080].includes(p)));
    t.diagnostic(`unenrolled ${leftMs} ms after the apply`);
    assert.ok(leftMs < 1_500, `unenrolled within 1.5 s (took ${leftMs} ms)`);

    // Direct now: node-a's agent sees nothing; node-b still captures its server and counts plaintext.
    const plain0 = await plaintextAtServer();
    const mesh1 = await viaMesh();
    assert.equal((await curl('mesh/client', url)).client, ip('client'), 'the server still sees the client address');
    assert.equal(await viaMesh(), mesh1, 'node-a agent did not handle it');
    assert.equal(await plaintextAtServer(), plain0 + 1, 'it reached the server as plaintext, captured on 15006');
    // The server pod is still in the mesh and untouched.
    assert.equal(await rulesInstalled('mesh/server'), true);

    // Rejoin: the original manifests again.
    const back = await labApply(name, { manifests: `${fixtures}agent/capture.yaml` });
    assert.deepEqual(back.membership, { 'mesh/client': 'joined' });
    const joinMs = await until('rules and listeners back', async () => (await rulesInstalled('mesh/client')) && (await listening('mesh/client')).includes(15001));
    t.diagnostic(`re-enrolled ${joinMs} ms after the apply`);
    const mesh2 = await viaMesh();
    assert.equal((await curl('mesh/client', url)).client, ip('client'));
    assert.equal(await viaMesh(), mesh2 + 1, 'tunnelled again after rejoining');
  });

  test('lab apply refuses to change the pod set and leaves the running lab as it was', async (t) => {
    assertPrivileged(t);
    const text = await readFile(`${fixtures}agent/capture.yaml`, 'utf8');
    await writeFile(join(dir, 'extra-pod.yaml'), `${text}\n---\napiVersion: v1\nkind: Pod\nmetadata: { name: extra, namespace: mesh }\nspec: { nodeName: node-a }\n`);
    await assert.rejects(labApply(name, { manifests: join(dir, 'extra-pod.yaml') }), /not the pod set.*add mesh\/extra/);
    assert.equal((await curl('mesh/client', `http://${ip('server')}:8080/`)).client, ip('client'));
  });
});
