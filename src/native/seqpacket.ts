/**
 * SOCK_SEQPACKET unix sockets with fd passing (the ZDS transport between
 * istio-cni and ztunnel), on Node's own event loop: the addon makes thin
 * nonblocking syscalls and a native Poller (one uv_poll_t per fd) says when
 * to retry. No threads, nothing on the libuv threadpool.
 *
 * Framing is the kernel's: one send() is one message, received whole or
 * reported `truncated`. Received fds belong to whoever consumes the message
 * and must be closed by it (binding.closeFd), including when rejecting it.
 */
import { EventEmitter } from 'node:events';
import { statSync, unlinkSync } from 'node:fs';
import {
  POLL_READABLE,
  POLL_WRITABLE,
  type NativeBinding,
  type NativePoller,
  type SeqpacketDatagram,
} from './binding.js';
import { NativeSocketClosedError, wrapNativeError } from './errors.js';
import { loadNativeBinding } from './load.js';

/** One received message. `fds` may hold any number of fds (a protocol allowing one must reject others). */
export type SeqpacketMessage = Pick<SeqpacketDatagram, 'data' | 'fds' | 'truncated'>;

export interface SeqpacketOptions {
  /** Defaults to the compiled addon. */
  binding?: NativeBinding;
  /** Receive buffer per message; longer messages arrive `truncated`. Default 65536 (ZDS uses 1024). */
  maxMessageBytes?: number;
}

/** Messages read per wakeup before yielding to the event loop. */
const READ_BURST = 64;
/** Iterator backlog at which reading pauses until the consumer catches up. */
const ITER_HIGH_WATER = 32;

interface PendingSend {
  data: Buffer;
  fd: number | undefined;
  resolve: () => void;
  reject: (err: Error) => void;
}

function closeQuietly(binding: NativeBinding, fd: number): void {
  try {
    binding.closeFd(fd);
  } catch {
    // already gone
  }
}

/** A failed poll (status = -errno; POLLERR arrives as the socket's SO_ERROR) as a NativeSyscallError. */
function pollError(status: number, fd: number): Error {
  const raw = Object.assign(new Error(`poll failed: errno ${-status}`), { code: 'UNKNOWN', errno: -status, syscall: 'poll' });
  return wrapNativeError(raw, { fd });
}

/**
 * A connected seqpacket socket owning its fd. Events: 'message'
 * (SeqpacketMessage), 'end' (peer closed, seen by reading like a stream:
 * with a 'message' listener or an iterator; the socket then closes itself),
 * 'error' (only emitted when someone listens; otherwise the socket just
 * closes), 'close'. Or consume with `for await (const msg of socket)`; do not
 * mix both, the iterator takes the messages while it runs.
 */
export class SeqpacketSocket extends EventEmitter {
  readonly fd: number;
  private readonly binding: NativeBinding;
  private readonly maxBytes: number;
  private poller: NativePoller | undefined;
  private pollMask = 0;
  private readonly sendQueue: PendingSend[] = [];
  private closed = false;
  private ended = false;
  private failure: Error | undefined;
  private iterating = false;
  private readonly iterQueue: SeqpacketMessage[] = [];
  private iterWake: (() => void) | undefined;

  /** Connects to a listening seqpacket socket at `path` (unix connects complete at once). */
  static connect(path: string, opts: SeqpacketOptions = {}): SeqpacketSocket {
    const binding = opts.binding ?? loadNativeBinding();
    let fd: number;
    try {
      fd = binding.seqpacketConnect(path);
    } catch (err) {
      throw wrapNativeError(err);
    }
    return new SeqpacketSocket(fd, { ...opts, binding });
  }

