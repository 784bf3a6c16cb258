// `npm start`: installs what the demo needs (Debian packages, npm dependencies,
// the native addon and the TypeScript build), then runs `ambit demo`.
// Extra arguments are passed through: `npm start -- --keep`.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { build, ensureNodeModules, ensureSystemPackages, root } from './ensure.mjs';

if (process.getuid?.() !== 0) {
  console.error('the demo creates network namespaces and must run as root (try: sudo npm start)');
  process.exit(64);
}
ensureSystemPackages({ tools: ['ip', 'nft', 'curl'], pythonH2: false });
ensureNodeModules();
build();
const r = spawnSync(process.execPath, [join(root, 'bin', 'ambit.js'), 'demo', ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
