// CI check after `npm run bench -- --quick` (issue 8, must-show 2): the run
// finished within the time limit and wrote a fresh report, bench/results/<time>.json,
// merged from every benchmark of this run (not from an earlier run's
// *-latest.json files), with headline ratios in it. The figures themselves
// are not judged: the CI machine is 2 noisy cores.
//   node scripts/check-bench-result.mjs --since <unix s> --max-seconds 600 --took <s>
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const EXPECTED_SOURCES = ['hbone', 'inpod', 'control-plane', 'agent', 'l7'];

const arg = (flag) => {
  const i = process.argv.indexOf(flag);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  if (!Number.isFinite(v)) fail(`${flag} <number> is required`);
  return v;
};

function fail(msg) {
  console.error(`bench check: ${msg}`);
  process.exit(1);
}

const sinceMs = arg('--since') * 1000;
const maxSeconds = arg('--max-seconds');
const took = arg('--took');

const dir = join(root, 'bench/results');
const reports = readdirSync(dir)
  .filter((f) => /^\d{4}-\d{2}-\d{2}T.*Z\.json$/.test(f))
  .map((f) => ({ f, j: JSON.parse(readFileSync(join(dir, f), 'utf8')) }))
  .filter(({ j }) => j.schema === 'ambit-bench-report/1' && Date.parse(j.generatedAt) >= sinceMs)
  .sort((a, b) => Date.parse(b.j.generatedAt) - Date.parse(a.j.generatedAt));
const newest = reports[0];
if (!newest) fail(`no report in bench/results written since ${new Date(sinceMs).toISOString()}`);
const { f, j } = newest;
const stale = EXPECTED_SOURCES.filter((s) => !(Date.parse(j.sources?.[s]?.startedAt ?? '') >= sinceMs));
if (stale.length > 0) fail(`${f} lacks results of this run for: ${stale.join(', ')} (did a benchmark fail?)`);
if (!Array.isArray(j.headline) || j.headline.length === 0) fail(`${f} has no headline figures`);
// A figure the report could not compute honestly (e.g. idle memory when a
// garbage collection ran during the measurement) is left out, not faked; a
// short run may lose one or two that way, not more.
const MAX_MISSING = 2;
const missing = j.headline.filter((h) => typeof h.value !== 'number' || !Number.isFinite(h.value));
if (missing.length > MAX_MISSING) fail(`${f} lacks ${missing.length} headline figures (at most ${MAX_MISSING}): ${missing.map((h) => h.what).join('; ')}`);

console.log(`bench check: ${f}, ${j.headline.length - missing.length} of ${j.headline.length} headline figures from ${EXPECTED_SOURCES.length} benchmarks, took ${took} s (limit ${maxSeconds} s)`);
for (const h of j.headline) console.log(`  ${h.what}: ${typeof h.value === 'number' ? `${h.value}${h.unit === 'x' ? '×' : ` ${h.unit}`}` : 'not measured in this run'}`);
if (took > maxSeconds) fail(`the quick benchmark took ${took} s, over the ${maxSeconds} s limit`);
