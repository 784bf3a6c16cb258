/**
 * Renders the manifests in deploy/ for a namespace, image and options (what
 * `ambit install --dry-run` prints, in the style of `helm template`). The
 * files in deploy/ are the single source: rendering edits parsed objects,
 * never text, so the output stays valid YAML. `renderWaypoint` renders
 * deploy/waypoint.yaml (Gateway, ServiceAccount, Service, Deployment) for one
 * waypoint, which `ambit waypoint apply` applies.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';

/** deploy/ of this checkout or package (dist/src/cni/x.js → ../../../deploy). */
export const DEPLOY_DIR = fileURLToPath(new URL('../../../deploy/', import.meta.url));
export const DEPLOY_FILES = ['namespace.yaml', 'rbac.yaml', 'control-plane.yaml', 'daemonset.yaml'] as const;
export const DEFAULT_NAMESPACE = 'istio-system';
export const WAYPOINT_FILE = 'waypoint.yaml';

export interface RenderOptions {
  readonly namespace?: string;
  readonly image?: string;
  readonly trustDomain?: string;
  readonly drainDeadlineMs?: number;
  readonly excludeNamespaces?: readonly string[];
  readonly logLevel?: string;
  readonly dir?: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function loadDeployDocs(dir = DEPLOY_DIR, files: readonly string[] = DEPLOY_FILES): unknown[] {
  const out: unknown[] = [];
  for (const f of files) {
    for (const d of parseAllDocuments(readFileSync(`${dir}${dir.endsWith('/') ? '' : '/'}${f}`, 'utf8'))) {
      if (d.errors.length > 0) throw new Error(`${f}: ${d.errors[0]?.message ?? 'bad yaml'}`);
      const js = d.toJS() as unknown;
      if (js !== null && js !== undefined) out.push(js);
    }
  }
  return out;
}

function setFlag(args: unknown[], flag: string, value: string): void {
  const i = args.findIndex((a) => typeof a === 'string' && (a === `--${flag}` || a.startsWith(`--${flag}=`)));
  if (i >= 0) args[i] = `--${flag}=${value}`;
  else args.push(`--${flag}=${value}`);
}

export function renderDeploy(o: RenderOptions = {}): unknown[] {
  const docs = JSON.parse(JSON.stringify(loadDeployDocs(o.dir))) as unknown[];
  const ns = o.namespace ?? DEFAULT_NAMESPACE;
  for (const d of docs.filter(isObj)) {
    const meta = isObj(d.metadata) ? d.metadata : {};
    if (d.kind === 'Namespace') meta.name = ns;
    else if (meta.namespace !== undefined) meta.namespace = ns;
    for (const s of Array.isArray(d.subjects) ? d.subjects.filter(isObj) : []) if (s.namespace !== undefined) s.namespace = ns;
    if (d.kind === 'ConfigMap' && isObj(d.data)) {
      if (o.trustDomain) d.data.TRUST_DOMAIN = o.trustDomain;
      if (o.logLevel) d.data.LOG_LEVEL = o.logLevel;
    }
    const pod = isObj(d.spec) && isObj(d.spec.template) && isObj(d.spec.template.spec) ? d.spec.template.spec : undefined;
    if (!pod) continue;
    for (const c of Array.isArray(pod.containers) ? pod.containers.filter(isObj) : []) {
      if (o.image) c.image = o.image;
      const args = Array.isArray(c.args) ? c.args : [];
      for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') args[i] = (args[i] as string).replace(/istiod\.[a-z0-9-]+\.svc/, `istiod.${ns}.svc`);
      if (args[0] === 'agent') {
        if (ns !== DEFAULT_NAMESPACE || o.trustDomain) setFlag(args, 'control-plane-identity', `spiffe://${o.trustDomain ?? 'cluster.local'}/ns/${ns}/sa/istiod`);
        if (o.trustDomain) setFlag(args, 'trust-domain', o.trustDomain);
        if (o.drainDeadlineMs !== undefined) {
          setFlag(args, 'drain-deadline-ms', String(o.drainDeadlineMs));
          pod.terminationGracePeriodSeconds = Math.ceil(o.drainDeadlineMs / 1000) + 5;
        }
      }
      if (args[0] === 'cni' && o.excludeNamespaces) setFlag(args, 'exclude-namespaces', [...new Set([...o.excludeNamespaces, ns])].join(','));
    }
  }
  return docs;
}

export function toYamlStream(docs: readonly unknown[]): string {
  return docs.map((d) => stringify(d, { lineWidth: 0 })).join('---\n');
}

export interface WaypointRenderOptions {
  readonly namespace: string;
  readonly name: string;
  /** istio.io/waypoint-for on the Gateway: service (default), workload, all, none. */
  readonly forKind?: string;
  readonly image?: string;
  /** Where istiod runs (the xDS address becomes istiod.<ns>.svc:15012); default istio-system. */
  readonly controlPlaneNamespace?: string;
  readonly dir?: string;
}

function replaceDeep(v: unknown, f: (s: string) => string): unknown {
  if (typeof v === 'string') return f(v);
  if (Array.isArray(v)) return v.map((x) => replaceDeep(x, f));
  if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [f(k), replaceDeep(x, f)]));
  return v;
}

/** The waypoint's Gateway, ServiceAccount, Service and Deployment, in that order (apply order). */
export function renderWaypoint(o: WaypointRenderOptions): Array<Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace: string; labels?: Record<string, string> } }> {
  const cp = o.controlPlaneNamespace ?? DEFAULT_NAMESPACE;
  const docs = loadDeployDocs(o.dir, [WAYPOINT_FILE]).map((d) =>
    replaceDeep(d, (s) => s.replaceAll('__NAMESPACE__', o.namespace).replaceAll('__NAME__', o.name).replace(/istiod\.[a-z0-9-]+\.svc/, `istiod.${cp}.svc`)),
  ) as Array<Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace: string; labels?: Record<string, string> } }>;
  for (const d of docs) {
    if (d.kind === 'Gateway' && o.forKind) d.metadata.labels = { ...(d.metadata.labels ?? {}), 'istio.io/waypoint-for': o.forKind };
    const pod = isObj(d.spec) && isObj(d.spec.template) && isObj(d.spec.template.spec) ? d.spec.template.spec : undefined;
    if (pod && o.image) for (const c of Array.isArray(pod.containers) ? pod.containers.filter(isObj) : []) c.image = o.image;
  }
  return docs;
}
