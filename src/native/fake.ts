/**
 * A pure-TS stand-in for the addon, for unit tests of logic that must run
 * without root, netns or a compiled addon.
 *
 * Emulates:
 * - argument validation (TypeError for non-IP addresses, bad ports/marks/fds);
 * - errors shaped exactly like the addon's (Error + code/errno/syscall/detail),
 *   both programmed (`failNext`) and natural ones: ENOENT/'open' for netns paths
 *   not in `netnsPaths` (when given), EBADF for unknown fds, ENOTTY/'ioctl' from
 *   nsType on fds not registered with `addNetnsFd`;
 * - SO_MARK bookkeeping per fd (from opts or setMark);
 * - original destinations that tests program per fd (`setOriginalDst`);
 * - SO_LINGER bookkeeping per fd (`lingers`; the kernel socket is untouched).
 *
 * - seqpacket sockets in memory: listen/connect by path, accept queues,
 *   datagrams with fds (a passed fd arrives as a new fake fd; netns fds stay
 *   netns fds), truncation at maxBytes, EOF when the peer closes, EAGAIN once
 *   a peer holds `seqpacketCapacity` unread datagrams; and a level-triggered
 *   fake Poller driven by setImmediate.
 *
 * - spliceStart always throws ENOSYS (syscall 'splice'), so callers take
 *   their copy fallback; dupFd hands out a new fake fd for a known one.
 *
 * Does NOT emulate: real sockets or namespaces. Fds are fake numbers from
 * 10000 up, so they cannot be handed to net.Server/net.Socket; the sockets.ts
 * facade therefore works with the fake only up to the native call (error paths)
 * and for originalDst/markOf on real loopback sockets whose fd a test programs.
 */
import { isIP } from 'node:net';
import { constants as osConstants } from 'node:os';
import type {
  ListenTcpOptions,
  NativeBinding,
  NativeErrorProps,
  NativePoller,
  NativePollerConstructor,
  NetnsRef,
  SeqpacketDatagram,
  SeqpacketEof,
  SocketAddress,
  SocketTcpOptions,
} from './binding.js';

type Method = Exclude<keyof NativeBinding, 'CLONE_NEWNET' | 'Poller'>;

interface FakeSeqpacket {
  path?: string;
  /** Listening sockets: accepted-side fds waiting for seqpacketAccept. */
  pending?: number[];
  peer?: number;
  inbox: { data: Buffer; fds: number[] }[];
  peerClosed: boolean;
}

interface FakePollerState {
  fd: number;
  mask: number;
  callback: (status: number, events: number) => void;
}

export interface FakeCall {
  method: Method;
  args: unknown[];
}

/** Builds an Error like the addon throws, e.g. fakeNativeError('EPERM', 'setns'). */
export function fakeNativeError(code: string, syscall: string, detail?: string): Error & NativeErrorProps {
  const errno = (osConstants.errno as Record<string, number | undefined>)[code] ?? 0;
  const err = new Error(`${syscall}${detail ? ` ${detail}` : ''} failed: ${code}`) as Error & NativeErrorProps;
  Object.assign(err, { code, errno, syscall }, detail === undefined ? {} : { detail });
  return err;
}

export class FakeNativeBinding implements NativeBinding {
  readonly CLONE_NEWNET = 0x40000000;
  readonly calls: FakeCall[] = [];
  /** Fds handed out and not yet closed. */
  readonly openFds = new Set<number>();
  private nextFd = 10000;
  private readonly failures = new Map<Method, Error[]>();
  private readonly marks = new Map<number, number>();
  private readonly origDst = new Map<number, SocketAddress>();
  private readonly netnsFds = new Set<number>();
  private readonly seq = new Map<number, FakeSeqpacket>();
  private readonly seqPaths = new Map<string, number>();
  private readonly pollers = new Set<FakePollerState>();
  private kickScheduled = false;
  /** Unread datagrams a fake seqpacket peer holds before sends get EAGAIN (-1). */
  seqpacketCapacity = 64;
  readonly Poller: NativePollerConstructor;

