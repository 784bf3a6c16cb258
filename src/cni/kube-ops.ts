/**
 * The few Kubernetes calls the operator CLI and the control plane make
 * (namespace labels for enroll/unenroll, waypoint Gateways and the objects
 * that run them, the agent pods `ambit status` looks at, the
 * istio-ca-root-cert ConfigMaps), behind one small interface with two
 * implementations: the API server (client-node's generic object API, merge
 * patches with kubectl's label semantics, GETs through the API server's
 * pod/service proxy) and a manifest folder (the lab's control plane watches
 * it, so edits apply live; it has no pods and no kubelet).
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubernetesObjectApi, PatchStrategy, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments, stringify, type Document } from 'yaml';

export const WAYPOINT_CLASS = 'istio-waypoint';

export interface GatewaySummary {
  readonly namespace: string;
  readonly name: string;
  readonly gatewayClassName: string;
  readonly waypointFor: string;
  /** Where it lives: 'api' or the file. */
  readonly source: string;
}

/** A pod as `ambit status` needs it. */
export interface PodSummary {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  readonly ip: string;
  readonly phase: string;
  /** The Ready condition is True. */
  readonly ready: boolean;
  readonly labels: Readonly<Record<string, string>>;
}

export interface NamespaceSummary {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** status.phase is Terminating (nothing can be created in it). */
  readonly terminating: boolean;
}

export interface ConfigMapObject {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly data: Readonly<Record<string, string>>;
  /** For optimistic concurrency on replace; absent on create. */
  readonly resourceVersion?: string;
}

/** An HTTP answer through the API server proxy. */
export interface ProxyAnswer {
  readonly status: number;
  readonly body: string;
}

/** What a failed API call was, as a value the callers can branch on. */
export type KubeFailure = 'not-found' | 'conflict' | 'already-exists' | 'forbidden' | 'other';

export interface KubeOps {
  /** 'api' talks to an API server; 'folder' edits a manifest folder (no pods, no kubelet). */
  readonly mode: 'api' | 'folder';
  /** Labels of a namespace, or undefined when it does not exist. */
  namespaceLabels(ns: string): Promise<Record<string, string> | undefined>;
  /** Sets (value) or removes (null) labels of a namespace. */
  patchNamespaceLabels(ns: string, labels: Record<string, string | null>): Promise<void>;
  applyGateway(gw: KubernetesObject): Promise<'created' | 'configured'>;
  listGateways(ns: string | undefined): Promise<GatewaySummary[]>;
  deleteGateway(ns: string, name: string): Promise<boolean>;
  /** Creates or merge-patches any namespaced object (the waypoint's ServiceAccount, Service, Deployment). */
  applyObject(o: KubernetesObject): Promise<'created' | 'configured'>;
  /** Deletes any namespaced object; false when it did not exist. */
  deleteObject(apiVersion: string, kind: string, ns: string, name: string): Promise<boolean>;
  /** Pods of a namespace (all namespaces when undefined) matching an equality label selector (`a=b,c=d`). */
  listPods(ns: string | undefined, labelSelector?: string): Promise<PodSummary[]>;
  listNamespaces(): Promise<NamespaceSummary[]>;
  getConfigMap(ns: string, name: string): Promise<ConfigMapObject | undefined>;
  createConfigMap(cm: ConfigMapObject): Promise<void>;
  /** Replaces a ConfigMap; with resourceVersion set, a concurrent change fails with 'conflict'. */
  replaceConfigMap(cm: ConfigMapObject): Promise<void>;
  /** GET through the API server proxy: `pods/<name>:<port>` or `services/<name>:<port>` in `ns`. */
  proxyGet(ns: string, target: string, path: string, opts?: { timeoutMs?: number; accept?: string }): Promise<ProxyAnswer>;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {});

