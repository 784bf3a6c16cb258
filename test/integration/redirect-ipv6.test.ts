// IPv6 capture in real network namespaces (root only). Each test makes its
// own pair, amb-r6-<id>-pod and amb-r6-<id>-peer, joined by a veth pair created
// inside them, dual stack: 10.251.0.2/24 + fd00:251::2/64 (pod) and
// 10.251.0.1/24 + fd00:251::1/64 (peer), ULA addresses with nodad so they are
// usable at once. Both namespaces are deleted afterwards whatever happens;
// traffic stays inside them. Behaviour is asserted with real sockets made by
// the addon: where a connection lands, IP6T_SO_ORIGINAL_DST, the address the
// app sees, and that replies to spoofed-source connections come back.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { test, type TestContext } from 'node:test';
import { connectFromNetns, listenInNetns, originalDst } from '../../src/native/sockets.js';
import type { Backend } from '../../src/redirect/constants.js';
import { formatRedirectStatus, install, remove, status } from '../../src/redirect/installer.js';
import { normalizeNftListing } from '../../src/redirect/nft-rules.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';

const POD4 = '10.251.0.2';
const PEER4 = '10.251.0.1';
const POD6 = 'fd00:251::2';
const PEER6 = 'fd00:251::1';
const MARK = 0x539;

interface Pair {
  pod: string;
  peer: string;
  podPath: string;
  peerPath: string;
}

const sh = (...argv: string[]): string => execFileSync(argv[0] ?? '', argv.slice(1), { encoding: 'utf8' });

/** The pair; with `podIpv6: false` the pod netns has IPv6 disabled by sysctl (and no v6 address). */
function makePair(t: TestContext, opts: { podIpv6?: boolean } = {}): Pair {
  const podIpv6 = opts.podIpv6 !== false;
  const id = randomBytes(3).toString('hex');
  const pod = `amb-r6-${id}-pod`;
  const peer = `amb-r6-${id}-peer`;
  sh('ip', 'netns', 'add', pod);
  t.after(() => void sh('ip', 'netns', 'del', pod));
  sh('ip', 'netns', 'add', peer);
  t.after(() => void sh('ip', 'netns', 'del', peer));
  if (!podIpv6) {
    sh('ip', 'netns', 'exec', pod, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.lo.disable_ipv6=1');
  }
  sh('ip', '-n', pod, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer);
  for (const [ns, ip4, ip6] of [
    [pod, POD4, podIpv6 ? POD6 : undefined],
    [peer, PEER4, PEER6],
  ] as const) {
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    sh('ip', '-n', ns, 'addr', 'add', `${ip4}/24`, 'dev', 'eth0');
    if (ip6) sh('ip', '-n', ns, 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad');
    sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
  }
  return { pod, peer, podPath: `/run/netns/${pod}`, peerPath: `/run/netns/${peer}` };
}

interface Hit {
  server: string;
  /** SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST (or the local address when not redirected). */
  origDst: string;
  /** getsockname: where the connection really landed. */
  local: string;
  remote: string;
}

const hostPort = (a: string | undefined, p: number | undefined): string => (a?.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);

/** A listener that answers each connection with its own name and records the addresses. */
async function namedListener(t: TestContext, netns: string, address: string, port: number, name: string): Promise<Hit[]> {
  const hits: Hit[] = [];
  const server = await listenInNetns(undefined, { netns, address, port });
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  server.on('connection', (s: net.Socket) => {
    const d = originalDst(undefined, s);
    hits.push({ server: name, origDst: hostPort(d.address, d.port), local: hostPort(s.localAddress, s.localPort), remote: s.remoteAddress ?? '' });
    s.on('error', () => undefined);
    s.end(name);
  });
  return hits;
}

interface AskOptions {
  mark?: number;
  /** Spoof the source (transparent + freebind socket bound to this address). */
  from?: string;
}

/** Connects from `netns`, returns what the server said (its name), or throws on error/timeout. */
function ask(netns: string, host: string, port: number, o: AskOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connectFromNetns(undefined, {
      netns,
      host,
      port,
      ...(o.mark !== undefined ? { mark: o.mark } : {}),
      ...(o.from !== undefined ? { transparent: true, freebind: true, bindAddress: o.from } : {}),
    });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`timeout connecting to ${hostPort(host, port)}${o.from ? ` from ${o.from} (replies went out via eth0?)` : ''}`));
    }, 4000);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.once('error', (e) => (clearTimeout(timer), reject(e)));
    sock.once('end', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(Buffer.concat(chunks).toString());
    });
  });
}

