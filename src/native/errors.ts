/**
 * Errors of the native addon layer. The addon throws bare Errors with
 * code/errno/syscall (see binding.ts); `wrapNativeError` turns them into
 * NativeSyscallError whose message says which step failed on what, and what
 * the operator can do about it (most failures are missing capabilities).
 */
import { constants as osConstants } from 'node:os';
import { AmbitError, toError } from '../common/errors.js';
import type { NativeErrorProps, NetnsRef } from './binding.js';

/** What the failing call was working on; used only to phrase the message. */
export interface NativeErrorContext {
  netns?: NetnsRef;
  address?: string;
  port?: number;
  fd?: number;
}

/** A syscall made by the addon failed. */
export class NativeSyscallError extends AmbitError {
  /** 'setns', 'bind', 'setsockopt', ... */
  readonly syscall: string;
  /** errno name, e.g. 'EPERM'. */
  readonly errno: string;
  readonly errnoNumber: number;
  /** Socket option, ioctl or file involved, when the addon reported one. */
  readonly detail: string | undefined;

  constructor(props: NativeErrorProps, context: NativeErrorContext, options?: { cause?: unknown }) {
    const step = describeStep(props, context);
    const hint = hintFor(props);
    super('AMBIT_ERR_NATIVE_SYSCALL', `${step} failed: ${props.code}${hint ? `; ${hint}` : ''}`, options);
    this.syscall = props.syscall;
    this.errno = props.code;
    this.errnoNumber = props.errno;
    this.detail = props.detail;
  }
}

/** The compiled addon could not be loaded from any known location. */
export class NativeLoadError extends AmbitError {
  readonly tried: readonly string[];

  constructor(tried: readonly string[], reasons: readonly string[], options?: { cause?: unknown }) {
    const list = tried.map((p, i) => `${p} (${reasons[i] ?? 'failed'})`).join(', ');
    super(
      'AMBIT_ERR_NATIVE_LOAD',
      `the native addon is not built or cannot be loaded; run 'npm install' (needs g++, make and python3) to build build/Release/ambit_native.node; tried: ${list}`,
      options,
    );
    this.tried = tried;
  }
}

/** A Node socket/server has no OS fd: not yet listening/connected, already closed, or not a TCP/pipe handle. */
export class NativeFdUnavailableError extends AmbitError {
  constructor() {
    super(
      'AMBIT_ERR_NATIVE_FD_UNAVAILABLE',
      'the socket has no file descriptor; call this after listen/connect succeeded and before close',
    );
  }
}

/** A seqpacket socket or server was closed (locally, or by the peer) before the operation completed. */
export class NativeSocketClosedError extends AmbitError {
  constructor(what = 'the seqpacket socket') {
    super('AMBIT_ERR_NATIVE_SOCKET_CLOSED', `${what} is closed; open a new connection`);
  }
}

function netnsName(netns: NetnsRef | undefined): string {
  if (netns === undefined) return 'the target netns';
  return typeof netns === 'number' ? `netns fd ${netns}` : netns;
}

function describeStep(p: NativeErrorProps, c: NativeErrorContext): string {
  const ns = netnsName(c.netns);
  const where = c.address !== undefined ? `${c.address.includes(':') ? `[${c.address}]` : c.address}:${c.port ?? 0}` : '';
  const fd = c.fd !== undefined ? ` on fd ${c.fd}` : '';
  switch (p.syscall) {
    case 'open':
      return p.detail ? `opening ${p.detail}` : `opening netns ${ns}`;
    case 'setns':
      return `setns into ${ns}`;
    case 'socket':
      return `creating a socket in ${ns}`;
    case 'bind':
      return `bind to ${where || 'the source address'} in ${ns}`;
    case 'listen':
      return `listen on ${where} in ${ns}`;
    case 'setsockopt':
    case 'getsockopt':
      return `${p.syscall === 'setsockopt' ? 'setting' : 'reading'} ${p.detail ?? 'a socket option'}${fd}`;
    case 'ioctl':
      return `ioctl${p.detail ? ` ${p.detail}` : ''}${fd}`;
    default:
      return `${p.syscall}${fd}`;
  }
}

// Only hints we are sure of; a wrong hint costs more time than none.
function hintFor(p: NativeErrorProps): string | undefined {
  switch (p.code) {
    case 'EPERM':
    case 'EACCES':
      if (p.syscall === 'setns' || p.syscall === 'open') return 'the agent needs CAP_SYS_ADMIN and CAP_NET_ADMIN';
      if (p.syscall === 'bind') return 'ports below 1024 need CAP_NET_BIND_SERVICE';
      if (p.syscall === 'setsockopt') return `${p.detail ?? 'this option'} needs CAP_NET_ADMIN`;
      return undefined;
    case 'ENOENT':
      return p.syscall === 'open' ? 'the network namespace does not exist (was the pod deleted?)' : undefined;
    case 'EINVAL':
      return p.syscall === 'setns' ? 'the fd is not a network namespace' : undefined;
    case 'EADDRINUSE':
      return 'another socket in that netns already uses this address; stop it or use reusePort';
    case 'EADDRNOTAVAIL':
      return 'the address is not configured in that netns; use transparent/freebind for non-local addresses';
    case 'EBADF':
      return 'the fd is closed or was never valid';
    case 'ENOTSOCK':
      return 'the fd is not a socket';
    case 'ENOTTY':
      return p.syscall === 'ioctl' ? 'the fd is not a namespace file' : undefined;
    default:
      return undefined;
  }
}

function isNativeErrorProps(err: unknown): err is Error & NativeErrorProps {
  if (!(err instanceof Error)) return false;
  const e = err as Error & Partial<NativeErrorProps>;
  return typeof e.code === 'string' && typeof e.errno === 'number' && typeof e.syscall === 'string';
}

function errnoName(num: number): string | undefined {
  return Object.entries(osConstants.errno).find(([, v]) => v === num)?.[0];
}

/**
 * Converts what the addon threw into a NativeSyscallError (original kept as
 * `cause`). TypeErrors (bad arguments) are programming errors and are
 * returned unchanged.
 */
export function wrapNativeError(err: unknown, context: NativeErrorContext = {}): Error {
  if (!isNativeErrorProps(err)) return toError(err);
  const code = err.code === 'UNKNOWN' ? (errnoName(err.errno) ?? 'UNKNOWN') : err.code;
  const props: NativeErrorProps = { code, errno: err.errno, syscall: err.syscall };
  if (err.detail !== undefined) props.detail = err.detail;
  return new NativeSyscallError(props, context, { cause: err });
}