export function waypointGateway(namespace: string, name: string, forKind: string): KubernetesObject & { spec: unknown } {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace, labels: { 'istio.io/waypoint-for': forKind } },
    spec: { gatewayClassName: WAYPOINT_CLASS, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  };
}

function summarize(o: unknown, source: string): GatewaySummary | undefined {
  const meta = obj(obj(o).metadata);
  const spec = obj(obj(o).spec);
  if (obj(o).kind !== 'Gateway' || spec.gatewayClassName !== WAYPOINT_CLASS) return undefined;
  return {
    namespace: String(meta.namespace ?? 'default'),
    name: String(meta.name ?? ''),
    gatewayClassName: WAYPOINT_CLASS,
    waypointFor: String(obj(meta.labels)['istio.io/waypoint-for'] ?? 'service'),
    source,
  };
}

function httpCode(e: unknown): number | undefined {
  const o = obj(e);
  if (typeof o.code === 'number') return o.code;
  if (typeof obj(o.body).code === 'number') return obj(o.body).code as number;
  const inBody = typeof o.body === 'string' ? /"code":\s*(\d{3})/.exec(o.body) : null;
  if (inBody?.[1]) return Number(inBody[1]);
  const inMsg = /HTTP-Code: (\d{3})/.exec(String(o.message));
  return inMsg?.[1] ? Number(inMsg[1]) : undefined;
}

function isNotFound(e: unknown): boolean {
  return httpCode(e) === 404 || /NotFound/.test(String(obj(e).message));
}

/** Classifies an API error (client-node ApiException, or anything else). */
export function kubeFailure(e: unknown): KubeFailure {
  switch (httpCode(e)) {
    case 404:
      return 'not-found';
    case 409:
      return /AlreadyExists/i.test(`${String(obj(e).body)} ${String(obj(e).message)}`) ? 'already-exists' : 'conflict';
    case 403:
      return 'forbidden';
    default:
      return 'other';
  }
}

const strMap = (v: unknown): Record<string, string> => Object.fromEntries(Object.entries(obj(v)).map(([k, x]) => [k, String(x)]));

export function podSummary(o: unknown): PodSummary {
  const meta = obj(obj(o).metadata);
  const status = obj(obj(o).status);
  const conditions = Array.isArray(status.conditions) ? status.conditions.map(obj) : [];
  return {
    namespace: String(meta.namespace ?? ''),
    name: String(meta.name ?? ''),
    node: String(obj(obj(o).spec).nodeName ?? ''),
    ip: String(status.podIP ?? ''),
    phase: String(status.phase ?? 'Unknown'),
    ready: conditions.some((c) => c.type === 'Ready' && c.status === 'True'),
    labels: strMap(meta.labels),
  };
}

/** `a=b,c=d` (equality only; `a==b` accepted), as a predicate on labels. */
export function labelSelectorMatches(selector: string | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (!selector) return true;
  return selector
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '')
    .every((t) => {
      const [k, v] = t.split(/==?/, 2);
      return k !== undefined && labels[k.trim()] === v?.trim();
    });
}

function configMapOf(o: unknown): ConfigMapObject {
  const meta = obj(obj(o).metadata);
  return {
    namespace: String(meta.namespace ?? ''),
    name: String(meta.name ?? ''),
    labels: strMap(meta.labels),
    data: strMap(obj(o).data),
    ...(typeof meta.resourceVersion === 'string' ? { resourceVersion: meta.resourceVersion } : {}),
  };
}

function configMapBody(cm: ConfigMapObject): KubernetesObject & { data: Record<string, string> } {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: cm.name, namespace: cm.namespace, labels: { ...cm.labels }, ...(cm.resourceVersion ? { resourceVersion: cm.resourceVersion } : {}) },
    data: { ...cm.data },
  };
}

