// Fails (exit 1) when the relative imports under the given folder form a cycle.
// A small DFS over `import ... from './x.js'` edges; type-only imports count too,
// because a type cycle is still a layering error.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(process.argv[2] ?? 'src');
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) files.push(p);
  }
})(root);

const importRe = /(?:import|export)\s[^'"]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;
const edges = new Map();
for (const f of files) {
  const src = readFileSync(f, 'utf8');
  const deps = [];
  for (const m of src.matchAll(importRe)) {
    const spec = m[1] ?? m[2];
    deps.push(resolve(dirname(f), spec.replace(/\.js$/, '.ts')));
  }
  edges.set(f, deps);
}

const state = new Map(); // 1 = on stack, 2 = done
const cycles = [];
function visit(f, stack) {
  state.set(f, 1);
  stack.push(f);
  for (const d of edges.get(f) ?? []) {
    if (!edges.has(d)) continue;
    if (state.get(d) === 1) cycles.push([...stack.slice(stack.indexOf(d)), d]);
    else if (!state.has(d)) visit(d, stack);
  }
  stack.pop();
  state.set(f, 2);
}
for (const f of files) if (!state.has(f)) visit(f, []);

if (cycles.length > 0) {
  for (const c of cycles) console.error('import cycle: ' + c.map((p) => relative(root, p)).join(' -> '));
  process.exit(1);
}
console.log(`no import cycles in ${files.length} files under ${relative(process.cwd(), root) || '.'}`);
