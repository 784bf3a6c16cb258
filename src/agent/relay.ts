/**
 * Relaying between an application socket and the other leg of a connection:
 * - plain TCP (no TLS on either side): with splice() the bytes never enter
 *   JavaScript; without it, the JS bridge copies them;
 * - an HBONE stream (the app's leg of a tunnel).
 * Both keep half-close and reset semantics and report the byte counts.
 *
 * Every relayed app socket is armed for abortive close (native/linger.ts):
 * if the agent dies mid-transfer the kernel resets the app's connection
 * instead of ending it, so an app never reads a clean EOF with bytes missing.
 * A deliberate graceful end (after a clean EOF from the other side) turns
 * that off first. Sockets should be armed where they are created or
 * accepted (armAppSocket), so the window before the relay starts is covered
 * too; the relay functions arm again (idempotent) to be sure.
 */
import type { Http2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { bridge, h2Side, tcpSide, type BridgeResult } from '../hbone/bridge.js';
import type { NativeBinding } from '../native/binding.js';
import { armAbortiveClose } from '../native/linger.js';
import { splicePump } from '../native/splice.js';

/**
 * Arms `socket` (an accepted in-pod socket or a dial to an app) so that it is
 * reset, never ended, when the agent dies. Returns false if it could not be
 * armed (no fd, stale addon); the socket then works as before.
 */
export function armAppSocket(native: NativeBinding, socket: Socket): boolean {
  return armAbortiveClose(native, socket);
}

/** Relays two TCP sockets (both app-facing: captured client, passthrough or pod dial). */
export async function relayTcp(a: Socket, b: Socket, native: NativeBinding, useSplice: boolean): Promise<BridgeResult & { relay: 'splice' | 'copy' }> {
  armAbortiveClose(native, a);
  armAbortiveClose(native, b);
  if (!useSplice) {
    a.resume();
    return { ...(await bridge(tcpSide(a), tcpSide(b))), relay: 'copy' };
  }
  const r = await splicePump(a, b, { binding: native });
  return { bytesAtoB: r.aToB, bytesBtoA: r.bToA, relay: r.mode, ...(r.error ? { error: r.error } : {}) };
}

/**
 * Relays an app socket and an HBONE stream (outbound client leg, or the
 * inbound leg to the pod's app). bytesAtoB counts app → stream. A reset or
 * failure of the stream (peer agent gone, RST_STREAM, session lost) resets
 * the app socket; only a clean END_STREAM ends it.
 */
export async function relayHbone(app: Socket, stream: Http2Stream, native: NativeBinding): Promise<BridgeResult> {
  armAbortiveClose(native, app);
  app.resume();
  return await bridge(tcpSide(app), h2Side(stream));
}
