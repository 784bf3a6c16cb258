/**
 * The agent (client) side of ZDS as a transport-agnostic state machine. The
 * caller owns the SOCK_SEQPACKET socket: it sends what `start()` returns,
 * feeds every received datagram (payload, SCM_RIGHTS fds, MSG_TRUNC/MSG_CTRUNC)
 * to `receive()`, and carries out the returned actions in order.
 *
 *   new --start()--> hello_sent --add/keep/del--> snapshot --snapshot_sent--> steady
 *   any --protocol error / close()--> closed
 *
 * Every WorkloadRequest gets exactly one Ack (`send` action). Behaviour taken
 * from ztunnel (src/inpod/protocol.rs, workloadmanager.rs, statemanager.rs):
 * a message that cannot be read (truncated, undecodable, no payload, ≠1 fd on
 * add, any fd on another message) is NACKed, its fds closed, and the
 * connection dropped (`protocol_error` with `fatal: true`); so are `keep`
 * after the snapshot and a second `snapshot_sent`. With
 * `disconnectOnInvalid: false` those are NACKed and the session goes on.
 * An add whose fd is not a netns (checked by the injected `isNetns`) is
 * NACKed and its fd closed, without dropping the connection.
 *
 * `receive()` never throws.
 */
import { ZdsDecodeError, ZdsFdError, ZdsProtocolError, ZdsSessionClosedError, type ZdsError } from './errors.js';
import { decodeWorkloadRequest, encodeWorkloadResponse, encodeZdsHello, ZDS_MAX_MESSAGE_SIZE, ZdsVersion, type WorkloadInfo } from './messages.js';

export type ZdsSessionState = 'new' | 'hello_sent' | 'snapshot' | 'steady' | 'closed';

/** One received datagram. `truncated` is MSG_TRUNC or MSG_CTRUNC. */
export interface ZdsDatagram {
  readonly data: Buffer;
  readonly fds: readonly number[];
  readonly truncated: boolean;
}

export type ZdsAction =
  /** Send this datagram (the hello, or an Ack) with no fds. */
  | { readonly kind: 'send'; readonly data: Buffer }
  /** Start (or replace) the proxy for `uid` in the netns `netnsFd`; the fd is now the caller's. */
  | { readonly kind: 'add'; readonly uid: string; readonly info: WorkloadInfo | undefined; readonly netnsFd: number }
  /** Snapshot only: keep the proxy already running for `uid`. */
  | { readonly kind: 'keep'; readonly uid: string }
  /** Remove the proxy for `uid`. `known` is false when no add/keep for it was seen (acked anyway; del is idempotent). */
  | { readonly kind: 'del'; readonly uid: string; readonly known: boolean }
  /** The snapshot is complete: drain every proxy whose uid is not in `keep`. */
  | { readonly kind: 'snapshot_done'; readonly keep: ReadonlySet<string> }
  /** Close this received fd: the message carrying it was rejected. */
  | { readonly kind: 'close_fd'; readonly fd: number }
  /** A message was rejected. When `fatal`, the session is closed and the caller must drop the connection. */
  | { readonly kind: 'protocol_error'; readonly reason: string; readonly error: ZdsError; readonly fatal: boolean };

export interface ZdsSessionOptions {
  /** Whether the fd is a network namespace (ioctl NS_GET_NSTYPE or fstatfs). Injected to keep syscalls out. */
  readonly isNetns: (fd: number) => boolean;
  /** Drop the connection after NACKing an unreadable or out-of-order message, as ztunnel does. Default true. */
  readonly disconnectOnInvalid?: boolean;
  /** Uids whose proxies already run (from an earlier connection); a del for them is reported as known. */
  readonly knownUids?: Iterable<string>;
}

const ACK = encodeWorkloadResponse({ ack: { error: '' } });

export class ZdsClientSession {
  private stateValue: ZdsSessionState = 'new';
  private readonly isNetns: (fd: number) => boolean;
  private readonly disconnectOnInvalid: boolean;
  private readonly known: Set<string>;
  private readonly snapshotUids = new Set<string>();

  constructor(options: ZdsSessionOptions) {
    this.isNetns = options.isNetns;
    this.disconnectOnInvalid = options.disconnectOnInvalid ?? true;
    this.known = new Set(options.knownUids ?? []);
  }

  get state(): ZdsSessionState {
    return this.stateValue;
  }

  /** The hello to send first. Calling it again, or after close, returns nothing. */
  start(): ZdsAction[] {
    if (this.stateValue !== 'new') return [];
    this.stateValue = 'hello_sent';
    return [{ kind: 'send', data: encodeZdsHello({ version: ZdsVersion.V1 }) }];
  }

