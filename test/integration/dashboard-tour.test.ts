/**
 * `ambit demo --tour` end to end in a lab: every step prints its proof
 * (enrolled agents, traffic with mTLS, the v1/v2 split, the denied edge after
 * the policy is written, recovery after it is removed) and the lab is gone
 * afterwards. Needs root.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { runTour } from '../../src/demo/tour.js';
import { labDown } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';

const name = `dasht${randomBytes(2).toString('hex')}`;

after(async () => {
  if (process.getuid?.() === 0) await labDown(name);
});

test('the tour shows every proof and tears down', { ...requiresRoot(), ...requiresTool('curl'), timeout: 120_000 }, async (t) => {
  assertPrivileged(t);
  const lines: string[] = [];
  const code = await runTour({ name, rps: 4, dashboardPort: 0, out: (l) => lines.push(l), signal: new AbortController().signal });
  const text = lines.join('\n');
  for (const l of lines.filter((x) => /proof|MISSING|Tour complete/.test(x))) t.diagnostic(l.trim());
  assert.equal(code, 0, text);
  assert.equal((text.match(/^ {2}proof: /gm) ?? []).length, 9, text);
  assert.match(text, /connection_security_policy="mutual_tls"/);
  assert.match(text, /DENIED/);
  assert.match(text, /Tour complete/);
  const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(`${name}-`));
  assert.deepEqual(left, [], 'no netns of the tour left');
});
