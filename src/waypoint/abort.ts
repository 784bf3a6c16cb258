/**
 * A cheap stand-in for AbortController/AbortSignal on the request path.
 *
 * Why: the pipeline needs "this request / this attempt is over" notices
 * (client gone, overall timeout, per-try timeout). A real AbortController
 * costs an EventTarget, a signal object and Node's event dispatch per
 * request, which showed up at ~2 % of the waypoint's CPU at saturation.
 * `Abort` is a plain object with a short listener list; code that only
 * listens takes the `AbortLike` interface, which a real AbortSignal also
 * satisfies (tests and callers may pass either).
 *
 * Semantics follow AbortSignal: listeners run once, in order, when abort()
 * is first called; a listener added after the abort never runs.
 */

export interface AbortLike {
  readonly aborted: boolean;
  addEventListener(type: 'abort', fn: () => void, opts?: { once?: boolean }): void;
  removeEventListener(type: 'abort', fn: () => void): void;
}

export class Abort implements AbortLike {
  #aborted = false;
  #fns: Array<() => void> | undefined;

  get aborted(): boolean {
    return this.#aborted;
  }

  addEventListener(_type: 'abort', fn: () => void): void {
    if (this.#aborted) return;
    (this.#fns ??= []).push(fn);
  }

  removeEventListener(_type: 'abort', fn: () => void): void {
    const fns = this.#fns;
    if (!fns) return;
    const i = fns.indexOf(fn);
    if (i >= 0) fns.splice(i, 1);
  }

  abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    const fns = this.#fns;
    this.#fns = undefined;
    if (!fns) return;
    for (const fn of fns) {
      try {
        fn();
      } catch (err) {
        // as with EventTarget: one failing listener neither stops the others nor is swallowed
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}

/**
 * An Abort that follows `parent`: aborted when the parent aborts (or already
 * has). `unlink()` removes the listener from the parent once it is no longer
 * needed, so long-lived parents do not collect listeners.
 */
export class LinkedAbort extends Abort {
  readonly #parent: AbortLike;
  readonly #onParent = (): void => this.abort();

  constructor(parent: AbortLike) {
    super();
    this.#parent = parent;
    if (parent.aborted) this.abort();
    else parent.addEventListener('abort', this.#onParent, { once: true });
  }

  unlink(): void {
    this.#parent.removeEventListener('abort', this.#onParent);
  }
}
