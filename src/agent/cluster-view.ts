/**
 * The agent's current cluster view, replaceable while the agent runs.
 *
 * Every data-plane path reads `view.current` at the moment it decides, so a
 * new view applies to the next connection while established ones keep going.
 * Views are immutable ClusterState objects: a later multi-worker agent copies
 * them to workers instead of sharing mutable maps.
 *
 * `watchClusterFile` reloads the lab's cluster file when it changes. A file
 * that does not parse is reported and ignored: the agent keeps its last good
 * view (invalid configuration never stops a running agent).
 */
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError, toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { ClusterState } from '../state/cluster-state.js';
import { parseLocalClusterConfig } from '../state/local-config.js';

export class ClusterView extends EventEmitter<{ change: [next: ClusterState, previous: ClusterState] }> {
  #current: ClusterState;

  constructor(initial: ClusterState) {
    super();
    this.#current = initial;
  }

  get current(): ClusterState {
    return this.#current;
  }

  replace(next: ClusterState): void {
    const previous = this.#current;
    this.#current = next;
    this.emit('change', next, previous);
  }
}

export async function loadClusterFile(path: string): Promise<ClusterState> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read cluster file ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseClusterText(text, path);
}

function parseClusterText(text: string, path: string): ClusterState {
  let doc: unknown;
  try {
    doc = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`, { cause: err });
  }
  return new ClusterState(parseLocalClusterConfig(doc, path));
}

export interface ClusterFileWatch {
  close(): void;
}

/**
 * Watches the directory (editors and the lab replace the file by rename, which
 * a watch on the file itself would miss) and reloads after `debounceMs` of quiet.
 */
export function watchClusterFile(path: string, view: ClusterView, opts: { logger: Logger; debounceMs?: number }): ClusterFileWatch {
  const log = opts.logger.child({ component: 'cluster-view', file: path });
  const debounceMs = opts.debounceMs ?? 100;
  let lastText: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const reload = async (): Promise<void> => {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      log.warn({ err: toError(err).message }, 'cluster file unreadable; keeping the current view');
      return;
    }
    if (closed || text === lastText) return;
    try {
      const next = parseClusterText(text, path);
      lastText = text;
      view.replace(next);
      log.info({ workloads: next.config.workloads.length, services: next.config.services.length }, 'cluster view reloaded');
    } catch (err) {
      const e = toError(err);
      log.error({ err: e.message, code: (e as { code?: string }).code }, 'cluster file is invalid; keeping the last good view');
    }
  };
  void readFile(path, 'utf8').then(
    (t) => (lastText ??= t),
    () => undefined,
  );
  const name = basename(path);
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), { persistent: false }, (_event, file) => {
      if (file !== null && file !== name) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void reload(), debounceMs);
    });
    watcher.on('error', (err) => log.warn({ err: err.message }, 'cluster file watch failed; changes will not be seen'));
  } catch (err) {
    log.warn({ err: toError(err).message }, 'cannot watch the cluster file; changes will not be seen');
  }
  return {
    close(): void {
      closed = true;
      if (timer) clearTimeout(timer);
      watcher?.close();
    },
  };
}
