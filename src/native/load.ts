/**
 * The one place that loads the compiled addon. Everything else receives a
 * NativeBinding (so unit tests can pass FakeNativeBinding instead).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeBinding } from './binding.js';
import { NativeLoadError } from './errors.js';

let cached: NativeBinding | undefined;

/**
 * The package root: the same file runs from src/native (tsx/ts-node) and from
 * dist/src/native (compiled), so walk up to the nearest package.json instead
 * of hard-coding "../..".
 */
export function packageRoot(from: string = path.dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

/** Where node-gyp puts the addon; Release first, Debug for `node-gyp rebuild --debug`. */
export function nativeCandidates(root: string = packageRoot()): string[] {
  return ['Release', 'Debug'].map((cfg) => path.join(root, 'build', cfg, 'ambit_native.node'));
}

/** Loads the first candidate that works, uncached. Throws NativeLoadError naming every path tried. */
export function loadNativeBindingFrom(candidates: readonly string[]): NativeBinding {
  const require = createRequire(import.meta.url);
  const reasons: string[] = [];
  let lastError: unknown;
  for (const file of candidates) {
    if (!existsSync(file)) {
      reasons.push('not found');
      continue;
    }
    try {
      return require(file) as NativeBinding;
    } catch (err) {
      // A present but unloadable file (wrong arch, stale build) must not look like "not built".
      lastError = err;
      reasons.push(err instanceof Error ? err.message.split('\n')[0] ?? 'load failed' : 'load failed');
    }
  }
  throw new NativeLoadError(candidates, reasons, { cause: lastError });
}

/** The addon of this checkout, loaded once per process (per worker). */
export function loadNativeBinding(): NativeBinding {
  cached ??= loadNativeBindingFrom(nativeCandidates());
  return cached;
}
