/**
 * What the CNI node component knows of pods: the pods scheduled on its node
 * and the labels of their namespaces, from the Kubernetes API (list/watch
 * through the control plane's injectable InformerFactory) or from a manifest
 * file (lab mode: Pod and Namespace documents, re-read when it changes).
 *
 * The ambient decision is Istio's: a pod is in the mesh when its own
 * `istio.io/dataplane-mode` is `ambient`, or its namespace's is and the pod
 * does not say `none`. Host-network pods never are (no netns of their own).
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { unwatchFile, watchFile } from 'node:fs';
import type { KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import type { Logger } from '../common/logger.js';
import type { InformerFactory, KubeWatchTarget, ObjectInformer } from '../control-plane/kube-source.js';

export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';

export interface NodePod {
  /** metadata.uid (matched against /proc cgroups). */
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly nodeName: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly hostNetwork: boolean;
  /** Lab manifests may say where the netns is (annotation ambit.dev/netns). */
  readonly netnsPath?: string;
}

export interface PodView {
  readonly pods: ReadonlyMap<string, NodePod>;
  readonly namespaceLabels: ReadonlyMap<string, Readonly<Record<string, string>>>;
}

/** A source of the node's pods. Emits 'change' after `start` resolved (first full list). */
export interface PodSource extends EventEmitter<{ change: [] }> {
  start(): Promise<void>;
  stop(): Promise<void>;
  current(): PodView;
}

export function isAmbient(pod: NodePod, view: PodView): boolean {
  if (pod.hostNetwork) return false;
  const own = pod.labels[DATAPLANE_MODE_LABEL];
  if (own === 'none') return false;
  if (own === 'ambient') return true;
  return view.namespaceLabels.get(pod.namespace)?.[DATAPLANE_MODE_LABEL] === 'ambient';
}

function rec(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function strMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(rec(v))) if (typeof x === 'string') out[k] = x;
  return out;
}

/** A Pod object → NodePod; undefined when it lacks a name or namespace. */
export function podFromObject(o: unknown): NodePod | undefined {
  const obj = rec(o);
  const meta = rec(obj.metadata);
  const spec = rec(obj.spec);
  const name = meta.name;
  const namespace = meta.namespace ?? 'default';
  if (typeof name !== 'string' || typeof namespace !== 'string') return undefined;
  const netns = strMap(meta.annotations)['ambit.dev/netns'];
  return {
    uid: typeof meta.uid === 'string' ? meta.uid : `${namespace}/${name}`,
    name,
    namespace,
    serviceAccount: typeof spec.serviceAccountName === 'string' ? spec.serviceAccountName : 'default',
    nodeName: typeof spec.nodeName === 'string' ? spec.nodeName : '',
    labels: strMap(meta.labels),
    hostNetwork: spec.hostNetwork === true,
    ...(netns ? { netnsPath: netns } : {}),
  };
}

abstract class BaseSource extends EventEmitter<{ change: [] }> implements PodSource {
  protected pods = new Map<string, NodePod>();
  protected nsLabels = new Map<string, Record<string, string>>();
  constructor(protected readonly node: string) {
    super();
  }
  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;
  current(): PodView {
    return { pods: new Map(this.pods), namespaceLabels: new Map(this.nsLabels) };
  }
  protected upsertPod(o: unknown): void {
    const p = podFromObject(o);
    if (!p) return;
    const key = `${p.namespace}/${p.name}`;
    if (p.nodeName !== this.node) this.pods.delete(key);
    else this.pods.set(key, p);
  }
  protected deletePod(o: unknown): void {
    const p = podFromObject(o);
    if (p) this.pods.delete(`${p.namespace}/${p.name}`);
  }
  protected upsertNs(o: unknown): void {
    const meta = rec(rec(o).metadata);
    if (typeof meta.name === 'string') this.nsLabels.set(meta.name, strMap(meta.labels));
  }
  protected deleteNs(o: unknown): void {
    const meta = rec(rec(o).metadata);
    if (typeof meta.name === 'string') this.nsLabels.delete(meta.name);
  }
}

