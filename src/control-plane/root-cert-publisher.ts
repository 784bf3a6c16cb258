/**
 * Publishes the mesh root as the ConfigMap `istio-ca-root-cert` (key
 * `root-cert.pem`, label istio.io/config=true) in every namespace, the way
 * istiod's namespace controller does, so pods (agents, waypoints) can mount
 * it as their --root-cert:
 * - on start, every namespace; on a namespace added (or changed), that one;
 *   on a root rotation (setRoot), every namespace again;
 * - skipped: kube-public, kube-node-lease and local-path-storage (istiod's
 *   ignored namespaces minus kube-system, where ztunnel may run), namespaces
 *   that are Terminating, and whatever `namespaceFilter` rejects (istiod's
 *   discovery selectors);
 * - a ConfigMap that exists is only written when root-cert.pem differs (its
 *   other keys and labels are kept); created when missing; a create that
 *   races another writer (AlreadyExists) or a replace that races (Conflict)
 *   is retried by reading again; a namespace that vanished or a Forbidden
 *   write is skipped with a log line (RBAC may come later; the periodic
 *   resync retries). Nothing is ever deleted.
 * - a periodic resync (default 60 s) restores ConfigMaps someone deleted or
 *   edited, since only namespaces are watched.
 *
 * Kubernetes is behind the narrow RootCertKube interface (KubeOps from
 * src/cni/kube-ops.ts satisfies it), namespace events behind the same
 * informer factory the KubeSource uses, and time behind a Clock.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { systemClock, type Clock, type Timer } from '../common/clock.js';
import { toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { InformerFactory, ObjectInformer } from './kube-source.js';

export const ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert';
export const ROOT_CERT_KEY = 'root-cert.pem';
export const ROOT_CERT_LABELS: Readonly<Record<string, string>> = { 'istio.io/config': 'true' };
/** istiod's inject.IgnoredNamespaces without kube-system. */
export const ROOT_CERT_IGNORED_NAMESPACES: readonly string[] = ['kube-public', 'kube-node-lease', 'local-path-storage'];
export const DEFAULT_RESYNC_MS = 60_000;

export interface RootCertNamespace {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly terminating: boolean;
}

export interface RootCertConfigMap {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly data: Readonly<Record<string, string>>;
  readonly resourceVersion?: string;
}

/** The Kubernetes calls the publisher makes (KubeOps implements it). */
export interface RootCertKube {
  listNamespaces(): Promise<readonly RootCertNamespace[]>;
  getConfigMap(ns: string, name: string): Promise<RootCertConfigMap | undefined>;
  createConfigMap(cm: RootCertConfigMap): Promise<void>;
  replaceConfigMap(cm: RootCertConfigMap): Promise<void>;
}

export type PublishResult = 'created' | 'updated' | 'unchanged' | 'skipped' | 'failed';

export interface PublishSummary {
  readonly created: string[];
  readonly updated: string[];
  readonly unchanged: string[];
  readonly skipped: string[];
  /** namespace → reason */
  readonly failed: Record<string, string>;
}

export interface RootCertPublisherOptions {
  readonly kube: RootCertKube;
  /** The root (or trust bundle: several PEM certificates) to publish. */
  readonly rootCertPem: string | readonly string[];
  readonly logger: Logger;
  /** Watches namespaces (add/update) when given; without it only start, setRoot and the resync publish. */
  readonly informers?: InformerFactory;
  readonly clock?: Clock;
  /** 0 disables the periodic resync. */
  readonly resyncMs?: number;
  readonly ignoredNamespaces?: readonly string[];
  /** Extra selection (istiod's discovery selectors); true publishes. */
  readonly namespaceFilter?: (ns: RootCertNamespace) => boolean;
}

type Failure = 'not-found' | 'conflict' | 'already-exists' | 'forbidden' | 'other';

