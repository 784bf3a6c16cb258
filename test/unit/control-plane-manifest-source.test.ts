/**
 * ManifestSource follows a folder: create, modify (in place and by an
 * editor-style rename over the file), break and delete files in a temp dir
 * and see the store change within 1 s each time.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../src/common/logger.js';
import { ManifestDirError } from '../../src/control-plane/errors.js';
import { ManifestSource } from '../../src/control-plane/manifest-source.js';
import { ResourceStore } from '../../src/control-plane/resource-store.js';
import { formatIssue } from '../../src/control-plane/validation.js';

const pod = (name: string, ip: string): string => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: demo}\nspec: {nodeName: n1}\nstatus: {podIP: ${ip}}\n`;

/** Resolves when `pred` holds after a store change; rejects after `ms`. */
function until(store: ResourceStore, pred: () => boolean, ms = 1000): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    if (pred()) return resolve(0);
    const onChange = (): void => {
      if (!pred()) return;
      clearTimeout(timer);
      store.off('change', onChange);
      resolve(Date.now() - t0);
    };
    const timer = setTimeout(() => {
      store.off('change', onChange);
      reject(new Error(`condition not met within ${ms} ms`));
    }, ms);
    store.on('change', onChange);
  });
}

const podIps = (store: ResourceStore): string[] =>
  store
    .snapshot()
    .list<{ podIPs: string[] }>('Pod')
    .map((p) => `${p.name}=${p.spec.podIPs.join(',')}`);

test('write, modify, rename-over, break and delete files: the store follows within 1 s', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cp-'));
  const store = new ResourceStore();
  const src = new ManifestSource({ dir, store, logger: silentLogger() });
  try {
    await writeFile(join(dir, 'a.yaml'), pod('a', '10.244.1.1'));
    await src.start();
    assert.deepEqual(podIps(store), ['a=10.244.1.1']);

    await writeFile(join(dir, 'b.yml'), `${pod('b', '10.244.1.2')}---\n${pod('c', '10.244.1.3')}`);
    await until(store, () => podIps(store).length === 3);

    await writeFile(join(dir, 'a.yaml'), pod('a', '10.244.1.9'));
    await until(store, () => podIps(store).includes('a=10.244.1.9'));

    // Editor style: write a temp file, rename it over the original.
    await writeFile(join(dir, '.a.yaml.swp'), pod('a', '10.244.1.8'));
    await rename(join(dir, '.a.yaml.swp'), join(dir, 'a.yaml'));
    await until(store, () => podIps(store).includes('a=10.244.1.8'));

    // A syntax error in b.yml: its resources go, an issue appears, a.yaml is untouched.
    await writeFile(join(dir, 'b.yml'), 'kind: [oops\n');
    await until(store, () => store.issues().length === 1);
    assert.deepEqual(podIps(store), ['a=10.244.1.8']);
    assert.match(formatIssue(store.issues()[0] as never), /^b\.yml: document 1: is not valid YAML/);

    await rm(join(dir, 'b.yml'));
    await until(store, () => store.issues().length === 0);
    await rm(join(dir, 'a.yaml'));
    await until(store, () => podIps(store).length === 0);
    assert.deepEqual(store.sources(), []);

    await writeFile(join(dir, 'notes.txt'), 'not yaml');
    await src.rescan();
    assert.deepEqual(store.sources(), [], 'only .yaml/.yml files are read');
  } finally {
    src.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a missing directory is a ManifestDirError at start', async () => {
  const src = new ManifestSource({ dir: join(tmpdir(), 'ambit-cp-does-not-exist-4242'), store: new ResourceStore(), logger: silentLogger() });
  await assert.rejects(src.start(), (e: unknown) => e instanceof ManifestDirError && e.code === 'AMBIT_ERR_CONTROL_PLANE_MANIFEST_DIR');
  src.close();
});

test('an unchanged rescan emits no change', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cp-'));
  const store = new ResourceStore();
  const src = new ManifestSource({ dir, store, logger: silentLogger() });
  try {
    await writeFile(join(dir, 'a.yaml'), pod('a', '10.244.1.1'));
    await src.start({ watch: false });
    const v = store.version;
    await src.rescan();
    assert.equal(store.version, v);
  } finally {
    src.close();
    await rm(dir, { recursive: true, force: true });
  }
});