  /** @param netnsPaths if given, only these netns paths "exist"; others fail with ENOENT like open(2). */
  constructor(private readonly netnsPaths?: ReadonlySet<string>) {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const binding = this;
    this.Poller = class FakePoller implements NativePoller {
      private readonly state: FakePollerState;
      private closed = false;
      constructor(readonly fd: number, callback: (status: number, events: number) => void) {
        checkInt(fd, 'fd', 0, 0x7fffffff);
        if (typeof callback !== 'function') throw new TypeError('new Poller(fd, callback) needs a function');
        this.state = { fd, mask: 0, callback };
      }
      start(events: number): void {
        if (this.closed) throw new Error('Poller is closed');
        checkInt(events, 'events', 1, 7);
        this.state.mask = events;
        binding.pollers.add(this.state);
        binding.kick();
      }
      stop(): void {
        binding.pollers.delete(this.state);
      }
      close(): void {
        this.closed = true;
        binding.pollers.delete(this.state);
      }
    };
  }

  /** Makes the next call of `method` throw `err` (queue; one error per call). */
  failNext(method: Method, err: Error): this {
    const queue = this.failures.get(method) ?? [];
    queue.push(err);
    this.failures.set(method, queue);
    return this;
  }

  setOriginalDst(fd: number, addr: SocketAddress): this {
    this.origDst.set(fd, addr);
    return this;
  }

  /** Declares `fd` a network-namespace fd for nsType and numeric netns refs. */
  addNetnsFd(fd: number): this {
    this.netnsFds.add(fd);
    return this;
  }

  listenTcpInNetns(netns: NetnsRef, address: string, port: number, opts: ListenTcpOptions = {}): number {
    this.enter('listenTcpInNetns', [netns, address, port, opts]);
    this.checkNetns(netns);
    if (isIP(address) === 0) throw new TypeError('address must be an IPv4 or IPv6 literal');
    checkInt(port, 'port', 0, 65535);
    return this.newFd(opts.mark);
  }

  socketTcpInNetns(netns: NetnsRef, family: 4 | 6, opts: SocketTcpOptions = {}): number {
    this.enter('socketTcpInNetns', [netns, family, opts]);
    this.checkNetns(netns);
    if (family !== 4 && family !== 6) throw new TypeError('family must be 4 or 6');
    if (opts.bindAddress !== undefined && isIP(opts.bindAddress) !== family) {
      throw new TypeError('bindAddress does not match family');
    }
    if (opts.bindPort !== undefined) checkInt(opts.bindPort, 'bindPort', 0, 65535);
    return this.newFd(opts.mark);
  }

  getOriginalDst(fd: number): SocketAddress {
    this.enter('getOriginalDst', [fd]);
    const addr = this.origDst.get(fd);
    // Unlike the kernel there is no local address to fall back to: a test that
    // forgot to program an answer should fail loudly, not get a made-up one.
    if (!addr) throw new Error(`FakeNativeBinding: no original destination programmed for fd ${fd}`);
    return { ...addr };
  }

  setMark(fd: number, mark: number): void {
    this.enter('setMark', [fd, mark]);
    checkInt(mark, 'mark', 0, 0xffffffff);
    this.marks.set(fd, mark);
  }

  getMark(fd: number): number {
    this.enter('getMark', [fd]);
    return this.marks.get(fd) ?? 0;
  }

  /** SO_LINGER per fd as last set (real sockets' fds work too: nothing is applied to them). */
  readonly lingers = new Map<number, { on: boolean; seconds: number }>();

  setLinger(fd: number, on: boolean, seconds = 0): void {
    this.enter('setLinger', [fd, on, seconds]);
    if (typeof on !== 'boolean') throw new TypeError('on must be a boolean');
    checkInt(seconds, 'seconds', 0, 3600);
    this.lingers.set(fd, { on, seconds: on ? seconds : 0 });
  }

  getLinger(fd: number): { on: boolean; seconds: number } {
    this.enter('getLinger', [fd]);
    return { ...(this.lingers.get(fd) ?? { on: false, seconds: 0 }) };
  }

