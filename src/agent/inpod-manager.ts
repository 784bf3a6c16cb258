/**
 * The set of enrolled pods and their proxies (ztunnel's inpod workload
 * manager). Enrollment arrives over ZDS: `add` hands over the pod's netns fd,
 * `del` takes the pod away, and a snapshot ends with the set of uids to keep.
 *
 * Invariants:
 * - One entry per uid. The manager owns each entry's netns fd and closes it
 *   exactly once, when the entry goes (del, replacement, failed start, close).
 * - `add` for a uid that is up in the same netns (same device and inode) is a
 *   no-op; in another netns (the pod was re-created) the old proxy is closed
 *   and a new one started.
 * - A `del` that arrives while the proxy is still starting wins: the proxy is
 *   closed as soon as its start finishes.
 * - Closing a proxy closes its listeners only; established connections run
 *   to completion (the drain is the connection's, not the pod's).
 */
import type { Logger } from '../common/logger.js';
import { toError } from '../common/errors.js';
import type { LocalWorkload } from '../state/local-config.js';

export interface PodProxy {
  /** Stops accepting; established connections continue. */
  close(): void;
}

export interface EnrolledPod {
  readonly uid: string;
  /** The pod's netns fd, owned by the manager; valid while the pod is enrolled. */
  readonly netnsFd: number;
  readonly workload: LocalWorkload;
}

export interface InPodManagerOptions {
  /** Starts listeners in the pod netns. Rejects when the proxy cannot run (the add is NACKed). */
  startProxy(pod: EnrolledPod): Promise<PodProxy>;
  /** The workload for a uid in the current cluster view. */
  resolve(uid: string): LocalWorkload | undefined;
  /** `dev:ino` of a netns fd, to tell a re-created pod from a repeated add. */
  netnsKey(fd: number): string;
  closeFd(fd: number): void;
  logger: Logger;
}

type PodState = 'starting' | 'up';

interface Entry {
  readonly uid: string;
  readonly netnsFd: number;
  readonly netnsKey: string;
  readonly workload: LocalWorkload;
  state: PodState;
  proxy: PodProxy | undefined;
  removed: boolean;
  /** Settles when the start finished (either way). */
  started: Promise<void>;
}

export interface PodStateDump {
  readonly uid: string;
  readonly workload: string;
  readonly state: PodState;
  readonly netns: string;
}

export class InPodManager {
  readonly #o: InPodManagerOptions;
  readonly #log: Logger;
  readonly #pods = new Map<string, Entry>();
  #closed = false;

  constructor(opts: InPodManagerOptions) {
    this.#o = opts;
    this.#log = opts.logger.child({ component: 'inpod' });
  }

  /**
   * Enrolls `uid` with `netnsFd` (ownership passes to the manager, even when
   * this rejects). Resolves once the proxy accepts connections.
   */
  async add(uid: string, netnsFd: number): Promise<void> {
    let key: string;
    try {
      key = this.#o.netnsKey(netnsFd);
    } catch (e) {
      this.#closeFd(netnsFd);
      throw toError(e);
    }
    if (this.#closed) {
      this.#closeFd(netnsFd);
      throw new Error('the agent is shutting down');
    }
    const existing = this.#pods.get(uid);
    if (existing && existing.netnsKey === key && !existing.removed) {
      this.#closeFd(netnsFd);
      await existing.started;
      if (existing.state !== 'up') throw new Error(`proxy for ${uid} failed to start`);
      return;
    }
    if (existing) this.#remove(existing, 'replaced: the pod has a new network namespace');
    const workload = this.#o.resolve(uid);
    if (!workload) {
      this.#closeFd(netnsFd);
      throw new Error(`pod ${uid} is not in the agent's cluster view yet`);
    }
    const entry: Entry = { uid, netnsFd, netnsKey: key, workload, state: 'starting', proxy: undefined, removed: false, started: Promise.resolve() };
    this.#pods.set(uid, entry);
    let failure: Error | undefined;
    entry.started = this.#o.startProxy({ uid, netnsFd, workload }).then(
      (proxy) => {
        entry.proxy = proxy;
        entry.state = 'up';
        if (entry.removed) this.#finish(entry);
        else this.#log.info({ uid, workload: `${workload.namespace}/${workload.name}`, ip: workload.ip }, 'pod enrolled');
      },
      (e: unknown) => {
        failure = toError(e);
        if (this.#pods.get(uid) === entry) this.#pods.delete(uid);
        entry.removed = true;
        this.#finish(entry);
      },
    );
    await entry.started;
    if (failure) throw failure;
    if (entry.removed) throw new Error(`pod ${uid} was removed while its proxy started`);
  }

  /** Removes the pod; idempotent. Returns whether it was known. */
  del(uid: string, reason = 'removed'): boolean {
    const e = this.#pods.get(uid);
    if (!e) return false;
    this.#remove(e, reason);
    return true;
  }

  /** After a ZDS snapshot: every pod not in `keep` is gone. */
  reconcile(keep: ReadonlySet<string>): string[] {
    const gone = [...this.#pods.keys()].filter((uid) => !keep.has(uid));
    for (const uid of gone) this.del(uid, 'not in the snapshot');
    return gone;
  }

  netnsOf(uid: string): number | undefined {
    const e = this.#pods.get(uid);
    return e && !e.removed ? e.netnsFd : undefined;
  }

  has(uid: string): boolean {
    return this.#pods.has(uid);
  }

  uids(): string[] {
    return [...this.#pods.keys()];
  }

  dump(): PodStateDump[] {
    return [...this.#pods.values()].map((e) => ({ uid: e.uid, workload: `${e.workload.namespace}/${e.workload.name}`, state: e.state, netns: e.netnsKey }));
  }

  close(): void {
    this.#closed = true;
    for (const e of [...this.#pods.values()]) this.#remove(e, 'agent shutting down');
  }

  #remove(e: Entry, reason: string): void {
    if (this.#pods.get(e.uid) === e) this.#pods.delete(e.uid);
    if (e.removed) return;
    e.removed = true;
    this.#log.info({ uid: e.uid, workload: `${e.workload.namespace}/${e.workload.name}`, reason }, 'pod unenrolled');
    if (e.state === 'up') this.#finish(e);
    // still starting: #finish runs when the start settles
  }

  #finish(e: Entry): void {
    try {
      e.proxy?.close();
    } catch (err) {
      this.#log.warn({ uid: e.uid, err: toError(err).message }, 'closing the pod proxy failed');
    }
    e.proxy = undefined;
    this.#closeFd(e.netnsFd);
  }

  #closeFd(fd: number): void {
    try {
      this.#o.closeFd(fd);
    } catch {
      // already closed
    }
  }
}
