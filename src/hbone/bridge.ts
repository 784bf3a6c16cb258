/**
 * Copies bytes both ways between two duplex streams with TCP semantics:
 * - data flows both ways at once with backpressure (pipe);
 * - an end (FIN / END_STREAM) on one side becomes an end on the other, while
 *   the other direction keeps flowing (half-close);
 * - a reset or error on either side resets the other and finishes the bridge
 *   with that error, so no peer is left waiting on a dead connection.
 * Each side says how to reset itself (RST_STREAM for HTTP/2, RST for TCP).
 */
import type { Http2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface BridgeSide {
  readonly stream: Duplex;
  /** Tears this side down abortively (not a graceful end). */
  reset(): void;
  /** True when this side closed abnormally (RST received, error). */
  closedAbnormally(): boolean;
}

export interface BridgeResult {
  /** Bytes read from `a` and written to `b`. */
  bytesAtoB: number;
  bytesBtoA: number;
  /** Set when the bridge ended by a reset or an error rather than two clean ends. */
  error?: Error;
}

export function bridge(a: BridgeSide, b: BridgeSide): Promise<BridgeResult> {
  return new Promise((resolve) => {
    const result: BridgeResult = { bytesAtoB: 0, bytesBtoA: 0 };
    let closed = 0;
    let torn = false;

    const tearDown = (from: BridgeSide, to: BridgeSide, err: Error): void => {
      if (torn) return;
      torn = true;
      result.error ??= err;
      from.stream.unpipe(to.stream);
      to.stream.unpipe(from.stream);
      to.reset();
      from.reset();
    };

    const onClose = (self: BridgeSide, other: BridgeSide, name: string) => () => {
      if (!torn && self.closedAbnormally()) tearDown(self, other, new Error(`${name} side was reset`));
      if (++closed === 2) resolve(result);
    };

    const watch = (self: BridgeSide, other: BridgeSide, name: string, count: (n: number) => void): void => {
      self.stream.on('data', (chunk: Buffer) => count(chunk.length));
      self.stream.on('error', (err: Error) => tearDown(self, other, err));
      self.stream.once('close', onClose(self, other, name));
      // Ends are forwarded by hand, one turn of the event loop late: some
      // peers (Node's own client) send END_STREAM right before RST_STREAM, and
      // forwarding that END as a FIN would half-close a socket we must reset.
      self.stream.pipe(other.stream, { end: false });
      self.stream.once('end', () =>
        setImmediate(() => {
          if (!torn && !self.closedAbnormally()) other.stream.end();
        }),
      );
    };

    watch(a, b, 'a', (n) => (result.bytesAtoB += n));
    watch(b, a, 'b', (n) => (result.bytesBtoA += n));
  });
}

/**
 * An HTTP/2 stream as a bridge side. Resetting it sends RST_STREAM alone:
 * Node's stream.close(code) would first send END_STREAM, which the peer
 * would rightly forward as a FIN before the reset.
 */
export function h2Side(stream: Http2Stream): BridgeSide {
  return {
    stream,
    reset: () => {
      if (!stream.destroyed) stream.destroy(new Error('peer side of the tunnel was reset'));
    },
    closedAbnormally: () => (stream.rstCode ?? 0) !== 0 || !stream.readableEnded,
  };
}

/** A TCP socket as a bridge side: resetting it sends a TCP RST. */
export function tcpSide(socket: Socket): BridgeSide {
  return {
    stream: socket,
    reset: () => {
      if (socket.destroyed) return;
      // A socket that already sent its FIN cannot be reset (libuv: EINVAL); close it.
      if (socket.writableEnded) socket.destroy();
      else socket.resetAndDestroy();
    },
    closedAbnormally: () => socket.errored !== null || !socket.readableEnded,
  };
}
