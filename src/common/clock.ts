/**
 * Time is injected so pool idle release, ping deadlines and certificate
 * renewal can be driven by a fake clock in tests.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const handle = setTimeout(fn, ms);
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
};

/** A manually advanced clock for unit tests. */
export class FakeClock implements Clock {
  #now: number;
  #timers: Array<{ at: number; fn: () => void; id: number }> = [];
  #nextId = 0;

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const id = this.#nextId++;
    this.#timers.push({ at: this.#now + Math.max(0, ms), fn, id });
    return { cancel: () => (this.#timers = this.#timers.filter((t) => t.id !== id)) };
  }

  /** Moves time forward, firing due timers in order (timers may schedule more timers). */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      this.#timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.#timers[0];
      if (!next || next.at > target) break;
      this.#timers.shift();
      this.#now = next.at;
      next.fn();
    }
    this.#now = target;
  }

  get pendingTimers(): number {
    return this.#timers.length;
  }
}
