/**
 * The node component's memory across restarts: the pods it enrolled (with
 * their netns), in a small JSON file under /var/run/ambit. Written
 * atomically (temp file + rename) after every change, so a crash leaves the
 * old or the new list, never half of one. On start the component compares
 * it with the pods that exist now and removes the rules of the ones that
 * disappeared while it was down.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { CniPodWithNetns } from './zds-server.js';

export interface NodeStateFile {
  readonly version: 1;
  readonly pods: CniPodWithNetns[];
}

export function readNodeState(path: string): CniPodWithNetns[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  try {
    const j = JSON.parse(text) as Partial<NodeStateFile>;
    if (j.version !== 1 || !Array.isArray(j.pods)) return [];
    return j.pods.filter(
      (p): p is CniPodWithNetns =>
        typeof p === 'object' && p !== null && [p.uid, p.name, p.namespace, p.serviceAccount, p.netnsPath].every((x) => typeof x === 'string'),
    );
  } catch {
    return [];
  }
}

export function writeNodeState(path: string, pods: Iterable<CniPodWithNetns>): void {
  const body: NodeStateFile = { version: 1, pods: [...pods].map((p) => ({ uid: p.uid, name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount, netnsPath: p.netnsPath })) };
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, path);
}
