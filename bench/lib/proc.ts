/** CPU time of a process tree from /proc (Linux), for the "how busy was each end" columns. */
import { readFileSync, readdirSync } from 'node:fs';

/** USER_HZ; 100 on every Linux architecture Node supports. */
const TICKS_PER_SECOND = 100;

/** utime+stime in clock ticks of `pid` (summed over its threads), or 0 when it is gone. */
function ownTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" that closes comm start at field 3 (state); utime is 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[11]) + Number(rest[12]);
  } catch {
    return 0;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text !== '') out.push(...text.split(/\s+/).map(Number));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** CPU seconds used so far by `pid` and its descendants (nghttpx forks a worker, `ip netns exec` execs in place). */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  const seen = new Set<number>();
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop() as number;
    if (seen.has(p)) continue;
    seen.add(p);
    ticks += ownTicks(p);
    stack.push(...childrenOf(p));
  }
  return ticks / TICKS_PER_SECOND;
}
