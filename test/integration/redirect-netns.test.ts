// The capture rules in real network namespaces (root only). Each test makes
// its own pair: amb-rd-<id>-pod (10.250.0.2/24) and amb-rd-<id>-peer
// (10.250.0.1/24) joined by a veth pair created inside them, and deletes both
// afterwards whatever happens. Nothing touches the host's netns or rules.
// Behaviour is asserted with real sockets made in the netns by the addon.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { test, type TestContext } from 'node:test';
import { connectFromNetns, listenInNetns, originalDst } from '../../src/native/sockets.js';
import type { Backend } from '../../src/redirect/constants.js';
import { RedirectNetnsNotFoundError } from '../../src/redirect/errors.js';
import { install, remove, status } from '../../src/redirect/installer.js';
import { normalizeNftListing } from '../../src/redirect/nft-rules.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';

const POD_IP = '10.250.0.2';
const PEER_IP = '10.250.0.1';
const MARK = 0x539;

interface Pair {
  pod: string;
  peer: string;
  podPath: string;
  peerPath: string;
}

const sh = (...argv: string[]): string => execFileSync(argv[0] ?? '', argv.slice(1), { encoding: 'utf8' });

function makePair(t: TestContext): Pair {
  const id = randomBytes(3).toString('hex');
  const pod = `amb-rd-${id}-pod`;
  const peer = `amb-rd-${id}-peer`;
  sh('ip', 'netns', 'add', pod);
  t.after(() => void sh('ip', 'netns', 'del', pod));
  sh('ip', 'netns', 'add', peer);
  t.after(() => void sh('ip', 'netns', 'del', peer));
  // The veth pair is created inside the pod netns and its far end moved to the peer: no host interface.
  sh('ip', '-n', pod, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer);
  for (const [ns, ip] of [
    [pod, POD_IP],
    [peer, PEER_IP],
  ] as const) {
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    sh('ip', '-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0');
    sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
  }
  return { pod, peer, podPath: `/run/netns/${pod}`, peerPath: `/run/netns/${peer}` };
}

interface Hit {
  server: string;
  origDst: string;
}

/** A listener that answers each connection with its own name and records the original destination. */
async function namedListener(t: TestContext, netns: string, address: string, port: number, name: string): Promise<Hit[]> {
  const hits: Hit[] = [];
  const server = await listenInNetns(undefined, { netns, address, port });
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  server.on('connection', (s: net.Socket) => {
    const d = originalDst(undefined, s);
    hits.push({ server: name, origDst: `${d.address}:${d.port}` });
    s.on('error', () => undefined);
    s.end(name);
  });
  return hits;
}

/** Connects from `netns`, returns what the server said (its name), or throws on error/timeout. */
function ask(netns: string, host: string, port: number, mark?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connectFromNetns(undefined, { netns, host, port, ...(mark !== undefined ? { mark } : {}) });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`timeout connecting to ${host}:${port}`));
    }, 5000);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.once('error', (e) => (clearTimeout(timer), reject(e)));
    sock.once('end', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(Buffer.concat(chunks).toString());
    });
  });
}

/** Ambit-style listeners in the pod plus a real service in the peer. */
async function listeners(t: TestContext, p: Pair) {
  return {
    outbound: await namedListener(t, p.podPath, '0.0.0.0', 15001, 'outbound'),
    inbound: await namedListener(t, p.podPath, '0.0.0.0', 15006, 'inbound'),
    hbone: await namedListener(t, p.podPath, '0.0.0.0', 15008, 'hbone'),
    peer: await namedListener(t, p.peerPath, PEER_IP, 80, 'peer'),
  };
}

async function cleanupRules(t: TestContext, p: Pair): Promise<void> {
  // Deleting the netns drops its rules anyway; this also exercises remove on failure paths.
  t.after(async () => void (await remove(p.pod).catch(() => undefined)));
  await Promise.resolve();
}

async function assertOutboundAndInbound(p: Pair, l: Awaited<ReturnType<typeof listeners>>): Promise<void> {
  // (1) outbound TCP from the pod is captured on 15001 with the original destination kept.
  const peerHits = l.peer.length;
  assert.equal(await ask(p.podPath, PEER_IP, 80), 'outbound');
  assert.deepEqual(l.outbound.at(-1), { server: 'outbound', origDst: `${PEER_IP}:80` });
  assert.equal(l.peer.length, peerHits, 'the peer saw nothing');
  // (3) inbound TCP to the pod is captured on 15006, except 15008 which is reached directly.
  assert.equal(await ask(p.peerPath, POD_IP, 8080), 'inbound');
  assert.deepEqual(l.inbound.at(-1), { server: 'inbound', origDst: `${POD_IP}:8080` });
  assert.equal(await ask(p.peerPath, POD_IP, 15008), 'hbone');
  assert.deepEqual(l.hbone.at(-1), { server: 'hbone', origDst: `${POD_IP}:15008` });
}

