/**
 * The CNI role: keeps the node's enrolled pods in step with a desired set,
 * over ZDS, and owns each pod's redirection rules. The order follows
 * istio-cni's in-pod mode so nothing is ever redirected to a port nobody
 * listens on:
 *
 *   enroll:   ZDS add (the agent acks once its listeners are up) ─► install rules
 *   unenroll: remove rules (traffic goes direct again) ─► ZDS del
 *   re-add:   a pod whose netns changed is unenrolled from the old netns first
 *
 * A pod whose add is not acked (no agent yet, NACK, timeout) is retried every
 * `retryMs`; the agent's snapshot on (re)connect also carries it. A pod whose
 * rules cannot be installed is retried the same way; the other pods are
 * unaffected. `setDesired` may be called at any time; work is serialized.
 */
import { EventEmitter } from 'node:events';
import { toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { CniPodWithNetns, ZdsServer } from './zds-server.js';

export interface PodRules {
  install(netnsPath: string): Promise<unknown>;
  remove(netnsPath: string): Promise<unknown>;
}

export interface PodEnrollerOptions {
  readonly server: ZdsServer;
  /** Omit to enroll without redirection (the pods are then reached only through the agent's explicit entries). */
  readonly rules?: PodRules;
  readonly logger: Logger;
  readonly retryMs?: number;
}

type PodPhase = 'pending' | 'enrolled';

interface PodEntry {
  pod: CniPodWithNetns;
  phase: PodPhase;
  lastError?: string;
}

export interface EnrollerPodStatus {
  readonly uid: string;
  readonly netns: string;
  readonly phase: PodPhase;
  readonly lastError?: string;
}

export class PodEnroller extends EventEmitter<{ synced: []; enrolled: [uid: string]; unenrolled: [uid: string] }> {
  readonly #o: PodEnrollerOptions;
  readonly #log: Logger;
  readonly #pods = new Map<string, PodEntry>();
  #desired = new Map<string, CniPodWithNetns>();
  #chain: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: PodEnrollerOptions) {
    super();
    this.#o = opts;
    this.#log = opts.logger.child({ component: 'cni-enroller' });
    // A new agent connection gets the snapshot; pods still pending get another try right after.
    opts.server.on('ready', () => this.#schedule(0));
  }

  /** The pods that should be enrolled now. Returns once this state has been worked through once. */
  setDesired(pods: Iterable<CniPodWithNetns>): Promise<void> {
    this.#desired = new Map([...pods].map((p) => [p.uid, p]));
    return this.#enqueue();
  }

  /** True when every desired pod is enrolled and nothing else is. */
  get synced(): boolean {
    if (this.#pods.size !== this.#desired.size) return false;
    for (const [uid, want] of this.#desired) {
      const have = this.#pods.get(uid);
      if (have?.phase !== 'enrolled' || have.pod.netnsPath !== want.netnsPath) return false;
    }
    return true;
  }

  status(): EnrollerPodStatus[] {
    return [...this.#pods.values()].map((e) => ({ uid: e.pod.uid, netns: e.pod.netnsPath, phase: e.phase, ...(e.lastError ? { lastError: e.lastError } : {}) }));
  }

  /** Stops retrying. Rules stay installed (a restarting CNI must not open a window of direct traffic). */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  /** Unenrolls every pod (removes rules, sends del), e.g. when the lab goes down. */
  async unenrollAll(): Promise<void> {
    this.#desired = new Map();
    await this.#enqueue();
  }

  #enqueue(): Promise<void> {
    const run = this.#chain.then(() => this.#reconcile());
    this.#chain = run.catch(() => undefined);
    return run;
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    if (this.#timer) {
      if (ms > 0) return;
      clearTimeout(this.#timer);
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#enqueue();
    }, ms);
    this.#timer.unref();
  }

  async #reconcile(): Promise<void> {
    for (const [uid, entry] of [...this.#pods]) {
      const want = this.#desired.get(uid);
      if (!want || want.netnsPath !== entry.pod.netnsPath) await this.#unenroll(entry, want ? 'netns changed' : 'no longer in the mesh');
    }
    let retry = false;
    for (const pod of this.#desired.values()) {
      const entry = this.#pods.get(pod.uid);
      if (entry?.phase === 'enrolled') continue;
      if (!(await this.#enroll(pod))) retry = true;
    }
    if (retry) this.#schedule(this.#o.retryMs ?? 5000);
    else if (this.synced) this.emit('synced');
  }

  async #enroll(pod: CniPodWithNetns): Promise<boolean> {
    const entry: PodEntry = this.#pods.get(pod.uid) ?? { pod, phase: 'pending' };
    entry.pod = pod;
    this.#pods.set(pod.uid, entry);
    let problem: string | undefined;
    try {
      const d = await this.#o.server.addPod(pod);
      if (d.outcome !== 'ack') problem = `agent did not ack the add (${d.outcome}${d.error ? `: ${d.error.message}` : ''})`;
      else if (this.#o.rules) await this.#o.rules.install(pod.netnsPath);
    } catch (e) {
      problem = toError(e).message;
    }
    if (problem !== undefined) {
      if (entry.lastError !== problem) this.#log.warn({ uid: pod.uid, err: problem }, 'pod not enrolled yet; retrying');
      entry.lastError = problem;
      return false;
    }
    entry.phase = 'enrolled';
    delete entry.lastError;
    this.#log.info({ uid: pod.uid, netns: pod.netnsPath, rules: this.#o.rules ? 'installed' : 'none' }, 'pod enrolled');
    this.emit('enrolled', pod.uid);
    return true;
  }

  async #unenroll(entry: PodEntry, reason: string): Promise<void> {
    const { uid, netnsPath } = entry.pod;
    if (this.#o.rules) {
      // A vanished netns (the pod is gone) has no rules left to remove.
      await this.#o.rules.remove(netnsPath).catch((e: unknown) => this.#log.warn({ uid, err: toError(e).message }, 'removing rules failed'));
    }
    await this.#o.server.removePod(uid).catch((e: unknown) => this.#log.warn({ uid, err: toError(e).message }, 'zds del failed'));
    this.#pods.delete(uid);
    this.#log.info({ uid, netns: netnsPath, reason }, 'pod unenrolled');
    this.emit('unenrolled', uid);
  }
}
