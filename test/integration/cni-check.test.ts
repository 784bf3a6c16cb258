/**
 * `ambit check` on this machine (root): the netns, setns, SO_MARK and
 * nftables checks really run, in a throwaway namespace that leaves nothing
 * behind.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { requiresRoot, requiresTool, assertPrivileged } from '../helpers/privileged.js';

const ambit = fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url));

test('ambit check -o json: the kernel features pass here and no netns is left behind', { ...requiresRoot(), ...requiresTool('nft', 'unshare', 'nsenter') }, (t) => {
  assertPrivileged(t);
  const before = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  const out = execFileSync(process.execPath, [ambit, 'check', '-o', 'json'], { encoding: 'utf8' });
  const r = JSON.parse(out) as Array<{ name: string; status: string; detail: string }>;
  for (const name of ['native addon', 'netns', 'setns', 'SO_MARK', 'nft']) assert.equal(r.find((x) => x.name === name)?.status, 'ok', `${name}: ${JSON.stringify(r.find((x) => x.name === name))}`);
  assert.equal(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), before);
});
