/**
 * Feeds the resource store from the Kubernetes API: one list/watch informer
 * per kind (@kubernetes/client-node), each event validated like a manifest
 * document. All of it is one store source, `kube`, flushed after a short
 * debounce so the initial lists of a big cluster cost one rebuild, not one
 * per object. An invalid object becomes a ConfigIssue and is dropped (an
 * update that breaks a valid object removes it). A failed informer (API
 * down, CRD not installed) is restarted with a backoff; the others go on.
 *
 * The informers sit behind a narrow interface (ObjectInformer /
 * InformerFactory) so tests can inject a fake list/watch.
 */
import { KubeConfig, KubernetesObjectApi, makeInformer, type KubernetesObject } from '@kubernetes/client-node';
import { systemClock, type Clock, type Timer } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { KubeConfigError, KubeWatchError } from './errors.js';
import { parseObject, type Resource } from './kinds.js';
import type { ResourceStore } from './resource-store.js';
import { isObj, type ConfigIssue } from './validation.js';

export const KUBE_SOURCE = 'kube';

export interface KubeWatchTarget {
  /** `v1`, `security.istio.io/v1`. */
  readonly apiVersion: string;
  readonly kind: string;
  /** The watch path, e.g. `/api/v1/pods`. */
  readonly path: string;
}

/** The part of a client-node informer this source uses. */
export interface ObjectInformer {
  on(verb: 'add' | 'update' | 'delete', cb: (obj: KubernetesObject) => void): void;
  on(verb: 'error', cb: (err?: unknown) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export type InformerFactory = (target: KubeWatchTarget) => ObjectInformer;

const core = (kind: string, plural: string): KubeWatchTarget => ({ apiVersion: 'v1', kind, path: `/api/v1/${plural}` });
const grp = (group: string, version: string, kind: string, plural: string): KubeWatchTarget => ({ apiVersion: `${group}/${version}`, kind, path: `/apis/${group}/${version}/${plural}` });

/** What the control plane watches by default (all namespaces). */
export const DEFAULT_WATCH_TARGETS: readonly KubeWatchTarget[] = [
  core('Namespace', 'namespaces'),
  core('Node', 'nodes'),
  core('Pod', 'pods'),
  core('Service', 'services'),
  core('ServiceAccount', 'serviceaccounts'),
  grp('discovery.k8s.io', 'v1', 'EndpointSlice', 'endpointslices'),
  grp('security.istio.io', 'v1', 'AuthorizationPolicy', 'authorizationpolicies'),
  grp('security.istio.io', 'v1', 'PeerAuthentication', 'peerauthentications'),
  grp('networking.istio.io', 'v1', 'ServiceEntry', 'serviceentries'),
  grp('networking.istio.io', 'v1', 'WorkloadEntry', 'workloadentries'),
  grp('gateway.networking.k8s.io', 'v1', 'Gateway', 'gateways'),
  // Waypoint L7 config (a missing CRD makes that informer retry with backoff; the others go on).
  grp('gateway.networking.k8s.io', 'v1', 'HTTPRoute', 'httproutes'),
  grp('gateway.networking.k8s.io', 'v1', 'GRPCRoute', 'grpcroutes'),
  grp('networking.istio.io', 'v1', 'VirtualService', 'virtualservices'),
  grp('networking.istio.io', 'v1', 'DestinationRule', 'destinationrules'),
  grp('security.istio.io', 'v1', 'RequestAuthentication', 'requestauthentications'),
];

/** KubeConfig from a kubeconfig file, or the in-cluster service account when no path is given. */
export function loadKubeConfig(kubeconfigPath?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (kubeconfigPath !== undefined && kubeconfigPath !== '') kc.loadFromFile(kubeconfigPath);
    else kc.loadFromCluster();
  } catch (err) {
    throw new KubeConfigError(kubeconfigPath ? `the kubeconfig ${kubeconfigPath}` : 'the in-cluster config', { cause: err });
  }
  if (!kc.getCurrentCluster()) throw new KubeConfigError(kubeconfigPath ? `a cluster from ${kubeconfigPath}` : 'the in-cluster config');
  return kc;
}

/** The real informers: client-node list/watch, listing through the generic object API. */
export function kubeInformerFactory(kc: KubeConfig): InformerFactory {
  const api = kc.makeApiClient(KubernetesObjectApi);
  return (t) => makeInformer<KubernetesObject>(kc, t.path, () => api.list<KubernetesObject>(t.apiVersion, t.kind));
}

export interface KubeSourceOptions {
  readonly store: ResourceStore;
  readonly informers: InformerFactory;
  readonly logger: Logger;
  readonly targets?: readonly KubeWatchTarget[];
  readonly clock?: Clock;
  /** Coalescing window for store updates (default 50 ms). */
  readonly flushMs?: number;
  /** First restart delay after an informer error (default 1 s, doubling to 30 s). */
  readonly retryMs?: number;
}

interface Slot {
  readonly target: KubeWatchTarget;
  informer: ObjectInformer;
  retryMs: number;
  timer?: Timer;
}

export class KubeSource {
  readonly #o: KubeSourceOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #resources = new Map<string, Resource>();
  readonly #issues = new Map<string, ConfigIssue>();
  readonly #slots: Slot[] = [];
  #flushTimer: Timer | undefined;
  #closed = false;
  /** Informer errors seen (for status/tests). */
  errors = 0;