  /** Marks the session closed (connection lost or shut down). Later datagrams only get their fds closed. */
  close(): void {
    this.stateValue = 'closed';
  }

  receive(dgram: ZdsDatagram): ZdsAction[] {
    const fds = [...dgram.fds];
    if (this.stateValue === 'closed') {
      return [...closeAll(fds), { kind: 'protocol_error', reason: 'message after close', error: new ZdsSessionClosedError(), fatal: true }];
    }
    if (this.stateValue === 'new') {
      // We have not spoken yet: no ack, the peer is not speaking zds.
      this.stateValue = 'closed';
      return [...closeAll(fds), { kind: 'protocol_error', reason: 'message before hello', error: new ZdsProtocolError('message before hello'), fatal: true }];
    }
    if (dgram.truncated) return this.reject(fds, new ZdsDecodeError('truncated datagram (MSG_TRUNC or MSG_CTRUNC)'), true);
    if (dgram.data.length > ZDS_MAX_MESSAGE_SIZE) {
      return this.reject(fds, new ZdsDecodeError(`message is ${dgram.data.length} bytes; the limit is ${ZDS_MAX_MESSAGE_SIZE}`), true);
    }
    const req = decodeWorkloadRequest(dgram.data);
    if (!req.ok) return this.reject(fds, new ZdsDecodeError(req.reason), true);
    const msg = req.value;

    if (msg.kind === 'add') {
      if (fds.length !== 1) return this.reject(fds, new ZdsFdError(`add for '${msg.uid}' carries ${fds.length} fds, expected 1`), true);
      const fd = fds[0] as number;
      let netns: boolean;
      try {
        netns = this.isNetns(fd);
      } catch {
        netns = false;
      }
      if (!netns) return this.reject(fds, new ZdsFdError(`fd for '${msg.uid}' is not a network namespace`), false);
      this.enterSnapshotIfFirst();
      if (this.stateValue === 'snapshot') this.snapshotUids.add(msg.uid);
      this.known.add(msg.uid);
      return [{ kind: 'add', uid: msg.uid, info: msg.workloadInfo, netnsFd: fd }, ack()];
    }

    if (fds.length > 0) return this.reject(fds, new ZdsFdError(`${msg.kind} carries ${fds.length} fds, expected none`), true);

    switch (msg.kind) {
      case 'keep':
        if (this.stateValue === 'steady') return this.reject(fds, new ZdsProtocolError(`keep for '${msg.uid}' after the snapshot`), true);
        this.enterSnapshotIfFirst();
        this.snapshotUids.add(msg.uid);
        this.known.add(msg.uid);
        return [{ kind: 'keep', uid: msg.uid }, ack()];
      case 'del': {
        this.enterSnapshotIfFirst();
        const known = this.known.delete(msg.uid);
        this.snapshotUids.delete(msg.uid);
        return [{ kind: 'del', uid: msg.uid, known }, ack()];
      }
      case 'snapshot_sent': {
        if (this.stateValue === 'steady') return this.reject(fds, new ZdsProtocolError('second snapshot_sent'), true);
        this.stateValue = 'steady';
        const keep = new Set(this.snapshotUids);
        this.snapshotUids.clear();
        return [{ kind: 'snapshot_done', keep }, ack()];
      }
    }
  }

  private enterSnapshotIfFirst(): void {
    if (this.stateValue === 'hello_sent') this.stateValue = 'snapshot';
  }

  /** Close the fds, NACK, report; and close the session when the error breaks the stream. */
  private reject(fds: readonly number[], error: ZdsError, breaksStream: boolean): ZdsAction[] {
    const fatal = breaksStream && this.disconnectOnInvalid;
    const reason = error.message;
    if (fatal) this.stateValue = 'closed';
    return [
      ...closeAll(fds),
      { kind: 'send', data: encodeWorkloadResponse({ ack: { error: nackText(reason) } }) },
      { kind: 'protocol_error', reason, error, fatal },
    ];
  }
}

/** Bounded so that a NACK naming a long uid still fits the peer's 1024-byte buffer. */
const MAX_NACK_BYTES = 512;

function nackText(reason: string): string {
  const bytes = Buffer.from(reason, 'utf8');
  if (bytes.length <= MAX_NACK_BYTES) return reason;
  // Cut on a character boundary: drop a trailing partial sequence.
  let end = MAX_NACK_BYTES;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return `${bytes.subarray(0, end).toString('utf8')}…`;
}

function ack(): ZdsAction {
  return { kind: 'send', data: Buffer.from(ACK) };
}

function closeAll(fds: readonly number[]): ZdsAction[] {
  return fds.map((fd) => ({ kind: 'close_fd', fd }));
}