  nsType(fd: number): number {
    this.enter('nsType', [fd]);
    if (!this.netnsFds.has(fd)) throw fakeNativeError('ENOTTY', 'ioctl', 'NS_GET_NSTYPE');
    return this.CLONE_NEWNET;
  }

  closeFd(fd: number): void {
    this.enter('closeFd', [fd]);
    if (!this.openFds.delete(fd)) throw fakeNativeError('EBADF', 'close');
    this.marks.delete(fd);
    this.lingers.delete(fd);
    this.netnsFds.delete(fd);
    const s = this.seq.get(fd);
    if (s) {
      this.seq.delete(fd);
      if (s.path !== undefined && this.seqPaths.get(s.path) === fd) this.seqPaths.delete(s.path);
      for (const p of s.pending ?? []) this.dropSeq(p);
      for (const m of s.inbox) for (const f of m.fds) this.openFds.delete(f);
      const peer = s.peer === undefined ? undefined : this.seq.get(s.peer);
      if (peer) peer.peerClosed = true;
      this.kick();
    }
  }

  spliceStart(fdA: number, fdB: number, callback: unknown): void {
    this.enter('spliceStart', [fdA, fdB, callback]);
    checkInt(fdB, 'fdB', 0, 0x7fffffff);
    if (typeof callback !== 'function') throw new TypeError('callback must be a function');
    throw fakeNativeError('ENOSYS', 'splice');
  }

  dupFd(fd: number): number {
    this.enter('dupFd', [fd]);
    if (!this.openFds.has(fd) && !this.netnsFds.has(fd)) throw fakeNativeError('EBADF', 'fcntl');
    const dup = this.newFd(this.marks.get(fd));
    if (this.netnsFds.has(fd)) this.netnsFds.add(dup);
    return dup;
  }

  seqpacketListen(path: string, backlog: number): number {
    this.enter('seqpacketListen', [path, backlog]);
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
    checkInt(backlog, 'backlog', 1, 0x7fffffff);
    if (this.seqPaths.has(path)) throw fakeNativeError('EADDRINUSE', 'bind', path);
    const fd = this.newFd(undefined);
    this.seq.set(fd, { path, pending: [], inbox: [], peerClosed: false });
    this.seqPaths.set(path, fd);
    return fd;
  }

  seqpacketConnect(path: string): number {
    this.enter('seqpacketConnect', [path]);
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
    const listener = this.seq.get(this.seqPaths.get(path) ?? -1);
    if (!listener?.pending) throw fakeNativeError('ENOENT', 'connect', path);
    const client = this.newFd(undefined);
    const server = this.newFd(undefined);
    this.seq.set(client, { peer: server, inbox: [], peerClosed: false });
    this.seq.set(server, { peer: client, inbox: [], peerClosed: false });
    listener.pending.push(server);
    this.kick();
    return client;
  }

  seqpacketAccept(fd: number): number {
    this.enter('seqpacketAccept', [fd]);
    const s = this.seqOf(fd, 'accept4');
    if (!s.pending) throw fakeNativeError('EINVAL', 'accept4');
    return s.pending.shift() ?? -1;
  }

  seqpacketSend(fd: number, data: Buffer, passFd?: number): number {
    this.enter('seqpacketSend', [fd, data, passFd]);
    if (!Buffer.isBuffer(data)) throw new TypeError('data must be a Buffer');
    const s = this.seqOf(fd, 'sendmsg');
    const peer = s.peer === undefined ? undefined : this.seq.get(s.peer);
    if (!peer || s.peerClosed) throw fakeNativeError('EPIPE', 'sendmsg');
    if (peer.inbox.length >= this.seqpacketCapacity) return -1;
    const fds: number[] = [];
    if (passFd !== undefined) {
      checkInt(passFd, 'passFd', 0, 0x7fffffff);
      if (!this.openFds.has(passFd) && !this.netnsFds.has(passFd)) throw fakeNativeError('EBADF', 'sendmsg');
      const dup = this.newFd(this.marks.get(passFd));
      if (this.netnsFds.has(passFd)) this.netnsFds.add(dup);
      fds.push(dup);
    }
    peer.inbox.push({ data: Buffer.from(data), fds });
    this.kick();
    return data.length;
  }

