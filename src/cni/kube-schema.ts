/**
 * Validates Kubernetes objects against the Kubernetes OpenAPI schema as
 * @kubernetes/client-node ships it: every generated model (V1DaemonSet,
 * V1Container, ...) carries its field table (name, JSON name, type) and its
 * .d.ts marks the required fields. Walking an object with those tables finds
 * unknown fields (typos: `containerPorts`, a misplaced `capabilities`),
 * wrong types and missing required fields, the way `kubectl apply
 * --validate=strict` would. Kinds the package does not know (CRDs such as
 * the Gateway) get a small structural check.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as k8s from '@kubernetes/client-node';

interface Attr {
  readonly name: string;
  readonly baseName: string;
  readonly type: string;
}
type ModelClass = { getAttributeTypeMap(): Attr[] };

/** apiVersion/kind → model class name. */
const KINDS: Readonly<Record<string, string>> = {
  'v1/Namespace': 'V1Namespace',
  'v1/ServiceAccount': 'V1ServiceAccount',
  'v1/ConfigMap': 'V1ConfigMap',
  'v1/Secret': 'V1Secret',
  'v1/Service': 'V1Service',
  'v1/Pod': 'V1Pod',
  'apps/v1/Deployment': 'V1Deployment',
  'apps/v1/DaemonSet': 'V1DaemonSet',
  'rbac.authorization.k8s.io/v1/ClusterRole': 'V1ClusterRole',
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': 'V1ClusterRoleBinding',
  'rbac.authorization.k8s.io/v1/Role': 'V1Role',
  'rbac.authorization.k8s.io/v1/RoleBinding': 'V1RoleBinding',
  'scheduling.k8s.io/v1/PriorityClass': 'V1PriorityClass',
};

const QUANTITY_MAPS = new Set(['limits', 'requests']);
const models = k8s as unknown as Record<string, ModelClass | undefined>;
let modelsDir: string | undefined;
const requiredCache = new Map<string, Set<string>>();

function requiredOf(model: string): Set<string> {
  let r = requiredCache.get(model);
  if (r) return r;
  r = new Set<string>();
  try {
    modelsDir ??= join(dirname(createRequire(import.meta.url).resolve('@kubernetes/client-node')), 'gen', 'models');
    const dts = readFileSync(join(modelsDir, `${model}.d.ts`), 'utf8');
    for (const m of dts.matchAll(/^\s+'([A-Za-z0-9_$]+)': /gm)) if (m[1]) r.add(m[1]);
  } catch {
    // no declaration file: nothing is known to be required
  }
  requiredCache.set(model, r);
  return r;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkValue(v: unknown, type: string, path: string, field: string, out: string[]): void {
  if (v === null || v === undefined) return;
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr?.[1]) {
    if (!Array.isArray(v)) return void out.push(`${path}: must be a list`);
    v.forEach((x, i) => checkValue(x, arr[1] as string, `${path}[${i}]`, field, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map?.[1]) {
    if (!isObj(v)) return void out.push(`${path}: must be a map`);
    for (const [k, x] of Object.entries(v)) {
      if (QUANTITY_MAPS.has(field) && typeof x === 'number') continue;
      checkValue(x, map[1], `${path}.${k}`, k, out);
    }
    return;
  }
  switch (type) {
    case 'string':
      if (typeof v !== 'string') out.push(`${path}: must be a string, got ${JSON.stringify(v)}`);
      return;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v)) out.push(`${path}: must be a number, got ${JSON.stringify(v)}`);
      return;
    case 'boolean':
      if (typeof v !== 'boolean') out.push(`${path}: must be true or false, got ${JSON.stringify(v)}`);
      return;
    case 'IntOrString':
      if (typeof v !== 'string' && !Number.isInteger(v)) out.push(`${path}: must be an integer or a string`);
      return;
    case 'Date':
      if (typeof v !== 'string' && !(v instanceof Date)) out.push(`${path}: must be a timestamp`);
      return;
    case 'any':
    case 'object':
      return;
  }
  const cls = models[type];
  if (!cls || typeof cls.getAttributeTypeMap !== 'function') return;
  if (!isObj(v)) return void out.push(`${path}: must be an object (${type})`);
  checkModel(v, type, cls, path, out);
}

function checkModel(o: Record<string, unknown>, model: string, cls: ModelClass, path: string, out: string[]): void {
  const attrs = cls.getAttributeTypeMap();
  const byName = new Map(attrs.map((a) => [a.baseName, a]));
  for (const [k, v] of Object.entries(o)) {
    const a = byName.get(k);
    if (!a) {
      out.push(`${path}: unknown field '${k}' (${model})`);
      continue;
    }
    checkValue(v, a.type, `${path}.${k}`, k, out);
  }
  for (const req of requiredOf(model)) {
    const a = attrs.find((x) => x.name === req);
    if (a && o[a.baseName] === undefined) out.push(`${path}: missing required field '${a.baseName}' (${model})`);
  }
}

/** Problems of one object (empty: valid). `where` prefixes every message. */
export function validateKubeObject(obj: unknown, where = ''): string[] {
  const out: string[] = [];
  if (!isObj(obj)) return [`${where}: not an object`];
  const apiVersion = obj.apiVersion;
  const kind = obj.kind;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return [`${where}: apiVersion and kind are required`];
  const meta = isObj(obj.metadata) ? obj.metadata : {};
  const label = `${where}${kind}/${typeof meta.name === 'string' ? meta.name : '?'}`;
  if (typeof meta.name !== 'string' || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$|^__[A-Z]+__$/.test(meta.name)) out.push(`${label}: metadata.name must be a DNS name`);
  const model = KINDS[`${apiVersion}/${kind}`];
  const cls = model ? models[model] : undefined;
  if (model && cls) {
    checkModel(obj, model, cls, label, out);
    return out;
  }
  if (apiVersion.startsWith('gateway.networking.k8s.io/') && kind === 'Gateway') {
    const spec = isObj(obj.spec) ? obj.spec : undefined;
    if (!spec || typeof spec.gatewayClassName !== 'string') out.push(`${label}: spec.gatewayClassName is required`);
    if (!spec || !Array.isArray(spec.listeners) || spec.listeners.length === 0) out.push(`${label}: spec.listeners must be a non-empty list`);
    else
      spec.listeners.forEach((l: unknown, i) => {
        if (!isObj(l) || typeof l.name !== 'string' || !Number.isInteger(l.port) || typeof l.protocol !== 'string') out.push(`${label}: spec.listeners[${i}] needs name, port and protocol`);
      });
    return out;
  }
  out.push(`${label}: ${apiVersion} ${kind} is not a kind this validator knows`);
  return out;
}
