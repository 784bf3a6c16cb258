/**
 * L4 authorization with real traffic in a live lab (control plane + agents):
 * AuthorizationPolicy and PeerAuthentication files are written into the
 * watched manifest folder, and each case checks who can connect to the
 * server: a client in the same namespace, an "intruder" with a valid mesh
 * identity from another namespace, and a legacy pod outside the mesh
 * (plaintext). Then a policy change closes a now-denied long transfer within
 * a second while an allowed one keeps going. Needs root.
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
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `az${randomBytes(2).toString('hex')}`;
let lab: LabHandle;
let dir: string;
const servers: ChildProcess[] = [];
const CLIENTS = { client: 'mesh/client', intruder: 'intruder/intruder', legacy: 'outside/legacy' } as const;
type Who = keyof typeof CLIENTS;

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

function clearPolicies(): void {
  for (const f of ['policy.yaml', 'peer.yaml']) rmSync(join(dir, f), { force: true });
}

async function connects(who: Who, port: number): Promise<boolean> {
  const r = await lab.exec(CLIENTS[who], ['curl', '-sS', '--max-time', '3', `http://${ip('server')}:${port}/`], { timeoutMs: 6_000 });
  return r.code === 0 && r.stdout.includes('bodySha');
}

/** Waits until every expectation holds at once (policies take a few hundred ms to arrive), then asserts them. */
async function expectAccess(label: string, want: Partial<Record<Who, boolean>>, port = 8080): Promise<void> {
  const deadline = Date.now() + 5_000;
  let got: Partial<Record<Who, boolean>> = {};
  for (;;) {
    got = {};
    for (const who of Object.keys(want) as Who[]) got[who] = await connects(who, port);
    if ((Object.keys(want) as Who[]).every((w) => got[w] === want[w]) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(got, want, `${label} (port ${port})`);
}

const policy = (spec: string, meta = 'name: p\n  namespace: mesh'): string => `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  ${meta}\nspec:\n${spec}`;

describe('L4 authorization in a live lab', { ...requiresRoot(), ...requiresTool('curl') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-authz-lab-'));
    cpSync(`${fixtures}authz-lab`, dir, { recursive: true });
    await labDown(name);
    lab = await labUp({ manifests: dir, name, mesh: true, controlPlane: true });
    for (const port of [8080, 9090]) {
      const p = await startInPod(lab, 'mesh/server', [process.execPath, `${fixtures}agent/whoami-server.mjs`, ip('server'), String(port)]);
      servers.push(p);
    }
  });

  after(async () => {
    for (const p of servers) p.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('no policy: everyone connects', async (t) => {
    assertPrivileged(t);
    await expectAccess('no policy', { client: true, intruder: true, legacy: true });
  });

  test('workload scope ALLOW by principal: only the client; plaintext has no principal', async (t) => {
    assertPrivileged(t);
    write('policy.yaml', policy('  selector: { matchLabels: { app: server } }\n  action: ALLOW\n  rules:\n    - from: [{ source: { principals: ["cluster.local/ns/mesh/sa/client"] } }]\n'));
    await expectAccess('ALLOW principals', { client: true, intruder: false, legacy: false });
    write('policy.yaml', policy('  selector: { matchLabels: { app: server } }\n  action: ALLOW\n  rules:\n    - from: [{ source: { notPrincipals: ["cluster.local/ns/intruder/sa/intruder"] } }]\n'));
    await expectAccess('ALLOW notPrincipals', { client: true, intruder: false });
  });

  test('namespace scope DENY by namespace, and its not_ form', async (t) => {
    assertPrivileged(t);
    write('policy.yaml', policy('  action: DENY\n  rules:\n    - from: [{ source: { namespaces: ["intruder"] } }]\n'));
    await expectAccess('DENY namespaces', { client: true, intruder: false, legacy: true });
    write('policy.yaml', policy('  action: DENY\n  rules:\n    - from: [{ source: { notNamespaces: ["mesh"] } }]\n'));
    // Plaintext has no namespace: a not_ list does not match it, so the DENY does not apply (ztunnel's rule).
    await expectAccess('DENY notNamespaces', { client: true, intruder: false, legacy: true });
  });

  test('global scope (root namespace) DENY by destination port', async (t) => {
    assertPrivileged(t);
    write('policy.yaml', policy('  action: DENY\n  rules:\n    - to: [{ operation: { ports: ["9090"] } }]\n', 'name: no-9090\n  namespace: istio-system'));
    await expectAccess('DENY port 9090', { client: false, intruder: false, legacy: false }, 9090);
    await expectAccess('other ports unaffected', { client: true, intruder: true, legacy: true }, 8080);
    write('policy.yaml', policy('  action: ALLOW\n  rules:\n    - to: [{ operation: { notPorts: ["9090"] } }]\n'));
    await expectAccess('ALLOW notPorts 9090', { client: false, intruder: false }, 9090);
    await expectAccess('ALLOW notPorts 9090', { client: true, intruder: true }, 8080);
  });

  test('source IP blocks and their not_ form', async (t) => {
    assertPrivileged(t);
    write('policy.yaml', policy(`  action: ALLOW\n  rules:\n    - from: [{ source: { ipBlocks: ["${ip('client')}/32"] } }]\n`));
    await expectAccess('ALLOW ipBlocks', { client: true, intruder: false, legacy: false });
    write('policy.yaml', policy(`  action: DENY\n  rules:\n    - from: [{ source: { notIpBlocks: ["${ip('client')}/32"] } }]\n`));
    await expectAccess('DENY notIpBlocks', { client: true, intruder: false, legacy: false });
  });

  test('a dry-run DENY allows, and the agent logs what it would have done', async (t) => {
    assertPrivileged(t);
    const log = join(lab.stateDir, 'agent-node-b.log');
    const before = readFileSync(log, 'utf8').length;
    write('policy.yaml', `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: dry\n  namespace: mesh\n  annotations: { istio.io/dry-run: "true" }\nspec:\n  action: DENY\n  rules:\n    - from: [{ source: { namespaces: ["intruder"] } }]\n`);
    await new Promise((r) => setTimeout(r, 800));
    await expectAccess('dry-run DENY', { client: true, intruder: true });
    const logged = readFileSync(log, 'utf8').slice(before);
    assert.match(logged, /"policy":"mesh\/dry","action":"DENY","matched":true[^\n]*would apply/);
  });

  test('PeerAuthentication STRICT refuses plaintext; PERMISSIVE allows it, counted as not mTLS', async (t) => {
    assertPrivileged(t);
    clearPolicies();
    write('peer.yaml', 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: mesh }\nspec:\n  mtls: { mode: STRICT }\n');
    await expectAccess('STRICT', { client: true, intruder: true, legacy: false });
    write('peer.yaml', 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: mesh }\nspec:\n  mtls: { mode: PERMISSIVE }\n');
    await expectAccess('PERMISSIVE', { client: true, intruder: true, legacy: true });
    const m = await lab.exec({ node: 'node-b' }, ['curl', '-sS', 'http://127.0.0.1:15020/metrics']);
    assert.ok(
      m.stdout.split('\n').some((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('source_workload="legacy"') && l.includes('connection_security_policy="unknown"')),
      'plaintext labelled connection_security_policy="unknown"',
    );
    clearPolicies();
  });

  test('a policy change closes a now-denied long transfer within 1 s; an allowed one keeps going', async (t) => {
    assertPrivileged(t);
    clearPolicies();
    await expectAccess('reset', { client: true, intruder: true });
    const sender = (pod: string) => lab.exec(pod, [process.execPath, `${fixtures}agent/slow-sender.mjs`, ip('server'), '8080', '4000'], { timeoutMs: 20_000 });
    const logFile = join(lab.stateDir, 'agent-node-b.log');
    const logBefore = readFileSync(logFile, 'utf8').length;
    const started = Date.now();
    // Timed in this process: the sender exits as soon as its connection is closed.
    const denied = sender(CLIENTS.intruder).then((r) => ({ r, at: Date.now() - started }));
    const allowed = sender(CLIENTS.client);
    await new Promise((r) => setTimeout(r, 1_000));
    const changedAt = Date.now() - started;
    write('policy.yaml', policy('  action: DENY\n  rules:\n    - from: [{ source: { namespaces: ["intruder"] } }]\n'));
    const { r: deniedOut, at: deniedAt } = await denied;
    const d = JSON.parse(deniedOut.stdout) as { completed: boolean; bytes: number };
    const a = JSON.parse((await allowed).stdout) as { completed: boolean; bytes: number };
    t.diagnostic(`policy written at ${changedAt} ms; denied transfer closed at ${deniedAt} ms (${deniedAt - changedAt} ms later) after ${d.bytes} bytes; allowed one completed=${a.completed} after ${a.bytes} bytes`);
    assert.equal(d.completed, false, 'the denied transfer was cut');
    assert.ok(deniedAt - changedAt < 1_000, `closed ${deniedAt - changedAt} ms after the change (file watch, translation, xDS push and the close included)`);
    assert.equal(a.completed, true, 'the allowed transfer finished with its answer');
    const log = readFileSync(logFile, 'utf8').slice(logBefore);
    assert.match(log, /intruder[^\n]*connection closed due to policy change|connection closed due to policy change[^\n]*intruder/);
    clearPolicies();
  });
});
