// `npm run bench`: installs what the benchmark needs (Debian tools as root,
// npm dependencies), builds with tsc, then runs the compiled benchmark
// (dist/bench/hbone-bench.js), passing through any arguments, e.g.
//   npm run bench -- --quick      npm run bench -- --rounds 5 --seconds 5
// Ctrl-C reaches the benchmark too (same process group); we wait for it to
// remove its lab and child processes before exiting with its status.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureNodeModules, ensureSystemPackages, root } from './ensure.mjs';

ensureSystemPackages({ tools: ['ip', 'iperf3', 'nghttpx', 'tinyproxy'], pythonH2: false });
ensureNodeModules();

console.log('== type check and build (tsc)');
const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error('== build failed');
  process.exit(tsc.status ?? 1);
}

const child = spawn(process.execPath, ['--enable-source-maps', join(root, 'dist/bench/hbone-bench.js'), ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, NODE_OPTIONS: '' },
});
// Passed on even when the terminal already delivered it: the benchmark's
// cleanup runs once however many signals arrive.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
