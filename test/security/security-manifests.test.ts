/**
 * Hostile manifests: YAML alias bombs, deep nesting, oversized files, and a
 * wrong-typed value in every field of every fixture document of the
 * supported kinds. Each must become a ConfigIssue (or, for fields the kind
 * ignores, a resource); nothing throws, and a good file still parses after.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { MAX_MANIFEST_FILE_CHARS, MAX_YAML_ALIAS_COUNT, parseManifestText } from '../../src/control-plane/manifest-source.js';
import { ResourceStore } from '../../src/control-plane/resource-store.js';
import { translate } from '../../src/control-plane/translate.js';
import { manifestSeeds } from '../security/lib/fuzz-targets.js';
import { Tally } from '../security/lib/tally.js';

const tally = new Tally('manifests');
after(() => tally.print());

const GOOD = 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n';

function goodStillParses(): void {
  const p = parseManifestText('good.yaml', GOOD);
  assert.equal(p.resources.length, 1);
  assert.equal(p.issues.length, 0);
}

function refused(name: string, text: string, want: RegExp): void {
  const t0 = Date.now();
  let crashed = false;
  let issues: string[] = [];
  try {
    issues = parseManifestText('hostile.yaml', text).issues.map((i) => `${i.field} ${i.message}`);
  } catch {
    crashed = true;
  }
  tally.case(name, { refused: !crashed && issues.length > 0, crashed });
  assert.equal(crashed, false, `${name} threw`);
  assert.ok(issues.some((i) => want.test(i)), `${name}: issues ${JSON.stringify(issues)}`);
  assert.ok(Date.now() - t0 < 5000, `${name} took ${Date.now() - t0} ms`);
  goodStillParses();
}

/** A pod whose labels hold `levels` of 10-way alias fan-out: 10^levels nodes when expanded. */
function aliasBomb(levels: number): string {
  let y = '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  for (let i = 1; i <= levels; i++) y += `  a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(',')}]\n`;
  return `apiVersion: v1\nkind: Pod\nmetadata:\n  name: bomb\n  labels:\n${y}spec: {}\n`;
}

describe('yaml bombs and oversized documents', () => {
  test(`alias expansion is capped at ${MAX_YAML_ALIAS_COUNT} aliases`, () => {
    refused('billion laughs (10^9)', aliasBomb(9), /resource exhaustion|alias/i);
    refused('billion laughs (10^3)', aliasBomb(3), /resource exhaustion|alias/i);
  });

  test('a quadratic blowup (one big anchor referenced many times) is refused', () => {
    const big = 'x'.repeat(100_000);
    const refs = Array.from({ length: 1000 }, (_, i) => `  k${i}: *big`).join('\n');
    refused('quadratic blowup', `apiVersion: v1\nkind: Pod\nmetadata:\n  name: q\n  annotations:\n  anchor: &big "${big}"\n${refs}\n`, /alias|resource exhaustion|YAML|must/i);
  });

  test('deeply nested flow and block documents are refused, not a crash', () => {
    refused('nested flow sequences x100000', '['.repeat(100_000) + ']'.repeat(100_000), /YAML|stack|nest/i);
    refused('nested flow maps x50000', '{a: '.repeat(50_000) + '}'.repeat(50_000), /YAML|stack|nest|cannot/i);
    const block = Array.from({ length: 3000 }, (_, i) => `${' '.repeat(i)}a:`).join('\n');
    refused('nested block maps x3000', block, /YAML|stack|nest|must|required/i);
  });

  test('a file over the size limit is refused unread', () => {
    refused('oversized file', `# ${'x'.repeat(MAX_MANIFEST_FILE_CHARS)}\n${GOOD}`, /limit/);
  });

  test('non-YAML bytes, NULs and invalid UTF-16 are refused', () => {
    refused('binary', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)).toString('latin1'), /YAML|mapping|kind|required/);
    refused('lone surrogates', `apiVersion: v1\nkind: Pod\nmetadata:\n  name: "\ud800"\n`, /name|YAML/);
    refused('tags', `apiVersion: v1\nkind: Pod\nmetadata: !!binary aGVsbG8=\n`, /metadata|name|must|YAML/);
  });
});

describe('wrong types in every field of the supported kinds', () => {
  const WRONG: unknown[] = [null, 7, -1, 1.5, true, 'x', '', [], {}, [1, 'a'], { x: { y: 1 } }, 'ten', 99999999999];

  function* mutations(obj: unknown, path: Array<string | number> = []): Generator<[string, Array<string | number>, unknown]> {
    if (path.length > 0) for (const w of WRONG) yield [`${path.join('.')}=${JSON.stringify(w)}`, path, w];
    if (Array.isArray(obj)) for (let i = 0; i < obj.length; i++) yield* mutations(obj[i], [...path, i]);
    else if (obj && typeof obj === 'object') for (const [k, v] of Object.entries(obj)) yield* mutations(v, [...path, k]);
  }

  function setAt(obj: unknown, path: ReadonlyArray<string | number>, value: unknown): unknown {
    const copy = structuredClone(obj) as Record<string | number, unknown>;
    let cur: Record<string | number, unknown> = copy;
    for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
    cur[path[path.length - 1] as string | number] = value;
    return copy;
  }

  test('every field of every fixture document, replaced by each wrong value', () => {
    let documents = 0;
    let variants = 0;
    let issues = 0;
    for (const seed of manifestSeeds()) {
      documents++;
      for (const [where, path, value] of mutations(seed)) {
        const text = stringify(setAt(seed, path, value));
        let crashed = false;
        let refusedHere = false;
        try {
          const p = parseManifestText('typed.yaml', text);
          issues += p.issues.length;
          refusedHere = p.issues.length > 0;
          const store = new ResourceStore();
          store.replaceSource('typed.yaml', p.resources);
          translate(store.snapshot());
          for (const i of p.issues) assert.ok(i.message.length > 0 && typeof i.field === 'string', `${where}: issue without a message`);
        } catch (err) {
          crashed = true;
          assert.fail(`${where} threw: ${(err as Error).stack ?? String(err)}`);
        } finally {
          variants++;
          tally.case(where, { refused: refusedHere, crashed });
        }
      }
    }
    assert.ok(documents >= 5, `only ${documents} fixture documents`);
    assert.ok(variants > 500, `only ${variants} variants`);
    assert.ok(issues > variants / 4, `only ${issues} issues for ${variants} wrong-typed variants`);
  });
});
