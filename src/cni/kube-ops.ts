/**
 * The few Kubernetes writes the operator CLI makes (namespace labels for
 * enroll/unenroll, waypoint Gateways), behind one small interface with two
 * implementations: the API server (client-node's generic object API, merge
 * patches with kubectl's label semantics) and a manifest folder (the lab's
 * control plane watches it, so edits apply live).
 */
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

export interface KubeOps {
  /** Labels of a namespace, or undefined when it does not exist. */
  namespaceLabels(ns: string): Promise<Record<string, string> | undefined>;
  /** Sets (value) or removes (null) labels of a namespace. */
  patchNamespaceLabels(ns: string, labels: Record<string, string | null>): Promise<void>;
  applyGateway(gw: KubernetesObject): Promise<'created' | 'configured'>;
  listGateways(ns: string | undefined): Promise<GatewaySummary[]>;
  deleteGateway(ns: string, name: string): Promise<boolean>;
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

function isNotFound(e: unknown): boolean {
  const o = obj(e);
  return o.code === 404 || obj(o.body).code === 404 || (typeof o.body === 'string' && o.body.includes('"code":404')) || /HTTP-Code: 404|NotFound/.test(String(o.message));
}

/** Through the API server. */
export function apiKubeOps(kc: KubeConfig): KubeOps {
  const api = kc.makeApiClient(KubernetesObjectApi);
  const nsRef = (name: string): KubernetesObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  return {
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
    async deleteGateway(ns, name) {
      try {
        await api.delete({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: ns } });
        return true;
      } catch (e) {
        if (isNotFound(e)) return false;
        throw e;
      }
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
  return {
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
  };
}
