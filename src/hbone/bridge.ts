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
import { resetSocket } from '../native/linger.js';

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
 *
 * Node ends a stream's readable side ('end', rstCode 0) also when its session
 * goes away without any END_STREAM from the peer: a local session.destroy()
 * (the pool or the agent shutting down) detaches the stream first, and a lost
 * connection marks it aborted. Only an 'end' seen while the stream is still
 * attached to a live session and not aborted is a real END_STREAM; any other
 * is a failure, or the app would read a clean EOF with bytes missing.
 */
export function h2Side(stream: Http2Stream): BridgeSide {
  let fakeEnd = false;
  stream.once('aborted', () => (fakeEnd = true));
  stream.once('end', () => {
    if (stream.aborted || stream.session === undefined || stream.session.destroyed) fakeEnd = true;
  });
  return {
    stream,
    reset: () => {
      if (!stream.destroyed) stream.destroy(new Error('peer side of the tunnel was reset'));
    },
    closedAbnormally: () => fakeEnd || (stream.rstCode ?? 0) !== 0 || !stream.readableEnded,
  };
}

/**
 * A TCP socket as a bridge side: resetting it sends a TCP RST, also after our
 * FIN went out if the socket was armed for abortive close (native/linger.ts;
 * otherwise such a socket is just closed: libuv cannot reset it).
 */
export function tcpSide(socket: Socket): BridgeSide {
  return {
    stream: socket,
    reset: () => resetSocket(socket),
    closedAbnormally: () => socket.errored !== null || !socket.readableEnded,
  };
}