  /** Adopts a connected seqpacket fd (from seqpacketAccept/seqpacketConnect); the socket closes it. */
  constructor(fd: number, opts: SeqpacketOptions = {}) {
    super();
    this.fd = fd;
    this.binding = opts.binding ?? loadNativeBinding();
    this.maxBytes = opts.maxMessageBytes ?? 65536;
    if (!Number.isInteger(this.maxBytes) || this.maxBytes < 1) throw new RangeError('maxMessageBytes must be a positive integer');
    // Reading starts with the first 'message' listener, so no message (and no fd) is dropped unseen.
    this.on('newListener', (event) => {
      if (event === 'message') queueMicrotask(() => this.updatePoll());
    });
    this.on('removeListener', (event) => {
      if (event === 'message') this.updatePoll();
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Sends one message, with `fd` attached (SCM_RIGHTS) if given. Resolves once
   * the kernel took it; `fd` must stay open until then (the receiver gets a
   * duplicate). Messages go out in call order.
   */
  send(data: Buffer, fd?: number): Promise<void> {
    if (this.closed) return Promise.reject(new NativeSocketClosedError());
    return new Promise<void>((resolve, reject) => {
      this.sendQueue.push({ data, fd, resolve, reject });
      if (this.sendQueue.length === 1) this.flush();
    });
  }

  /** Closes the socket and its fd; pending sends reject with NativeSocketClosedError. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // uv_close before close(2): libuv must not poll a reused fd number.
    this.poller?.close();
    this.poller = undefined;
    this.pollMask = 0;
    closeQuietly(this.binding, this.fd);
    const err = new NativeSocketClosedError();
    for (const p of this.sendQueue.splice(0)) p.reject(err);
    this.wakeIterator();
    process.nextTick(() => this.emit('close'));
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<SeqpacketMessage, void, undefined> {
    if (this.iterating) throw new Error('a seqpacket socket supports one iterator at a time');
    this.iterating = true;
    this.updatePoll();
    try {
      for (;;) {
        const msg = this.iterQueue.shift();
        if (msg) {
          if (this.iterQueue.length === ITER_HIGH_WATER - 1) this.updatePoll();
          yield msg;
          continue;
        }
        if (this.failure) throw this.failure;
        if (this.ended || this.closed) return;
        await new Promise<void>((resolve) => (this.iterWake = resolve));
      }
    } finally {
      this.iterating = false;
      // Messages nobody will see: their fds would leak.
      for (const m of this.iterQueue.splice(0)) for (const fd of m.fds) closeQuietly(this.binding, fd);
      this.updatePoll();
    }
  }

  private wantRead(): boolean {
    if (this.closed || this.ended) return false;
    if (this.iterating) return this.iterQueue.length < ITER_HIGH_WATER;
    return this.listenerCount('message') > 0;
  }

  private updatePoll(): void {
    if (this.closed) return;
    const mask = (this.wantRead() ? POLL_READABLE : 0) | (this.sendQueue.length > 0 ? POLL_WRITABLE : 0);
    if (mask === this.pollMask) return;
    try {
      if (mask === 0) {
        this.poller?.stop();
      } else {
        this.poller ??= new this.binding.Poller(this.fd, (status, events) => this.onPoll(status, events));
        this.poller.start(mask);
      }
      this.pollMask = mask;
    } catch (err) {
      this.fail(wrapNativeError(err, { fd: this.fd }));
    }
  }

  private onPoll(status: number, events: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.fail(pollError(status, this.fd));
      return;
    }
    if (events & POLL_WRITABLE) this.flush();
    if (events & POLL_READABLE) this.readSome();
  }

  private flush(): void {
    while (!this.closed) {
      const head = this.sendQueue[0];
      if (!head) break;
      let n: number;
      try {
        n = this.binding.seqpacketSend(this.fd, head.data, head.fd);
      } catch (err) {
        // EPIPE, EMSGSIZE, ...: this message fails; later ones get their own try.
        this.sendQueue.shift();
        head.reject(wrapNativeError(err, { fd: this.fd }));
        continue;
      }
      if (n < 0) break; // EAGAIN: wait for POLL_WRITABLE
      this.sendQueue.shift();
      head.resolve();
    }
    this.updatePoll();
  }

  private readSome(): void {
    for (let i = 0; i < READ_BURST && this.wantRead(); i++) {
      let r: ReturnType<NativeBinding['seqpacketRecv']>;
      try {
        r = this.binding.seqpacketRecv(this.fd, this.maxBytes);
      } catch (err) {
        this.fail(wrapNativeError(err, { fd: this.fd }));
        return;
      }
      if (r === null) break; // spurious wakeup or drained
      if (r.eof === true) {
        this.ended = true;
        this.wakeIterator();
        this.emit('end');
        this.close();
        return;
      }
      const msg: SeqpacketMessage = { data: r.data, fds: r.fds, truncated: r.truncated };
      if (this.iterating) {
        this.iterQueue.push(msg);
        this.wakeIterator();
      } else {
        this.emit('message', msg);
      }
    }
    this.updatePoll();
  }

  private wakeIterator(): void {
    const wake = this.iterWake;
    this.iterWake = undefined;
    wake?.();
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.failure = err;
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.close();
  }
}

export interface SeqpacketListenOptions {
  /** listen(2) backlog; default 1023 (ztunnel's min(1024, SOMAXCONN-1)). */
  backlog?: number;
}

/** Accepts seqpacket connections. Events: 'connection' (SeqpacketSocket), 'error', 'close'. */
export class SeqpacketServer extends EventEmitter {
  private readonly binding: NativeBinding;
  private readonly socketOpts: SeqpacketOptions;
  private fd = -1;
  private path: string | undefined;
  private ino: number | undefined;
  private poller: NativePoller | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(opts: SeqpacketOptions = {}) {
    super();
    this.binding = opts.binding ?? loadNativeBinding();
    this.socketOpts = { ...opts, binding: this.binding };
  }

  /** Binds `path` (replacing a stale socket file) and starts accepting. Throws NativeSyscallError. */
  listen(path: string, opts: SeqpacketListenOptions = {}): this {
    if (this.fd >= 0 || this.closed) throw new Error('SeqpacketServer.listen may be called once');
    try {
      this.fd = this.binding.seqpacketListen(path, opts.backlog ?? 1023);
    } catch (err) {
      throw wrapNativeError(err);
    }
    this.path = path;
    try {
      this.ino = statSync(path).ino;
    } catch {
      this.ino = undefined; // fake bindings have no file
    }
    this.poller = new this.binding.Poller(this.fd, (status) => this.onReadable(status));
    this.poller.start(POLL_READABLE);
    return this;
  }

  address(): string | undefined {
    return this.path;
  }

  /** Stops accepting, closes the fd and removes the socket file if it still is ours. Open connections stay. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.poller?.close();
    this.poller = undefined;
    if (this.fd >= 0) closeQuietly(this.binding, this.fd);
    if (this.path !== undefined && this.ino !== undefined) {
      try {
        if (statSync(this.path).ino === this.ino) unlinkSync(this.path);
      } catch {
        // already removed
      }
    }
    process.nextTick(() => this.emit('close'));
  }

  private onReadable(status: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.pauseAfter(pollError(status, this.fd));
      return;
    }
    for (let i = 0; i < READ_BURST; i++) {
      let fd: number;
      try {
        fd = this.binding.seqpacketAccept(this.fd);
      } catch (err) {
        // EMFILE and friends: level-triggered polling would spin, so back off.
        this.pauseAfter(wrapNativeError(err, { fd: this.fd }));
        return;
      }
      if (fd < 0) return;
      this.emit('connection', new SeqpacketSocket(fd, this.socketOpts));
    }
  }

  private pauseAfter(err: Error): void {
    this.poller?.stop();
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.retryTimer = setTimeout(() => {
      if (!this.closed) this.poller?.start(POLL_READABLE);
    }, 100);
    this.retryTimer.unref();
  }
}