  constructor(opts: KubeSourceOptions) {
    this.#o = opts;
    this.#log = opts.logger.child({ component: 'kube-source' });
    this.#clock = opts.clock ?? systemClock;
  }

  /** Starts every informer; resolves when each has done its first list (or failed and is retrying). */
  async start(): Promise<void> {
    const targets = this.#o.targets ?? DEFAULT_WATCH_TARGETS;
    await Promise.all(targets.map((t) => this.#startSlot({ target: t, informer: this.#make(t), retryMs: this.#o.retryMs ?? 1000 })));
    this.flush();
  }

  /** Pushes pending changes to the store now. */
  flush(): void {
    this.#flushTimer?.cancel();
    this.#flushTimer = undefined;
    if (this.#closed) return;
    this.#o.store.replaceSource(KUBE_SOURCE, [...this.#resources.values()], [...this.#issues.values()]);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#flushTimer?.cancel();
    for (const s of this.#slots) s.timer?.cancel();
    await Promise.all(this.#slots.map((s) => s.informer.stop().catch(() => undefined)));
  }

  #make(t: KubeWatchTarget): ObjectInformer {
    const inf = this.#o.informers(t);
    inf.on('add', (o) => this.#upsert(t, o));
    inf.on('update', (o) => this.#upsert(t, o));
    inf.on('delete', (o) => this.#delete(t, o));
    return inf;
  }

  async #startSlot(slot: Slot): Promise<void> {
    if (!this.#slots.includes(slot)) this.#slots.push(slot);
    slot.informer.on('error', (err) => this.#failed(slot, err));
    try {
      await slot.informer.start();
      slot.retryMs = this.#o.retryMs ?? 1000;
    } catch (err) {
      this.#failed(slot, err);
    }
  }

  #failed(slot: Slot, err: unknown): void {
    if (this.#closed || slot.timer) return;
    this.errors++;
    const e = new KubeWatchError(`${slot.target.kind} (${slot.target.path})`, { cause: err });
    this.#log.warn({ err: e, code: e.code, retryInMs: slot.retryMs }, e.message);
    slot.timer = this.#clock.setTimeout(() => {
      slot.timer = undefined;
      if (this.#closed) return;
      void slot.informer.stop().catch(() => undefined);
      slot.informer = this.#make(slot.target);
      void this.#startSlot(slot);
    }, slot.retryMs);
    slot.retryMs = Math.min(slot.retryMs * 2, 30_000);
  }

  #key(t: KubeWatchTarget, o: KubernetesObject): string {
    const meta = isObj(o.metadata) ? o.metadata : {};
    return `${t.apiVersion}/${t.kind}/${meta.namespace ?? ''}/${meta.name ?? ''}`;
  }

  #upsert(t: KubeWatchTarget, o: KubernetesObject): void {
    // List items usually lack apiVersion/kind; the target says what they are.
    const raw = { ...(o as object), apiVersion: t.apiVersion, kind: t.kind };
    const k = this.#key(t, o);
    const r = parseObject(JSON.parse(JSON.stringify(raw)) as unknown, KUBE_SOURCE);
    this.#resources.delete(k);
    this.#issues.delete(k);
    if (r.type === 'resource') this.#resources.set(k, r.resource);
    else if (r.type === 'issue') this.#issues.set(k, r.issue);
    this.#schedule();
  }

  #delete(t: KubeWatchTarget, o: KubernetesObject): void {
    const k = this.#key(t, o);
    if (this.#resources.delete(k) || this.#issues.delete(k)) this.#schedule();
  }

  #schedule(): void {
    if (this.#flushTimer || this.#closed) return;
    this.#flushTimer = this.#clock.setTimeout(() => this.flush(), this.#o.flushMs ?? 50);
  }
}

