/**
 * The open-loop schedule both request generators share (inpod-http.ts,
 * l7-load.ts): request i is due at start + i / rps, fixed in advance. When
 * the generator falls behind, the late requests go out at once, so slowness
 * shows up as latency and not as a lower rate (no coordinated omission).
 * Requests over `maxInFlight` are counted as skipped, never queued.
 */
import { performance } from 'node:perf_hooks';

export interface OpenLoopOptions {
  readonly rps: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly maxInFlight: number;
}

export interface OpenLoopResult {
  /** Requests due in the recorded window (after the warm-up). */
  readonly sent: number;
  readonly skipped: number;
  /** performance.now() at the first recorded request's due time. */
  readonly recordStart: number;
}

/**
 * Calls `issue(index, dueAt)` on schedule and resolves once every issued
 * request has settled. `index < warmup` marks a warm-up request (not recorded).
 */
export async function runOpenLoop(o: OpenLoopOptions, issue: (index: number, dueAt: number, warmup: boolean) => Promise<void>): Promise<OpenLoopResult> {
  const total = Math.round(o.rps * (o.warmupSeconds + o.seconds));
  const warm = Math.round(o.rps * o.warmupSeconds);
  const interval = 1000 / o.rps;
  const pending: Array<Promise<void>> = [];
  let inFlight = 0;
  let sent = 0;
  let skipped = 0;
  let recordStart = Number.NaN;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
      while (sent < due) {
        const dueAt = start + sent * interval;
        if (sent === warm) recordStart = dueAt;
        if (inFlight >= o.maxInFlight) {
          if (sent >= warm) skipped++;
          sent++;
          continue;
        }
        inFlight++;
        pending.push(issue(sent, dueAt, sent < warm).finally(() => inFlight--));
        sent++;
      }
      if (sent >= total) return resolve();
      setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    tick();
  });
  await Promise.all(pending);
  return { sent: sent - warm, skipped, recordStart };
}
