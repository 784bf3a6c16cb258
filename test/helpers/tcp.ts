/** Loopback TCP helpers: targets with known behaviour, and checksummed transfers. */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** The wire-audit marker (src/lab/wire-tap.ts): mesh payloads carry it, deliberate plaintext must not. */
export const WIRE_CANARY = 'AMBIT-CANARY';
const CANARY_EVERY = 4096;

/**
 * Random payload of `n` bytes made of 1 MiB random blocks (fast for 64 MiB),
 * with WIRE_CANARY every 4 KiB: between lab pods this is mesh traffic, and
 * the suite's wire audit fails if the marker ever crosses the bridge in clear.
 * Use `plainPayload` for traffic that is plaintext on purpose.
 */
export function payload(n: number): Buffer {
  const out = plainPayload(n);
  for (let off = 0; off + WIRE_CANARY.length <= n; off += CANARY_EVERY) out.write(WIRE_CANARY, off, 'latin1');
  return out;
}

/** Random payload of `n` bytes without the wire-audit marker (deliberate plaintext). */
export function plainPayload(n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let off = 0; off < n; off += 1 << 20) randomBytes(Math.min(1 << 20, n - off)).copy(out, off);
  return out;
}

export function listen(server: Server, host = '127.0.0.1', port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/** Echo server: writes back everything, ends when the client ends. */
export function echoServer(): Server {
  return createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
}

/**
 * "Digest" server: reads until the client half-closes, then answers with the
 * sha256 and length of what it read, followed by `reply` bytes, then ends.
 */
export function digestServer(reply: Buffer = Buffer.alloc(0)): Server {
  return createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    void hashUntilEnd(s).then(({ digest, bytes }) => {
      s.write(`${digest} ${bytes}\n`);
      s.end(reply);
    });
  });
}

/** Hashes everything a socket receives; resolves at the peer's FIN. */
export function hashUntilEnd(s: Socket): Promise<{ digest: string; bytes: number }> {
  return new Promise((resolve) => {
    const h = createHash('sha256');
    let bytes = 0;
    s.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
    });
    s.once('end', () => resolve({ digest: h.digest('hex'), bytes }));
  });
}

/**
 * Full-duplex transfer server: on connect, starts sending `toClient` while
 * hashing what it receives; resolves each connection's receive digest.
 */
export function duplexServer(toClient: Buffer, onReceived: (digest: string, bytes: number) => void): Server {
  return createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    void hashUntilEnd(s).then(({ digest, bytes }) => onReceived(digest, bytes));
    s.end(toClient);
  });
}

/** Reads a stream to its end. */
export function readAll(s: Duplex | Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

export function closeServer(s: Server): Promise<void> {
  return new Promise((resolve) => s.close(() => resolve()));
}
