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
  /** The failing step: 'open', 'setns', 'socket', 'setsockopt', 'bind', 'listen', 'getsockopt', 'getsockname', 'ioctl', 'close'; seqpacket: 'stat', 'unlink', 'connect', 'accept4', 'sendmsg', 'recvmsg', 'poll'; splice pump: 'splice', 'send', 'recv', 'shutdown', 'fcntl', 'spliceStart'. */
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

/** A socket's SO_LINGER setting. */
export interface LingerState {
  on: boolean;
  seconds: number;
}

/** A datagram read by {@link NativeBinding.seqpacketRecv}. */
export interface SeqpacketDatagram {
  data: Buffer;
  /** Received fds (close-on-exec), owned by the caller: close every one. More than one is possible. */
  fds: number[];
  /** MSG_TRUNC or MSG_CTRUNC: the datagram was bigger than maxBytes (the rest is lost) or fds were dropped. */
  truncated: boolean;
  eof?: undefined;
}

/**
 * The peer closed. recvmsg returns 0 for both EOF and an empty datagram; the
 * addon reports EOF when the socket is hung up (POLLRDHUP), so an empty
 * datagram sent right before close may be reported as EOF.
 */
export interface SeqpacketEof {
  eof: true;
}

/** uv_poll event bits (libuv's UV_READABLE, UV_WRITABLE, UV_DISCONNECT). */
export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;
export const POLL_DISCONNECT = 4;

/**
 * One uv_poll_t on Node's loop for an addon-owned fd. Rules (libuv's): at most
 * one Poller per fd; wakeups may be spurious (EAGAIN is normal); call close()
 * before closing the fd. The callback gets status 0 or a negative libuv error
 * (-errno) and the ready event bits. While started, the Poller keeps the event
 * loop alive and itself from being collected.
 */
export interface NativePoller {
  /** (Re)arms the poll with a mask of POLL_* bits (replaces the previous mask). */
  start(events: number): void;
  stop(): void;
  /** uv_close; idempotent. The fd may be closed right after. */
  close(): void;
  readonly fd: number;
}

export type NativePollerConstructor = new (fd: number, callback: (status: number, events: number) => void) => NativePoller;

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
  /**
   * SO_LINGER. `on` with 0 seconds makes every close of the socket abortive
   * (RST instead of FIN), including the kernel's close when the process dies;
   * `on` false restores the normal graceful close. `seconds` (0-3600) defaults to 0.
   */
  setLinger(fd: number, on: boolean, seconds?: number): void;
  /** The socket's SO_LINGER. */
  getLinger(fd: number): LingerState;
  /** ioctl(NS_GET_NSTYPE); throws ENOTTY (syscall 'ioctl') for fds that are not namespaces. */
  nsType(fd: number): number;
  /** close(2); EINTR counts as closed (Linux always releases the fd). */
  closeFd(fd: number): void;
  /**
   * A listening AF_UNIX SOCK_SEQPACKET socket (nonblocking, close-on-exec). A
   * stale socket file at `path` is unlinked first; any other file there fails
   * with EEXIST (syscall 'unlink').
   */
  seqpacketListen(path: string, backlog: number): number;
  /** A connected nonblocking seqpacket socket. EAGAIN (thrown) means the listener's backlog is full. */
  seqpacketConnect(path: string): number;
  /** accept4 → a nonblocking close-on-exec fd, or -1 when nothing is pending. */
  seqpacketAccept(fd: number): number;
  /** One datagram (sendmsg, MSG_NOSIGNAL), with `passFd` in SCM_RIGHTS. Returns bytes sent, or -1 on EAGAIN. */
  seqpacketSend(fd: number, data: Buffer, passFd?: number): number;
  /** One datagram (recvmsg, MSG_CMSG_CLOEXEC) of at most maxBytes (≤ 64 MiB); null on EAGAIN. */
  seqpacketRecv(fd: number, maxBytes: number): SeqpacketDatagram | SeqpacketEof | null;
  readonly Poller: NativePollerConstructor;
  /**
   * Starts a zero-copy relay between two connected nonblocking TCP fds
   * (socket→pipe→socket splice(2) both ways, driven by uv_poll on Node's
   * loop). Takes ownership of both fds and closes them when done. The
   * prefixes (bytes already read from A resp. B) are written first. EOF on
   * one side becomes shutdown(SHUT_WR) on the other, right after SO_LINGER is
   * turned off there (an armed abortive close must not discard the tail, see
   * linger.ts); an error closes both with RST. `callback` runs once with (error | null, aToB, bToA). Throws
   * (fds still the caller's) when pipes cannot be made or sized.
   */
  spliceStart(
    fdA: number,
    fdB: number,
    callback: (error: (Error & NativeErrorProps) | null, aToB: number, bToA: number) => void,
    prefixAtoB?: Buffer,
    prefixBtoA?: Buffer,
  ): void;
  /** fcntl(F_DUPFD_CLOEXEC). */
  dupFd(fd: number): number;
  /** The nsType() value of a network namespace. */
  readonly CLONE_NEWNET: number;
}