const nftList = (p: Pair): string => sh('ip', 'netns', 'exec', p.pod, 'nft', 'list', 'table', 'inet', 'ambit');

void test('nftables: outbound and inbound capture, mark 0x539 bypass, loopback untouched', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const p = makePair(t);
  await cleanupRules(t, p);
  const l = await listeners(t, p);
  const local = await namedListener(t, p.podPath, '127.0.0.1', 9090, 'local');
  const self = await namedListener(t, p.podPath, POD_IP, 9091, 'self');
  // Sanity before install: the peer is reachable directly.
  assert.equal(await ask(p.podPath, PEER_IP, 80), 'peer');

  assert.deepEqual(await install(p.pod), { netns: p.pod, backend: 'nftables', dns: false, ipv6: true, notes: [] });
  await assertOutboundAndInbound(p, l);
  // (2) a socket marked 0x539 (ambit's own upstream traffic) bypasses capture and reaches the peer.
  assert.equal(await ask(p.podPath, PEER_IP, 80, MARK), 'peer');
  assert.deepEqual(l.peer.at(-1), { server: 'peer', origDst: `${PEER_IP}:80` });
  // (4) loopback traffic in the pod is not captured; nor is the pod calling its own IP (out via lo).
  assert.equal(await ask(p.podPath, '127.0.0.1', 9090), 'local');
  assert.equal(await ask(p.podPath, POD_IP, 9091), 'self');
  assert.deepEqual([local.at(-1)?.origDst, self.at(-1)?.origDst], ['127.0.0.1:9090', `${POD_IP}:9091`]);
  assert.equal(l.outbound.length, 1, 'only the one unmarked outbound connection was captured');
  // Replies to ambit's spoofed-source connections are steered back by connmark + table 100.
  await assertSpoofedReplyReturns(p);
  assert.equal(l.inbound.length, 1, 'the spoofed connection to the app was not captured');
});

/**
 * The connmark path: ambit's inbound side connects to the app with the
 * client's IP as source (transparent socket, mark 0x539). The app's replies
 * are addressed to the peer, so without connmark 0x111 + ip rule 32764 +
 * table 100 they would leave via eth0; with them they come back to us.
 */
async function assertSpoofedReplyReturns(p: Pair): Promise<void> {
  const app = await listenInNetns(undefined, { netns: p.podPath, address: '0.0.0.0', port: 8081 });
  try {
    const seen = new Promise<string>((resolve) => app.once('connection', (s: net.Socket) => (resolve(s.remoteAddress ?? ''), s.on('error', () => undefined), s.end('app'))));
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = connectFromNetns(undefined, { netns: p.podPath, host: POD_IP, port: 8081, mark: MARK, transparent: true, freebind: true, bindAddress: PEER_IP });
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => (sock.destroy(), reject(new Error('no reply: the app answered via eth0'))), 3000);
      sock.on('data', (c: Buffer) => chunks.push(c));
      sock.once('error', (e) => (clearTimeout(timer), reject(e)));
      sock.once('end', () => (clearTimeout(timer), sock.destroy(), resolve(Buffer.concat(chunks).toString())));
    });
    assert.equal(reply, 'app');
    assert.equal(await seen, PEER_IP, 'the app saw the original client address');
  } finally {
    await new Promise<void>((resolve) => app.close(() => resolve()));
  }
}

