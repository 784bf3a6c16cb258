/**
 * A zero-copy byte relay between two connected TCP sockets (plaintext
 * passthrough legs) using the addon's splice pump, with a plain JS copy as
 * the fallback where splice is unavailable.
 *
 * The pump must own the fds: libuv may not poll an fd that another poll
 * handle also watches. So splicePump detaches both sockets from Node: it
 * waits until their write buffers are empty, pauses them, takes the bytes
 * Node already read (they are sent first), dups the fds and destroys the
 * net.Sockets, all in one synchronous step (libuv reads only between ticks,
 * so no byte can slip into Node in between). The sockets are unusable
 * afterwards; the result promise is the only completion signal.
 */
import type net from 'node:net';
import type { NativeBinding } from './binding.js';
import { wrapNativeError } from './errors.js';
import { resetSocket } from './linger.js';
import { loadNativeBinding } from './load.js';
import { socketFd } from './sockets.js';

export interface SpliceResult {
  /** Bytes relayed from a to b (including bytes Node had buffered). */
  aToB: number;
  bToA: number;
  /** Set when the relay stopped on an error (reset, EPIPE); both sockets are then closed with RST. */
  error?: Error;
  /** 'splice' (kernel zero-copy) or 'copy' (JS fallback). */
  mode: 'splice' | 'copy';
}

export interface SplicePumpOptions {
  /** Defaults to the compiled addon; if it cannot load, the JS copy is used. */
  binding?: NativeBinding;
  /** Skip splice (benchmarks, debugging). */
  forceCopy?: boolean;
}

function waitDrained(sock: net.Socket): Promise<void> {
  if (sock.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      sock.off('drain', done);
      sock.off('close', done);
      resolve();
    };
    sock.on('drain', done);
    sock.on('close', done);
  });
}

/** Everything Node buffered but nobody consumed yet (the socket must be paused). */
function takeBuffered(sock: net.Socket): Buffer {
  const chunks: Buffer[] = [];
  for (let c: unknown = sock.read(); c !== null; c = sock.read()) {
    chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  }
  return Buffer.concat(chunks);
}

function defaultBinding(): NativeBinding | undefined {
  try {
    return loadNativeBinding();
  } catch {
    return undefined;
  }
}

/** Relays a↔b until both directions ended (or one failed). Both sockets are consumed. */
export async function splicePump(a: net.Socket, b: net.Socket, opts: SplicePumpOptions = {}): Promise<SpliceResult> {
  const binding = opts.forceCopy ? undefined : (opts.binding ?? defaultBinding());
  await Promise.all([waitDrained(a), waitDrained(b)]);
  if (binding && !a.destroyed && !b.destroyed) {
    const started = startSplice(binding, a, b);
    if (started) return started;
  }
  return copyPump(a, b);
}

/** Returns undefined (sockets untouched and still paused) when splice cannot start. */
function startSplice(binding: NativeBinding, a: net.Socket, b: net.Socket): Promise<SpliceResult> | undefined {
  let fdA: number;
  let fdB: number;
  try {
    fdA = socketFd(a);
    fdB = socketFd(b);
  } catch {
    return undefined;
  }
  a.pause();
  b.pause();
  const dups: number[] = [];
  try {
    dups.push(binding.dupFd(fdA));
    dups.push(binding.dupFd(fdB));
  } catch {
    for (const fd of dups) binding.closeFd(fd);
    return undefined;
  }
  const [dA, dB] = dups as [number, number];
  const preAB = takeBuffered(a);
  const preBA = takeBuffered(b);
  let settle!: (r: SpliceResult) => void;
  const result = new Promise<SpliceResult>((resolve) => (settle = resolve));
  try {
    binding.spliceStart(
      dA,
      dB,
      (error, aToB, bToA) => settle(error ? { aToB, bToA, error: wrapNativeError(error), mode: 'splice' } : { aToB, bToA, mode: 'splice' }),
      preAB,
      preBA,
    );
  } catch {
    // Pipes unavailable: nothing was taken; give the bytes back to the streams.
    binding.closeFd(dA);
    binding.closeFd(dB);
    if (preAB.length > 0) a.unshift(preAB);
    if (preBA.length > 0) b.unshift(preBA);
    return undefined;
  }
  // The dups keep both connections open; closing Node's fds sends nothing.
  a.destroy();
  b.destroy();
  return result;
}

/** JS fallback: stream copy both ways with half-close, byte counts and error propagation. */
function copyPump(a: net.Socket, b: net.Socket): Promise<SpliceResult> {
  return new Promise((resolve) => {
    const res: SpliceResult = { aToB: 0, bToA: 0, mode: 'copy' };
    let closed = 0;
    const onClose = (): void => {
      if (++closed === 2) resolve(res);
    };
    const onError = (err: Error): void => {
      res.error ??= err;
      resetSocket(a);
      resetSocket(b);
    };
    const relay = (from: net.Socket, to: net.Socket, count: (n: number) => void): void => {
      from.on('data', (chunk: Buffer) => {
        count(chunk.length);
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.on('end', () => to.end());
      from.on('error', onError);
      from.on('close', onClose);
    };
    relay(a, b, (n) => (res.aToB += n));
    relay(b, a, (n) => (res.bToA += n));
    a.resume();
    b.resume();
  });
}
