/**
 * Node `net` objects on top of addon-made fds. The addon creates the socket
 * inside the target netns in one synchronous call; Node then only adopts the
 * fd. We never call `net` APIs while switched into a netns: Node creates its
 * own fds lazily (after DNS lookups and next ticks), by which time the thread
 * is back home, so the socket would land in the agent's netns.
 */
import { fstatSync } from 'node:fs';
import net from 'node:net';
import type { ListenTcpOptions, NativeBinding, NetnsRef, SocketAddress, SocketTcpOptions } from './binding.js';
import { NativeFdUnavailableError, wrapNativeError } from './errors.js';
import { loadNativeBinding } from './load.js';

export interface ListenInNetnsOptions extends ListenTcpOptions {
  netns: NetnsRef;
  /** An IP literal; hostnames would be resolved in the agent's netns, not the target's. */
  address: string;
  port: number;
  /** Passed to net.createServer. */
  server?: net.ServerOpts;
}

export interface ConnectFromNetnsOptions extends SocketTcpOptions {
  netns: NetnsRef;
  /** An IP literal, for the same reason as ListenInNetnsOptions.address. */
  host: string;
  port: number;
  /** Keep the write side open after the peer's FIN (for byte-faithful TCP relays). */
  allowHalfOpen?: boolean;
}

/**
 * Closes `fd` only if it still is the socket we made. Node closes an adopted
 * fd itself on some error paths, and a blind second close could hit an fd
 * number that was meanwhile reused by someone else.
 */
function closeIfStillOurs(binding: NativeBinding, fd: number, ino: number): void {
  try {
    if (fstatSync(fd).ino !== ino) return;
    binding.closeFd(fd);
  } catch {
    // already closed: nothing to clean up
  }
}

function inodeOf(binding: NativeBinding, fd: number): number {
  try {
    return fstatSync(fd).ino;
  } catch (err) {
    binding.closeFd(fd);
    throw err;
  }
}

/** Listens in `netns` and resolves once Node has adopted the fd. */
export async function listenInNetns(
  binding: NativeBinding = loadNativeBinding(),
  opts: ListenInNetnsOptions,
): Promise<net.Server> {
  const { netns, address, port, server: serverOpts, ...native } = opts;
  let fd: number;
  try {
    fd = binding.listenTcpInNetns(netns, address, port, native);
  } catch (err) {
    throw wrapNativeError(err, { netns, address, port });
  }
  const ino = inodeOf(binding, fd);
  const server = net.createServer(serverOpts ?? {});
  return new Promise<net.Server>((resolve, reject) => {
    const fail = (err: unknown): void => {
      server.close();
      closeIfStillOurs(binding, fd, ino);
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    server.once('error', fail);
    try {
      server.listen({ fd }, () => {
        server.off('error', fail);
        resolve(server);
      });
    } catch (err) {
      fail(err);
    }
  });
}

/**
 * Opens a TCP connection that originates in `netns` (with mark/transparent
 * source set natively) and returns the still-connecting socket; listen for
 * 'connect'/'error' as with net.connect().
 */
export function connectFromNetns(binding: NativeBinding = loadNativeBinding(), opts: ConnectFromNetnsOptions): net.Socket {
  const { netns, host, port, allowHalfOpen, ...native } = opts;
  const family = net.isIP(host);
  if (family !== 4 && family !== 6) throw new TypeError(`host must be an IP literal, got ${JSON.stringify(host)}`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`port must be 1-65535, got ${port}`);
  let fd: number;
  try {
    fd = binding.socketTcpInNetns(netns, family, native);
  } catch (err) {
    throw wrapNativeError(err, { netns, address: native.bindAddress, port: native.bindPort });
  }
  const ino = inodeOf(binding, fd);
  let sock: net.Socket;
  try {
    // readable/writable default to false for fd sockets, which would make a dead stream.
    sock = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: allowHalfOpen === true });
  } catch (err) {
    closeIfStillOurs(binding, fd, ino);
    throw err;
  }
  try {
    return sock.connect(port, host);
  } catch (err) {
    sock.destroy(); // the socket owns the fd now
    throw err;
  }
}

/** The OS fd behind a Node socket or server (Node-internal `_handle.fd`; POSIX only). */
export function socketFd(sock: net.Socket | net.Server): number {
  const fd = (sock as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new NativeFdUnavailableError();
  return fd;
}

/** Where the client meant to go before REDIRECT (or the local address if not redirected). */
export function originalDst(binding: NativeBinding = loadNativeBinding(), sock: net.Socket): SocketAddress {
  const fd = socketFd(sock);
  try {
    return binding.getOriginalDst(fd);
  } catch (err) {
    throw wrapNativeError(err, { fd });
  }
}

/** The socket's SO_MARK. */
export function markOf(binding: NativeBinding = loadNativeBinding(), sock: net.Socket | net.Server): number {
  const fd = socketFd(sock);
  try {
    return binding.getMark(fd);
  } catch (err) {
    throw wrapNativeError(err, { fd });
  }
}
