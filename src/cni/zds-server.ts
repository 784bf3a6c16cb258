/**
 * The CNI node agent's side of ZDS: the server on the SOCK_SEQPACKET socket
 * that node proxies (ztunnel, ambit agent) connect to. Behaviour follows
 * istio/istio cni/pkg/nodeagent/ztunnelserver.go:
 *
 * - `listen(path)` replaces a stale socket file and accepts connections.
 * - Each connection must send ZdsHello{version=V1} within `helloTimeoutMs`;
 *   otherwise (silence, garbage, another version) it is dropped.
 * - It then gets the snapshot of the pod set as it was when it connected:
 *   `add` with exactly one netns fd per pod whose netns can be opened (the fd
 *   is opened with fs.openSync(netnsPath, 'r') right before the send and
 *   closed right after), `keep` for pods without one, then `snapshot_sent`.
 * - Steady state: `addPod` sends `add` to the NEWEST connection only;
 *   `removePod` broadcasts `del` to every connection (old and new agents
 *   during a rollout).
 * - Messages are serialized per connection: one outstanding message until
 *   its Ack. Each message plus its Ack has `ackTimeoutMs` (default 5 s);
 *   a timeout drops that connection. A NACK (Ack with a non-empty error) is
 *   counted and emitted as 'nack' but is not fatal. Anything else from the
 *   agent (unsolicited or undecodable data, truncation, fds) drops it.
 *   Failures on one connection never affect the others.
 *
 * Events: 'connection' ({connectionId}), 'ready' ({connectionId}: snapshot
 * acked), 'nack' (CniNackError), 'drop' ({connectionId, error?}: the
 * connection is gone; `error` is set when the server dropped it),
 * 'netns_error' (CniNetnsOpenError: a snapshot pod was sent as keep), and
 * 'error' (accept errors, only when listened to).
 */
import { EventEmitter } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import type { NativeBinding } from '../native/binding.js';
import { loadNativeBinding } from '../native/load.js';
import { SeqpacketServer, type SeqpacketMessage, type SeqpacketSocket } from '../native/seqpacket.js';
import { decodeWorkloadResponse, decodeZdsHello, encodeWorkloadRequest, ZDS_MAX_MESSAGE_SIZE, ZdsVersion, type WorkloadRequest } from '../zds/messages.js';
import { CniAckTimeoutError, CniHelloError, CniNackError, CniNetnsOpenError, CniProtocolError, CniServerClosedError } from './errors.js';

/** A pod as the node agent knows it. */
export interface CniPod {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** e.g. /var/run/netns/<name> or /proc/<pid>/ns/net. Without it the snapshot sends `keep`. */
  readonly netnsPath?: string;
}

export type CniPodWithNetns = CniPod & { readonly netnsPath: string };

export interface ZdsServerOptions {
  /** Defaults to the compiled addon. */
  readonly binding?: NativeBinding;
  /** How long a new connection has to send its hello. Default 5000. */
  readonly helloTimeoutMs?: number;
  /** Deadline for each message plus its Ack. Default 5000 (istio's). */
  readonly ackTimeoutMs?: number;
  /** The initial pod set. */
  readonly pods?: Iterable<CniPod>;
}

export type ZdsDeliveryOutcome =
  /** The agent acked. */
  | 'ack'
  /** The agent answered with a non-empty Ack.error (see `error`). */
  | 'nack'
  /** No Ack within ackTimeoutMs; the connection was dropped. */
  | 'timeout'
  /** The connection closed (or was dropped for a protocol error) before an Ack. */
  | 'closed'
  /** addPod with no agent connected: the pod is recorded for the next snapshot. */
  | 'no_connection';

export interface ZdsDelivery {
  readonly connectionId: number | undefined;
  /** e.g. "add 'uid'", "del 'uid'", "snapshot_sent". */
  readonly request: string;
  readonly outcome: ZdsDeliveryOutcome;
  readonly error?: Error;
}

