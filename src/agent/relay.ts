/**
 * Relaying a plain TCP leg (no TLS on either side): with splice() the bytes
 * never enter JavaScript; without it, the JS bridge copies them. Both keep
 * half-close and reset semantics, and report the byte counts.
 */
import type { Socket } from 'node:net';
import { bridge, tcpSide, type BridgeResult } from '../hbone/bridge.js';
import type { NativeBinding } from '../native/binding.js';
import { splicePump } from '../native/splice.js';

export async function relayTcp(a: Socket, b: Socket, native: NativeBinding, useSplice: boolean): Promise<BridgeResult & { relay: 'splice' | 'copy' }> {
  if (!useSplice) {
    a.resume();
    return { ...(await bridge(tcpSide(a), tcpSide(b))), relay: 'copy' };
  }
  const r = await splicePump(a, b, { binding: native });
  return { bytesAtoB: r.aToB, bytesBtoA: r.bToA, relay: r.mode, ...(r.error ? { error: r.error } : {}) };
}
