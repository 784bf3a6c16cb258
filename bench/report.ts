/**
 * `npm run bench` (last step; `npm run bench -- --report-only` alone): merges
 * the benchmarks' latest results (bench/results/latest.json for HBONE, and
 * inpod-, agent-, control-plane-, l7-latest.json) into one report:
 * bench/results/<ISO time>.json (the tables with numbers) and
 * bench/results/<ISO time>.md (Markdown tables with ratios to the direct
 * path and to the best peer, the machine, and the published anchors as
 * reference rows). Missing result files are skipped, never fatal.
 *
 * With --readme, the README's "Performance" section is regenerated between
 * the markers `<!-- bench:begin -->` and `<!-- bench:end -->`; when the
 * markers are absent the section is printed instead and README.md is left
 * alone. Options: --results DIR (bench/results), --out DIR (same), --readme,
 * --readme-file FILE (README.md), --quiet.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildReport, reportMarkdown, type Inputs, type MergedReport } from './lib/report-model.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const README_BEGIN = '<!-- bench:begin -->';
export const README_END = '<!-- bench:end -->';

/** The result files the report merges, by input key. */
export const SOURCES: Readonly<Record<keyof Inputs, string>> = {
  hbone: 'latest.json',
  inpod: 'inpod-latest.json',
  agent: 'agent-latest.json',
  controlPlane: 'control-plane-latest.json',
  l7: 'l7-latest.json',
};

export function readInputs(dir: string, warn: (msg: string) => void = () => undefined): Inputs {
  const out: Record<string, unknown> = {};
  for (const [key, file] of Object.entries(SOURCES)) {
    const path = join(dir, file);
    if (!existsSync(path)) {
      warn(`report: ${file} not found, its tables are left out`);
      continue;
    }
    try {
      out[key] = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      warn(`report: cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return out as Inputs;
}

const METHOD = [
  'Every scenario runs the same load over the direct path (the physical limit of the lab), Ambit\'s L4 path (agent → HBONE → agent), Ambit with a waypoint where L7 applies, and the peers: stunnel4 (a classic per-connection mTLS tunnel), nghttpx (HTTP/2 CONNECT over mTLS, in C) and nginx (L7 reverse proxy).',
  'All of it runs in the network-namespace lab on one machine (two "nodes", pods on veth pairs), so client, server and proxies share its cores: compare ratios, not absolute numbers.',
  'Latency uses an open-loop generator at fixed rates (no coordinated omission); saturation uses h2load; CPU is utime+stime of each proxy process from /proc; memory is VmRSS.',
  'Regenerate with `npm run bench` (all benchmarks, then this report) or `npm run bench -- --report-only --readme`; method and options: bench/README.md.',
];

/** The README section between the markers (without the markers). */
export function readmeSection(r: MergedReport): string {
  return `\n## Performance\n\n${METHOD.join('\n')}\n\n${reportMarkdown(r, { headingLevel: 3 })}\n`;
}

/** README text with the section replaced between the markers, or null when they are missing or out of order. */
export function replaceBetweenMarkers(readme: string, section: string): string | null {
  const a = readme.indexOf(README_BEGIN);
  const b = readme.indexOf(README_END);
  if (a < 0 || b < 0 || b < a) return null;
  return `${readme.slice(0, a + README_BEGIN.length)}${section}${readme.slice(b)}`;
}

function main(): void {
  const { values: opt } = parseArgs({
    strict: false,
    options: { results: { type: 'string' }, out: { type: 'string' }, readme: { type: 'boolean' }, 'readme-file': { type: 'string' }, quiet: { type: 'boolean' } },
  });
  const resultsDir = typeof opt.results === 'string' ? opt.results : join(ROOT, 'bench/results');
  const outDir = typeof opt.out === 'string' ? opt.out : resultsDir;
  const now = new Date();
  const report = buildReport(readInputs(resultsDir, (m) => console.error(m)), now);
  const md = `# Ambit benchmark report, ${now.toISOString()}\n\n${reportMarkdown(report, { headingLevel: 2 })}`;
  mkdirSync(outDir, { recursive: true });
  const base = join(outDir, now.toISOString().replaceAll(':', '-'));
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(`${base}.md`, md);
  if (opt.quiet !== true) console.log(md);
  console.error(`report: wrote ${base}.json and ${base}.md`);
  if (opt.readme === true) {
    const file = typeof opt['readme-file'] === 'string' ? opt['readme-file'] : join(ROOT, 'README.md');
    const section = readmeSection(report);
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const next = replaceBetweenMarkers(text, section);
    if (next === null) {
      console.error(`report: ${file} has no ${README_BEGIN} ... ${README_END} markers; not edited. Put the markers where the section belongs; the section would be:`);
      console.log(section);
    } else {
      writeFileSync(file, next);
      console.error(`report: regenerated the Performance section of ${file}`);
    }
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) main();
