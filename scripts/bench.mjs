// `npm run bench`: installs what the benchmarks need (Debian tools as root,
// npm dependencies), builds with tsc, then runs the compiled benchmarks one
// after the other: the HBONE benchmark (dist/bench/hbone-bench.js), then the
// in-pod capture benchmark with real agents (dist/bench/inpod-bench.js),
// then the control plane at cluster scale (dist/bench/control-plane-bench.js),
// then the node agent's own cost (dist/bench/agent-bench.js), then L7 (the
// waypoint against nginx, dist/bench/l7-bench.js); finally the report step
// (dist/bench/report.js) merges the *-latest.json files into
// bench/results/<ISO time>.json and .md.
//   npm run bench -- --quick --lab bh1 --inpod-lab bh2 ...   lab names per benchmark
//   npm run bench -- --report-only [--readme]   only the report (--readme: README section)
//   npm run bench -- --no-report                 benchmarks without the report step
//   npm run bench -- --profile <scenario> [--quick] [--lab NAME]
//       the in-pod benchmark's <scenario> only (throughput, latency, rates,
//       saturation, connections, idle, passthrough) with the node agents under
//       --cpu-prof; writes bench/results/profile-<time>/*.cpuprofile and a
//       flame graph (.html) per agent. Every other option goes to the in-pod benchmark.
//   npm run bench -- --quick                all, short runs
//   npm run bench -- --only hbone --rounds 5 --seconds 5
//   npm run bench -- --only inpod --seconds 5 --rate 500
//   npm run bench -- --only control-plane --quick
//   npm run bench -- --only agent --quick --lab bl1234
// With all, options go to the HBONE benchmark, except --quick (all),
// --inpod-<opt> (given to the in-pod benchmark as --<opt>, e.g. --inpod-rate
// 1000), --cp-<opt> (to the control-plane benchmark, e.g. --cp-changes 50)
// and --agent-<opt> (to the agent benchmark, e.g. --agent-rates 500,1000);
// with --only, every option goes to the one benchmark.
// Ctrl-C reaches the benchmark too (same process group); we wait for it to
// remove its lab and child processes before exiting with its status, and do
// not start the next one. The exit status is the first failure's.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ensureNodeModules, ensureSystemPackages, root } from './ensure.mjs';

/** Wall time of the whole command (install checks and build included), printed at the end. */
const t0 = Date.now();

ensureSystemPackages({ tools: ['ip', 'iperf3', 'nghttpx', 'tinyproxy', 'nft', 'h2load', 'nginx', 'stunnel4'], pythonH2: false });
ensureNodeModules();

console.log('== type check and build (tsc)');
const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error('== build failed');
  process.exit(tsc.status ?? 1);
}

const BENCHES = {
  hbone: 'dist/bench/hbone-bench.js',
  inpod: 'dist/bench/inpod-bench.js',
  'control-plane': 'dist/bench/control-plane-bench.js',
  agent: 'dist/bench/agent-bench.js',
  l7: 'dist/bench/l7-bench.js',
};

