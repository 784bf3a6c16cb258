/**
 * Text helpers for the operator commands: aligned tables, byte and duration
 * units, and ANSI colour that is only used when stdout is a terminal (and
 * NO_COLOR is not set).
 */

/** Where a command writes; `colour` decides whether ANSI codes are used. */
export interface Output {
  write(s: string): void;
  colour: boolean;
}

export function processOutput(): Output {
  return { write: (s) => void process.stdout.write(s), colour: process.stdout.isTTY === true && !process.env.NO_COLOR };
}

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, dim: 2, bold: 1 } as const;
export type Colour = keyof typeof CODES;

export function paint(on: boolean, c: Colour, s: string): string {
  return on ? `\u001b[${CODES[c]}m${s}\u001b[0m` : s;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;

export function visibleLength(s: string): number {
  return s.replace(ANSI, '').length;
}

/** Columns padded to the widest cell; cells may carry colour codes. */
export function table(headers: string[], rows: string[][], colour = false): string {
  if (rows.length === 0) return `${paint(colour, 'dim', '(none)')}\n`;
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(Math.max(0, (widths[i] ?? 0) - visibleLength(c)))))
      .join('  ')
      .trimEnd();
  return [paint(colour, 'bold', line(headers)), ...rows.map(line)].join('\n') + '\n';
}

export function heading(colour: boolean, s: string): string {
  return `\n${paint(colour, 'bold', s)}\n`;
}

export function humanBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u] ?? ''}`;
}

/** 90 → "1m30s", 7200 → "2h0m", negative → "expired 5m ago". */
export function humanDuration(ms: number): string {
  const neg = ms < 0;
  let s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const text = d > 0 ? `${d}d${h}h` : h > 0 ? `${h}h${m}m` : m > 0 ? `${m}m${s}s` : `${s}s`;
  return neg ? `expired ${text} ago` : text;
}
