// `npm run soak`: the long soak (issue 9, "Load"). Brings up a two-node lab
// (needs root), runs a steady keep-alive HTTP load plus long-lived
// checksummed streams through the mesh, samples the agents' RSS and fds and
// the client's p99 per interval, and exits 1 when a tolerance is broken
// (bench/lib/soak.ts states them). Expects a build (`npm run build`).
//   node scripts/soak.mjs [--minutes 10] [--rps 1000] [--streams 200] [--interval 30] [--json out.json]
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const arg = (flag, def) => {
  const i = process.argv.indexOf(flag);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
};
if (process.getuid?.() !== 0) {
  console.error('soak: needs root (it builds a network-namespace lab)');
  process.exit(2);
}
const { runSoak } = await import(pathToFileURL(join(root, 'dist/bench/lib/soak.js')).href);
const minutes = Number(arg('--minutes', '10'));
const opts = {
  name: `rzsoak${randomBytes(2).toString('hex')}`,
  seconds: Math.round(minutes * 60),
  intervalSeconds: Number(arg('--interval', '30')),
  rps: Number(arg('--rps', '1000')),
  streams: Number(arg('--streams', '200')),
  warmupIntervals: Number(arg('--warmup-intervals', '2')),
  log: (l) => console.log(l),
};
console.log(`soak: ${minutes} min, ${opts.rps} rps keep-alive HTTP + ${opts.streams} streams, interval ${opts.intervalSeconds} s, lab ${opts.name}`);
const r = await runSoak(opts);
const json = arg('--json', undefined);
if (json) writeFileSync(json, JSON.stringify(r, null, 2));
console.log(`requests ${r.done.requests}, achieved ${r.achievedRps} rps, HTTP errors ${r.done.httpErrors}, streams intact ${r.done.streamsIntact}/${opts.streams}, stream bytes verified ${r.done.streamBytes}, integrity errors ${r.done.integrityErrors}`);
console.log(`tolerances: ${JSON.stringify(r.tolerances)}`);
console.log(r.pass ? 'soak: PASS' : `soak: FAIL\n  ${r.failures.join('\n  ')}`);
process.exit(r.pass ? 0 : 1);
