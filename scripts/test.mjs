// `npm test`: type check + build, lint, import-cycle check, then the unit and
// integration suites with Node's test runner. Stale lab state from an earlier
// (crashed) run is removed before the integration suite starts.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ensureNodeModules, ensureSystemPackages, root } from './ensure.mjs';

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;

function step(name, cmd, args, opts = {}) {
  const t0 = Date.now();
  console.log(`\n== ${name}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (r.status !== 0) {
    console.error(`== ${name}: FAILED (${secs}s)`);
    process.exit(r.status ?? 1);
  }
  console.log(`== ${name}: ok (${secs}s)`);
}

if (only !== 'unit') ensureSystemPackages();
ensureNodeModules();
step('type check and build (tsc)', process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);
if (!only) {
  step('lint (eslint)', process.execPath, [join(root, 'node_modules/eslint/bin/eslint.js'), '.']);
  step('import cycles', process.execPath, [join(root, 'scripts/check-cycles.mjs'), 'src']);
}
const suites = only ? [only] : ['unit', 'integration'];
for (const suite of suites) {
  const dir = join('dist', 'test', suite);
  if (!existsSync(join(root, dir))) continue;
  if (suite === 'integration') {
    step('remove stale lab state', process.execPath, [join(root, 'bin/ambit.js'), 'lab', 'down', '--all', '--quiet']);
  }
  step(`${suite} tests`, process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=1', '--enable-source-maps', dir], {
    env: { ...process.env, NODE_OPTIONS: '' },
  });
}
