/**
 * The shape of build/Release/ambit_native.node (native/addon.cc). This file is
 * the addon's type declaration: keep it in step with DefineAddon there.
 *
 * Every function is synchronous. On a failed syscall it throws a plain Error
 * carrying {@link NativeErrorProps}; bad arguments throw TypeError. Use
 * `wrapNativeError` (errors.ts) to turn those into Ambit errors.
 */

/** Properties the addon puts on the Errors it throws for failed syscalls. */
export interface NativeErrorProps {
  /** errno name, e.g. 'EPERM', 'ENOENT' ('UNKNOWN' if libc cannot name it). */
  code: string;
  /** Positive Linux errno value (not Node's negated libuv style). */
  errno: number;
  /** The failing step: 'open', 'setns', 'socket', 'setsockopt', 'bind', 'listen', 'getsockopt', 'getsockname', 'ioctl', 'close'. */
  syscall: string;
  /** What exactly failed: a socket option ('SO_MARK'), an ioctl ('NS_GET_NSTYPE') or a file ('/proc/thread-self/ns/net'). */
  detail?: string;
}

/** A netns path (e.g. /var/run/netns/x, /proc/<pid>/ns/net) or an fd owned by the caller. */
export type NetnsRef = string | number;

export interface ListenTcpOptions {
  /** listen(2) backlog; default 511 like Node. */
  backlog?: number;
  reusePort?: boolean;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT (CAP_NET_ADMIN or CAP_NET_RAW). */
  transparent?: boolean;
  /** SO_MARK, a u32 (CAP_NET_ADMIN). */
  mark?: number;
}

export interface SocketTcpOptions {
  mark?: number;
  transparent?: boolean;
  freebind?: boolean;
  /** Source address; must match `family`. Defaults to the wildcard when only bindPort is given. */
  bindAddress?: string;
  /** Source port; 0 or absent leaves port choice to connect() (IP_BIND_ADDRESS_NO_PORT). */
  bindPort?: number;
}

export interface SocketAddress {
  address: string;
  port: number;
  /** IPv4-mapped IPv6 addresses are reported as family 4 with a dotted address. */
  family: 4 | 6;
}

export interface NativeBinding {
  /**
   * Creates a listening, nonblocking, close-on-exec TCP socket inside `netns`
   * (setns in, socket/bind/listen, setns back in one call) and returns its fd.
   * The process aborts if the thread cannot return to its own netns.
   */
  listenTcpInNetns(netns: NetnsRef, address: string, port: number, opts?: ListenTcpOptions): number;
  /** Same netns dance; returns an unconnected nonblocking TCP socket fd for net.Socket({fd}).connect(). */
  socketTcpInNetns(netns: NetnsRef, family: 4 | 6, opts?: SocketTcpOptions): number;
  /** The pre-REDIRECT destination (SO_ORIGINAL_DST), or getsockname() when there is no NAT conntrack entry. */
  getOriginalDst(fd: number): SocketAddress;
  setMark(fd: number, mark: number): void;
  getMark(fd: number): number;
  /** ioctl(NS_GET_NSTYPE); throws ENOTTY (syscall 'ioctl') for fds that are not namespaces. */
  nsType(fd: number): number;
  /** close(2); EINTR counts as closed (Linux always releases the fd). */
  closeFd(fd: number): void;
  /** The nsType() value of a network namespace. */
  readonly CLONE_NEWNET: number;
}
