/** `ambit lab` argument handling: help, and bad flags/files exit 64 before anything is touched. */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

const BIN = fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url));
const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/lab/two-nodes.yaml', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'lab-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function ambit(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, AMBIT_LAB_STATE_ROOT: join(tmp, 'state') }, timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function usage(args: string[], fragment: string | RegExp): void {
  const r = ambit(...args);
  assert.equal(r.code, 64, `ambit ${args.join(' ')}: expected exit 64, got ${r.code}; stderr: ${r.stderr}`);
  if (typeof fragment === 'string') assert.ok(r.stderr.includes(fragment), `stderr ${JSON.stringify(r.stderr)} lacks ${JSON.stringify(fragment)}`);
  else assert.match(r.stderr, fragment);
}

void describe('ambit lab CLI', () => {
  void it('is listed in the top-level help and has --help listing subcommands and flags', () => {
    assert.match(ambit('--help').stdout, /^\s+lab\s+run a local cluster/m);
    const r = ambit('lab', '--help');
    assert.equal(r.code, 0);
    for (const s of ['ambit lab <up|down|status|exec>', '--no-mesh', '--state-dir', '--all', '--quiet', '--json', '--node', 'exec <namespace>/<pod>']) {
      assert.ok(r.stdout.includes(s), `help lacks ${s}`);
    }
    assert.equal(ambit('lab', 'up', '--help').code, 0);
  });

  void it('exits 64 on a missing or unknown subcommand', () => {
    usage(['lab'], 'missing subcommand');
    usage(['lab', 'bogus'], "unknown subcommand 'bogus'");
  });

  void it('exits 64 on bad flags', () => {
    usage(['lab', 'up', FIXTURE, '--frobnicate'], "unknown option '--frobnicate'");
    usage(['lab', 'up', FIXTURE, '--json'], "--json does not apply to 'lab up'");
    usage(['lab', 'up', FIXTURE, '--ready-timeout', 'soon'], '--ready-timeout must be an integer');
    usage(['lab', 'up', FIXTURE, '--name', 'Bad_Name'], "lab name 'Bad_Name'");
    usage(['lab', 'up', FIXTURE, 'extra'], "unexpected argument 'extra'");
    usage(['lab', 'down', '--all', '--name', 'x'], 'either --all or --name');
    usage(['lab', 'status', '--name', 'UPPER'], 'lab name');
    usage(['lab', 'up', FIXTURE, '--log-format', 'xml'], '--log-format must be one of');
  });

  void it('exits 64 when up has no manifests or bad ones, naming the file, object and field', () => {
    usage(['lab', 'up'], 'needs <manifests>');
    usage(['lab', 'up', join(tmp, 'missing.yaml')], 'missing.yaml: cannot read');
    const bad = join(tmp, 'bad.yaml');
    writeFileSync(bad, 'kind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {containers: []}\n');
    usage(['lab', 'up', bad], /bad\.yaml: Pod shop\/web: spec\.nodeName is required/);
  });

  void it('exits 64 when exec lacks a target or a command', () => {
    usage(['lab', 'exec', '--', 'true'], "needs <namespace>/<pod> or --node");
    usage(['lab', 'exec', 'demo/client'], "needs a command after '--'");
    usage(['lab', 'exec', 'demo/client', '--node', 'n', '--', 'true'], 'not both');
  });

  void it('status of a lab that is not up fails (exit 1), with the error code', () => {
    const r = ambit('lab', 'status', '--name', 'nope');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /AMBIT_ERR_LAB_(NOT_FOUND|NOT_PRIVILEGED)/);
  });
});