/** Ambit-style dual-stack listeners ([::], IPV6_V6ONLY off) in the pod, and a dual-stack service in the peer. */
async function listeners(t: TestContext, p: Pair, podAny = '::') {
  return {
    outbound: await namedListener(t, p.podPath, podAny, 15001, 'outbound'),
    inbound: await namedListener(t, p.podPath, podAny, 15006, 'inbound'),
    hbone: await namedListener(t, p.podPath, podAny, 15008, 'hbone'),
    app: await namedListener(t, p.podPath, podAny, 8081, 'app'),
    peer: await namedListener(t, p.peerPath, '::', 80, 'peer'),
  };
}

function cleanupRules(t: TestContext, p: Pair): void {
  t.after(async () => void (await remove(p.pod).catch(() => undefined)));
}

/** Everything the capture must do for IPv6, asserted on real connections. */
async function assertIpv6Capture(p: Pair, l: Awaited<ReturnType<typeof listeners>>): Promise<void> {
  // Outbound: [fd00:251::2] -> [fd00:251::1]:80 lands on [::]:15001 in the pod (REDIRECT maps
  // locally generated packets to ::1), and IP6T_SO_ORIGINAL_DST gives the original destination.
  const peerHits = l.peer.length;
  assert.equal(await ask(p.podPath, PEER6, 80), 'outbound');
  assert.deepEqual(l.outbound.at(-1), { server: 'outbound', origDst: `[${PEER6}]:80`, local: '[::1]:15001', remote: POD6 });
  assert.equal(l.peer.length, peerHits, 'the peer saw nothing');
  // Inbound: the peer's connection to [pod]:8080 lands on 15006 with the original destination; 15008 is reached directly.
  assert.equal(await ask(p.peerPath, POD6, 8080), 'inbound');
  assert.deepEqual(l.inbound.at(-1), { server: 'inbound', origDst: `[${POD6}]:8080`, local: `[${POD6}]:15006`, remote: PEER6 });
  assert.equal(await ask(p.peerPath, POD6, 15008), 'hbone');
  assert.deepEqual(l.hbone.at(-1)?.origDst, `[${POD6}]:15008`);
  // A socket marked 0x539 (ambit's own upstream) bypasses capture.
  assert.equal(await ask(p.podPath, PEER6, 80, { mark: MARK }), 'peer');
  assert.deepEqual(l.peer.at(-1), { server: 'peer', origDst: `[${PEER6}]:80`, local: `[${PEER6}]:80`, remote: POD6 });
  // ::1 and the pod's own address (out via lo) are not captured.
  const outbound = l.outbound.length;
  assert.equal(await ask(p.podPath, '::1', 8081), 'app');
  assert.equal(l.app.at(-1)?.origDst, '[::1]:8081');
  assert.equal(await ask(p.podPath, POD6, 8081), 'app');
  assert.equal(l.app.at(-1)?.origDst, `[${POD6}]:8081`);
  assert.equal(l.outbound.length, outbound, 'loopback and own-address calls were not captured');
  // Replies to ambit's spoofed-source connection to the app come back via connmark 0x111 +
  // `ip -6 rule` 32764 + the `local ::/0` route in table 100 instead of leaving by eth0.
  const inbound = l.inbound.length;
  assert.equal(await ask(p.podPath, POD6, 8081, { mark: MARK, from: PEER6 }), 'app');
  assert.equal(l.app.at(-1)?.remote, PEER6, 'the app saw the original client address');
  assert.equal(l.inbound.length, inbound, 'the spoofed connection to the app was not captured');
}