/** Reads the HTTP status out of a client-node ApiException or a plain error. */
function failureOf(e: unknown): Failure {
  const o = (typeof e === 'object' && e !== null ? e : {}) as { code?: unknown; body?: unknown; message?: unknown };
  const text = `${typeof o.body === 'string' ? o.body : JSON.stringify(o.body ?? '')} ${String(o.message ?? '')}`;
  const code = typeof o.code === 'number' ? o.code : Number(/HTTP-Code: (\d{3})|"code":\s*(\d{3})/.exec(text)?.slice(1).find((x) => x !== undefined) ?? NaN);
  if (code === 404) return 'not-found';
  if (code === 403) return 'forbidden';
  if (code === 409) return /AlreadyExists/i.test(text) ? 'already-exists' : 'conflict';
  return 'other';
}

const bundle = (pem: string | readonly string[]): string => (typeof pem === 'string' ? pem : pem.map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join(''));

function namespaceOf(o: KubernetesObject): RootCertNamespace {
  return { name: o.metadata?.name ?? '', labels: { ...(o.metadata?.labels ?? {}) }, terminating: (o as { status?: { phase?: string } }).status?.phase === 'Terminating' };
}

export class RootCertPublisher {
  readonly #o: RootCertPublisherOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #ignored: Set<string>;
  #pem: string;
  #informer: ObjectInformer | undefined;
  #timer: Timer | undefined;
  #closed = false;
  /** One reconcile per namespace at a time; a request during one runs once more after it. */
  readonly #running = new Map<string, Promise<PublishResult>>();
  readonly #again = new Map<string, RootCertNamespace>();

  constructor(o: RootCertPublisherOptions) {
    this.#o = o;
    this.#log = o.logger.child({ component: 'root-cert-publisher' });
    this.#clock = o.clock ?? systemClock;
    this.#ignored = new Set(o.ignoredNamespaces ?? ROOT_CERT_IGNORED_NAMESPACES);
    this.#pem = bundle(o.rootCertPem);
  }

  get rootCertPem(): string {
    return this.#pem;
  }

  /** Publishes everywhere, then follows namespace events and resyncs periodically. */
  async start(): Promise<PublishSummary> {
    const summary = await this.syncAll();
    if (this.#o.informers && !this.#closed) {
      const inf = this.#o.informers({ apiVersion: 'v1', kind: 'Namespace', path: '/api/v1/namespaces' });
      const on = (o: KubernetesObject): void => void this.namespaceChanged(namespaceOf(o));
      inf.on('add', on);
      inf.on('update', on);
      const restart = (err?: unknown): void => {
        this.#log.warn({ err: toError(err).message }, 'namespace watch failed; restarting it in 1 s (the resync covers the gap)');
        this.#clock.setTimeout(() => void (this.#closed ? undefined : inf.start().catch(restart)), 1000);
      };
      inf.on('error', restart);
      this.#informer = inf;
      // An API that is down at start is not fatal: the watch is retried, the resync republishes.
      await inf.start().catch(restart);
    }
    this.#schedule();
    return summary;
  }

