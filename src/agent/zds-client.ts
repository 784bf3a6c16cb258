/**
 * The agent's ZDS connection to the CNI node agent: a SOCK_SEQPACKET client
 * that drives ZdsClientSession and carries its actions out on the
 * InPodManager, one message at a time.
 *
 * Unlike the session's plain ack, an `add` is acknowledged only once the
 * pod's listeners accept connections; a proxy that cannot start is NACKed
 * with the reason, so the CNI side installs no rules for it and retries (no
 * traffic is ever redirected to a port nobody listens on).
 *
 * The connection is re-established after `reconnectMs` when it drops; the
 * new session's snapshot then reconciles the pod set.
 */
import { EventEmitter } from 'node:events';
import { Counter, type Registry } from 'prom-client';
import { toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { NativeBinding } from '../native/binding.js';
import { SeqpacketSocket, type SeqpacketMessage } from '../native/seqpacket.js';
import { encodeWorkloadResponse, ZDS_MAX_MESSAGE_SIZE } from '../zds/messages.js';
import { ZdsClientSession, type ZdsAction } from '../zds/session.js';
import type { InPodManager } from './inpod-manager.js';

export interface AgentZdsClientOptions {
  readonly path: string;
  readonly native: NativeBinding;
  readonly manager: InPodManager;
  readonly logger: Logger;
  /** Delay before reconnecting after a drop or a failed connect. Default 1000. */
  readonly reconnectMs?: number;
  /** Where `ambit_zds_refusals_total{reason}` is registered; omitted in tests that do not look. */
  readonly registry?: Registry;
}

/** The refusal reason label for a rejected message: from the error's stable code. */
function refusalReason(code: string | undefined): string {
  switch (code) {
    case 'AMBIT_ERR_ZDS_DECODE':
      return 'decode';
    case 'AMBIT_ERR_ZDS_FD':
      return 'fd';
    case 'AMBIT_ERR_ZDS_PROTOCOL':
      return 'protocol';
    default:
      return 'other';
  }
}

export class AgentZdsClient extends EventEmitter<{ snapshot: [kept: number]; disconnected: [reason: string] }> {
  readonly #o: AgentZdsClientOptions;
  readonly #log: Logger;
  #socket: SeqpacketSocket | undefined;
  #session: ZdsClientSession | undefined;
  #chain: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #snapshots = 0;
  readonly #refusals: Counter<'reason'> | undefined;

  constructor(opts: AgentZdsClientOptions) {
    super();
    this.#o = opts;
    this.#log = opts.logger.child({ component: 'zds-client', path: opts.path });
    if (opts.registry) {
      const name = 'ambit_zds_refusals_total';
      const existing = opts.registry.getSingleMetric(name) as Counter<'reason'> | undefined;
      this.#refusals =
        existing ??
        new Counter({ name, help: 'ZDS messages the agent NACKed: decode, fd, protocol (hostile or broken input) or proxy_start_failed', labelNames: ['reason'], registers: [opts.registry] });
    }
  }

  /** Snapshots completed so far (one per successful connection). */
  get snapshots(): number {
    return this.#snapshots;
  }

  start(): void {
    if (this.#closed || this.#socket) return;
    let socket: SeqpacketSocket;
    try {
      socket = SeqpacketSocket.connect(this.#o.path, { binding: this.#o.native, maxMessageBytes: ZDS_MAX_MESSAGE_SIZE });
    } catch (e) {
      this.#log.warn({ err: toError(e).message }, 'cannot reach the zds server; retrying');
      this.#retry();
      return;
    }
    const session = new ZdsClientSession({ isNetns: (fd) => this.#o.native.nsType(fd) === this.#o.native.CLONE_NEWNET, knownUids: this.#o.manager.uids() });
    this.#socket = socket;
    this.#session = session;
    socket.on('message', (m: SeqpacketMessage) => {
      const actions = session.receive({ data: m.data, fds: m.fds, truncated: m.truncated });
      this.#chain = this.#chain.then(() => this.#run(socket, actions));
    });
    socket.on('error', (err: Error) => this.#log.warn({ err: err.message }, 'zds connection error'));
    socket.on('close', () => {
      session.close();
      if (this.#socket === socket) {
        this.#socket = undefined;
        this.emit('disconnected', 'connection closed');
        if (!this.#closed) this.#log.warn('zds connection closed; reconnecting');
        this.#retry();
      }
    });
    this.#chain = this.#chain.then(() => this.#run(socket, session.start()));
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#session?.close();
    this.#socket?.close();
    this.#socket = undefined;
  }

  #retry(): void {
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.start();
    }, this.#o.reconnectMs ?? 1000);
    this.#timer.unref();
  }

  async #run(socket: SeqpacketSocket, actions: ZdsAction[]): Promise<void> {
    let addFailed: string | undefined;
    for (const a of actions) {
      switch (a.kind) {
        case 'add':
          try {
            await this.#o.manager.add(a.uid, a.netnsFd);
            addFailed = undefined;
          } catch (e) {
            addFailed = toError(e).message;
            this.#refusals?.inc({ reason: 'proxy_start_failed' });
            this.#log.error({ uid: a.uid, err: addFailed }, 'pod proxy failed to start; nacking the add');
          }
          break;
        case 'del':
          this.#o.manager.del(a.uid);
          break;
        case 'keep':
          break;
        case 'snapshot_done': {
          const gone = this.#o.manager.reconcile(a.keep);
          this.#snapshots++;
          this.#log.info({ kept: a.keep.size, removed: gone.length }, 'zds snapshot applied');
          this.emit('snapshot', a.keep.size);
          break;
        }
        case 'close_fd':
          try {
            this.#o.native.closeFd(a.fd);
          } catch {
            // already closed
          }
          break;
        case 'protocol_error':
          this.#refusals?.inc({ reason: refusalReason(a.error.code) });
          this.#log.error({ reason: a.reason, fatal: a.fatal }, 'zds message rejected');
          break;
        case 'send': {
          const data = addFailed === undefined ? a.data : encodeWorkloadResponse({ ack: { error: addFailed.slice(0, 500) } });
          addFailed = undefined;
          await socket.send(data).catch((e: unknown) => this.#log.warn({ err: toError(e).message }, 'cannot send to the zds server'));
          break;
        }
      }
    }
    if (actions.some((a) => a.kind === 'protocol_error' && a.fatal)) socket.close();
  }
}
