/**
 * Who serves a dashboard URL, seen from the test process's netns: the pids
 * `ss -ltnp` names for the listening socket on the URL's port (ss maps the
 * socket inode to the processes holding it, whatever netns they run in), the
 * `server` header of the answer, and a process's command line.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Pids holding a TCP listening socket on `port` in this netns (empty: nobody listens). */
export function listenerPids(port: number): number[] {
  const out = execFileSync('ss', ['-ltnpH', `sport = :${port}`], { encoding: 'utf8' });
  return [...new Set([...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])))];
}

/** Whether anything listens on `port` in this netns. */
export function listening(port: number): boolean {
  return execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim() !== '';
}

/** The `server` header and its pid (ambit-control-plane/<pid>) of GET `url`. */
export async function servedBy(url: string): Promise<{ server: string; pid: number | undefined; status: number }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  await res.text();
  const server = res.headers.get('server') ?? '';
  const m = /^ambit-control-plane\/(\d+)$/.exec(server);
  return { server, pid: m ? Number(m[1]) : undefined, status: res.status };
}

/** argv of a live process, joined by spaces ('' when gone). */
export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** The netns inode of a process (`net:[4026531840]`). */
export function netnsOf(pid: number | 'self'): string {
  return execFileSync('readlink', [`/proc/${pid}/ns/net`], { encoding: 'utf8' }).trim();
}
