// The real addon against real network namespaces (root only). Every test makes
// its own netns and deletes it afterwards; all traffic stays on `lo` inside it,
// except one deliberately refused connect to the host's 127.0.0.1.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { NativeSyscallError } from '../../src/native/errors.js';
import { loadNativeBinding } from '../../src/native/load.js';
import { connectFromNetns, listenInNetns, markOf, originalDst, socketFd } from '../../src/native/sockets.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';

const MARK = 0x539;

/** The netns of the thread running JS; must never change (see native/netns_socket.cc). */
const threadNetns = (): string => readlinkSync('/proc/thread-self/ns/net');

/** Creates a throwaway netns with lo up; deleted after the test whatever happens. */
function makeNetns(t: TestContext): string {
  const name = `amb-nt-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', name]);
  t.after(() => execFileSync('ip', ['netns', 'del', name]));
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

const nsPath = (name: string): string => `/var/run/netns/${name}`;

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Sends `payload`, half-closes, and collects everything until the peer ends. */
function roundTrip(sock: net.Socket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.once('error', reject);
    sock.once('end', () => resolve(Buffer.concat(chunks)));
    sock.once('connect', () => sock.end(payload));
  });
}

function echoServer(server: net.Server): void {
  server.on('connection', (s) => s.pipe(s));
}

void test('a listener made in a netns is reachable only from inside it, and bytes echo intact', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const ns = makeNetns(t);
  const before = threadNetns();
  const server = await listenInNetns(undefined, { netns: nsPath(ns), address: '127.0.0.1', port: 0 });
  t.after(() => closeServer(server));
  assert.equal(threadNetns(), before);
  let accepted = 0;
  server.on('connection', () => accepted++);
  echoServer(server);
  const { port } = server.address() as net.AddressInfo;

  // From the host netns: the port must not lead to our server.
  const hostErr = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('error', resolve);
    s.once('connect', () => (s.destroy(), resolve(undefined)));
  });
  assert.equal(hostErr?.code, 'ECONNREFUSED');
  assert.equal(accepted, 0);

  const payload = randomBytes(256 * 1024);
  const client = connectFromNetns(undefined, { netns: nsPath(ns), host: '127.0.0.1', port });
  t.after(() => client.destroy());
  assert.equal(threadNetns(), before);
  const echoed = await roundTrip(client, payload);
  assert.equal(accepted, 1);
  assert.ok(echoed.equals(payload), 'echoed bytes differ');
  assert.equal(threadNetns(), before);
});

void test('the calling thread stays in its netns after failing calls', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const ns = makeNetns(t);
  const binding = loadNativeBinding();
  const before = threadNetns();

  const missing = `/var/run/netns/amb-nt-missing-${randomBytes(4).toString('hex')}`;
  await assert.rejects(listenInNetns(binding, { netns: missing, address: '127.0.0.1', port: 0 }), (err) => {
    assert.ok(err instanceof NativeSyscallError);
    assert.equal(err.errno, 'ENOENT');
    assert.equal(err.syscall, 'open');
    return true;
  });
  assert.equal(threadNetns(), before);

  // Fails after setns succeeded: 10.255.255.1 is not configured in the new netns.
  await assert.rejects(listenInNetns(binding, { netns: nsPath(ns), address: '10.255.255.1', port: 0 }), (err) => {
    assert.ok(err instanceof NativeSyscallError);
    assert.equal(err.errno, 'EADDRNOTAVAIL');
    assert.equal(err.syscall, 'bind');
    return true;
  });
  assert.equal(threadNetns(), before);

  assert.throws(() => binding.listenTcpInNetns(nsPath(ns), 'not-an-ip', 0), TypeError);
  assert.throws(() => binding.socketTcpInNetns(nsPath(ns), 4, { bindAddress: '::1' }), TypeError);
  assert.equal(threadNetns(), before);
});

void test('SO_MARK set through options or setMark reads back with getMark', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const ns = makeNetns(t);
  const binding = loadNativeBinding();
  const server = await listenInNetns(binding, { netns: nsPath(ns), address: '127.0.0.1', port: 0, mark: MARK, reusePort: true });
  t.after(() => closeServer(server));
  assert.equal(markOf(binding, server), MARK);

  const { port } = server.address() as net.AddressInfo;
  const client = connectFromNetns(binding, { netns: nsPath(ns), host: '127.0.0.1', port, mark: MARK });
  t.after(() => client.destroy());
  assert.equal(markOf(binding, client), MARK);

  const fd = binding.socketTcpInNetns(nsPath(ns), 6);
  t.after(() => binding.closeFd(fd));
  assert.equal(binding.getMark(fd), 0);
  binding.setMark(fd, MARK);
  assert.equal(binding.getMark(fd), MARK);
});

void test('transparent, freebind and a non-local source bind work as root', requiresRoot(), (t) => {
  assertPrivileged(t);
  const ns = makeNetns(t);
  const binding = loadNativeBinding();
  const fd = binding.socketTcpInNetns(nsPath(ns), 4, { transparent: true, freebind: true, bindAddress: '10.9.9.9', mark: MARK });
  t.after(() => binding.closeFd(fd));
  // Unconnected, so there is no conntrack entry: the fallback reports the bound
  // address, with port 0 because IP_BIND_ADDRESS_NO_PORT defers it to connect().
  assert.deepEqual(binding.getOriginalDst(fd), { address: '10.9.9.9', port: 0, family: 4 });
  assert.equal(binding.getMark(fd), MARK);
});

/** Accepts one connection and resolves with its originalDst. */
function nextOriginalDst(server: net.Server): Promise<ReturnType<typeof originalDst>> {
  return new Promise((resolve, reject) => {
    server.once('connection', (s) => {
      try {
        resolve(originalDst(undefined, s));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      } finally {
        s.destroy();
      }
    });
  });
}

async function connectOnce(ns: string, host: string, port: number): Promise<void> {
  const sock = connectFromNetns(undefined, { netns: nsPath(ns), host, port });
  try {
    await new Promise((resolve, reject) => (sock.once('connect', resolve), sock.once('error', reject)));
  } finally {
    sock.destroy();
  }
}

void test('getOriginalDst reports the pre-REDIRECT destination (IPv4 and IPv6)', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const ns = makeNetns(t);
  const v4 = await listenInNetns(undefined, { netns: nsPath(ns), address: '127.0.0.1', port: 0 });
  t.after(() => closeServer(v4));
  const v6 = await listenInNetns(undefined, { netns: nsPath(ns), address: '::1', port: 0 });
  t.after(() => closeServer(v6));
  const p4 = (v4.address() as net.AddressInfo).port;
  const p6 = (v6.address() as net.AddressInfo).port;
  // Only inside the test netns. A chain on one line fails to parse in bookworm's nft.
  const rules = [
    'table ip t {', '  chain out {', '    type nat hook output priority -100;', `    tcp dport 9999 redirect to :${p4}`, '  }', '}',
    'table ip6 t6 {', '  chain out {', '    type nat hook output priority -100;', `    tcp dport 9999 redirect to :${p6}`, '  }', '}',
  ].join('\n');
  execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: rules });
  execFileSync('ip', ['-n', ns, 'addr', 'add', 'fd00:a3b::2/128', 'dev', 'lo', 'nodad']);

  let got = nextOriginalDst(v4);
  await connectOnce(ns, '127.0.0.2', 9999);
  assert.deepEqual(await got, { address: '127.0.0.2', port: 9999, family: 4 });

  got = nextOriginalDst(v6);
  await connectOnce(ns, 'fd00:a3b::2', 9999);
  assert.deepEqual(await got, { address: 'fd00:a3b::2', port: 9999, family: 6 });

  // Not redirected: the accepted socket's own local address.
  got = nextOriginalDst(v4);
  await connectOnce(ns, '127.0.0.1', p4);
  assert.deepEqual(await got, { address: '127.0.0.1', port: p4, family: 4 });
});

void test('getOriginalDst falls back to the local address without any conntrack entry', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const ns = makeNetns(t); // no nft rules here, so conntrack does not track this netns
  const server = await listenInNetns(undefined, { netns: nsPath(ns), address: '127.0.0.1', port: 0 });
  t.after(() => closeServer(server));
  const { port } = server.address() as net.AddressInfo;
  const got = nextOriginalDst(server);
  await connectOnce(ns, '127.0.0.1', port);
  assert.deepEqual(await got, { address: '127.0.0.1', port, family: 4 });
});

void test('nsType identifies netns fds; other fds throw ENOTTY', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const ns = makeNetns(t);
  const binding = loadNativeBinding();
  const nsFd = openSync(nsPath(ns), 'r');
  t.after(() => closeSync(nsFd));
  assert.equal(binding.nsType(nsFd), binding.CLONE_NEWNET);

  const fileFd = openSync('/proc/self/status', 'r');
  t.after(() => closeSync(fileFd));
  assert.throws(() => binding.nsType(fileFd), { code: 'ENOTTY', syscall: 'ioctl' });
  // Handing a non-netns fd as netns fails at setns and leaves the thread alone.
  const before = threadNetns();
  assert.throws(() => binding.listenTcpInNetns(fileFd, '127.0.0.1', 0), { code: 'EINVAL', syscall: 'setns' });
  assert.equal(threadNetns(), before);

  // A netns given as an fd works like a path.
  const server = await listenInNetns(binding, { netns: nsFd, address: '127.0.0.1', port: 0 });
  t.after(() => closeServer(server));
  echoServer(server);
  const { port } = server.address() as net.AddressInfo;
  const client = connectFromNetns(binding, { netns: nsFd, host: '127.0.0.1', port });
  t.after(() => client.destroy());
  assert.equal(binding.nsType(nsFd), binding.CLONE_NEWNET, 'a borrowed netns fd must stay open');
  assert.notEqual(socketFd(client), nsFd);
  assert.equal((await roundTrip(client, Buffer.from('ping'))).toString(), 'ping');
});
