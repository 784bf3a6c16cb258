/**
 * Reconnect backoff for the xDS client, as ztunnel does it: 10 ms, doubling
 * on every failed attempt, capped at 15 s, reset to the start after a
 * successful response. Deterministic (no jitter) so tests can assert the
 * schedule with a FakeClock.
 */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
}

export const DEFAULT_BACKOFF_INITIAL_MS = 10;
export const DEFAULT_BACKOFF_MAX_MS = 15_000;

export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  #next: number;
  #attempts = 0;

  constructor(opts: BackoffOptions = {}) {
    this.initialMs = Math.max(1, opts.initialMs ?? DEFAULT_BACKOFF_INITIAL_MS);
    this.maxMs = Math.max(this.initialMs, opts.maxMs ?? DEFAULT_BACKOFF_MAX_MS);
    this.#next = this.initialMs;
  }

  /** The delay before the next attempt; each call doubles the following one up to maxMs. */
  next(): number {
    const delay = this.#next;
    this.#next = Math.min(this.maxMs, this.#next * 2);
    this.#attempts++;
    return delay;
  }

  reset(): void {
    this.#next = this.initialMs;
    this.#attempts = 0;
  }

  /** Failed attempts since the last reset. */
  get attempts(): number {
    return this.#attempts;
  }
}
