/**
 * A small, self-contained flame graph for V8 .cpuprofile files (what
 * `node --cpu-prof` writes): the profile's call tree drawn as an SVG (root at
 * the bottom, width = share of samples, a tooltip per frame) inside one HTML
 * page with a table of the functions with the most self time. No network, no
 * dependencies: the page opens from disk. Pure functions, so the unit test can
 * feed it a hand-made profile.
 */

export interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number; readonly columnNumber?: number };
  readonly hitCount?: number;
  readonly children?: readonly number[];
}

export interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

export interface Frame {
  readonly name: string;
  readonly self: number;
  readonly total: number;
  readonly children: readonly Frame[];
}

function frameName(n: CpuProfileNode): string {
  const f = n.callFrame;
  const fn = f.functionName === '' ? '(anonymous)' : f.functionName;
  if (f.url === '') return fn;
  const file = f.url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules\/)/, '$1').replace(/^.*\/(dist\/)/, '$1');
  return `${fn} ${file}:${f.lineNumber + 1}`;
}

/** The call tree with self/total sample counts (from `samples` when present, else `hitCount`). */
export function buildTree(p: CpuProfile): Frame {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const hits = new Map<number, number>();
  if (p.samples && p.samples.length > 0) for (const id of p.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  else for (const n of p.nodes) hits.set(n.id, n.hitCount ?? 0);
  const childIds = new Set(p.nodes.flatMap((n) => n.children ?? []));
  const root = p.nodes.find((n) => !childIds.has(n.id));
  if (!root) throw new Error('cpuprofile has no root node');
  const build = (n: CpuProfileNode, depth: number): Frame => {
    const children = depth > 400 ? [] : (n.children ?? []).map((c) => byId.get(c)).filter((c): c is CpuProfileNode => c !== undefined).map((c) => build(c, depth + 1));
    const self = hits.get(n.id) ?? 0;
    const sorted = [...children].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { name: frameName(n), self, total: self + sorted.reduce((s, c) => s + c.total, 0), children: sorted };
  };
  return build(root, 0);
}

/** Functions by self samples, largest first. */
export function topSelf(root: Frame, limit = 30): Array<{ name: string; self: number }> {
  const acc = new Map<string, number>();
  const walk = (f: Frame): void => {
    if (f.self > 0) acc.set(f.name, (acc.get(f.name) ?? 0) + f.self);
    for (const c of f.children) walk(c);
  };
  walk(root);
  return [...acc.entries()].map(([name, self]) => ({ name, self })).sort((a, b) => b.self - a.self).slice(0, limit);
}

const esc = (s: string): string => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

function color(name: string): string {
  if (name === '(garbage collector)') return '#c8a2c8';
  if (name.includes('node_modules/')) return '#e8b04c';
  if (name.includes('dist/')) return '#e8704c';
  if (name.includes('node:')) return '#7fb3d5';
  if (name.startsWith('(') && !name.includes(' ')) return '#b0b0b0';
  return '#f2d16b';
}

/** The flame graph as an SVG string; frames narrower than `minPx` are left out. */
export function flameSvg(root: Frame, opts: { width?: number; rowPx?: number; minPx?: number } = {}): string {
  const width = opts.width ?? 1200;
  const row = opts.rowPx ?? 16;
  const minPx = opts.minPx ?? 0.5;
  const rects: string[] = [];
  let maxDepth = 0;
  const scale = root.total > 0 ? width / root.total : 0;
  const walk = (f: Frame, x: number, depth: number): void => {
    const w = f.total * scale;
    if (w < minPx) return;
    maxDepth = Math.max(maxDepth, depth);
    rects.push(`${x.toFixed(2)}|${depth}|${w.toFixed(2)}|${f.name}|${f.total}`);
    let cx = x;
    for (const c of f.children) {
      walk(c, cx, depth + 1);
      cx += c.total * scale;
    }
  };
  walk(root, 0, 0);
  const height = (maxDepth + 1) * row + 4;
  const body = rects.map((r) => {
    const [x, d, w, name, total] = r.split('|') as [string, string, string, string, string];
    const y = height - (Number(d) + 1) * row;
    const pct = root.total > 0 ? ((Number(total) / root.total) * 100).toFixed(2) : '0';
    const chars = Math.floor(Number(w) / 6.5);
    const text = chars >= 3 ? `<text x="${(Number(x) + 3).toFixed(2)}" y="${y + row - 4}">${esc(name.length > chars ? `${name.slice(0, chars - 1)}…` : name)}</text>` : '';
    return `<g><title>${esc(name)} (${total} samples, ${pct}%)</title><rect x="${x}" y="${y}" width="${w}" height="${row - 1}" fill="${color(name)}" rx="1"/>${text}</g>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="monospace" font-size="11">${body.join('')}</svg>`;
}

/** The tree without the `(idle)` frame (the event loop waiting), which would otherwise dwarf the work. */
export function withoutIdle(root: Frame): { root: Frame; idle: number } {
  const idle = root.children.filter((c) => c.name === '(idle)').reduce((s, c) => s + c.total, 0);
  const children = root.children.filter((c) => c.name !== '(idle)');
  return { root: { ...root, children, total: root.total - idle }, idle };
}

/** One HTML page: title, sample count, the flame graph (busy samples only) and the top self-time table. */
export function flameHtml(title: string, p: CpuProfile): string {
  const { root, idle } = withoutIdle(buildTree(p));
  const seconds = (p.endTime - p.startTime) / 1e6;
  const rows = topSelf(root)
    .map((t) => `<tr><td>${t.self}</td><td>${root.total > 0 ? ((t.self / root.total) * 100).toFixed(1) : '0'}%</td><td>${esc(t.name)}</td></tr>`)
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title><style>body{font-family:sans-serif;margin:16px}svg text{pointer-events:none}svg g:hover rect{stroke:#000}td{font-family:monospace;padding:0 8px}</style></head><body><h1>${esc(title)}</h1><p>${root.total} busy samples over ${seconds.toFixed(1)} s (${idle} idle samples, the event loop waiting, left out). Root at the bottom; width = share of samples; hover for details. Colours: red = Ambit (dist/), orange = node_modules, blue = Node core, grey = V8/native.</p>${flameSvg(root)}<h2>Top self time</h2><table><tr><th>samples</th><th>share</th><th>function</th></tr>${rows}</table></body></html>\n`;
}
