/**
 * A transport for the client side of an HBONE connection whose writes
 * complete at once.
 *
 * Why: Node's HTTP/2 session stops reading its socket while a socket write is
 * pending (node_http2.cc MaybeStopReading). When both peers are Node and both
 * push bulk data at once, each one's write waits for the other to read, and
 * neither reads again: the connection deadlocks and even PINGs go unanswered.
 * If one side never has a pending write, it never stops reading, so the other
 * side's writes always drain and the cycle cannot form. The pool side takes
 * that role; the server keeps Node's native socket path.
 *
 * Memory stays bounded: nghttp2 only emits DATA the peer's flow-control
 * windows allow (16 MiB per connection), plus small control frames, so the
 * inner socket's buffer cannot grow past that.
 *
 * Writes are coalesced: the first write of an event-loop turn corks the TLS
 * socket and a setImmediate uncorks it, so every frame nghttp2 emits in that
 * turn (many streams' HEADERS, DATA, WINDOW_UPDATE) goes out as one TLS
 * write and one syscall instead of one each. Under load that was the
 * largest single cost of a pooled HBONE connection.
 */
import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';

export class EagerWriteTransport extends Duplex {
  readonly #inner: TLSSocket;
  #corked = false;
  readonly #flush = (): void => {
    this.#corked = false;
    this.#inner.uncork();
  };

  constructor(inner: TLSSocket) {
    super({ allowHalfOpen: false, readableHighWaterMark: 256 * 1024 });
    this.#inner = inner;
    inner.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) inner.pause();
    });
    inner.once('end', () => this.push(null));
    inner.once('error', (err: Error) => this.destroy(err));
    inner.once('close', () => this.destroy());
  }

  override _read(): void {
    this.#inner.resume();
  }

  /** Corks the inner socket until the end of this event-loop turn (once per turn). */
  #cork(): void {
    if (this.#corked) return;
    this.#corked = true;
    this.#inner.cork();
    setImmediate(this.#flush);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#cork();
    this.#inner.write(chunk);
    cb();
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.#cork();
    for (const c of chunks) this.#inner.write(c.chunk);
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#inner.end(() => cb());
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.#inner.destroy(err ?? undefined);
    cb(err);
  }
}
