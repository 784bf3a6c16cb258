/**
 * `ambit demo --tour` end to end in a lab: every step prints its proof
 * (enrolled agents, traffic with mTLS, the v1/v2 split, the denied edge after
 * the policy is written, recovery after it is removed) and the lab is gone
 * afterwards. While it runs, the dashboard it reads is the control plane's:
 * the listening socket on the host's 127.0.0.1 belongs to the control plane
 * pid (ss -ltnp) and answers `server: ambit-control-plane/<pid>`; after the
 * teardown nothing listens there any more. Needs root.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runTour } from '../../src/demo/tour.js';
import { labDown } from '../../src/lab/lab.js';
import { cmdline, listenerPids, listening, servedBy } from '../helpers/dashboard-owner.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';

const name = `rzdbt${randomBytes(2).toString('hex')}`;

after(async () => {
  if (process.getuid?.() === 0) await labDown(name);
});

test('the tour shows every proof and tears down', { ...requiresRoot(), ...requiresTool('curl', 'ss'), timeout: 120_000 }, async (t) => {
  assertPrivileged(t);
  const lines: string[] = [];
  let port = 0;
  let owner: { cpPid: number; holders: number[]; server: string; cmd: string } | undefined;
  const code = await runTour({
    name,
    rps: 4,
    dashboardPort: 0,
    out: (l) => lines.push(l),
    signal: new AbortController().signal,
    onMesh: async (mesh) => {
      port = Number(new URL(mesh.dashboard.url).port);
      const cpPid = Number(readFileSync(join(mesh.lab.stateDir, 'control-plane.ready'), 'utf8').trim());
      owner = { cpPid, holders: listenerPids(port), server: (await servedBy(`${mesh.dashboard.url}api/health`)).server, cmd: cmdline(cpPid) };
    },
  });
  const text = lines.join('\n');
  for (const l of lines.filter((x) => /proof|MISSING|Tour complete/.test(x))) t.diagnostic(l.trim());
  assert.equal(code, 0, text);
  assert.equal((text.match(/^ {2}proof: /gm) ?? []).length, 9, text);
  assert.match(text, /connection_security_policy="mutual_tls"/);
  assert.match(text, /DENIED/);
  assert.match(text, /Tour complete/);
  assert.ok(owner, 'the tour reached its mesh');
  t.diagnostic(`dashboard port ${port} held by ${owner.holders.join(',')}; control plane pid ${owner.cpPid}; server: ${owner.server}`);
  assert.ok(owner.cpPid > 0 && owner.cpPid !== process.pid);
  assert.match(owner.cmd, / control-plane /);
  assert.deepEqual(owner.holders, [owner.cpPid], 'the dashboard socket in this netns is the control plane\'s');
  assert.equal(owner.server, `ambit-control-plane/${owner.cpPid}`);
  assert.match(text, new RegExp(`served by the control plane \\(pid ${owner.cpPid}\\)`));
  assert.match(text, /control plane: policy demo\/deny-rogue \(DENY\) is served/, 'the control plane saw the policy file itself');
  assert.equal(listening(port), false, 'the dashboard went away with the control plane');
  const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(`${name}-`));
  assert.deepEqual(left, [], 'no netns of the tour left');
});
