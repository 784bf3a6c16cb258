/**
 * Finds the network namespace of pods that were running before the node
 * component started (or while it was down), as istio-cni does: walk
 * <procRoot>/<pid>, read the pod UID out of <pid>/cgroup (cgroupfs
 * `.../pod<uid>/<container>` or systemd `...-pod<uid_with_underscores>.slice`),
 * and take <pid>/ns/net. A netns that is the host's is skipped (host-network
 * pods). When a named netns under `netnsDir` (/var/run/netns) is the same
 * namespace (same dev:inode), its stable path is used instead of the
 * /proc path, which dies with the process.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface DiscoveryOptions {
  /** Default /proc. */
  readonly procRoot?: string;
  /** Named namespaces to prefer; default /var/run/netns. */
  readonly netnsDir?: string;
  /** The host's netns (skipped); default /proc/self/ns/net. */
  readonly hostNetns?: string;
}

const UID_RE = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/i;

/** The pod UID in a /proc/<pid>/cgroup text, normalised to dashes; undefined when the process is not in a pod. */
export function podUidFromCgroup(text: string): string | undefined {
  for (const line of text.split('\n')) {
    const m = UID_RE.exec(line);
    if (m?.[1]) return m[1].replace(/_/g, '-').toLowerCase();
  }
  return undefined;
}

function inodeKey(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** Pod UID → netns path for every pod process found. The first process of a pod wins (all share the netns). */
export function discoverPodNetns(opts: DiscoveryOptions = {}): Map<string, string> {
  const procRoot = opts.procRoot ?? '/proc';
  const host = inodeKey(opts.hostNetns ?? '/proc/self/ns/net');
  const named = new Map<string, string>();
  let names: string[] = [];
  try {
    names = readdirSync(opts.netnsDir ?? '/var/run/netns');
  } catch {
    // no named namespaces
  }
  for (const n of names) {
    const p = join(opts.netnsDir ?? '/var/run/netns', n);
    const k = inodeKey(p);
    if (k !== undefined && !named.has(k)) named.set(k, p);
  }
  const out = new Map<string, string>();
  let pids: string[] = [];
  try {
    pids = readdirSync(procRoot).filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const pid of pids) {
    let cg: string;
    try {
      cg = readFileSync(join(procRoot, pid, 'cgroup'), 'utf8');
    } catch {
      continue; // the process exited
    }
    const uid = podUidFromCgroup(cg);
    if (uid === undefined || out.has(uid)) continue;
    const nsPath = join(procRoot, pid, 'ns', 'net');
    const key = inodeKey(nsPath);
    if (key === undefined || key === host) continue;
    out.set(uid, named.get(key) ?? nsPath);
  }
  return out;
}
