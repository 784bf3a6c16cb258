/**
 * Starts a long-running program (a test server) inside a lab pod and resolves
 * once it printed its first line, its "ready" signal. Rejects, and kills it,
 * when it exits first or stays silent for `timeoutMs`.
 */
import type { ChildProcess } from 'node:child_process';
import type { LabHandle, LabTarget } from '../../src/lab/lab.js';

export async function startInPod(lab: LabHandle, target: LabTarget, argv: readonly string[], timeoutMs = 10_000): Promise<ChildProcess> {
  const child = lab.spawn(target, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const what = typeof target === 'string' ? target : JSON.stringify(target);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: ${argv.join(' ')} printed nothing within ${timeoutMs} ms`)), timeoutMs);
      child.stdout?.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${what}: ${argv.join(' ')} exited (${signal ?? code}) before it was ready`));
      });
    });
  } catch (err) {
    child.kill();
    throw err;
  }
  return child;
}
