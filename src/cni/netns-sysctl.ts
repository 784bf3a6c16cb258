/**
 * Per-pod kernel settings the CNI applies with the redirection rules.
 *
 * net.ipv4.tcp_migrate_req=1 (Linux 5.14+): when a listener in an
 * SO_REUSEPORT group closes, connections waiting in its accept queue move to
 * another listener of the group instead of being reset. Without it, an agent
 * that stops during a restart overlap would reset the few connections that
 * the kernel had just queued on its listeners.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const POD_SYSCTLS: Readonly<Record<string, string>> = { 'net.ipv4.tcp_migrate_req': '1' };

/** Applies POD_SYSCTLS inside the netns at `netnsPath`. Resolves to the settings that could not be applied (older kernels). */
export async function applyPodSysctls(netnsPath: string): Promise<string[]> {
  const failed: string[] = [];
  for (const [key, value] of Object.entries(POD_SYSCTLS)) {
    try {
      await run('nsenter', [`--net=${netnsPath}`, 'sysctl', '-qw', `${key}=${value}`], { timeout: 5_000 });
    } catch (err) {
      failed.push(`${key}: ${(err as Error).message.split('\n')[0] ?? ''}`);
    }
  }
  return failed;
}