  /** A new root (rotation): republish in every namespace. */
  async setRoot(pem: string | readonly string[]): Promise<PublishSummary> {
    const next = bundle(pem);
    if (next === this.#pem) return { created: [], updated: [], unchanged: [], skipped: [], failed: {} };
    this.#pem = next;
    this.#log.info('mesh root changed; republishing istio-ca-root-cert in every namespace');
    return this.syncAll();
  }

  /** Every namespace once. */
  async syncAll(): Promise<PublishSummary> {
    const s: PublishSummary = { created: [], updated: [], unchanged: [], skipped: [], failed: {} };
    let namespaces: readonly RootCertNamespace[];
    try {
      namespaces = await this.#o.kube.listNamespaces();
    } catch (err) {
      this.#log.warn({ err: toError(err).message }, 'cannot list namespaces; istio-ca-root-cert not published (retried at the next resync)');
      s.failed['*'] = toError(err).message;
      return s;
    }
    // A few at a time: a big cluster must not open thousands of requests at once.
    const queue = [...namespaces];
    const worker = async (): Promise<void> => {
      for (let ns = queue.shift(); ns; ns = queue.shift()) {
        const r = await this.namespaceChanged(ns);
        if (r === 'failed') s.failed[ns.name] = this.#lastError.get(ns.name) ?? 'failed';
        else s[r].push(ns.name);
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, queue.length) }, worker));
    for (const k of ['created', 'updated', 'unchanged', 'skipped'] as const) s[k].sort();
    const n = Object.keys(s.failed).length;
    this.#log.info({ created: s.created.length, updated: s.updated.length, unchanged: s.unchanged.length, skipped: s.skipped.length, failed: n }, 'istio-ca-root-cert published');
    return s;
  }

  readonly #lastError = new Map<string, string>();

  /** Reconciles one namespace (what a namespace add/update event triggers). */
  namespaceChanged(ns: RootCertNamespace): Promise<PublishResult> {
    const running = this.#running.get(ns.name);
    if (running) {
      this.#again.set(ns.name, ns);
      return running;
    }
    const p = this.#reconcile(ns).finally(() => {
      this.#running.delete(ns.name);
      const next = this.#again.get(ns.name);
      if (next) {
        this.#again.delete(ns.name);
        void this.namespaceChanged(next);
      }
    });
    this.#running.set(ns.name, p);
    return p;
  }

  #wanted(ns: RootCertNamespace): boolean {
    if (ns.name === '' || ns.terminating || this.#ignored.has(ns.name)) return false;
    return this.#o.namespaceFilter ? this.#o.namespaceFilter(ns) : true;
  }

  async #reconcile(ns: RootCertNamespace): Promise<PublishResult> {
    if (this.#closed || !this.#wanted(ns)) return 'skipped';
    const kube = this.#o.kube;
    for (let attempt = 0; attempt < 3; attempt++) {
      const pem = this.#pem;
      try {
        const cm = await kube.getConfigMap(ns.name, ROOT_CERT_CONFIGMAP);
        if (!cm) {
          await kube.createConfigMap({ namespace: ns.name, name: ROOT_CERT_CONFIGMAP, labels: { ...ROOT_CERT_LABELS }, data: { [ROOT_CERT_KEY]: pem } });
          this.#lastError.delete(ns.name);
          return 'created';
        }
        if (cm.data[ROOT_CERT_KEY] === pem) return 'unchanged';
        await kube.replaceConfigMap({ ...cm, data: { ...cm.data, [ROOT_CERT_KEY]: pem } });
        this.#lastError.delete(ns.name);
        return 'updated';
      } catch (err) {
        const f = failureOf(err);
        if (f === 'already-exists' || f === 'conflict') continue; // someone else wrote it: read again
        if (f === 'not-found') return 'skipped'; // the namespace went away
        const msg = toError(err).message;
        this.#lastError.set(ns.name, msg);
        if (f === 'forbidden') this.#log.warn({ namespace: ns.name }, `not allowed to write ConfigMap ${ns.name}/${ROOT_CERT_CONFIGMAP}; check the control plane's RBAC (configmaps create/update)`);
        else this.#log.warn({ namespace: ns.name, err: msg }, 'publishing istio-ca-root-cert failed; retried at the next resync');
        return 'failed';
      }
    }
    this.#lastError.set(ns.name, 'kept conflicting with another writer');
    return 'failed';
  }

  #schedule(): void {
    const ms = this.#o.resyncMs ?? DEFAULT_RESYNC_MS;
    if (ms <= 0 || this.#closed) return;
    this.#timer = this.#clock.setTimeout(() => {
      void this.syncAll().finally(() => this.#schedule());
    }, ms);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    await this.#informer?.stop();
    await Promise.allSettled([...this.#running.values()]);
  }
}

/** Creates the publisher and runs its first pass; close() it on shutdown. */
export async function startRootCertPublisher(o: RootCertPublisherOptions): Promise<{ publisher: RootCertPublisher; initial: PublishSummary }> {
  const publisher = new RootCertPublisher(o);
  try {
    const initial = await publisher.start();
    return { publisher, initial };
  } catch (err) {
    await publisher.close();
    throw err;
  }
}
