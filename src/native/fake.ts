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
 * - original destinations that tests program per fd (`setOriginalDst`).
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
  NetnsRef,
  SocketAddress,
  SocketTcpOptions,
} from './binding.js';

type Method = Exclude<keyof NativeBinding, 'CLONE_NEWNET'>;

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

  /** @param netnsPaths if given, only these netns paths "exist"; others fail with ENOENT like open(2). */
  constructor(private readonly netnsPaths?: ReadonlySet<string>) {}

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

  nsType(fd: number): number {
    this.enter('nsType', [fd]);
    if (!this.netnsFds.has(fd)) throw fakeNativeError('ENOTTY', 'ioctl', 'NS_GET_NSTYPE');
    return this.CLONE_NEWNET;
  }

  closeFd(fd: number): void {
    this.enter('closeFd', [fd]);
    if (!this.openFds.delete(fd)) throw fakeNativeError('EBADF', 'close');
    this.marks.delete(fd);
  }

  private enter(method: Method, args: unknown[]): void {
    this.calls.push({ method, args });
    const fd = args[0];
    if (method !== 'listenTcpInNetns' && method !== 'socketTcpInNetns') checkInt(fd, 'fd', 0, 0x7fffffff);
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
