/**
 * Saturation load with h2load (nghttp2's C load generator) in HTTP/1.1 mode:
 * `clients` keep-alive connections, each with one request in flight, as fast
 * as the path answers, for a fixed duration after a warm-up. The argv and the
 * parse of its text summary live here so the driver stays small and the parse
 * can be unit-tested.
 */

export interface H2loadArgs {
  readonly url: string;
  readonly clients: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
}

export interface H2loadResult {
  /** Completed requests per second, h2load's own figure over the measured duration. */
  readonly rps: number;
  readonly done: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly errored: number;
  /** Mean / max request time in ms (h2load's "time for request" line), when printed. */
  readonly meanMs: number | null;
  readonly maxMs: number | null;
}

export function h2loadArgv(a: H2loadArgs): string[] {
  return ['h2load', '--h1', '-c', String(a.clients), '-m', '1', '-D', String(a.seconds), `--warm-up-time=${a.warmupSeconds}`, a.url];
}

function toMs(value: string, unit: string): number {
  const v = Number(value);
  if (unit === 'us') return v / 1000;
  if (unit === 's') return v * 1000;
  return v;
}

/** Parses h2load's summary; throws when the "finished in" or "requests:" line is missing. */
export function parseH2load(text: string): H2loadResult {
  const fin = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(text);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(text);
  if (!fin || !req) throw new Error(`unparsable h2load output: ${text.trim().slice(-400)}`);
  const t = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(text);
  return {
    rps: Number(fin[1]),
    done: Number(req[3]),
    succeeded: Number(req[4]),
    failed: Number(req[5]),
    errored: Number(req[6]),
    meanMs: t ? Math.round(toMs(t[5] as string, t[6] as string) * 1000) / 1000 : null,
    maxMs: t ? Math.round(toMs(t[3] as string, t[4] as string) * 1000) / 1000 : null,
  };
}
