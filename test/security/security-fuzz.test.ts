/**
 * Quick property-based fuzzing of every untrusted-input parser (targets in
 * test/security/lib/fuzz-targets.ts), plus a replay of each saved finding in
 * test/fixtures/fuzz/. `npm run fuzz` (scripts/fuzz.mjs) runs the same
 * targets with FUZZ_RUNS iterations and saves new findings there.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { FUZZ_TARGETS, loadSeeds } from '../security/lib/fuzz-targets.js';
import { Tally } from '../security/lib/tally.js';

/** Per-target runs in the quick suite; the whole file stays well under 20 s. */
const QUICK_RUNS: Record<string, number> = {
  'zds-decoders': 2000,
  'zds-roundtrip': 1000,
  'workload-api-decoders': 1500,
  'xds-codec': 1000,
  'authority-parser': 3000,
  'manifest-translator': 250,
  'authz-evaluator': 3000,
};

const tally = new Tally('fuzz');
after(() => tally.print());

describe('fuzz (quick)', () => {
  for (const [name, target] of Object.entries(FUZZ_TARGETS)) {
    test(name, (t) => {
      const out = target({ numRuns: QUICK_RUNS[name] ?? 500 });
      tally.tried += out.numRuns;
      if (out.failed) tally.crashes++;
      t.diagnostic(`${name}: ${out.numRuns} runs, seed ${out.seed}`);
      assert.equal(out.failed, false, `${name} failed (seed ${out.seed}, path ${out.path ?? '-'}):\n${out.counterexample ?? ''}\n${out.error ?? ''}`);
    });
  }
});

describe('fuzz regression seeds', () => {
  const seeds = loadSeeds();
  test('every saved finding names a known target', () => {
    for (const s of seeds) assert.ok(FUZZ_TARGETS[s.target], `unknown fuzz target ${s.target}`);
  });
  for (const s of seeds) {
    test(`replay ${s.target} seed ${s.seed}`, () => {
      const target = FUZZ_TARGETS[s.target];
      if (!target) return;
      const out = target({ numRuns: 1, seed: s.seed, ...(s.path !== undefined ? { path: s.path } : {}) });
      assert.equal(out.failed, false, `${s.target} regressed:\n${out.counterexample ?? ''}\n${out.error ?? ''}`);
    });
  }
});