void test('nftables: install is idempotent, status checks it, remove twice leaves nothing', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const p = makePair(t);
  await cleanupRules(t, p);
  const before = await status(p.podPath);
  assert.equal(before.installed, false);
  assert.equal(before.matches, false);

  await install(p.pod);
  const first = normalizeNftListing(nftList(p));
  await install(p.podPath); // by path this time
  assert.deepEqual(normalizeNftListing(nftList(p)), first, 'a second install gives the same ruleset');
  assert.equal(sh('ip', '-n', p.pod, 'rule', 'show', 'pref', '32764').trim().split('\n').length, 1, 'one ip rule, not two');
  const st = await status(p.pod);
  assert.deepEqual(st, {
    netns: p.pod,
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
  const wantDns = await status(p.pod, { dns: true });
  assert.equal(wantDns.matches, false, 'status --dns notices that DNS capture is not installed');

  // DNS on, then off again: the raw chains come and go with the same atomic replace.
  await install(p.pod, { dns: true });
  assert.match(nftList(p), /redirect to :15053/);
  assert.equal((await status(p.pod, { dns: true })).matches, true);
  await install(p.pod);
  assert.deepEqual(normalizeNftListing(nftList(p)), first);

  // Drift is reported.
  sh('ip', 'netns', 'exec', p.pod, 'nft', 'add', 'rule', 'inet', 'ambit', 'nat-output', 'tcp', 'dport', '9', 'accept');
  const drift = await status(p.pod);
  assert.equal(drift.installed, true);
  assert.equal(drift.matches, false);
  assert.ok(drift.differences.some((d) => d.includes('tcp dport 9 accept')), drift.differences.join('\n'));

  assert.deepEqual(await remove(p.pod), { netns: p.pod, removed: true });
  assert.deepEqual(await remove(p.pod), { netns: p.pod, removed: false });
  assert.equal(sh('ip', 'netns', 'exec', p.pod, 'nft', 'list', 'tables').trim(), '');
  assert.equal(sh('ip', '-n', p.pod, 'rule', 'show', 'pref', '32764').trim(), '');
  assert.equal(sh('ip', '-n', p.pod, '-6', 'rule', 'show', 'pref', '32764').trim(), '');
  assert.equal(sh('ip', '-n', p.pod, 'route', 'show', 'table', 'all', 'table', '100').trim(), '');
  assert.equal(sh('ip', '-n', p.pod, '-6', 'route', 'show', 'table', '100').trim(), '');
  const after = await status(p.pod);
  assert.deepEqual([after.rules, after.ipRule, after.route, after.installed], [false, false, false, false]);
});

void test('iptables backend: the same capture, idempotent install, clean remove', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const p = makePair(t);
  await cleanupRules(t, p);
  const l = await listeners(t, p);
  const opts = { backend: 'iptables' as Backend };
  assert.deepEqual(await install(p.pod, opts), { netns: p.pod, backend: 'iptables', dns: false, ipv6: true, notes: [] });
  await assertOutboundAndInbound(p, l);
  assert.equal(await ask(p.podPath, PEER_IP, 80, MARK), 'peer');
  await assertSpoofedReplyReturns(p);

  const save = (): string => sh('ip', 'netns', 'exec', p.pod, 'iptables-save').replace(/^#.*\n/gm, '');
  const first = save();
  await install(p.pod, opts);
  assert.equal(save(), first, 'a second install gives the same rules (no duplicate jumps)');
  assert.equal((await status(p.pod, opts)).matches, true);
  await install(p.pod, { ...opts, dns: true });
  assert.match(save(), /-j CT --zone 1/);
  await install(p.pod, opts);
  assert.equal(save().replace(/\*raw[\s\S]*?COMMIT\n/, ''), first.replace(/\*raw[\s\S]*?COMMIT\n/, ''));
  assert.equal(save().match(/^-A PREROUTING -j AMBIT_PRERT$/gm)?.length, 2, 'one jump in mangle and one in nat, none left in raw');

  // Switching to nftables replaces the iptables rules (traffic is captured once).
  await install(p.pod);
  assert.doesNotMatch(save(), /AMBIT/);
  await install(p.pod, opts);
  assert.equal(sh('ip', 'netns', 'exec', p.pod, 'nft', 'list', 'tables').includes('inet ambit'), false);

  assert.equal((await remove(p.pod, opts)).removed, true);
  assert.equal((await remove(p.pod, opts)).removed, false);
  assert.doesNotMatch(save(), /AMBIT/);
  assert.equal(sh('ip', '-n', p.pod, 'rule', 'show', 'pref', '32764').trim(), '');
  // With the rules gone, the pod reaches the peer directly again.
  assert.equal(await ask(p.podPath, PEER_IP, 80), 'peer');
});

void test('a nonexistent netns is a typed error that names it', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const name = `amb-rd-${randomBytes(3).toString('hex')}-missing`;
  for (const op of [() => install(name), () => remove(name), () => status(name), () => install(name, { backend: 'iptables' })]) {
    await assert.rejects(op(), (e: unknown) => e instanceof RedirectNetnsNotFoundError && e.code === 'AMBIT_ERR_REDIRECT_NETNS_NOT_FOUND' && e.netns === name && e.message.includes(name));
  }
  await assert.rejects(status('/proc/999999999/ns/net'), RedirectNetnsNotFoundError);
});