  /** Test hook: queues a datagram carrying `fds` (fake fds made here) for `fd`, e.g. to send 2 fds. */
  injectSeqpacket(fd: number, data: Buffer, fdCount: number): number[] {
    const s = this.seqOf(fd, 'recvmsg');
    const fds = Array.from({ length: fdCount }, () => this.newFd(undefined));
    s.inbox.push({ data: Buffer.from(data), fds });
    this.kick();
    return fds;
  }

  seqpacketRecv(fd: number, maxBytes: number): SeqpacketDatagram | SeqpacketEof | null {
    this.enter('seqpacketRecv', [fd, maxBytes]);
    checkInt(maxBytes, 'maxBytes', 1, 64 * 1024 * 1024);
    const s = this.seqOf(fd, 'recvmsg');
    const m = s.inbox.shift();
    if (!m) return s.peerClosed ? { eof: true } : null;
    this.kick(); // the sender may be writable again
    return { data: m.data.subarray(0, maxBytes), fds: m.fds, truncated: m.data.length > maxBytes };
  }

  private seqOf(fd: number, syscall: string): FakeSeqpacket {
    const s = this.seq.get(fd);
    if (!s) throw fakeNativeError(this.openFds.has(fd) ? 'ENOTSOCK' : 'EBADF', syscall);
    return s;
  }

  private dropSeq(fd: number): void {
    this.openFds.delete(fd);
    this.seq.delete(fd);
  }

  private readiness(fd: number): number {
    const s = this.seq.get(fd);
    if (!s) return 0;
    if (s.pending) return s.pending.length > 0 ? 1 : 0;
    const peer = s.peer === undefined ? undefined : this.seq.get(s.peer);
    const readable = s.inbox.length > 0 || s.peerClosed ? 1 : 0;
    const writable = !peer || s.peerClosed || peer.inbox.length < this.seqpacketCapacity ? 2 : 0;
    return readable | writable;
  }

  /** Level-triggered: keeps firing (one setImmediate per round) while a started poller is ready. */
  private kick(): void {
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    setImmediate(() => {
      this.kickScheduled = false;
      let fired = false;
      for (const p of [...this.pollers]) {
        if (!this.pollers.has(p)) continue;
        const ready = this.readiness(p.fd) & p.mask;
        if (ready === 0) continue;
        fired = true;
        p.callback(0, ready);
      }
      if (fired) this.kick();
    });
  }

  private enter(method: Method, args: unknown[]): void {
    this.calls.push({ method, args });
    const fd = args[0];
    const pathFirst: Method[] = ['listenTcpInNetns', 'socketTcpInNetns', 'seqpacketListen', 'seqpacketConnect'];
    if (!pathFirst.includes(method)) checkInt(fd, 'fd', 0, 0x7fffffff);
    const err = this.failures.get(method)?.shift();
    if (err) throw err;
  }

  private checkNetns(netns: NetnsRef): void {
    if (typeof netns === 'number') {
      checkInt(netns, 'netns fd', 0, 0x7fffffff);
      if (!this.netnsFds.has(netns)) throw fakeNativeError('EINVAL', 'setns');
    } else if (typeof netns !== 'string' || netns === '') {
      throw new TypeError('netns must be a path string or an fd number');
    } else if (this.netnsPaths && !this.netnsPaths.has(netns)) {
      throw fakeNativeError('ENOENT', 'open');
    }
  }

  private newFd(mark: number | undefined): number {
    if (mark !== undefined) checkInt(mark, 'mark', 0, 0xffffffff);
    const fd = this.nextFd++;
    this.openFds.add(fd);
    if (mark !== undefined) this.marks.set(fd, mark);
    return fd;
  }
}

function checkInt(v: unknown, name: string, min: number, max: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new TypeError(`${name} must be an integer in [${min}, ${max}]`);
  }
}
