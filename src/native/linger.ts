/**
 * Abortive close for relayed application sockets, so an agent crash is an
 * error for the app and never a silent truncation.
 *
 * When a process dies the kernel closes its sockets; by default that sends a
 * FIN, which the app reads as a clean end of stream even though the relay
 * still had bytes to deliver. With SO_LINGER {on, 0} the close sends RST
 * instead. Node has no API for SO_LINGER (socket.resetAndDestroy() sets it
 * only at the moment it destroys, which never happens under SIGKILL), so the
 * addon sets it while the socket is being relayed.
 *
 * The option must be off again before a deliberate graceful end: a close with
 * linger 0 discards whatever the kernel has not sent yet. Arming therefore
 * also wraps the socket's `_final` (the Writable hook Node calls once every
 * buffered write reached the kernel, right before shutdown(SHUT_WR)), so any
 * end() of an armed socket, ours or Node's own, turns linger off at exactly
 * the last safe moment. The splice pump does the same in C++ before its
 * shutdown (native/splice.cc).
 */
import type net from 'node:net';
import type { NativeBinding } from './binding.js';
import { socketFd } from './sockets.js';

interface Armed {
  binding: NativeBinding;
  /** True while SO_LINGER {on, 0} is set (between arm and the graceful end). */
  on: boolean;
}

const armedSockets = new WeakMap<net.Socket, Armed>();

type FinalHook = (cb: (err?: Error | null) => void) => void;

function setLinger(binding: NativeBinding, sock: net.Socket, on: boolean): boolean {
  try {
    binding.setLinger(socketFd(sock), on);
    return true;
  } catch {
    // No fd (destroyed, not a TCP handle) or the kernel refused: nothing to change.
    return false;
  }
}

/**
 * Makes `sock` close with RST (also when this process dies) until it is ended
 * gracefully. Idempotent. Returns false when the option could not be set (the
 * socket has no fd, or a stale addon without setLinger): the socket then keeps
 * its normal close and still works.
 */
export function armAbortiveClose(binding: NativeBinding, sock: net.Socket): boolean {
  const known = armedSockets.get(sock);
  if (known) return known.on;
  if (sock.destroyed || sock.writableEnded || typeof binding.setLinger !== 'function') return false;
  if (!setLinger(binding, sock, true)) return false;
  const state: Armed = { binding, on: true };
  armedSockets.set(sock, state);
  const target = sock as unknown as { _final?: FinalHook };
  const original = target._final;
  if (typeof original === 'function') {
    target._final = (cb) => {
      disarmAbortiveClose(sock);
      original.call(sock, cb);
    };
  }
  return true;
}

/** Back to the normal graceful close (FIN after every queued byte). Idempotent. */
export function disarmAbortiveClose(sock: net.Socket): void {
  const state = armedSockets.get(sock);
  if (!state?.on) return;
  state.on = false;
  if (!sock.destroyed) setLinger(state.binding, sock, false);
}

/** Whether `sock` currently closes with RST (as far as this module set it). */
export function abortiveCloseArmed(sock: net.Socket): boolean {
  return armedSockets.get(sock)?.on === true;
}

/**
 * Tears `sock` down with a TCP RST. Unlike Node's resetAndDestroy() this also
 * works after our FIN went out (libuv refuses that with EINVAL), provided the
 * socket was armed once: the option is set again right before the close.
 */
export function resetSocket(sock: net.Socket): void {
  if (sock.destroyed) return;
  const state = armedSockets.get(sock);
  if (state && !sock.connecting && setLinger(state.binding, sock, true)) {
    state.on = true;
    sock.destroy();
    return;
  }
  if (sock.writableEnded) sock.destroy();
  else sock.resetAndDestroy();
}