/** IPv4 keeps working as before, here through the same dual-stack listeners (v4-mapped clients). */
async function assertIpv4Capture(p: Pair, l: Awaited<ReturnType<typeof listeners>>): Promise<void> {
  assert.equal(await ask(p.podPath, PEER4, 80), 'outbound');
  assert.equal(l.outbound.at(-1)?.origDst, `${PEER4}:80`);
  assert.equal(await ask(p.peerPath, POD4, 8080), 'inbound');
  assert.equal(l.inbound.at(-1)?.origDst, `${POD4}:8080`);
  assert.equal(await ask(p.podPath, PEER4, 80, { mark: MARK }), 'peer');
  assert.equal(await ask(p.podPath, POD4, 8081, { mark: MARK, from: PEER4 }), 'app');
  // Node shows a v4 client of a dual-stack listener as ::ffff:a.b.c.d.
  assert.equal(l.app.at(-1)?.remote.replace(/^::ffff:/, ''), PEER4, 'the app saw the original client address');
}

const nftList = (p: Pair): string => sh('ip', 'netns', 'exec', p.pod, 'nft', 'list', 'table', 'inet', 'ambit');
const ip6RulePref = (p: Pair): string => sh('ip', '-n', p.pod, '-6', 'rule', 'show', 'pref', '32764').trim();
const ip6Table100 = (p: Pair): string => sh('ip', '-n', p.pod, '-6', 'route', 'show', 'table', '100').trim();

void test('nftables, IPv6: outbound to [::]:15001 with IP6T_SO_ORIGINAL_DST, inbound to 15006 except 15008, bypasses, spoofed replies', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const p = makePair(t);
  cleanupRules(t, p);
  const l = await listeners(t, p);
  // Before install the peer is reached directly over IPv6.
  assert.equal(await ask(p.podPath, PEER6, 80), 'peer');

  assert.deepEqual(await install(p.pod), { netns: p.pod, backend: 'nftables', dns: false, ipv6: true, notes: [] });
  assert.match(ip6RulePref(p), /^32764:\s+from all fwmark 0x111\/0xfff lookup 100$/);
  assert.match(ip6Table100(p), /^local default dev lo /);
  await assertIpv6Capture(p, l);
  await assertIpv4Capture(p, l);
});

void test('nftables, IPv6: one table for both families, idempotent install, status shows v6, remove clears v6 routing', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const p = makePair(t);
  cleanupRules(t, p);
  await install(p.pod);
  const first = normalizeNftListing(nftList(p));
  assert.ok(first.some((l) => l.startsWith('meta l4proto tcp ip6 daddr != ::1 ')));
  await install(p.podPath);
  assert.deepEqual(normalizeNftListing(nftList(p)), first, 'a second install gives the same ruleset');
  assert.equal(ip6RulePref(p).split('\n').length, 1, 'one ip -6 rule, not two');
  const st = await status(p.pod);
  assert.deepEqual([st.matches, st.ipv6], [true, { enabled: true, rules: true, ipRule: true, route: true }]);
  assert.match(formatRedirectStatus(st), /ipv6 {2}rules: yes {2}ip -6 rule 32764: yes {2}table 100 route ::\/0: yes/);

  // Losing the v6 route is noticed.
  sh('ip', '-n', p.pod, '-6', 'route', 'del', 'local', '::/0', 'dev', 'lo', 'table', '100');
  const drift = await status(p.pod);
  assert.deepEqual([drift.installed, drift.ipv6.route], [false, false]);
  assert.ok(drift.differences.includes("ip -6 route: missing 'local ::/0 dev lo table 100'"));
  await install(p.pod);
  assert.equal((await status(p.pod)).matches, true, 'install repairs it');

  assert.equal((await remove(p.pod)).removed, true);
  assert.equal((await remove(p.pod)).removed, false);
  assert.equal(ip6RulePref(p), '');
  assert.equal(ip6Table100(p), '');
  assert.equal(sh('ip', 'netns', 'exec', p.pod, 'nft', 'list', 'tables').trim(), '');
});

