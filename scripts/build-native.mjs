// `npm install` hook: builds build/Release/ambit_native.node with node-gyp.
// Dev and CI machines have no internet, so node-gyp must not try to download
// Node headers: we use npm's bundled node-gyp and point it at installed headers.
// Node built-ins only, because this runs before dependencies are usable.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

function findNodeGyp() {
  if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
  const npmDirs = [];
  // npm_execpath is .../npm/bin/npm-cli.js when run by npm; the path next to
  // the node binary covers running this script by hand.
  if (process.env.npm_execpath) npmDirs.push(path.join(path.dirname(process.env.npm_execpath), '..'));
  npmDirs.push(path.join(path.dirname(process.execPath), '../lib/node_modules/npm'));
  for (const dir of npmDirs) {
    try {
      return createRequire(path.join(dir, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
    } catch {
      // try the next location
    }
  }
  throw new Error(`cannot find npm's bundled node-gyp (looked in ${npmDirs.join(', ')}); set npm_config_node_gyp`);
}

function headerVersion(dir) {
  const text = readFileSync(path.join(dir, 'include/node/node_version.h'), 'utf8');
  const part = (name) => new RegExp(`#define NODE_${name}_VERSION (\\d+)`).exec(text)?.[1];
  return `v${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
}

// Prefer headers that match the running Node exactly; any others still work
// because the addon uses only the ABI-stable Node-API.
function findNodeDir() {
  if (process.env.npm_config_nodedir) return undefined;
  const dirs = ['/usr', '/usr/local', path.dirname(path.dirname(process.execPath))].filter((d) =>
    existsSync(path.join(d, 'include/node/node_version.h')),
  );
  return dirs.find((d) => headerVersion(d) === process.version) ?? dirs[0];
}

const args = [findNodeGyp(), 'rebuild'];
const nodedir = findNodeDir();
if (nodedir) args.push(`--nodedir=${nodedir}`);
console.error(`build-native: node ${args.join(' ')}`);
const res = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (res.error) throw res.error;
process.exitCode = res.status ?? 1;
