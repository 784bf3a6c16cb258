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
import { formatRedirectStatus, install, remove, selectBackend, status, type RedirectOptions } from '../../src/redirect/installer.js';
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

const LO6 = '[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet6","local":"::1","prefixlen":128,"scope":"host"}]}]';
/** `ip -6 -j addr show dev lo` in a netns: lo has ::1 (IPv6 on) or nothing (disable_ipv6=1). */
const lo = (v6: boolean) => (a: string[]): Partial<RunResult> | undefined => (a.includes('addr') ? { stdout: v6 ? LO6 : '[]' } : undefined);
const IP = '/usr/sbin/ip';

void describe('install / remove / status (scripted)', () => {
  void it('install (nftables) sets up v4 and v6 routing, then loads both families in one nft transaction on stdin', async () => {
    const { deps, calls } = fakeDeps({
      missing: ['iptables-save', 'iptables-restore', 'ip6tables-save', 'ip6tables-restore'],
      respond: (a) => lo(true)(a) ?? (a.includes('rule') && a.includes('show') ? { stdout: '[]' } : undefined),
    });
    const r = await install('pod1', {}, deps);
    assert.deepEqual(r, { netns: 'pod1', backend: 'nftables', dns: false, ipv6: true, notes: [] });
    assert.deepEqual(
      calls.map((c) => c.argv),
      [
        [...NS, IP, '-6', '-j', 'addr', 'show', 'dev', 'lo'],
        [...NS, IP, '-j', 'rule', 'show', 'pref', '32764'],
        [...NS, IP, 'rule', 'add', 'fwmark', '0x111/0xfff', 'pref', '32764', 'lookup', '100'],
        [...NS, IP, 'route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100'],
        [...NS, IP, '-6', '-j', 'rule', 'show', 'pref', '32764'],
        [...NS, IP, '-6', 'rule', 'add', 'fwmark', '0x111/0xfff', 'pref', '32764', 'lookup', '100'],
        [...NS, IP, '-6', 'route', 'replace', 'local', '::/0', 'dev', 'lo', 'table', '100'],
        [...NS, '/usr/sbin/nft', '-f', '-'],
      ],
    );
    assert.equal(calls[7]?.input, buildNftInstall({ dns: false, ipv6: true }));
    assert.equal(calls.filter((c) => c.input !== undefined).length, 1, 'one transaction for both families');
  });

  void it('a netns with IPv6 disabled gets its IPv4 rules; the IPv6 part is skipped with a note, not an error', async () => {
    const notes: unknown[] = [];
    const logger = { info: (...args: unknown[]) => void notes.push(args) } as unknown as RedirectOptions['logger'];
    const { deps, calls } = fakeDeps({
      missing: ['iptables-save', 'iptables-restore', 'ip6tables-save', 'ip6tables-restore'],
      respond: (a) => lo(false)(a) ?? (a.includes('show') ? { stdout: '[]' } : undefined),
    });
    const r = await install('pod1', { ...(logger ? { logger } : {}) }, deps);
    assert.equal(r.ipv6, false);
    assert.match(r.notes.join(), /IPv6 is disabled in this netns .*only IPv4 is captured/);
    assert.equal(notes.length, 1, 'the note is logged');
    assert.equal(calls.at(-1)?.input, buildNftInstall({ dns: false, ipv6: false }));
    assert.ok(!calls.at(-1)?.input?.includes('ip6'));
    assert.ok(calls.some((c) => c.argv.join(' ').endsWith('ip route replace local 0.0.0.0/0 dev lo table 100')));
    assert.ok(!calls.some((c) => c.argv.includes('-6') && (c.argv.includes('add') || c.argv.includes('replace'))), 'no ip -6 rule/route changes');
    // ipv6: false is the same, even where IPv6 works, and does not even look.
    const off = fakeDeps({ missing: ['iptables-save', 'ip6tables-save'], respond: (a) => lo(true)(a) ?? (a.includes('show') ? { stdout: '[]' } : undefined) });
    const r2 = await install('pod1', { ipv6: false }, off.deps);
    assert.deepEqual([r2.ipv6, r2.notes], [false, ['IPv6 rules not requested (ipv6: false): only IPv4 is captured']]);
    assert.ok(!off.calls.some((c) => c.argv.includes('addr')));
  });

  void it('install keeps an existing correct ip rule (no duplicate) and passes --dns through', async () => {
    const { deps, calls } = fakeDeps({ missing: ['iptables-save', 'ip6tables-save'], respond: (a) => lo(true)(a) ?? (a.includes('rule') && a.includes('show') ? { stdout: OUR_RULE } : undefined) });
    await install('pod1', { dns: true }, deps);
    assert.ok(!calls.some((c) => c.argv.includes('add')));
    assert.equal(calls.at(-1)?.input, buildNftInstall({ dns: true }));
  });

  void it('install (iptables) restores v4 then v6 with --noflush, and removes a leftover nft table', async () => {
    const { deps, calls } = fakeDeps({ respond: (a) => lo(true)(a) ?? (a.includes('show') ? { stdout: '[]' } : undefined) });
    const r = await install('/proc/42/ns/net', { backend: 'iptables' }, deps);
    assert.deepEqual([r.backend, r.ipv6], ['iptables', true]);
    const restore = calls.find((c) => c.argv.includes('/usr/sbin/iptables-restore'));
    assert.deepEqual(restore?.argv, ['/usr/sbin/nsenter', '--net=/proc/42/ns/net', '/usr/sbin/iptables-restore', '--noflush']);
    assert.equal(restore?.input, buildIptablesRestore({ dns: false }));
    const restore6 = calls.find((c) => c.argv.includes('/usr/sbin/ip6tables-restore'));
    assert.equal(restore6?.input, buildIptablesRestore({ dns: false }, undefined, 6));
    assert.ok(calls.indexOf(restore as Call) < calls.indexOf(restore6 as Call));
    assert.ok(calls.some((c) => c.argv.join(' ').endsWith('/usr/sbin/nft list table inet ambit')));
  });

  void it('iptables backend with IPv6 on but no ip6tables-restore fails before changing anything', async () => {
    const { deps, calls } = fakeDeps({ missing: ['ip6tables-restore'], respond: lo(true) });
    await assert.rejects(install('pod1', { backend: 'iptables' }, deps), (e: unknown) => e instanceof RedirectBinaryMissingError && e.binary === 'ip6tables-restore');
    assert.ok(!calls.some((c) => c.input !== undefined || c.argv.includes('add') || c.argv.includes('replace')));
    // Without IPv6 in the netns it is not needed.
    const v4 = fakeDeps({ missing: ['ip6tables-restore'], respond: (a) => lo(false)(a) ?? (a.includes('show') ? { stdout: '[]' } : undefined) });
    assert.equal((await install('pod1', { backend: 'iptables' }, v4.deps)).ipv6, false);
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

  void it('status compares the nft listing (both families) with what install would write', async () => {
    const listing = buildNftTable().replace(/counter/g, 'counter packets 3 bytes 180').replace('& 0xfffff000 |', '& 0xfffff111 |');
    const respond = (a: string[]): Partial<RunResult> | undefined =>
      lo(true)(a) ?? (a.includes('list') ? { stdout: listing } : a.includes('rule') ? { stdout: OUR_RULE } : a.includes('route') ? { stdout: OUR_ROUTE } : undefined);
    const ok = await status('pod1', {}, fakeDeps({ respond }).deps);
    assert.deepEqual(ok, {
      netns: 'pod1',
      backend: 'nftables',
      rules: true,
      dns: false,
      ipRule: true,
      route: true,
      installed: true,
      matches: true,
      differences: [],
      ipv6: { enabled: true, rules: true, ipRule: true, route: true },
      notes: [],
    });
    const text = formatRedirectStatus(ok);
    assert.match(text, /installed, up to date/);
    assert.match(text, /ipv6 {2}rules: yes {2}ip -6 rule 32764: yes {2}table 100 route ::\/0: yes/);
    const dns = await status('pod1', { dns: true }, fakeDeps({ respond }).deps);
    assert.equal(dns.installed, true);
    assert.equal(dns.matches, false);
    assert.ok(dns.differences.some((d) => d.includes('15053')));
  });

  void it('status: v4-only rules in a dual-stack netns differ; in a netns without IPv6 they match, with a note', async () => {
    const v4listing = buildNftTable({ ipv6: false });
    const respond = (v6: boolean) => (a: string[]): Partial<RunResult> | undefined =>
      lo(v6)(a) ??
      (a.includes('list') ? { stdout: v4listing } : a.includes('rule') ? { stdout: a.includes('-6') ? '[]' : OUR_RULE } : a.includes('route') ? { stdout: a.includes('-6') ? '[]' : OUR_ROUTE } : undefined);
    const dual = await status('pod1', {}, fakeDeps({ respond: respond(true) }).deps);
    assert.deepEqual([dual.installed, dual.matches, dual.ipv6], [false, false, { enabled: true, rules: false, ipRule: false, route: false }]);
    assert.ok(dual.differences.some((d) => d.includes("missing 'meta l4proto tcp ip6 daddr != ::1")));
    assert.ok(dual.differences.includes("ip -6 route: missing 'local ::/0 dev lo table 100'"));
    const noV6 = await status('pod1', {}, fakeDeps({ respond: respond(false) }).deps);
    assert.deepEqual([noV6.installed, noV6.matches, noV6.ipv6.enabled], [true, true, false]);
    assert.match(noV6.notes.join(), /IPv6 is disabled/);
    assert.match(formatRedirectStatus(noV6), /ipv6 {2}skipped\n {2}note: IPv6 is disabled/);
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
