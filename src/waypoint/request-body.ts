/**
 * A request body that streams upstream as it arrives and keeps a replay copy
 * for retries and mirrors, as Envoy does: the copy is kept up to a limit; a
 * body larger than that still streams, but can no longer be retried or
 * mirrored. Reading starts only when the first attempt pipes it, so nothing
 * is buffered while authn/authz run (the socket applies backpressure).
 */
import type { Readable } from 'node:stream';

/** The part of a writable (ClientRequest, Http2Stream) the body writes to. */
export interface BodySink {
  write(chunk: Buffer): boolean;
  end(): void;
  once(event: 'drain', fn: () => void): unknown;
  off?(event: 'drain', fn: () => void): unknown;
}

export class RequestBody {
  readonly #src: Readable | undefined;
  readonly #maxReplay: number;
  readonly #chunks: Buffer[] = [];
  /** Declared length (content-length), if any. */
  readonly length: number | undefined;
  #size = 0;
  #started = false;
  #ended = false;
  #overflow = false;
  #live: BodySink | undefined;
  readonly #endWaiters: Array<() => void> = [];

  /** `src` undefined = an empty (or already complete) body given as `buffered`. */
  constructor(src: Readable | undefined, maxReplayBytes: number, length?: number, buffered?: Buffer) {
    this.#src = src;
    this.#maxReplay = maxReplayBytes;
    this.length = length;
    if (!src) {
      if (buffered && buffered.length > 0) this.#chunks.push(buffered);
      this.#size = buffered?.length ?? 0;
      this.#ended = true;
    }
  }

  static of(buf: Buffer): RequestBody {
    return new RequestBody(undefined, Infinity, buf.length, buf);
  }

  /** Bytes received from the client so far. */
  get size(): number {
    return this.#size;
  }
  get ended(): boolean {
    return this.#ended;
  }
  /** Another attempt (retry, mirror) can send this body from the start. */
  get replayable(): boolean {
    return !this.#started || (this.#ended && !this.#overflow);
  }
  /** The whole body, when it is complete and was kept. */
  buffered(): Buffer | undefined {
    return this.#ended && !this.#overflow ? Buffer.concat(this.#chunks) : undefined;
  }
  /** Resolves when the client finished sending (or went away). */
  whenEnded(): Promise<void> {
    return this.#ended ? Promise.resolve() : new Promise((r) => this.#endWaiters.push(r));
  }

  /** Sends the body to `sink`: from the replay copy when complete, else live from the client. */
  pipeTo(sink: BodySink): void {
    if (this.#started && !this.replayable) throw new Error('request body is not replayable');
    if (this.#ended) {
      for (const c of this.#chunks) sink.write(c);
      sink.end();
      return;
    }
    if (this.#started) throw new Error('request body is still streaming to another attempt');
    this.#started = true;
    this.#live = sink;
    const src = this.#src as Readable;
    src.on('data', (c: Buffer) => {
      this.#size += c.length;
      if (!this.#overflow) {
        this.#chunks.push(c);
        if (this.#size > this.#maxReplay) {
          this.#overflow = true;
          this.#chunks.length = 0;
        }
      }
      const live = this.#live;
      if (live && !live.write(c)) {
        src.pause();
        live.once('drain', () => src.resume());
      }
    });
    const finish = (complete: boolean): void => {
      if (this.#ended) return;
      this.#ended = true;
      // a client that went away mid-body left a partial copy: never replay it
      if (!complete) this.#overflow = true;
      if (complete) this.#live?.end();
      this.#live = undefined;
      for (const w of this.#endWaiters.splice(0)) w();
    };
    src.once('end', () => finish(true));
    src.once('close', () => finish(src.readableEnded));
    src.once('error', () => finish(false));
  }

  /** The live attempt failed: stop writing to it; the client's remaining bytes are read and dropped (or kept for replay). */
  detach(sink: BodySink): void {
    if (this.#live === sink) {
      this.#live = undefined;
      this.#src?.resume();
    }
  }

  /** Reads and drops a body nobody will send (local replies). */
  discard(): void {
    if (this.#started || this.#ended || !this.#src) return;
    this.#started = true;
    this.#overflow = true;
    this.#src.on('data', (c: Buffer) => (this.#size += c.length));
    const finish = (): void => {
      this.#ended = true;
      for (const w of this.#endWaiters.splice(0)) w();
    };
    this.#src.once('end', finish);
    this.#src.once('close', finish);
    this.#src.resume();
  }
}
