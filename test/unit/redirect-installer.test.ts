/**
 * The installer against a scripted runner: backend selection, the exact
 * argv it runs (nsenter + argument arrays, rules on stdin), and the typed
 * errors. No root needed; the real thing is in test/integration/redirect-*.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import type { RedirectDeps, RunResult } from '../../src/redirect/exec.js';
import { resolveNetns } from '../../src/redirect/exec.js';
import { RedirectBinaryMissingError, RedirectCommandError, RedirectNetnsNotFoundError, RedirectPermissionError } from '../../src/redirect/errors.js';
import { install, remove, selectBackend, status } from '../../src/redirect/installer.js';
import { buildIptablesRestore, buildNftInstall, buildNftTable } from '../../src/redirect/index.js';

const BIN = fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url));

interface Call {
  argv: string[];
  input?: string;
}

function fakeDeps(opts: { missing?: string[]; exists?: boolean; respond?: (argv: string[]) => Partial<RunResult> | undefined } = {}): { deps: RedirectDeps; calls: Call[] } {
  const calls: Call[] = [];
  const deps: RedirectDeps = {
    which: (name) => (opts.missing?.includes(name) ? undefined : `/usr/sbin/${name}`),
    exists: () => opts.exists ?? true,
    run: (argv, o) => {
      calls.push({ argv: [...argv], ...(o?.input !== undefined ? { input: o.input } : {}) });
      const r = opts.respond?.([...argv]) ?? {};
      return Promise.resolve({ code: r.code ?? 0, stdout: r.stdout ?? '', stderr: r.stderr ?? '' });
    },
  };
  return { deps, calls };
}

const NS = ['/usr/sbin/nsenter', '--net=/run/netns/pod1'];
const OUR_RULE = '[{"priority":32764,"src":"all","fwmark":"0x111","fwmask":"0xfff","table":"100"}]';
const OUR_ROUTE = '[{"type":"local","dst":"default","dev":"lo","scope":"host","flags":[]}]';

void describe('backend selection', () => {
  void it('defaults to nftables, falls back to iptables when nft is missing', () => {
    assert.equal(selectBackend(undefined, fakeDeps().deps), 'nftables');
    assert.equal(selectBackend(undefined, fakeDeps({ missing: ['nft'] }).deps), 'iptables');
    assert.equal(selectBackend('iptables', fakeDeps().deps), 'iptables');
  });

  void it('an explicit backend whose binary is missing is a typed, actionable error', () => {
    assert.throws(
      () => selectBackend('nftables', fakeDeps({ missing: ['nft'] }).deps),
      (e: unknown) =>
        e instanceof RedirectBinaryMissingError && e.code === 'AMBIT_ERR_REDIRECT_BINARY_MISSING' && e.message === 'nft not found; install the nftables package or use --backend iptables',
    );
    assert.throws(() => selectBackend('iptables', fakeDeps({ missing: ['iptables-restore'] }).deps), /iptables-restore not found; install the iptables package/);
    assert.throws(() => selectBackend(undefined, fakeDeps({ missing: ['nft', 'iptables-restore'] }).deps), RedirectBinaryMissingError);
  });
});

void describe('install / remove / status (scripted)', () => {
  void it('install (nftables) sets up routing, then loads the rules in one nft transaction on stdin', async () => {
    const { deps, calls } = fakeDeps({ missing: ['iptables-save', 'iptables-restore'], respond: (a) => (a.includes('rule') && a.includes('show') ? { stdout: '[]' } : undefined) });
    const r = await install('pod1', {}, deps);
    assert.deepEqual(r, { netns: 'pod1', backend: 'nftables', dns: false });
    assert.deepEqual(
      calls.map((c) => c.argv),
      [
        [...NS, '/usr/sbin/ip', '-j', 'rule', 'show', 'pref', '32764'],
        [...NS, '/usr/sbin/ip', 'rule', 'add', 'fwmark', '0x111/0xfff', 'pref', '32764', 'lookup', '100'],
        [...NS, '/usr/sbin/ip', 'route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100'],
        [...NS, '/usr/sbin/nft', '-f', '-'],
      ],
    );
    assert.equal(calls[3]?.input, buildNftInstall({ dns: false }));
  });

  void it('install keeps an existing correct ip rule (no duplicate) and passes --dns through', async () => {
    const { deps, calls } = fakeDeps({ missing: ['iptables-save'], respond: (a) => (a.includes('rule') && a.includes('show') ? { stdout: OUR_RULE } : undefined) });
    await install('pod1', { dns: true }, deps);
    assert.ok(!calls.some((c) => c.argv.includes('add')));
    assert.equal(calls.at(-1)?.input, buildNftInstall({ dns: true }));
  });

  void it('install (iptables) reads iptables-save, restores with --noflush, and removes a leftover nft table', async () => {
    const { deps, calls } = fakeDeps({ respond: (a) => (a.includes('show') ? { stdout: '[]' } : undefined) });
    const r = await install('/proc/42/ns/net', { backend: 'iptables' }, deps);
    assert.equal(r.backend, 'iptables');
    const restore = calls.find((c) => c.argv.includes('/usr/sbin/iptables-restore'));
    assert.deepEqual(restore?.argv, ['/usr/sbin/nsenter', '--net=/proc/42/ns/net', '/usr/sbin/iptables-restore', '--noflush']);
    assert.equal(restore?.input, buildIptablesRestore({ dns: false }));
    assert.ok(calls.some((c) => c.argv.join(' ').endsWith('/usr/sbin/nft list table inet ambit')));
  });

  void it('remove is idempotent: an absent table, rule and route are not errors', async () => {
    const { deps, calls } = fakeDeps({
      missing: ['iptables-save'],
      respond: (a) =>
        a.includes('list')
          ? { code: 1, stderr: 'Error: No such file or directory\nlist table inet ambit\n' }
          : a.includes('route')
            ? { code: 2, stdout: '[', stderr: 'Error: ipv4: FIB table does not exist.\nDump terminated\n' }
            : { stdout: '[]' },
    });
    assert.deepEqual(await remove('pod1', {}, deps), { netns: 'pod1', removed: false });
    assert.ok(!calls.some((c) => c.input !== undefined), 'no transaction when nothing is there');
  });

  void it('status compares the nft listing with what install would write', async () => {
    const listing = buildNftTable().replace(/counter/g, 'counter packets 3 bytes 180').replace('& 0xfffff000 |', '& 0xfffff111 |');
    const respond = (a: string[]): Partial<RunResult> | undefined =>
      a.includes('list') ? { stdout: listing } : a.includes('rule') ? { stdout: OUR_RULE } : a.includes('route') ? { stdout: OUR_ROUTE } : undefined;
    const ok = await status('pod1', {}, fakeDeps({ respond }).deps);
    assert.deepEqual(ok, { netns: 'pod1', backend: 'nftables', rules: true, dns: false, ipRule: true, route: true, installed: true, matches: true, differences: [] });
    const dns = await status('pod1', { dns: true }, fakeDeps({ respond }).deps);
    assert.equal(dns.installed, true);
    assert.equal(dns.matches, false);
    assert.ok(dns.differences.some((d) => d.includes('15053')));
  });

  void it('a nonexistent netns is a typed error naming it, before anything runs', async () => {
    const { deps, calls } = fakeDeps({ exists: false });
    await assert.rejects(
      install('gone-pod', {}, deps),
      (e: unknown) => e instanceof RedirectNetnsNotFoundError && e.code === 'AMBIT_ERR_REDIRECT_NETNS_NOT_FOUND' && e.netns === 'gone-pod' && e.message.includes("'gone-pod'"),
    );
    assert.equal(calls.length, 0);
  });

  void it('a netns that vanishes mid-way, EPERM, and other failures map to typed errors', async () => {
    let gone = false;
    const vanishing: RedirectDeps = {
      ...fakeDeps({ respond: () => ((gone = true), { code: 1, stderr: 'nsenter: cannot open /run/netns/pod1: No such file or directory' }) }).deps,
      exists: () => !gone,
    };
    await assert.rejects(remove('pod1', {}, vanishing), RedirectNetnsNotFoundError);
    const eperm = fakeDeps({ respond: () => ({ code: 1, stderr: "nsenter: reassociate to namespace 'ns/net' failed: Operation not permitted" }) }).deps;
    await assert.rejects(status('pod1', {}, eperm), (e: unknown) => e instanceof RedirectPermissionError && e.code === 'AMBIT_ERR_REDIRECT_NOT_PERMITTED' && /run as root/.test(e.message));
    const bad = fakeDeps({ respond: (a) => (a.includes('-f') ? { code: 1, stderr: 'Error: syntax error' } : { stdout: '[]' }) }).deps;
    await assert.rejects(install('pod1', {}, bad), (e: unknown) => e instanceof RedirectCommandError && e.code === 'AMBIT_ERR_REDIRECT_COMMAND_FAILED' && e.message.includes('syntax error'));
  });

  void it('resolves names under /run/netns and takes paths as given', () => {
    assert.deepEqual(resolveNetns('amb-rd-x'), { name: 'amb-rd-x', path: '/run/netns/amb-rd-x' });
    assert.deepEqual(resolveNetns('/proc/1/ns/net'), { name: '/proc/1/ns/net', path: '/proc/1/ns/net' });
  });
});

void describe('ambit redirect CLI', () => {
  const ambit = (...args: string[]): { code: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  void it('has --help listing subcommands and flags', () => {
    const r = ambit('redirect', '--help');
    assert.equal(r.code, 0);
    for (const s of ['ambit redirect <install|remove|status>', '--backend', '--dns', '--json', 'remove <netns>']) assert.ok(r.stdout.includes(s), `help lacks ${s}`);
    assert.match(ambit('--help').stdout, /^\s+redirect\s+install, remove or check/m);
  });

  void it('exits 64 on bad flags, subcommands and arguments', () => {
    for (const [args, fragment] of [
      [['redirect'], 'needs a subcommand'],
      [['redirect', 'bogus', 'x'], "unknown subcommand 'bogus'"],
      [['redirect', 'install'], 'needs <netns>'],
      [['redirect', 'install', 'x', '--backend', 'ebpf'], '--backend must be one of nftables, iptables'],
      [['redirect', 'remove', 'x', '--dns'], "--dns does not apply to 'redirect remove'"],
      [['redirect', 'status', 'x', '--bogus'], "unknown option '--bogus'"],
      [['redirect', 'status', 'x', 'y'], "unexpected argument 'y'"],
    ] as const) {
      const r = ambit(...args);
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(r.stderr.includes(fragment), `${args.join(' ')}: ${r.stderr}`);
    }
  });
});
