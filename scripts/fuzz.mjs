// `npm run fuzz`: the property-based fuzz targets of test/security/lib/fuzz-targets.ts,
// run long. FUZZ_RUNS (default 100000) iterations per target, FUZZ_TARGETS (comma
// list) to pick targets, FUZZ_SEED to start from a fixed seed. Each failure is
// saved as a regression seed in test/fixtures/fuzz/<target>-<seed>.json, which
// test/security/security-fuzz.test.ts replays on every `npm test`.
// Needs a build first (npm run build); exits 1 when any target failed.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './ensure.mjs';

const lib = join(root, 'dist/test/security/lib/fuzz-targets.js');
if (!existsSync(lib)) {
  console.error('fuzz: dist/ is missing; run `npm run build` first');
  process.exit(2);
}
const { FUZZ_TARGETS, SEEDS_DIR } = await import(lib);
const runs = Number(process.env.FUZZ_RUNS ?? 100_000);
const pick = process.env.FUZZ_TARGETS ? process.env.FUZZ_TARGETS.split(',') : Object.keys(FUZZ_TARGETS);
const seed = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : undefined;
let failed = 0;
for (const name of pick) {
  const target = FUZZ_TARGETS[name];
  if (!target) {
    console.error(`fuzz: unknown target ${name}; known: ${Object.keys(FUZZ_TARGETS).join(', ')}`);
    process.exit(2);
  }
  const t0 = Date.now();
  const out = target({ numRuns: runs, ...(seed !== undefined ? { seed } : {}) });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (!out.failed) {
    console.log(`fuzz ${name}: ${out.numRuns} runs ok (seed ${out.seed}, ${secs}s)`);
    continue;
  }
  failed++;
  mkdirSync(SEEDS_DIR, { recursive: true });
  const file = join(SEEDS_DIR, `${name}-${out.seed >>> 0}.json`);
  writeFileSync(file, JSON.stringify({ target: name, seed: out.seed, path: out.path, counterexample: out.counterexample, error: out.error, foundAt: new Date().toISOString() }, null, 2) + '\n');
  console.log(`fuzz ${name}: FAILED after ${out.numRuns} runs (${secs}s); saved ${file}\n  counterexample: ${out.counterexample}\n  ${out.error?.split('\n')[0]}`);
}
process.exit(failed > 0 ? 1 : 0);
