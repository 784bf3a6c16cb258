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
 */
import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';

export class EagerWriteTransport extends Duplex {
  readonly #inner: TLSSocket;

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

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#inner.write(chunk);
    cb();
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.#inner.cork();
    for (const c of chunks) this.#inner.write(c.chunk);
    this.#inner.uncork();
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
