// `npm test`: type check + build, lint, import-cycle check, then the unit and
// integration suites with Node's test runner. Stale lab state from an earlier
// (crashed) run is removed before the integration suite starts.
//
// Wire audit (issue 9, docs/WIRE-AUDIT.md): the lab suites run with a fresh
// AMBIT_WIRE_AUDIT_DIR, so every lab they bring up gets a tap on its bridge
// that scans every inter-node frame for the payload marker AMBIT-CANARY. The
// run ends with one table and fails on any marker hit, or when no lab was
// audited at all (as root or under CI), so the audit cannot silently do nothing.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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

const AUDITED_SUITES = new Set(['integration', 'security', 'chaos']);
const auditRoot = mkdtempSync(join(tmpdir(), 'ambit-wire-audit-'));
const auditedRun = new Set();

/** Reads every tap report of the run; prints one table; returns the failures (empty = pass). */
function wireAuditSummary() {
  const rows = [['SUITE', 'LABS', 'PACKETS', 'BYTES', 'MARKER HITS', 'INCOMPLETE']];
  const total = { labs: 0, packets: 0, bytes: 0, hits: 0, incomplete: 0 };
  const hits = [];
  const incomplete = [];
  for (const suite of auditedRun) {
    const dir = join(auditRoot, suite);
    const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
    const row = { labs: 0, packets: 0, bytes: 0, hits: 0, incomplete: 0 };
    for (const f of files) {
      let r;
      try {
        r = JSON.parse(readFileSync(join(dir, f), 'utf8'));
      } catch (err) {
        incomplete.push(`${suite}/${f}: unreadable report (${err.message})`);
        row.incomplete++;
        continue;
      }
      row.labs++;
      row.packets += r.packets ?? 0;
      row.bytes += r.bytes ?? 0;
      row.hits += r.markerHits ?? 0;
      if (r.markerHits > 0) hits.push(`${suite}: lab ${r.lab} (tap pid ${r.pid}): ${r.markerHits} hit(s); first: ${r.firstHitContext}`);
      const why = [r.status !== 'stopped' ? 'the tap never stopped cleanly (killed, or the lab was left up)' : '', r.error ? r.error : '', r.kernelDropped > 0 ? `${r.kernelDropped} frames dropped by the kernel (not inspected)` : ''].filter(Boolean);
      if (why.length > 0) {
        row.incomplete++;
        incomplete.push(`${suite}: lab ${r.lab}: ${why.join('; ')}`);
      }
    }
    for (const k of Object.keys(total)) total[k] += row[k];
    rows.push([suite, row.labs, row.packets, row.bytes, row.hits, row.incomplete].map(String));
  }
  rows.push(['total', total.labs, total.packets, total.bytes, total.hits, total.incomplete].map(String));
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log(`\n== wire audit (every frame on every lab bridge, marker AMBIT-CANARY; reports in ${auditRoot})`);
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  for (const line of incomplete) console.log(`   incomplete: ${line}`);
  for (const line of hits) console.log(`   PLAINTEXT LEAK: ${line}`);
  const failures = [];
  if (total.hits > 0) failures.push(`${total.hits} marker hit(s): mesh payload crossed a lab bridge in clear`);
  const mustAudit = process.getuid?.() === 0 || process.env.CI === 'true';
  if (total.labs === 0) {
    if (mustAudit) failures.push('no lab was audited: the wire taps did not run (is tcpdump installed? did the lab suites run?)');
    else console.log('   no lab was audited (not root: the lab tests were skipped)');
  }
  console.log(`== wire audit: ${failures.length === 0 ? 'ok' : `FAILED (${failures.join('; ')})`}`);
  return failures;
}

/**
 * Sums the security suite's scoreboards (test/security/lib/tally.ts appends
 * one line per test file to tally.jsonl): cases tried, clean refusals,
 * crashes and bytes lost, per file and in total. Crashes and bytes lost must
 * be 0; returns the failures.
 */
function tallySummary() {
  const file = join(tapDir, 'tally.jsonl');
  if (!existsSync(file)) return [];
  const recs = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const rows = [['SCOREBOARD', 'CASES', 'REFUSALS', 'CRASHES', 'BYTES LOST']];
  const total = { tried: 0, refused: 0, crashes: 0, bytesLost: 0 };
  for (const r of recs) {
    rows.push([r.suite, r.tried, r.refused, r.crashes, r.bytesLost].map(String));
    for (const k of Object.keys(total)) total[k] += r[k];
  }
  rows.push(['total', total.tried, total.refused, total.crashes, total.bytesLost].map(String));
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log('\n== security and chaos scoreboard (hostile or faulty cases; crashes and bytes lost must be 0)');
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  const failures = [];
  if (total.crashes > 0) failures.push(`${total.crashes} crash(es)`);
  if (total.bytesLost > 0) failures.push(`${total.bytesLost} bytes lost`);
  if (failures.length > 0) console.log(`== scoreboard: FAILED (${failures.join('; ')})`);
  return failures;
}

// unit: pure logic; integration: real sockets, servers and labs; security:
// hostile input, fuzzing and bypass attempts; chaos: faults and load with
// checksummed traffic (issue 9 keeps the last two as standing suites).
const suites = only ? [only] : ['unit', 'integration', 'security', 'chaos'];
let labCleaned = false;
let failedStatus = 0;
for (const suite of suites) {
  const dir = join('dist', 'test', suite);
  if (!existsSync(join(root, dir))) continue;
  if (suite !== 'unit' && !labCleaned) {
    labCleaned = true;
    step('remove stale lab state', process.execPath, [join(root, 'bin/ambit.js'), 'lab', 'down', '--all', '--quiet']);
  }
  const tapFile = join(tapDir, `${suite}.tap`);
  const args = ['--test', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tapFile}`];
  const env = { ...process.env, NODE_OPTIONS: '', AMBIT_TALLY_DIR: tapDir };
  delete env.AMBIT_WIRE_AUDIT_DIR;
  if (AUDITED_SUITES.has(suite)) {
    env.AMBIT_WIRE_AUDIT_DIR = join(auditRoot, suite);
    auditedRun.add(suite);
  }
  // The runner's timeout also bounds each test file as a whole; chaos files run
  // minutes-long scenarios (root rotation waits for two renewal rounds).
  const timeoutMs = suite === 'chaos' ? 300_000 : 120_000;
  const status = run(`${suite} tests`, process.execPath, [...args, '--test-concurrency=1', `--test-timeout=${timeoutMs}`, '--enable-source-maps', dir], { env });
  if (existsSync(tapFile)) addTotals(tapFile);
  if (status !== 0) {
    failedStatus = status;
    break;
  }
}
// The audit is reported even when a suite failed (a leak is worth knowing about either way).
const auditFailures = auditedRun.size > 0 ? wireAuditSummary() : [];
const leak = auditFailures.length > 0;
const scoreFailures = tallySummary();
// Keep the reports when something is wrong (they name the flow), otherwise clean up.
if (!leak) rmSync(auditRoot, { recursive: true, force: true });
if (failedStatus !== 0) process.exit(failedStatus);
if (leak || scoreFailures.length > 0) process.exit(1);