export const POD_TARGET: KubeWatchTarget = { apiVersion: 'v1', kind: 'Pod', path: '/api/v1/pods' };
export const NAMESPACE_TARGET: KubeWatchTarget = { apiVersion: 'v1', kind: 'Namespace', path: '/api/v1/namespaces' };

/** Pods of one node and all namespaces from the Kubernetes API. */
export class KubePodSource extends BaseSource {
  readonly #informers: InformerFactory;
  readonly #log: Logger;
  #running: ObjectInformer[] = [];
  #started = false;

  constructor(opts: { node: string; informers: InformerFactory; logger: Logger }) {
    super(opts.node);
    this.#informers = opts.informers;
    this.#log = opts.logger.child({ component: 'cni-pod-source' });
  }

  async start(): Promise<void> {
    const changed = () => {
      if (this.#started) this.emit('change');
    };
    const pods = this.#informers(POD_TARGET);
    pods.on('add', (o: KubernetesObject) => (this.upsertPod(o), changed()));
    pods.on('update', (o: KubernetesObject) => (this.upsertPod(o), changed()));
    pods.on('delete', (o: KubernetesObject) => (this.deletePod(o), changed()));
    const nss = this.#informers(NAMESPACE_TARGET);
    nss.on('add', (o: KubernetesObject) => (this.upsertNs(o), changed()));
    nss.on('update', (o: KubernetesObject) => (this.upsertNs(o), changed()));
    nss.on('delete', (o: KubernetesObject) => (this.deleteNs(o), changed()));
    for (const inf of [pods, nss]) inf.on('error', (err?: unknown) => this.#log.warn({ err: String(err) }, 'kubernetes watch failed; the informer retries'));
    this.#running = [pods, nss];
    await Promise.all(this.#running.map((i) => i.start()));
    this.#started = true;
  }

  async stop(): Promise<void> {
    await Promise.all(this.#running.map((i) => i.stop().catch(() => undefined)));
  }
}

/** Lab mode: Pod and Namespace documents in one YAML/JSON file, polled for changes. */
export class ManifestPodSource extends BaseSource {
  readonly #file: string;
  readonly #log: Logger;
  readonly #pollMs: number;
  #watching = false;

  constructor(opts: { node: string; file: string; logger: Logger; pollMs?: number }) {
    super(opts.node);
    this.#file = opts.file;
    this.#log = opts.logger.child({ component: 'cni-pod-source' });
    this.#pollMs = opts.pollMs ?? 500;
  }

  async start(): Promise<void> {
    await this.reload();
    watchFile(this.#file, { interval: this.#pollMs, persistent: false }, () => {
      void this.reload().then(
        () => this.emit('change'),
        (e: unknown) => this.#log.warn({ err: String(e) }, 'cannot re-read the pod manifests; keeping the last good ones'),
      );
    });
    this.#watching = true;
  }

  /** Re-reads the file now (also what the poller does). */
  async reload(): Promise<void> {
    const text = await readFile(this.#file, 'utf8');
    const pods = new Map<string, NodePod>();
    const nss = new Map<string, Record<string, string>>();
    const saved = { pods: this.pods, ns: this.nsLabels };
    this.pods = pods;
    this.nsLabels = nss;
    try {
      for (const doc of parseAllDocuments(text)) {
        if (doc.errors.length > 0) throw new Error(doc.errors[0]?.message ?? 'bad yaml');
        const items = doc.toJS() as unknown;
        const objs = Array.isArray(items) ? items : rec(items).kind === 'List' ? (rec(items).items as unknown[]) : [items];
        for (const o of objs ?? []) {
          const kind = rec(o).kind;
          if (kind === 'Pod') this.upsertPod(o);
          else if (kind === 'Namespace') this.upsertNs(o);
        }
      }
    } catch (e) {
      this.pods = saved.pods;
      this.nsLabels = saved.ns;
      throw e;
    }
  }

  stop(): Promise<void> {
    if (this.#watching) unwatchFile(this.#file);
    this.#watching = false;
    return Promise.resolve();
  }
}
