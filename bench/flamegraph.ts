/**
 * `node dist/bench/flamegraph.js <dir|file.cpuprofile>...`: writes a
 * self-contained HTML flame graph (bench/lib/flamegraph.ts) next to every
 * .cpuprofile given or found in the given directories, and prints the paths.
 * `npm run bench -- --profile <scenario>` runs it on the profile directory.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { flameHtml, type CpuProfile } from './lib/flamegraph.js';

const inputs = process.argv.slice(2);
if (inputs.length === 0) {
  console.error('usage: flamegraph.js <dir|file.cpuprofile>...');
  process.exit(64);
}
const files = inputs.flatMap((p) => (statSync(p).isDirectory() ? readdirSync(p).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(p, f)) : [p]));
if (files.length === 0) {
  console.error(`no .cpuprofile files in ${inputs.join(', ')}`);
  process.exitCode = 1;
}
for (const f of files) {
  try {
    const profile = JSON.parse(readFileSync(f, 'utf8')) as CpuProfile;
    const out = f.replace(/\.cpuprofile$/, '') + '.html';
    writeFileSync(out, flameHtml(basename(f), profile));
    console.log(out);
  } catch (err) {
    console.error(`${f}: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  }
}
