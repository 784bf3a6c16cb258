/**
 * Per-pod cap on connections the agent accepted but has not finished setting
 * up (issue 9, "Limits"). One pod, or one client flooding one pod, must not
 * starve the other pods' connection setup on the same agent.
 *
 * Two directions are counted separately, each against the same cap
 * (`--max-pending-per-pod`, DEFAULT_MAX_PENDING_PER_POD):
 *   - outbound: connections a pod opened (captured 15001, SOCKS5 15080),
 *     pending until their tunnel or passthrough upstream is established;
 *   - inbound: plaintext connections captured on the pod's 15006, pending
 *     until the agent's dial to the pod's application completes (the pod
 *     is the destination; the flooding client may be anyone).
 * Beyond the cap a new connection is reset at once.
 *
 * Metrics (pod = namespace/name, direction = outbound | inbound):
 *   ambit_pending_connections{pod,direction} (gauge),
 *   ambit_pending_connections_refused_total{pod,direction} (counter).
 */
import type { Socket } from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { LocalWorkload } from '../state/local-config.js';
import { DEFAULT_MAX_PENDING_PER_POD } from './config.js';

export type PendingDirection = 'outbound' | 'inbound';

export class PendingConnections {
  readonly #max: number;
  readonly #counts = new Map<string, number>();
  readonly #gauge: Gauge<'pod' | 'direction'> | undefined;
  readonly #refused: Counter<'pod' | 'direction'> | undefined;

  constructor(opts: { maxPerPod?: number; registry?: Registry } = {}) {
    this.#max = opts.maxPerPod ?? DEFAULT_MAX_PENDING_PER_POD;
    if (opts.registry) {
      this.#gauge = new Gauge({
        name: 'ambit_pending_connections',
        help: 'Connections accepted but not yet set up, per pod and direction (outbound: not yet tunnelled; inbound: plaintext not yet connected to the app)',
        labelNames: ['pod', 'direction'],
        registers: [opts.registry],
      });
      this.#refused = new Counter({
        name: 'ambit_pending_connections_refused_total',
        help: 'Connections reset at accept because the pod already had the maximum number pending in that direction',
        labelNames: ['pod', 'direction'],
        registers: [opts.registry],
      });
    }
  }

  /** The cap, per pod and per direction. */
  get maxPerPod(): number {
    return this.#max;
  }

  /** Pending connections of a pod in one direction right now. */
  count(pod: LocalWorkload, direction: PendingDirection = 'outbound'): number {
    return this.#counts.get(`${direction}/${pod.uid}`) ?? 0;
  }

  /**
   * Admits `client` as pending for `pod`: returns its release function (idempotent;
   * also run when the socket closes), or undefined when the pod is at the cap.
   */
  admit(pod: LocalWorkload, client: Socket, direction: PendingDirection = 'outbound'): (() => void) | undefined {
    const key = `${direction}/${pod.uid}`;
    const label = { pod: `${pod.namespace}/${pod.name}`, direction };
    const n = this.#counts.get(key) ?? 0;
    if (n >= this.#max) {
      this.#refused?.inc(label);
      return undefined;
    }
    this.#counts.set(key, n + 1);
    this.#gauge?.set(label, n + 1);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      const left = (this.#counts.get(key) ?? 1) - 1;
      if (left <= 0) this.#counts.delete(key);
      else this.#counts.set(key, left);
      this.#gauge?.set(label, Math.max(0, left));
    };
    client.once('close', release);
    return release;
  }
}
