/**
 * A small parser of the Prometheus text exposition format (0.0.4), enough
 * for `ambit metrics` and `ambit status` to summarize a scrape: samples with
 * their labels and values, and the TYPE of each family. Lines it cannot read
 * are reported, not thrown, so one odd metric does not hide the rest.
 */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromScrape {
  samples: PromSample[];
  types: Record<string, string>;
  /** 1-based line numbers that did not parse. */
  badLines: number[];
}

function parseValue(s: string): number | undefined {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  const n = Number(s);
  return s !== '' && !Number.isNaN(n) ? n : undefined;
}

/** Parses `{a="x",b="y\"z"}` starting at `i` (at '{'); returns the labels and the index after '}'. */
function parseLabels(line: string, start: number): { labels: Record<string, string>; end: number } | undefined {
  const labels: Record<string, string> = {};
  let i = start + 1;
  for (;;) {
    while (line[i] === ' ' || line[i] === ',') i++;
    if (line[i] === '}') return { labels, end: i + 1 };
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
    if (!m) return undefined;
    const key = m[0];
    i += key.length;
    while (line[i] === ' ') i++;
    if (line[i] !== '=' || line[i + 1] !== '"') return undefined;
    i += 2;
    let v = '';
    for (;;) {
      const c = line[i];
      if (c === undefined) return undefined;
      if (c === '"') break;
      if (c === '\\') {
        const n = line[i + 1];
        v += n === 'n' ? '\n' : (n ?? '');
        i += 2;
        continue;
      }
      v += c;
      i++;
    }
    labels[key] = v;
    i++;
  }
}

export function parsePromText(text: string): PromScrape {
  const out: PromScrape = { samples: [], types: {}, badLines: [] };
  text.split('\n').forEach((raw, idx) => {
    const line = raw.trim();
    if (line === '') return;
    if (line.startsWith('#')) {
      const t = /^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(line);
      if (t) out.types[t[1] as string] = t[2] as string;
      return;
    }
    const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!m) return void out.badLines.push(idx + 1);
    const name = m[0];
    let i = name.length;
    let labels: Record<string, string> = {};
    if (line[i] === '{') {
      const l = parseLabels(line, i);
      if (!l) return void out.badLines.push(idx + 1);
      labels = l.labels;
      i = l.end;
    }
    const value = parseValue(line.slice(i).trim().split(/\s+/)[0] ?? '');
    if (value === undefined) return void out.badLines.push(idx + 1);
    out.samples.push({ name, labels, value });
  });
  return out;
}
