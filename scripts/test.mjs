// `npm test`: type check + build, lint, import-cycle check, then the unit and
// integration suites with Node's test runner. Stale lab state from an earlier
// (crashed) run is removed before the integration suite starts.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureNodeModules, ensureSystemPackages, root } from './ensure.mjs';

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;

/** Runs one step; returns its exit status (0 = ok). */
function run(name, cmd, args, opts = {}) {
  const t0 = Date.now();
  console.log(`\n== ${name}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(`== ${name}: ${r.status === 0 ? 'ok' : 'FAILED'} (${secs}s)`);
  return r.status ?? 1;
}

function step(name, cmd, args, opts = {}) {
  const status = run(name, cmd, args, opts);
  if (status !== 0) process.exit(status);
}

if (only !== 'unit') ensureSystemPackages();
ensureNodeModules();
step('type check and build (tsc)', process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);
if (!only) {
  step('lint (eslint)', process.execPath, [join(root, 'node_modules/eslint/bin/eslint.js'), '.']);
  step('import cycles', process.execPath, [join(root, 'scripts/check-cycles.mjs'), 'src']);
}
// Each suite also writes TAP to a file, so the run can end with one total line.
const tapDir = mkdtempSync(join(tmpdir(), 'ambit-test-'));
const totals = { passed: 0, failed: 0, skipped: 0 };
function addTotals(file) {
  const tap = readFileSync(file, 'utf8');
  const count = (k) => Number((tap.match(new RegExp(`^# ${k} (\\d+)$`, 'm')) ?? [])[1] ?? 0);
  totals.passed += count('pass');
  totals.failed += count('fail') + count('cancelled');
  totals.skipped += count('skipped') + count('todo');
}
process.on('exit', () => {
  console.log(`\ntotal: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
  rmSync(tapDir, { recursive: true, force: true });
});

// unit: pure logic; integration: real sockets, servers and labs; security:
// hostile input, fuzzing and bypass attempts; chaos: faults and load with
// checksummed traffic (issue 9 keeps the last two as standing suites).
const suites = only ? [only] : ['unit', 'integration', 'security', 'chaos'];
let labCleaned = false;
for (const suite of suites) {
  const dir = join('dist', 'test', suite);
  if (!existsSync(join(root, dir))) continue;
  if (suite !== 'unit' && !labCleaned) {
    labCleaned = true;
    step('remove stale lab state', process.execPath, [join(root, 'bin/ambit.js'), 'lab', 'down', '--all', '--quiet']);
  }
  const tapFile = join(tapDir, `${suite}.tap`);
  const args = ['--test', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tapFile}`];
  const status = run(`${suite} tests`, process.execPath, [...args, '--test-concurrency=1', '--test-timeout=120000', '--enable-source-maps', dir], { env: { ...process.env, NODE_OPTIONS: '' } });
  if (existsSync(tapFile)) addTotals(tapFile);
  if (status !== 0) process.exit(status);
}