/** One GET against the API server with the kubeconfig's credentials and TLS settings. */
async function apiGet(kc: KubeConfig, path: string, timeoutMs: number, accept?: string): Promise<ProxyAnswer> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(path.replace(/^\/*/, '/'), server.replace(/\/*$/, '/'));
  const opts: RequestOptions = { method: 'GET', headers: accept ? { accept } : {} };
  await kc.applyToHTTPSOptions(opts);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${url.pathname} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Through the API server. */
export function apiKubeOps(kc: KubeConfig): KubeOps {
  const api = kc.makeApiClient(KubernetesObjectApi);
  const nsRef = (name: string): KubernetesObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  const ref = (apiVersion: string, kind: string, ns: string, name: string) => ({ apiVersion, kind, metadata: { name, namespace: ns } });
  const deleteObject = async (apiVersion: string, kind: string, ns: string, name: string): Promise<boolean> => {
    try {
      await api.delete(ref(apiVersion, kind, ns, name));
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  };
  return {
    mode: 'api',
    async namespaceLabels(ns) {
      try {
        const o = await api.read(nsRef(ns) as KubernetesObject & { metadata: { name: string } });
        return { ...(o.metadata?.labels ?? {}) };
      } catch (e) {
        if (isNotFound(e)) return undefined;
        throw e;
      }
    },
    async patchNamespaceLabels(ns, labels) {
      await api.patch({ ...nsRef(ns), metadata: { name: ns, labels: labels as Record<string, string> } }, undefined, undefined, 'ambit', undefined, PatchStrategy.MergePatch);
    },
    async applyGateway(gw) {
      try {
        await api.read(gw as KubernetesObject & { metadata: { name: string; namespace: string } });
      } catch (e) {
        if (!isNotFound(e)) throw e;
        await api.create(gw);
        return 'created';
      }
      await api.patch(gw, undefined, undefined, 'ambit', undefined, PatchStrategy.MergePatch);
      return 'configured';
    },
    async listGateways(ns) {
      const l = await api.list('gateway.networking.k8s.io/v1', 'Gateway', ns);
      return l.items.map((o) => summarize({ ...o, kind: 'Gateway' }, 'api')).filter((x): x is GatewaySummary => x !== undefined);
    },
    deleteGateway: (ns, name) => deleteObject('gateway.networking.k8s.io/v1', 'Gateway', ns, name),
    async applyObject(o) {
      try {
        await api.read(o as KubernetesObject & { metadata: { name: string; namespace: string } });
      } catch (e) {
        if (!isNotFound(e)) throw e;
        await api.create(o);
        return 'created';
      }
      await api.patch(o, undefined, undefined, 'ambit', undefined, PatchStrategy.MergePatch);
      return 'configured';
    },
    deleteObject,
    async listPods(ns, labelSelector) {
      const l = await api.list('v1', 'Pod', ns, undefined, undefined, undefined, undefined, labelSelector);
      return l.items.map(podSummary).filter((p) => labelSelectorMatches(labelSelector, p.labels));
    },
    async listNamespaces() {
      const l = await api.list('v1', 'Namespace');
      return l.items.map((o) => ({ name: String(o.metadata?.name ?? ''), labels: { ...(o.metadata?.labels ?? {}) }, terminating: obj(obj(o).status).phase === 'Terminating' }));
    },
    async getConfigMap(ns, name) {
      try {
        return configMapOf(await api.read(ref('v1', 'ConfigMap', ns, name)));
      } catch (e) {
        if (isNotFound(e)) return undefined;
        throw e;
      }
    },
    async createConfigMap(cm) {
      await api.create(configMapBody({ ...cm, resourceVersion: '' }));
    },
    async replaceConfigMap(cm) {
      await api.replace(configMapBody(cm));
    },
    proxyGet(ns, target, path, opts = {}) {
      return apiGet(kc, `/api/v1/namespaces/${encodeURIComponent(ns)}/${target}/proxy/${path.replace(/^\/+/, '')}`, opts.timeoutMs ?? 5000, opts.accept);
    },
  };
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => /\.ya?ml$/.test(n))
    .sort()
    .map((n) => join(dir, n));
}

/** Edits a manifest folder (comments and other documents are kept). */
export function folderKubeOps(dir: string): KubeOps {
  const findNs = (ns: string): { file: string; docs: Document[]; index: number } | undefined => {
    for (const file of yamlFiles(dir)) {
      const docs = parseAllDocuments(readFileSync(file, 'utf8')) as Document[];
      const index = docs.findIndex((d) => d.get('kind') === 'Namespace' && d.getIn(['metadata', 'name']) === ns);
      if (index >= 0) return { file, docs, index };
    }
    return undefined;
  };
  const write = (file: string, docs: Document[]): void => writeFileSync(file, docs.map((d) => String(d).replace(/\n*$/, '\n')).join('---\n'));
  const gatewayFile = (ns: string, name: string): string => join(dir, `waypoint-${ns}-${name}.yaml`);
  const noApi = (what: string) => (): Promise<never> => Promise.reject(new Error(`${what} needs the Kubernetes API; a manifest folder has none`));
  return {
    mode: 'folder',
    namespaceLabels(ns) {
      const f = findNs(ns);
      if (!f) return Promise.resolve(undefined);
      const labels = obj(obj((f.docs[f.index]?.toJS() as Obj | undefined)?.metadata).labels);
      return Promise.resolve(Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, String(v)])));
    },
    patchNamespaceLabels(ns, labels) {
      const f = findNs(ns);
      if (!f) {
        const set = Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== null));
        writeFileSync(join(dir, `namespace-${ns}.yaml`), stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: set } }));
        return Promise.resolve();
      }
      const doc = f.docs[f.index] as Document;
      for (const [k, v] of Object.entries(labels)) {
        if (v === null) doc.deleteIn(['metadata', 'labels', k]);
        else doc.setIn(['metadata', 'labels', k], v);
      }
      write(f.file, f.docs);
      return Promise.resolve();
    },
    applyGateway(gw) {
      const file = gatewayFile(String(gw.metadata?.namespace), String(gw.metadata?.name));
      let existed = true;
      try {
        readFileSync(file);
      } catch {
        existed = false;
      }
      writeFileSync(file, stringify(gw));
      return Promise.resolve(existed ? 'configured' : 'created');
    },
    listGateways(ns) {
      const out: GatewaySummary[] = [];
      for (const file of yamlFiles(dir)) {
        for (const d of parseAllDocuments(readFileSync(file, 'utf8'))) {
          const s = summarize(d.toJS(), file);
          if (s && (ns === undefined || s.namespace === ns)) out.push(s);
        }
      }
      return Promise.resolve(out);
    },
    deleteGateway(ns, name) {
      const file = gatewayFile(ns, name);
      try {
        readFileSync(file);
      } catch {
        return Promise.resolve(false);
      }
      rmSync(file);
      return Promise.resolve(true);
    },
    // A manifest folder has no kubelet: only Gateways and namespace labels mean something there.
    applyObject: noApi('creating objects other than Gateways'),
    deleteObject: noApi('deleting objects other than Gateways'),
    listPods: () => Promise.resolve([]),
    listNamespaces() {
      const out: NamespaceSummary[] = [];
      for (const file of yamlFiles(dir)) {
        for (const d of parseAllDocuments(readFileSync(file, 'utf8'))) {
          const o = obj(d.toJS());
          if (o.kind === 'Namespace') out.push({ name: String(obj(o.metadata).name ?? ''), labels: strMap(obj(o.metadata).labels), terminating: false });
        }
      }
      return Promise.resolve(out);
    },
    getConfigMap: () => Promise.resolve(undefined),
    createConfigMap: noApi('publishing ConfigMaps'),
    replaceConfigMap: noApi('publishing ConfigMaps'),
    proxyGet: noApi('the API server proxy'),
  };
}
