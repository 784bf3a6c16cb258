// Logic of the native layer without root or a compiled addon: error wrapping,
// the loader's diagnostics, and the sockets facade driven by FakeNativeBinding.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { NativeFdUnavailableError, NativeLoadError, NativeSyscallError, wrapNativeError } from '../../src/native/errors.js';
import { FakeNativeBinding, fakeNativeError } from '../../src/native/fake.js';
import { loadNativeBindingFrom, nativeCandidates, packageRoot } from '../../src/native/load.js';
import { connectFromNetns, listenInNetns, markOf, originalDst, socketFd } from '../../src/native/sockets.js';

void test('wrapNativeError turns an addon error into an actionable NativeSyscallError', () => {
  const raw = fakeNativeError('EPERM', 'setns');
  const err = wrapNativeError(raw, { netns: '/var/run/netns/x' });
  assert.ok(err instanceof NativeSyscallError);
  assert.equal(err.code, 'AMBIT_ERR_NATIVE_SYSCALL');
  assert.equal(err.syscall, 'setns');
  assert.equal(err.errno, 'EPERM');
  assert.equal(err.errnoNumber, 1);
  assert.equal(err.message, 'setns into /var/run/netns/x failed: EPERM; the agent needs CAP_SYS_ADMIN and CAP_NET_ADMIN');
  assert.equal(err.cause, raw);
});

void test('wrapNativeError names the option and fd of setsockopt/getsockopt failures', () => {
  const err = wrapNativeError(fakeNativeError('EPERM', 'setsockopt', 'SO_MARK'), { fd: 7 });
  assert.ok(err instanceof NativeSyscallError);
  assert.equal(err.detail, 'SO_MARK');
  assert.equal(err.message, 'setting SO_MARK on fd 7 failed: EPERM; SO_MARK needs CAP_NET_ADMIN');
});

void test('wrapNativeError maps an UNKNOWN code from the errno number', () => {
  const raw = Object.assign(new Error('bind failed: UNKNOWN'), { code: 'UNKNOWN', errno: 98, syscall: 'bind' });
  const err = wrapNativeError(raw, { netns: 3, address: '::1', port: 80 });
  assert.ok(err instanceof NativeSyscallError);
  assert.equal(err.errno, 'EADDRINUSE');
  assert.match(err.message, /^bind to \[::1\]:80 in netns fd 3 failed: EADDRINUSE; /);
});

void test('wrapNativeError leaves TypeErrors alone and converts non-errors', () => {
  const te = new TypeError('port must be an integer');
  assert.equal(wrapNativeError(te), te);
  const e = wrapNativeError('boom');
  assert.ok(e instanceof Error);
  assert.ok(!(e instanceof NativeSyscallError));
});

void test('listenInNetns rejects with NativeSyscallError and opens no server when the native call fails', async () => {
  const fake = new FakeNativeBinding(new Set(['/var/run/netns/a']));
  await assert.rejects(listenInNetns(fake, { netns: '/var/run/netns/missing', address: '127.0.0.1', port: 15001 }), (err) => {
    assert.ok(err instanceof NativeSyscallError);
    assert.equal(err.syscall, 'open');
    assert.equal(err.errno, 'ENOENT');
    assert.match(err.message, /^opening netns \/var\/run\/netns\/missing failed: ENOENT; the network namespace does not exist/);
    return true;
  });
  fake.failNext('listenTcpInNetns', fakeNativeError('EADDRINUSE', 'bind'));
  await assert.rejects(listenInNetns(fake, { netns: '/var/run/netns/a', address: '127.0.0.1', port: 15001 }), /bind to 127\.0\.0\.1:15001 in \/var\/run\/netns\/a failed: EADDRINUSE/);
  assert.equal(fake.openFds.size, 0);
});

void test('listenInNetns passes the native options through and nothing else', async () => {
  const fake = new FakeNativeBinding();
  fake.failNext('listenTcpInNetns', fakeNativeError('EPERM', 'setsockopt', 'IP_TRANSPARENT'));
  await assert.rejects(
    listenInNetns(fake, { netns: '/x', address: '::', port: 15008, reusePort: true, transparent: true, mark: 0x539, server: { allowHalfOpen: true } }),
    NativeSyscallError,
  );
  assert.deepEqual(fake.calls[0], { method: 'listenTcpInNetns', args: ['/x', '::', 15008, { reusePort: true, transparent: true, mark: 0x539 }] });
});

