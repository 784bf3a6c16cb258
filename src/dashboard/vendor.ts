/**
 * Third-party browser code the dashboard page uses, served by the dashboard
 * itself from the npm package (never from a CDN), so the page works with no
 * internet: uPlot (a maintained, dependency-free time-series chart library)
 * draws the per-edge charts. Read once, on first use.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

export interface VendorAsset {
  readonly body: string;
  readonly type: string;
}

const require = createRequire(import.meta.url);
const FILES: Readonly<Record<string, { module: string; type: string }>> = {
  '/vendor/uplot.js': { module: 'uplot/dist/uPlot.iife.min.js', type: 'text/javascript; charset=utf-8' },
  '/vendor/uplot.css': { module: 'uplot/dist/uPlot.min.css', type: 'text/css; charset=utf-8' },
};
const cache = new Map<string, VendorAsset>();

/** The asset served at `path`, or undefined when it is not a vendor path. Throws when the package is missing (an install problem). */
export function vendorAsset(path: string): VendorAsset | undefined {
  const f = FILES[path];
  if (!f) return undefined;
  let a = cache.get(path);
  if (!a) {
    a = { body: readFileSync(require.resolve(f.module), 'utf8'), type: f.type };
    cache.set(path, a);
  }
  return a;
}
