/**
 * Gates for tests that need root / CAP_NET_ADMIN (network namespaces, nftables)
 * or a system tool. Outside CI they skip with the reason; under CI=true a
 * missing privilege or tool is a failure, because CI must run everything.
 */
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';

export const inCI = process.env.CI === 'true';

function hasNetAdmin(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const netAdmin = hasNetAdmin();

/** Options for `test(..., opts, fn)`: skip with a reason when not root (fails under CI). */
export function requiresRoot(): { skip?: string } {
  if (netAdmin) return {};
  if (inCI) return {};
  return { skip: 'needs root with CAP_NET_ADMIN (network namespaces); run as root or under CI=true' };
}

/** Call at the top of a privileged test body: under CI a missing privilege fails loudly. */
export function assertPrivileged(t: TestContext): void {
  if (!netAdmin) {
    if (inCI) throw new Error('this test needs root with CAP_NET_ADMIN and CI=true forbids skipping it');
    t.skip('needs root with CAP_NET_ADMIN');
  }
}

export function hasTool(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Options for a test that needs an external program; fails under CI if it is missing. */
export function requiresTool(...names: string[]): { skip?: string } {
  const missing = names.filter((n) => !hasTool(n));
  if (missing.length === 0 || inCI) return {};
  return { skip: `needs ${missing.join(', ')} (apt-get install ...; .ci/run installs them)` };
}