void test('connectFromNetns validates host and port before creating a socket, and wraps native errors', () => {
  const fake = new FakeNativeBinding();
  assert.throws(() => connectFromNetns(fake, { netns: '/x', host: 'example.com', port: 80 }), TypeError);
  assert.throws(() => connectFromNetns(fake, { netns: '/x', host: '10.0.0.1', port: 0 }), RangeError);
  assert.equal(fake.calls.length, 0);
  fake.failNext('socketTcpInNetns', fakeNativeError('EPERM', 'setns'));
  assert.throws(() => connectFromNetns(fake, { netns: '/x', host: 'fd00::1', port: 80 }), (err) => {
    assert.ok(err instanceof NativeSyscallError);
    assert.equal(err.syscall, 'setns');
    return true;
  });
  assert.deepEqual(fake.calls[0]?.args.slice(0, 2), ['/x', 6]);
});

void test('FakeNativeBinding emulates marks, fd bookkeeping, nsType and argument checks', () => {
  const fake = new FakeNativeBinding();
  const fd = fake.socketTcpInNetns('/x', 4, { mark: 0x539 });
  assert.equal(fake.getMark(fd), 0x539);
  fake.setMark(fd, 7);
  assert.equal(fake.getMark(fd), 7);
  assert.throws(() => fake.nsType(fd), { code: 'ENOTTY', syscall: 'ioctl' });
  fake.addNetnsFd(3);
  assert.equal(fake.nsType(3), fake.CLONE_NEWNET);
  assert.throws(() => fake.listenTcpInNetns(4, '127.0.0.1', 1), { code: 'EINVAL', syscall: 'setns' });
  assert.throws(() => fake.listenTcpInNetns('/x', 'localhost', 1), TypeError);
  assert.throws(() => fake.socketTcpInNetns('/x', 4, { bindAddress: '::1' }), TypeError);
  fake.closeFd(fd);
  assert.throws(() => fake.closeFd(fd), { code: 'EBADF', syscall: 'close' });
});

void test('originalDst and markOf read the fd of a real loopback socket through the binding', async (t) => {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const { port } = server.address() as net.AddressInfo;
  const client = net.connect(port, '127.0.0.1');
  t.after(() => client.destroy());
  await new Promise((resolve) => client.once('connect', resolve));

  const fake = new FakeNativeBinding();
  const fd = socketFd(client);
  fake.setOriginalDst(fd, { address: '10.0.0.9', port: 80, family: 4 });
  fake.setMark(fd, 0x539);
  assert.deepEqual(originalDst(fake, client), { address: '10.0.0.9', port: 80, family: 4 });
  assert.equal(markOf(fake, client), 0x539);
  assert.equal(typeof socketFd(server), 'number');
});

void test('socketFd fails clearly for a socket without an fd', () => {
  assert.throws(() => socketFd(new net.Socket()), (err) => {
    assert.ok(err instanceof NativeFdUnavailableError);
    assert.equal(err.code, 'AMBIT_ERR_NATIVE_FD_UNAVAILABLE');
    return true;
  });
});

void test('the loader lists every path it tried and why each failed', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ambit-native-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const missing = path.join(dir, 'Release', 'ambit_native.node');
  const broken = path.join(dir, 'broken.node');
  writeFileSync(broken, 'not an ELF file');
  assert.throws(() => loadNativeBindingFrom([missing, broken]), (err) => {
    assert.ok(err instanceof NativeLoadError);
    assert.equal(err.code, 'AMBIT_ERR_NATIVE_LOAD');
    assert.deepEqual(err.tried, [missing, broken]);
    assert.ok(err.message.startsWith("the native addon is not built or cannot be loaded; run 'npm install'"));
    assert.ok(err.message.includes(`${missing} (not found)`));
    assert.ok(err.message.includes(`${broken} (`));
    assert.ok(err.cause instanceof Error);
    return true;
  });
});

void test('the loader looks in build/Release then build/Debug under the package root', () => {
  const root = packageRoot();
  assert.deepEqual(nativeCandidates(root), [
    path.join(root, 'build', 'Release', 'ambit_native.node'),
    path.join(root, 'build', 'Debug', 'ambit_native.node'),
  ]);
  // Compiled tests run from dist/test/unit; the root must still be the checkout.
  assert.equal((JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string }).name, 'ambit');
});
