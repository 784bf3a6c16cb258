/**
 * The `ambit` entry point as a user runs it: help for every command, and
 * usage errors (exit 64) that stop `ambit agent` before it binds anything.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { commands } from '../../src/cli/commands.js';

/** dist/test/unit/cli.test.js → the repository root. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'ambit.js');
const tmp = mkdtempSync(join(tmpdir(), 'ambit-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `ambit` to completion; concurrent runs are independent processes. */
function ambit(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 20_000,
      // Keep the agent away from any real CA or lab state, should it get that far.
      env: { ...process.env, NODE_OPTIONS: '', AMBIT_DEBUG: '', AMBIT_LAB_STATE_ROOT: join(tmp, 'lab-state') },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (signal) reject(new Error(`ambit ${args.join(' ')} was killed by ${signal} (did it start serving?)`));
      else resolve({ code, stdout, stderr });
    });
  });
}

async function usageError(args: string[], fragment: string | RegExp): Promise<Run> {
  const r = await ambit(...args);
  assert.equal(r.code, 64, `ambit ${args.join(' ')}: expected exit 64, got ${r.code}; stderr: ${r.stderr}`);
  if (typeof fragment === 'string') assert.ok(r.stderr.includes(fragment), `stderr ${JSON.stringify(r.stderr)} lacks ${JSON.stringify(fragment)}`);
  else assert.match(r.stderr, fragment);
  assert.equal(r.stdout, '', 'usage errors go to stderr only');
  return r;
}

/** Checks several invocations at once. */
async function usageErrors(cases: Array<[string[], string | RegExp]>): Promise<void> {
  await Promise.all(cases.map(([args, fragment]) => usageError(args, fragment)));
}

function clusterFile(name: string, text: string): string {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
}

describe('ambit CLI', { timeout: 60_000 }, () => {
  test('the test finds the repository root and the bin shim', () => {
    assert.ok(existsSync(join(ROOT, 'package.json')), ROOT);
    assert.ok(existsSync(BIN), BIN);
    assert.ok(commands.length > 0);
  });

  test('ambit --help exits 0 and lists every command with its summary', async () => {
    const runs = await Promise.all(['--help', '-h', 'help'].map((flag) => ambit(flag)));
    for (const r of runs) {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^usage: ambit <command> \[flags\]/);
      for (const c of commands) assert.match(r.stdout, new RegExp(`^\\s+${c.name}\\s+${c.summary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), c.name);
    }
  });

  test('ambit with no command prints the help and exits 64', async () => {
    const r = await ambit();
    assert.equal(r.code, 64);
    assert.match(r.stdout, /^usage: ambit <command>/);
  });

  for (const c of commands) {
    test(`ambit ${c.name} --help exits 0 and prints its usage and flags`, async () => {
      const [r, short] = await Promise.all([ambit(c.name, '--help'), ambit(c.name, '-h')]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.ok(r.stdout.startsWith(`ambit ${c.name} ${c.usage}`.trimEnd() + '\n'), r.stdout);
      assert.ok(r.stdout.includes(c.summary));
      for (const flag of Object.keys(c.flags)) assert.ok(r.stdout.includes(`--${flag}`), `${c.name} --help lacks --${flag}`);
      assert.ok(r.stdout.includes('-h, --help'));
      assert.equal(short.code, 0);
      assert.equal(short.stdout, r.stdout);
    });
  }

  test('an unknown command exits 64 and names it', async () => {
    await usageErrors([
      [['frobnicate'], "unknown command 'frobnicate'"],
      [['--version'], "unknown command '--version'"],
    ]);
  });

  test('ambit version prints the package version', async () => {
    const r = await ambit('version');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ambit \d+\.\d+\.\d+ \(node v\d+/);
  });
});

describe('ambit agent usage errors (exit 64 before binding anything)', { timeout: 60_000 }, () => {
  const valid = clusterFile('ok.yaml', 'nodes: [{name: n1, ip: 172.18.0.2}]\nworkloads: []\n');

  test('an unknown flag is named', async () => {
    await usageErrors([
      [['agent', '--bogus'], /^ambit agent: unknown option '--bogus'/],
      [['agent', '--node', 'x', '--cluster', valid, '--bogus=1'], "'--bogus'"],
    ]);
  });

  test('--node and --cluster are required', async () => {
    await usageErrors([
      [['agent'], 'ambit agent: --node is required'],
      [['agent', '--cluster', valid], '--node is required'],
      [['agent', '--node', ''], '--node is required'],
      [['agent', '--node', 'x'], '--cluster is required'],
      [['agent', '--node'], /--node.*argument missing/],
    ]);
  });

  test('a cluster file that cannot be read', async () => {
    await usageErrors([
      [['agent', '--node', 'x', '--cluster', '/nonexistent.json'], 'cannot read cluster file /nonexistent.json'],
      [['agent', '--node', 'x', '--cluster', tmp], 'cannot read cluster file'],
    ]);
  });

  test('a cluster file that does not parse', async () => {
    await usageErrors([
      [['agent', '--node', 'x', '--cluster', clusterFile('bad.json', '{"workloads": [')], /bad\.json is not valid JSON/],
      [['agent', '--node', 'x', '--cluster', clusterFile('bad-syntax.yaml', 'workloads: [{name: a\n')], /bad-syntax\.yaml is not valid YAML/],
    ]);
  });

  test('an invalid cluster file names the file and the field', async () => {
    const bad = clusterFile('invalid.yaml', 'workloads: [{name: a}]\n');
    const badIp = clusterFile('bad-ip.json', JSON.stringify({ workloads: [{ name: 'a', namespace: 'ns', node: 'x', ip: '10.0.0.1' }, { name: 'b', namespace: 'ns', node: 'x', ip: 'nope' }] }));
    await usageErrors([
      [['agent', '--node', 'x', '--cluster', bad], `${bad}: workloads[0].namespace must be a non-empty string`],
      [['agent', '--node', 'x', '--cluster', badIp], "workloads[1].ip must be an IP address, got 'nope'"],
    ]);
  });

  test('a node that is not in the cluster file', async () => {
    await usageError(['agent', '--node', 'nowhere', '--cluster', valid], "node 'nowhere' is not in");
  });

  test('numeric and enum flags are range-checked', async () => {
    const base = ['agent', '--node', 'x', '--cluster', valid];
    await usageErrors([
      [[...base, '--metrics-port', '99999'], "--metrics-port must be an integer from 1 to 65535, got '99999'"],
      [[...base, '--admin-port', '0'], '--admin-port must be an integer'],
      [[...base, '--socks5-port', 'http'], '--socks5-port must be an integer'],
      [[...base, '--cert-ttl-seconds', '5'], '--cert-ttl-seconds must be an integer from 60'],
      [[...base, '--log-level', 'loud'], '--log-level must be one of'],
      [[...base, '--log-format', 'xml'], '--log-format must be one of json, pretty'],
    ]);
  });
});
