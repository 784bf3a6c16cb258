/**
 * Feeds the resource store from a folder of Kubernetes YAML (multi-document
 * files, `kind: List` too), and keeps it current: fs.watch on the folder,
 * a ~100 ms debounce, then a full rescan that rereads only files whose text
 * changed. Rescanning the folder (not trusting event file names) makes it
 * robust to editors that write a temp file and rename it over the original.
 *
 * Each file is one store source named by its file name: a file's resources
 * replace that file's previous ones; a deleted file removes its resources.
 * YAML syntax errors and invalid resources become ConfigIssues for that file
 * only; the other files and the valid documents of the same file still load.
 *
 * Lab conventions (compatible with src/lab/manifests.ts): pods carry
 * spec.nodeName and status.podIP; a pod may carry the annotation
 * `ambit.dev/netns` (its netns path), passed through to the lab enroller.
 * Objects without metadata.namespace go to `default`. Kinds the control
 * plane does not know (Deployment, LabConfig...) are ignored with a debug log.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { systemClock, type Clock, type Timer } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { ManifestDirError } from './errors.js';
import { parseObject, type Resource } from './kinds.js';
import type { ResourceStore } from './resource-store.js';
import { isObj, type ConfigIssue } from './validation.js';

export const YAML_FILE = /\.ya?ml$/i;
export const DEFAULT_DEBOUNCE_MS = 100;
/** YAML aliases expanded per document; more is a billion-laughs bomb and the document is refused (SECURITY.md, Limits). */
export const MAX_YAML_ALIAS_COUNT = 100;
/** A manifest file larger than this (in UTF-16 code units, about bytes) is refused unread. */
export const MAX_MANIFEST_FILE_CHARS = 16 * 1024 * 1024;

export interface ParsedManifest {
  readonly resources: Resource[];
  readonly issues: ConfigIssue[];
  /** `kind namespace/name` of documents of unknown kinds. */
  readonly ignored: string[];
}

/** Parses one file's text. Never throws. */
export function parseManifestText(file: string, text: string): ParsedManifest {
  const out: ParsedManifest = { resources: [], issues: [], ignored: [] };
  if (text.length > MAX_MANIFEST_FILE_CHARS) {
    out.issues.push({ file, kind: '', namespace: '', name: '', field: '', message: `is ${text.length} characters, over the ${MAX_MANIFEST_FILE_CHARS} limit; split it into smaller files` });
    return out;
  }
  let docs;
  try {
    docs = parseAllDocuments(text);
  } catch (err) {
    out.issues.push({ file, kind: '', namespace: '', name: '', field: '', message: `is not valid YAML: ${(err as Error).message}` });
    return out;
  }
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((d, i) => {
    const where = `document ${i + 1}`;
    const first = d.errors[0];
    if (first) {
      out.issues.push({ file, kind: '', namespace: '', name: '', field: where, message: `is not valid YAML: ${first.message.split('\n')[0] ?? ''}` });
      return;
    }
    let js: unknown;
    try {
      js = d.toJS({ maxAliasCount: MAX_YAML_ALIAS_COUNT });
    } catch (err) {
      out.issues.push({ file, kind: '', namespace: '', name: '', field: where, message: `cannot be read: ${(err as Error).message}` });
      return;
    }
    if (js === null || js === undefined) return;
    const items: unknown[] = isObj(js) && js.kind === 'List' && Array.isArray(js.items) ? js.items : [js];
    for (const item of items) {
      const r = parseObject(item, file, { file });
      if (r.type === 'resource') out.resources.push(r.resource);
      else if (r.type === 'issue') out.issues.push(r.issue.field === 'the document' ? { ...r.issue, field: where } : r.issue);
      else out.ignored.push(`${r.apiVersion} ${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`);
    }
  });
  return out;
}

export interface ManifestSourceOptions {
  readonly dir: string;
  readonly store: ResourceStore;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly debounceMs?: number;
}

export class ManifestSource {
  readonly #dir: string;
  readonly #store: ResourceStore;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #debounceMs: number;
  readonly #texts = new Map<string, string>();
  #watcher: FSWatcher | undefined;
  #timer: Timer | undefined;
  #scanning: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(opts: ManifestSourceOptions) {
    this.#dir = opts.dir;
    this.#store = opts.store;
    this.#log = opts.logger.child({ component: 'manifest-source' });
    this.#clock = opts.clock ?? systemClock;
    this.#debounceMs = opts.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  }

  /** Loads the folder once (throws ManifestDirError if it cannot be read) and, with `watch`, follows changes. */
  async start(opts: { watch: boolean } = { watch: true }): Promise<void> {
    await this.#scan(true);
    if (!opts.watch || this.#closed) return;
    try {
      this.#watcher = watch(this.#dir, { persistent: false }, () => this.#schedule());
      this.#watcher.on('error', (err) => {
        this.#log.warn({ err, dir: this.#dir }, 'manifest directory watch failed; changes are no longer picked up');
        this.#watcher?.close();
        this.#watcher = undefined;
      });
    } catch (err) {
      throw new ManifestDirError(this.#dir, { cause: err });
    }
  }

  /** Rescans now (also what the watcher does after the debounce). */
  rescan(): Promise<void> {
    return this.#scan(false);
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer?.cancel();
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.rescan().catch((err: unknown) => this.#log.warn({ err }, 'manifest rescan failed'));
    }, this.#debounceMs);
  }

  async #scan(initial: boolean): Promise<void> {
    if (this.#scanning) {
      this.#again = true;
      return this.#scanning;
    }
    this.#scanning = (async () => {
      do {
        this.#again = false;
        await this.#scanOnce(initial);
      } while (this.#again && !this.#closed);
    })().finally(() => (this.#scanning = undefined));
    return this.#scanning;
  }

  async #scanOnce(initial: boolean): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.#dir, { withFileTypes: true })).filter((e) => e.isFile() && YAML_FILE.test(e.name) && !e.name.startsWith('.')).map((e) => e.name).sort();
    } catch (err) {
      if (initial) throw new ManifestDirError(this.#dir, { cause: err });
      this.#log.warn({ err, dir: this.#dir }, 'cannot list the manifest directory; keeping the last good state');
      return;
    }
    if (this.#closed) return;
    const present = new Set(names);
    for (const gone of [...this.#texts.keys()].filter((n) => !present.has(n))) {
      this.#texts.delete(gone);
      this.#store.removeSource(gone);
      this.#log.info({ file: gone }, 'manifest file removed');
    }
    for (const name of names) {
      let text: string;
      try {
        text = await readFile(join(this.#dir, name), 'utf8');
      } catch (err) {
        // Removed between readdir and read (an editor's rename dance): the next event rescans.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        this.#store.replaceSource(name, [], [{ file: name, kind: '', namespace: '', name: '', field: '', message: `cannot be read: ${(err as Error).message}` }]);
        continue;
      }
      if (this.#closed) return;
      if (this.#texts.get(name) === text) continue;
      this.#texts.set(name, text);
      const parsed = parseManifestText(name, text);
      for (const ig of parsed.ignored) this.#log.debug({ file: name, object: ig }, 'ignoring an object of a kind the control plane does not read');
      this.#store.replaceSource(name, parsed.resources, parsed.issues);
      this.#log.info({ file: name, resources: parsed.resources.length, issues: parsed.issues.length }, 'manifest file loaded');
    }
  }
}