/** Splits `--only X` out of the arguments; the rest are routed per benchmark. */
function plan(argv) {
  const rest = [];
  let only;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only' || a.startsWith('--only=')) {
      only = a === '--only' ? argv[++i] : a.slice('--only='.length);
      continue;
    }
    rest.push(a);
  }
  if (only !== undefined && !(only in BENCHES)) {
    console.error(`--only must be one of: ${Object.keys(BENCHES).join(', ')} (got ${only ?? 'nothing'})`);
    process.exit(64);
  }
  // --inpod-x [value] -> --x [value] for the in-pod benchmark only;
  // --cp-x [value] -> --x [value] for the control-plane benchmark only;
  // --agent-x [value] -> --x [value] for the agent benchmark only.
  const hbone = [];
  const inpod = [];
  const cp = [];
  const agent = [];
  const l7 = [];
  const prefixed = [['--inpod-', inpod], ['--cp-', cp], ['--agent-', agent], ['--l7-', l7]];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const hit = prefixed.find(([p]) => a.startsWith(p));
    if (hit) {
      const [p, target] = hit;
      target.push(`--${a.slice(p.length)}`);
      const next = rest[i + 1];
      if (!a.includes('=') && next !== undefined && !next.startsWith('--')) target.push(rest[++i]);
      continue;
    }
    hbone.push(a);
    if (a === '--quick') {
      inpod.push(a);
      cp.push(a);
      agent.push(a);
      l7.push(a);
    }
  }
  if (only === 'hbone') return [['hbone', hbone]];
  if (only === 'inpod') return [['inpod', [...inpod.filter((a) => a !== '--quick'), ...hbone]]];
  if (only === 'control-plane') return [['control-plane', [...cp.filter((a) => a !== '--quick'), ...hbone]]];
  if (only === 'agent') return [['agent', [...agent.filter((a) => a !== '--quick'), ...hbone]]];
  if (only === 'l7') return [['l7', [...l7.filter((a) => a !== '--quick'), ...hbone]]];
  return [['hbone', hbone], ['inpod', inpod], ['control-plane', cp], ['agent', agent], ['l7', l7]];
}

/** Options of this script itself, taken out before the benchmarks see the rest. */
function own(argv) {
  const rest = [];
  const o = { reportOnly: false, noReport: false, readme: false, profile: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--report-only') o.reportOnly = true;
    else if (a === '--no-report') o.noReport = true;
    else if (a === '--readme') o.readme = true;
    else if (a === '--profile') o.profile = argv[++i];
    else if (a.startsWith('--profile=')) o.profile = a.slice('--profile='.length);
    else rest.push(a);
  }
  return { o, rest };
}

let current;
let stopping = false;
// Passed on even when the terminal already delivered it: each benchmark's
// cleanup runs once however many signals arrive.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    stopping = true;
    current?.kill(sig);
  });
}

function run(script, args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--enable-source-maps', join(root, script), ...args], {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    current = child;
    child.on('error', (err) => {
      console.error(`== cannot start ${script}: ${err.message}`);
      resolve(1);
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

const { o, rest } = own(process.argv.slice(2));
let status = 0;
if (o.profile !== undefined) {
  if (o.profile === '' || o.profile.startsWith('--')) {
    console.error('--profile needs a scenario: throughput, latency, rates, saturation, connections, idle or passthrough');
    process.exit(64);
  }
  const dir = join(root, 'bench/results', `profile-${new Date().toISOString().replaceAll(':', '-')}`);
  mkdirSync(dir, { recursive: true });
  const scenarioArgs = o.profile === 'passthrough' ? ['--scenarios', 'passthrough'] : ['--scenarios', o.profile, '--no-passthrough'];
  console.log(`== in-pod benchmark, scenario ${o.profile}, agents under --cpu-prof (${dir})`);
  status = await run(BENCHES.inpod, [...rest.filter((a) => a !== '--only'), ...scenarioArgs, '--profile-dir', dir]);
  current = undefined;
  if (!stopping) {
    console.log('== flame graphs');
    const code = await run('dist/bench/flamegraph.js', [dir]);
    if (code !== 0 && status === 0) status = code;
  }
} else {
  if (!o.reportOnly) {
    for (const [name, args] of plan(rest)) {
      if (stopping) break;
      console.log(`== ${name} benchmark`);
      const code = await run(BENCHES[name], args);
      current = undefined;
      if (code !== 0 && status === 0) status = code;
    }
  }
  if (!stopping && !o.noReport) {
    console.log('== report');
    const code = await run('dist/bench/report.js', o.readme ? ['--readme'] : []);
    if (code !== 0 && status === 0) status = code;
  }
}
console.log(`== done in ${((Date.now() - t0) / 1000).toFixed(0)} s (exit ${status})`);
process.exit(status);
