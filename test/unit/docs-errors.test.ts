/** Every error code used in src/ is documented in docs/errors.md, exactly once. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('every AMBIT_ERR_* code in src is in docs/errors.md once', () => {
  const used = new Set<string>();
  for (const f of sources(join(root, 'src'))) for (const m of readFileSync(f, 'utf8').matchAll(/'(AMBIT_ERR_[A-Z0-9_]+)'/g)) used.add(m[1] as string);
  const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
  assert.ok(used.size > 20, 'found the codes');
  for (const code of used) {
    const rows = doc.split('\n').filter((l) => l.startsWith(`| \`${code}\``));
    assert.equal(rows.length, 1, `${code} must have exactly one row in docs/errors.md`);
  }
});