export interface ZdsServerStats {
  /** Open connections now. */
  readonly connections: number;
  readonly accepted: number;
  /** WorkloadRequests handed to the kernel. */
  readonly sent: number;
  readonly acked: number;
  readonly nacked: number;
  readonly timeouts: number;
  /** Connections the server dropped because of an error (hello, timeout, protocol). */
  readonly dropped: number;
}

export type ZdsConnectionState = 'hello' | 'snapshot' | 'ready';

export interface ZdsConnectionInfo {
  readonly id: number;
  readonly state: ZdsConnectionState;
}

interface Waiter {
  resolve: (m: SeqpacketMessage) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface Connection {
  readonly id: number;
  readonly socket: SeqpacketSocket;
  state: ZdsConnectionState;
  closed: boolean;
  chain: Promise<void>;
  waiter: Waiter | undefined;
}

class ConnectionClosed extends Error {}

const DEFAULT_TIMEOUT_MS = 5000;

function describe(req: WorkloadRequest): string {
  return req.kind === 'snapshot_sent' ? 'snapshot_sent' : `${req.kind} '${req.uid}'`;
}

function positive(value: number | undefined, name: string): number {
  const v = value ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${name} must be a positive number of milliseconds`);
  return v;
}

export class ZdsServer extends EventEmitter {
  private readonly binding: NativeBinding;
  private readonly helloTimeoutMs: number;
  private readonly ackTimeoutMs: number;
  private readonly pods = new Map<string, CniPod>();
  /** Oldest first; the last one is the newest. */
  private readonly conns: Connection[] = [];
  private server: SeqpacketServer | undefined;
  private closed = false;
  private nextId = 1;
  private counters = { accepted: 0, sent: 0, acked: 0, nacked: 0, timeouts: 0, dropped: 0 };

  constructor(opts: ZdsServerOptions = {}) {
    super();
    this.binding = opts.binding ?? loadNativeBinding();
    this.helloTimeoutMs = positive(opts.helloTimeoutMs, 'helloTimeoutMs');
    this.ackTimeoutMs = positive(opts.ackTimeoutMs, 'ackTimeoutMs');
    for (const p of opts.pods ?? []) this.pods.set(p.uid, p);
  }

  /** Binds `path` (replacing a stale socket file) and starts accepting. Throws NativeSyscallError. */
  listen(path: string): this {
    if (this.closed) throw new CniServerClosedError('is closed');
    if (this.server) throw new CniServerClosedError('is already listening');
    const server = new SeqpacketServer({ binding: this.binding, maxMessageBytes: ZDS_MAX_MESSAGE_SIZE });
    server.on('error', (err: Error) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    server.on('connection', (socket: SeqpacketSocket) => this.onConnection(socket));
    server.listen(path);
    this.server = server;
    return this;
  }

  address(): string | undefined {
    return this.server?.address();
  }

  stats(): ZdsServerStats {
    return { connections: this.conns.length, ...this.counters };
  }

  connections(): ZdsConnectionInfo[] {
    return this.conns.map((c) => ({ id: c.id, state: c.state }));
  }

  /** The current pod set (what a new connection's snapshot holds). */
  podSet(): CniPod[] {
    return [...this.pods.values()];
  }

  /**
   * Records the pod and sends `add` with its netns fd to the newest
   * connection. Rejects with CniNetnsOpenError (nothing recorded or sent) when
   * the netns cannot be opened. Resolves with the delivery once acked, NACKed,
   * timed out or the connection closed; `no_connection` when none is open.
   */
  async addPod(pod: CniPodWithNetns): Promise<ZdsDelivery> {
    if (this.closed) throw new CniServerClosedError('is closed');
    const request = `add '${pod.uid}'`;
    const conn = this.conns.at(-1);
    if (!conn) {
      this.pods.set(pod.uid, pod);
      return { connectionId: undefined, request, outcome: 'no_connection' };
    }
    const fd = this.openNetns(pod.uid, pod.netnsPath);
    this.pods.set(pod.uid, pod);
    const req: WorkloadRequest = { kind: 'add', uid: pod.uid, workloadInfo: { name: pod.name, namespace: pod.namespace, serviceAccount: pod.serviceAccount } };
    return this.enqueue(conn, () => this.sendRequest(conn, req, fd));
  }

  /** Forgets the pod and broadcasts `del` to every connection. One delivery per connection. */
  async removePod(uid: string): Promise<ZdsDelivery[]> {
    if (this.closed) throw new CniServerClosedError('is closed');
    this.pods.delete(uid);
    const req: WorkloadRequest = { kind: 'del', uid };
    return Promise.all(this.conns.map((conn) => this.enqueue(conn, () => this.sendRequest(conn, req, undefined))));
  }

  /** Stops accepting and closes every connection (pending deliveries resolve `closed`). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server?.close();
    for (const conn of [...this.conns]) this.drop(conn, undefined);
  }

  private openNetns(uid: string, netnsPath: string): number {
    try {
      return openSync(netnsPath, 'r');
    } catch (err) {
      throw new CniNetnsOpenError(uid, netnsPath, { cause: err });
    }
  }

  private onConnection(socket: SeqpacketSocket): void {
    if (this.closed) {
      socket.close();
      return;
    }
    const conn: Connection = { id: this.nextId++, socket, state: 'hello', closed: false, chain: Promise.resolve(), waiter: undefined };
    this.conns.push(conn);
    this.counters.accepted++;
    socket.on('message', (m: SeqpacketMessage) => this.onMessage(conn, m));
    socket.on('error', (err: Error) => this.drop(conn, new CniProtocolError(conn.id, `socket error: ${err.message}`)));
    socket.on('close', () => this.drop(conn, undefined));
    // The snapshot is the pod set at accept time; later changes are queued behind it.
    const snapshot = [...this.pods.values()];
    this.emit('connection', { connectionId: conn.id });
    const handshake = this.handshake(conn, snapshot);
    conn.chain = handshake.catch(() => undefined);
  }

  private onMessage(conn: Connection, m: SeqpacketMessage): void {
    // The agent never passes fds to us.
    for (const fd of m.fds) {
      try {
        this.binding.closeFd(fd);
      } catch {
        // already closed
      }
    }
    if (conn.closed) return;
    const w = conn.waiter;
    if (!w) {
      this.drop(conn, new CniProtocolError(conn.id, 'unsolicited message (nothing awaits an ack)'));
      return;
    }
    conn.waiter = undefined;
    clearTimeout(w.timer);
    if (m.fds.length > 0) {
      this.drop(conn, new CniProtocolError(conn.id, `message carried ${m.fds.length} fds`));
      return;
    }
    w.resolve(m);
  }

  /** The next datagram, or a rejection when `timeoutMs` passes (the connection is then dropped) or it closes. */
  private nextMessage(conn: Connection, timeoutMs: number, onTimeout: () => Error): Promise<SeqpacketMessage> {
    return new Promise<SeqpacketMessage>((resolve, reject) => {
      if (conn.closed) {
        reject(new ConnectionClosed('connection closed'));
        return;
      }
      const timer = setTimeout(() => {
        const err = onTimeout();
        if (err instanceof CniAckTimeoutError) this.counters.timeouts++;
        this.drop(conn, err);
      }, timeoutMs);
      conn.waiter = { resolve, reject, timer };
    });
  }

  private drop(conn: Connection, error: Error | undefined): void {
    if (conn.closed) return;
    conn.closed = true;
    const i = this.conns.indexOf(conn);
    if (i >= 0) this.conns.splice(i, 1);
    if (error) this.counters.dropped++;
    const w = conn.waiter;
    conn.waiter = undefined;
    if (w) {
      clearTimeout(w.timer);
      w.reject(error ?? new ConnectionClosed('connection closed'));
    }
    conn.socket.close();
    this.emit('drop', error ? { connectionId: conn.id, error } : { connectionId: conn.id });
  }

  private enqueue(conn: Connection, op: () => Promise<ZdsDelivery>): Promise<ZdsDelivery> {
    const run = conn.chain.then(op);
    conn.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async handshake(conn: Connection, snapshot: readonly CniPod[]): Promise<void> {
    let hello: SeqpacketMessage;
    try {
      hello = await this.nextMessage(conn, this.helloTimeoutMs, () => new CniHelloError(conn.id, `no hello within ${this.helloTimeoutMs} ms`));
    } catch {
      return; // dropped (timeout) or closed
    }
    let problem: string | undefined;
    if (hello.truncated) problem = 'truncated hello';
    else {
      const h = decodeZdsHello(hello.data);
      if (!h.ok) problem = `bad hello: ${h.reason}`;
      else if (h.value.version !== ZdsVersion.V1) problem = `unsupported zds version ${h.value.version}`;
    }
    if (problem !== undefined) {
      this.drop(conn, new CniHelloError(conn.id, problem));
      return;
    }
    conn.state = 'snapshot';
    for (const pod of snapshot) {
      if (conn.closed) return;
      let fd: number | undefined;
      if (pod.netnsPath !== undefined) {
        try {
          fd = this.openNetns(pod.uid, pod.netnsPath);
        } catch (err) {
          this.emit('netns_error', err);
        }
      }
      const req: WorkloadRequest =
        fd === undefined
          ? { kind: 'keep', uid: pod.uid }
          : { kind: 'add', uid: pod.uid, workloadInfo: { name: pod.name, namespace: pod.namespace, serviceAccount: pod.serviceAccount } };
      const d = await this.sendRequest(conn, req, fd);
      if (d.outcome !== 'ack' && d.outcome !== 'nack') return;
    }
    const d = await this.sendRequest(conn, { kind: 'snapshot_sent' }, undefined);
    if (d.outcome === 'ack' || d.outcome === 'nack') {
      conn.state = 'ready';
      this.emit('ready', { connectionId: conn.id });
    }
  }

  /** Sends one request (taking ownership of `fd`, closed right after the send) and awaits its Ack. */
  private async sendRequest(conn: Connection, req: WorkloadRequest, fd: number | undefined): Promise<ZdsDelivery> {
    const request = describe(req);
    const base = { connectionId: conn.id, request };
    if (conn.closed) {
      if (fd !== undefined) closeSync(fd);
      return { ...base, outcome: 'closed' };
    }
    // The deadline covers the send and the ack; the waiter is armed before the send so no ack is missed.
    const reply = this.nextMessage(conn, this.ackTimeoutMs, () => new CniAckTimeoutError(conn.id, request, this.ackTimeoutMs));
    reply.catch(() => undefined);
    try {
      await conn.socket.send(encodeWorkloadRequest(req), fd);
      this.counters.sent++;
    } catch (err) {
      this.drop(conn, new CniProtocolError(conn.id, `cannot send ${request}: ${err instanceof Error ? err.message : String(err)}`));
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    let m: SeqpacketMessage;
    try {
      m = await reply;
    } catch (err) {
      const error = err instanceof ConnectionClosed ? undefined : (err as Error);
      const outcome = err instanceof CniAckTimeoutError ? 'timeout' : 'closed';
      return error ? { ...base, outcome, error } : { ...base, outcome };
    }
    if (m.truncated) {
      const error = new CniProtocolError(conn.id, `truncated reply to ${request}`);
      this.drop(conn, error);
      return { ...base, outcome: 'closed', error };
    }
    const resp = decodeWorkloadResponse(m.data);
    if (!resp.ok) {
      const error = new CniProtocolError(conn.id, `bad reply to ${request}: ${resp.reason}`);
      this.drop(conn, error);
      return { ...base, outcome: 'closed', error };
    }
    if (resp.value.ack.error === '') {
      this.counters.acked++;
      return { ...base, outcome: 'ack' };
    }
    this.counters.nacked++;
    const error = new CniNackError(conn.id, request, resp.value.ack.error);
    this.emit('nack', error);
    return { ...base, outcome: 'nack', error };
  }
}