void test('iptables backend, IPv6 (ip6tables): the same capture, idempotent, clean remove', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const p = makePair(t);
  cleanupRules(t, p);
  const l = await listeners(t, p);
  const opts = { backend: 'iptables' as Backend };
  assert.deepEqual(await install(p.pod, opts), { netns: p.pod, backend: 'iptables', dns: false, ipv6: true, notes: [] });
  await assertIpv6Capture(p, l);
  await assertIpv4Capture(p, l);

  const save6 = (): string => sh('ip', 'netns', 'exec', p.pod, 'ip6tables-save').replace(/^#.*\n/gm, '');
  const first = save6();
  assert.match(first, /^-A AMBIT_OUTPUT ! -d ::1\/128 -p tcp -m mark ! --mark 0x539\/0xfff -j REDIRECT --to-ports 15001$/m);
  await install(p.pod, opts);
  assert.equal(save6(), first, 'a second install gives the same ip6tables rules');
  const st = await status(p.pod, opts);
  assert.deepEqual([st.matches, st.ipv6], [true, { enabled: true, rules: true, ipRule: true, route: true }]);

  // Switching to nftables removes the ip6tables chains too (captured once), and back.
  await install(p.pod);
  assert.doesNotMatch(save6(), /AMBIT/);
  await install(p.pod, opts);
  assert.equal((await remove(p.pod, opts)).removed, true);
  assert.doesNotMatch(save6(), /AMBIT/);
  assert.equal(ip6RulePref(p), '');
  // With the rules gone, the pod reaches the peer directly again.
  assert.equal(await ask(p.podPath, PEER6, 80), 'peer');
});

for (const backend of ['nftables', 'iptables'] as const) {
  void test(`${backend}: a pod netns with IPv6 disabled (sysctl) still gets its IPv4 rules; IPv6 is skipped with a note`, requiresRoot(), async (t) => {
    assertPrivileged(t);
    const p = makePair(t, { podIpv6: false });
    cleanupRules(t, p);
    const l = await listeners(t, p, '0.0.0.0');
    const r = await install(p.pod, { backend });
    assert.deepEqual([r.backend, r.ipv6], [backend, false]);
    assert.match(r.notes.join(), /IPv6 is disabled in this netns/);
    assert.equal(ip6RulePref(p), '', 'no ip -6 rule');
    if (backend === 'nftables') assert.ok(!nftList(p).includes('ip6 '), 'no ip6 rules in the table');
    else assert.doesNotMatch(sh('ip', 'netns', 'exec', p.pod, 'ip6tables-save'), /AMBIT/);
    // IPv4 capture works.
    assert.equal(await ask(p.podPath, PEER4, 80), 'outbound');
    assert.equal(l.outbound.at(-1)?.origDst, `${PEER4}:80`);
    assert.equal(await ask(p.peerPath, POD4, 8080), 'inbound');
    assert.equal(await ask(p.podPath, POD4, 8081, { mark: MARK, from: PEER4 }), 'app');
    // status: installed and up to date for what this netns can have, with the note.
    const st = await status(p.pod, { backend });
    assert.deepEqual([st.installed, st.matches, st.ipv6.enabled], [true, true, false]);
    assert.match(formatRedirectStatus(st), /ipv6 {2}skipped\n {2}note: IPv6 is disabled/);
    assert.equal((await remove(p.pod, { backend })).removed, true);
    assert.equal((await remove(p.pod, { backend })).removed, false);
  });
}
