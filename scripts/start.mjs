// `npm start`: installs what the demo needs (Debian packages, npm dependencies,
// the native addon and the TypeScript build), then runs `ambit demo`: the
// living mesh with the dashboard, until Ctrl-C. Extra arguments are passed
// through: `npm start -- --once` (the quick run), `npm start -- --tour`,
// `npm start -- --port 8080`.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { build, ensureNodeModules, ensureSystemPackages, root } from './ensure.mjs';

if (process.getuid?.() !== 0) {
  console.error('the demo creates network namespaces and must run as root (try: sudo npm start)');
  process.exit(64);
}
ensureSystemPackages({ tools: ['ip', 'nft', 'curl'], pythonH2: false });
ensureNodeModules();
build();
const child = spawn(process.execPath, [join(root, 'bin', 'ambit.js'), 'demo', ...process.argv.slice(2)], { stdio: 'inherit' });
// Ctrl-C reaches the demo directly (same process group) and it tears the lab down;
// this wrapper stays until it is done. SIGTERM (e.g. from a service manager) is passed on.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + 15 : 1)));
