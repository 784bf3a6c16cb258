/**
 * A raw HTTP/2 client over TLS that writes frames by hand, for the attacks a
 * well-behaved client library refuses to send: HEADERS and CONTINUATION
 * floods, rapid reset, SETTINGS/PING floods without reading the ACKs,
 * oversized header lists, a zero flow-control window. HPACK is encoded as
 * "literal without indexing, new name" only, which every decoder accepts.
 */
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { secureContextFor, type TlsIdentity } from '../../../src/hbone/tls-identity.js';

export const FRAME = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const SETTING = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6 } as const;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

function hpackInt(value: number, prefixBits: number, firstByte = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7), b]);
}

/** A header block: each field as a literal without indexing with a new name. */
export function headerBlock(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  return Buffer.concat(headers.flatMap(([n, v]) => [Buffer.from([0]), hpackString(n), hpackString(v)]));
}

export function settingsPayload(entries: ReadonlyArray<readonly [number, number]>): Buffer {
  const b = Buffer.alloc(6 * entries.length);
  entries.forEach(([id, v], i) => {
    b.writeUInt16BE(id, i * 6);
    b.writeUInt32BE(v, i * 6 + 2);
  });
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export class RawH2 {
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  #buf = Buffer.alloc(0);
  #isClosed = false;

  private constructor(readonly tls: TLSSocket) {
    tls.on('error', () => undefined);
    this.closed = new Promise((resolve) => tls.once('close', () => resolve()));
    void this.closed.then(() => (this.#isClosed = true));
    tls.on('data', (d: Buffer) => this.#onData(d));
  }

  /** TLS with ALPN h2, then the preface and our SETTINGS. Rejects if the handshake fails. */
  static open(port: number, id: TlsIdentity, settings: ReadonlyArray<readonly [number, number]> = []): Promise<RawH2> {
    return new Promise((resolve, reject) => {
      const tls = tlsConnect({ host: '127.0.0.1', port, secureContext: secureContextFor(id), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
      tls.once('error', reject);
      tls.once('secureConnect', () => {
        tls.off('error', reject);
        const c = new RawH2(tls);
        tls.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0, settingsPayload(settings))]));
        resolve(c);
      });
    });
  }

  get isClosed(): boolean {
    return this.#isClosed || this.tls.destroyed;
  }

  #onData(d: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, d]);
    while (this.#buf.length >= 9) {
      const len = this.#buf.readUIntBE(0, 3);
      if (this.#buf.length < 9 + len) break;
      const f = { type: this.#buf[3] ?? 0, flags: this.#buf[4] ?? 0, stream: this.#buf.readUInt32BE(5) & 0x7fffffff, payload: this.#buf.subarray(9, 9 + len) };
      this.frames.push(f);
      // ACK the server's SETTINGS, as any real client would (so its advertised limits apply)
      if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0 && !this.tls.destroyed) this.tls.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      this.#buf = this.#buf.subarray(9 + len);
      if (this.frames.length > 100_000) this.frames.splice(0, 50_000);
    }
  }

  /** Writes; resolves after 'drain' when the socket buffer is full, or at once when closed. */
  async write(data: Buffer): Promise<void> {
    if (this.isClosed) return;
    if (this.tls.write(data)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.tls.off('drain', done);
        this.tls.off('close', done);
        resolve();
      };
      this.tls.once('drain', done);
      this.tls.once('close', done);
    });
  }

  headers(stream: number, headers: ReadonlyArray<readonly [string, string]>, flags: number = FLAG.END_HEADERS): Buffer {
    return frame(FRAME.HEADERS, flags, stream, headerBlock(headers));
  }

  goaway(): { lastStream: number; code: number } | undefined {
    const g = this.frames.find((f) => f.type === FRAME.GOAWAY);
    return g ? { lastStream: g.payload.readUInt32BE(0) & 0x7fffffff, code: g.payload.readUInt32BE(4) } : undefined;
  }

  /** Waits until the server closes the connection or `ms` pass; true when it closed. */
  async waitClosed(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.closed.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
    clearTimeout(timer);
    return r;
  }

  destroy(): void {
    this.tls.destroy();
  }
}
