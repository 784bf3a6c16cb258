/**
 * Bypass attempt in a live lab (control plane + agents): a pod spoofs
 * another pod's source IP. The server allows only the client's SPIFFE
 * identity; the intruder (another ambient namespace, same node as the
 * client) gives itself the client's IP and connects from it. The agent must
 * still use the intruder's own certificate (identity comes from the pod's
 * netns, not from the source address), so the policy denies it. A pod
 * outside the mesh doing the same is denied too. Needs root.
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
import { Tally } from '../security/lib/tally.js';
import { startInPod } from '../helpers/pod-process.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `sc${randomBytes(3).toString('hex')}`;
const tally = new Tally('spoof');
let lab: LabHandle | undefined;
let dir: string | undefined;
let server: ChildProcess | undefined;

function ip(pod: string): string {
  const w = lab?.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

async function curl(pod: string, extra: string[] = []): Promise<{ ok: boolean; out: string }> {
  const r = await lab!.exec(pod, ['curl', '-sS', '--max-time', '3', ...extra, `http://${ip('server')}:8080/`], { timeoutMs: 8_000 });
  return { ok: r.code === 0 && r.stdout.includes('bodySha'), out: `${r.stdout.slice(0, 200)} ${r.stderr.trim()}` };
}

/** Gives `pod` the address `addr` too (on the interface that holds its own IP). */
async function addAddress(pod: string, own: string, addr: string): Promise<void> {
  const r = await lab!.exec(pod, ['ip', '-o', '-4', 'addr', 'show']);
  const dev = r.stdout.split('\n').find((l) => l.includes(` ${own}/`))?.split(/\s+/)[1];
  assert.ok(dev, `no interface with ${own} in ${pod}: ${r.stdout}`);
  const add = await lab!.exec(pod, ['ip', 'addr', 'add', `${addr}/32`, 'dev', dev]);
  assert.equal(add.code, 0, add.stderr);
}

describe('source IP spoofing against identity-based policy', { ...requiresRoot(), ...requiresTool('curl') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-spoof-lab-'));
    cpSync(`${fixtures}authz-lab`, dir, { recursive: true });
    lab = await labUp({ manifests: dir, name, mesh: true, controlPlane: true });
    server = await startInPod(lab, 'mesh/server', [process.execPath, `${fixtures}agent/whoami-server.mjs`, ip('server'), '8080']);
    const policy = `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: only-client\n  namespace: mesh\nspec:\n  selector: { matchLabels: { app: server } }\n  action: ALLOW\n  rules:\n    - from:\n        - source:\n            principals: ["cluster.local/ns/mesh/sa/client"]\n`;
    const tmp = join(dir, '.policy.tmp');
    writeFileSync(tmp, policy);
    renameSync(tmp, join(dir, 'policy.yaml'));
  });

  after(async () => {
    tally.print();
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the intruder is denied, before and after taking the client pod IP as its source; the client is allowed', async (t) => {
    assertPrivileged(t);
    // wait for the policy to arrive: the intruder is denied, the client allowed
    const deadline = Date.now() + 8_000;
    let client = await curl('mesh/client');
    let intruder = await curl('intruder/intruder');
    while ((!client.ok || intruder.ok) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      client = await curl('mesh/client');
      intruder = await curl('intruder/intruder');
    }
    assert.ok(client.ok, `the allowed client failed: ${client.out}`);
    assert.equal(intruder.ok, false, 'the policy never took effect');

    await addAddress('intruder/intruder', ip('intruder'), ip('client'));
    const spoofed = await curl('intruder/intruder', ['--interface', ip('client')]);
    tally.case('mesh pod spoofs an allowed pod IP', { refused: !spoofed.ok });
    t.diagnostic(`spoofed attempt: ${spoofed.out}`);
    assert.equal(spoofed.ok, false, 'a spoofed source IP got through identity-based policy');
    assert.ok((await curl('mesh/client')).ok, 'the real client still works');
    // the refusal is the policy's, with the intruder's own certificate identity
    const log = readFileSync(`${lab!.stateDir}/agent-node-b.log`, 'utf8').split('\n');
    const denied = log.filter((l) => l.includes('sa/intruder') && /DENY|denied|policy/i.test(l));
    t.diagnostic(`node-b deny lines for the intruder: ${denied.length}; e.g. ${denied.at(-1)?.slice(0, 300) ?? '-'}`);
    assert.ok(denied.length > 0, 'no policy denial for the intruder identity in the server agent log');
    assert.ok(!log.some((l) => l.includes('sa/client') && l.includes(`${ip('client')}`) && /DENY|denied/i.test(l)), 'a denial carried the client identity');
  });

  test('a pod outside the mesh spoofing the client IP is denied', async (t) => {
    assertPrivileged(t);
    await addAddress('outside/legacy', ip('legacy'), ip('client'));
    const spoofed = await curl('outside/legacy', ['--interface', ip('client')]);
    tally.case('plaintext pod spoofs an allowed pod IP', { refused: !spoofed.ok });
    assert.equal(spoofed.ok, false, 'a plaintext spoof of the client IP got through');
    assert.ok((await curl('mesh/client')).ok, 'the real client still works');
  });
});
