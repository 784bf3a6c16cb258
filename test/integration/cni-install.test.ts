/**
 * The plugin as installed on a host: `installPluginBinary` copies a node
 * binary, plugin.js and a shell launcher into a CNI bin dir; the launcher
 * alone (no ambit checkout next to it, no node_modules) answers VERSION and
 * fails ADD cleanly when the node component is absent.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { installPluginBinary, uninstallPluginBinary } from '../../src/cni/cni-install.js';

test('the installed ambit-cni runs on its own and uninstalls cleanly', () => {
  const bin = mkdtempSync(join(tmpdir(), 'ambit-cni-bin-'));
  try {
    const launcher = installPluginBinary(bin);
    assert.equal(launcher, join(bin, 'ambit-cni'));
    const v = spawnSync(launcher, [], { env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"0.4.0"}', encoding: 'utf8', cwd: '/' });
    assert.equal(v.status, 0, v.stderr);
    assert.deepEqual(JSON.parse(v.stdout), { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    const add = spawnSync(launcher, [], {
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_ARGS: 'K8S_POD_NAMESPACE=a;K8S_POD_NAME=b' },
      input: JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'ambit-cni', nodeSocket: join(bin, 'none.sock'), prevResult: { cniVersion: '1.0.0' } }),
      encoding: 'utf8',
      cwd: '/',
    });
    assert.equal(add.status, 1);
    assert.equal((JSON.parse(add.stdout) as { code: number }).code, 11);
    uninstallPluginBinary(bin);
    assert.deepEqual(readdirSync(bin), []);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});
