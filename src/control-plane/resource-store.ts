/**
 * The in-memory set of valid resources, keyed `kindId/namespace/name`, fed by
 * one or more sources (a manifest file, the Kubernetes API). A source's
 * update replaces everything that source gave before, so a file that loses
 * a document loses that resource. When two sources define the same key the
 * source that sorts first wins and the other one gets a ConfigIssue.
 * Emits 'change' (with a new version) whenever the merged view or the issue
 * list changes.
 */
import { EventEmitter } from 'node:events';
import type { Resource } from './kinds.js';
import { formatIssue, type ConfigIssue } from './validation.js';

export function resourceKey(r: { readonly kindId: string; readonly namespace: string; readonly name: string }): string {
  return `${r.kindId}/${r.namespace}/${r.name}`;
}

/** An immutable view of the merged resources at one version. */
export class ResourceSnapshot {
  readonly #byKind = new Map<string, Resource[]>();

  constructor(
    readonly version: number,
    readonly resources: ReadonlyMap<string, Resource>,
  ) {
    for (const r of resources.values()) {
      let l = this.#byKind.get(r.kindId);
      if (!l) this.#byKind.set(r.kindId, (l = []));
      l.push(r);
    }
    for (const l of this.#byKind.values()) l.sort((a, b) => (a.namespace + '/' + a.name < b.namespace + '/' + b.name ? -1 : 1));
  }

  /** Resources of one kind (`Pod`, `Gateway.gateway.networking.k8s.io`), sorted by namespace/name. */
  list<S>(kindId: string): Resource<S>[] {
    return (this.#byKind.get(kindId) ?? []) as Resource<S>[];
  }

  get<S>(kindId: string, namespace: string, name: string): Resource<S> | undefined {
    return this.resources.get(resourceKey({ kindId, namespace, name })) as Resource<S> | undefined;
  }

  /** Count per kindId. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, l] of this.#byKind) out[k] = l.length;
    return out;
  }
}

export interface ResourceStoreChange {
  readonly version: number;
  /** Sources whose content or issues changed. */
  readonly sources: readonly string[];
}

interface SourceState {
  resources: Map<string, Resource>;
  issues: ConfigIssue[];
}

export class ResourceStore extends EventEmitter<{ change: [ResourceStoreChange] }> {
  readonly #sources = new Map<string, SourceState>();
  #version = 0;
  #snapshot = new ResourceSnapshot(0, new Map());
  #conflicts: ConfigIssue[] = [];

  get version(): number {
    return this.#version;
  }

  /** Replaces everything `source` contributed (resources and issues). */
  replaceSource(source: string, resources: readonly Resource[], issues: readonly ConfigIssue[] = []): void {
    const map = new Map<string, Resource>();
    const local: ConfigIssue[] = [...issues];
    for (const r of resources) {
      const key = resourceKey(r);
      if (map.has(key)) {
        local.push({ ...fileOf(source), kind: r.kind, namespace: r.namespace, name: r.name, field: 'metadata.name', message: 'is defined twice in this source; the first one is used' });
        continue;
      }
      map.set(key, r);
    }
    const old = this.#sources.get(source);
    if (old && sameResources(old.resources, map) && sameIssues(old.issues, local)) return;
    this.#sources.set(source, { resources: map, issues: local });
    this.#rebuild([source]);
  }

  /** Adds or replaces one resource of a source (incremental feeds such as Kubernetes watches). */
  upsert(source: string, r: Resource): void {
    const st = this.#state(source);
    const key = resourceKey(r);
    if (st.resources.get(key) === r) return;
    st.resources.set(key, r);
    this.#rebuild([source]);
  }

  /** Removes one resource of a source by key; no-op if it is not there. */
  remove(source: string, key: string): void {
    const st = this.#sources.get(source);
    if (!st || !st.resources.delete(key)) return;
    this.#rebuild([source]);
  }

  /** Replaces the issues a source reports about objects with a given key (`''` for file-level issues). */
  setIssues(source: string, issues: readonly ConfigIssue[]): void {
    const st = this.#state(source);
    if (sameIssues(st.issues, issues)) return;
    st.issues = [...issues];
    this.#rebuild([source]);
  }

  /** Drops a source entirely (a deleted file). */
  removeSource(source: string): void {
    if (this.#sources.delete(source)) this.#rebuild([source]);
  }

  snapshot(): ResourceSnapshot {
    return this.#snapshot;
  }

  /** Current issues of all sources, plus cross-source duplicates. */
  issues(): ConfigIssue[] {
    return [...[...this.#sources.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).flatMap(([, s]) => s.issues), ...this.#conflicts];
  }

  sources(): string[] {
    return [...this.#sources.keys()].sort();
  }

  #state(source: string): SourceState {
    let st = this.#sources.get(source);
    if (!st) this.#sources.set(source, (st = { resources: new Map(), issues: [] }));
    return st;
  }

  #rebuild(changed: string[]): void {
    const merged = new Map<string, Resource>();
    const conflicts: ConfigIssue[] = [];
    for (const source of this.sources()) {
      for (const [key, r] of (this.#sources.get(source) as SourceState).resources) {
        const prev = merged.get(key);
        if (prev) {
          conflicts.push({ ...fileOf(source), kind: r.kind, namespace: r.namespace, name: r.name, field: 'metadata.name', message: `is also defined in ${prev.source}; that one is used` });
          continue;
        }
        merged.set(key, r);
      }
    }
    this.#conflicts = conflicts;
    this.#version++;
    this.#snapshot = new ResourceSnapshot(this.#version, merged);
    this.emit('change', { version: this.#version, sources: changed });
  }
}

function fileOf(source: string): { file?: string } {
  return source === 'kube' ? {} : { file: source };
}

function sameResources(a: ReadonlyMap<string, Resource>, b: ReadonlyMap<string, Resource>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, r] of a) {
    const o = b.get(k);
    if (!o || JSON.stringify(o, replacer) !== JSON.stringify(r, replacer)) return false;
  }
  return true;
}

function replacer(_k: string, v: unknown): unknown {
  return v instanceof Map ? [...v.entries()] : v;
}

function sameIssues(a: readonly ConfigIssue[], b: readonly ConfigIssue[]): boolean {
  return a.length === b.length && a.every((x, i) => formatIssue(x) === formatIssue(b[i] as ConfigIssue));
}
