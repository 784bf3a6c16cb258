/**
 * Synthetic AuthorizationPolicy sets for the agent benchmark's authorization
 * part (bench/agent-bench.ts): one generator, so the micro-benchmark of the
 * agent's per-connection check and the end-to-end run in a lab evaluate the
 * same 1,000 policies. The YAML goes through the control plane's own parser
 * and translator, so the micro-benchmark sees exactly what an agent would
 * get over xDS.
 *
 * Mixes (every policy targets the server's namespace `mesh` unless noted):
 *   worst   all 1,000 namespace-wide (no selector), so all are in scope for
 *           every workload in `mesh`: ALLOW by principals + port, ALLOW by
 *           namespaces, ALLOW by ipBlocks + port, DENY by namespaces, DENY by
 *           ipBlocks + port (none matches a real pod), and the last one
 *           ALLOWs `mesh/sa/client`. An allowed connection walks every DENY
 *           and every ALLOW before the match; a denied one walks all 1,000.
 *   spread  1,000 policies over 100 namespaces (10 each; half with a
 *           selector), 5 of them in the root namespace (GLOBAL); in `mesh`
 *           the same 10-policy mix with the client ALLOW. A connection to
 *           mesh/server has ~15 in scope, but the agent still scans all
 *           1,000 to find them (policiesFor).
 */
import { ResourceStore } from '../../src/control-plane/resource-store.js';
import { parseManifestText } from '../../src/control-plane/manifest-source.js';
import { translate } from '../../src/control-plane/translate.js';
import type { Authorization, Workload } from '../../src/workload-api/types.js';

export type PolicyMix = 'worst' | 'spread';

const header = (name: string, ns: string): string => `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: ${ns}\nspec:\n`;

/** An address in 10.250.0.0/15 that no lab pod has. */
const unusedIp = (i: number, base: number): string => `10.${base}.${(i >> 8) & 0xff}.${i & 0xff}`;

/** Policy number `i` of a 10-kind mix; none matches a lab pod. */
function mixed(i: number, ns: string, selector?: string): string {
  const sel = selector ? `  selector: { matchLabels: { app: ${selector} } }\n` : '';
  const h = header(`p-${String(i).padStart(4, '0')}`, ns) + sel;
  switch (i % 10) {
    case 0:
    case 1:
    case 2:
    case 3:
      return `${h}  action: ALLOW\n  rules:\n    - from: [{ source: { principals: ["cluster.local/ns/team-${i}/sa/app-a", "cluster.local/ns/team-${i}/sa/app-b"] } }]\n      to: [{ operation: { ports: ["8080"] } }]\n`;
    case 4:
    case 5:
      return `${h}  action: ALLOW\n  rules:\n    - from: [{ source: { namespaces: ["team-${i}"] } }]\n`;
    case 6:
      return `${h}  action: ALLOW\n  rules:\n    - from: [{ source: { ipBlocks: ["${unusedIp(i, 250)}/32"] } }]\n      to: [{ operation: { ports: ["9090"] } }]\n`;
    case 7:
    case 8:
      return `${h}  action: DENY\n  rules:\n    - from: [{ source: { namespaces: ["blocked-${i}"] } }]\n`;
    default:
      return `${h}  action: DENY\n  rules:\n    - from: [{ source: { ipBlocks: ["${unusedIp(i, 251)}/32"] } }]\n      to: [{ operation: { ports: ["8080"] } }]\n`;
  }
}

const allowClient = (ns: string): string => `${header('allow-client', ns)}  action: ALLOW\n  rules:\n    - from: [{ source: { principals: ["cluster.local/ns/mesh/sa/client"] } }]\n`;

/**
 * The policies as one multi-document YAML text (`count` policies in all,
 * the client ALLOW included). Namespaces other than `mesh` that `spread`
 * uses are declared too, so the control plane reports no issue.
 */
export function policyYaml(mix: PolicyMix, count = 1000): string {
  const docs: string[] = [];
  if (mix === 'worst') {
    for (let i = 0; i < count - 1; i++) docs.push(mixed(i, 'mesh'));
    docs.push(allowClient('mesh'));
    return docs.join('---\n');
  }
  const perNs = 10;
  const globals = 5;
  docs.push(`apiVersion: v1\nkind: Namespace\nmetadata: { name: istio-system }\n`);
  for (let g = 0; g < globals; g++) docs.push(mixed(7 + (g % 3), 'istio-system').replace('name: p-', `name: global-${g}-p-`));
  const rest = count - globals;
  // mesh first: the same mix, the last one being the client ALLOW.
  for (let i = 0; i < perNs - 1; i++) docs.push(mixed(i, 'mesh', i % 2 === 0 ? 'server' : undefined));
  docs.push(allowClient('mesh'));
  for (let i = perNs; i < rest; i++) {
    const ns = `team-ns-${Math.floor(i / perNs)}`;
    if (i % perNs === 0) docs.push(`apiVersion: v1\nkind: Namespace\nmetadata: { name: ${ns} }\n`);
    docs.push(mixed(i, ns, i % 2 === 0 ? `app-${i % 7}` : undefined));
  }
  return docs.join('---\n');
}

export interface TranslatedPolicies {
  readonly policies: Authorization[];
  /** The selector policies the control plane listed on each pod, by `namespace/name`. */
  readonly selectedBy: Map<string, string[]>;
  readonly notes: readonly string[];
  readonly issues: number;
}

/** Runs `lab` manifests plus the policy YAML through the control plane's parser and translator. */
export function translatePolicies(labYaml: string, policiesYaml: string): TranslatedPolicies {
  const store = new ResourceStore();
  const a = parseManifestText('lab.yaml', labYaml);
  const b = parseManifestText('policies.yaml', policiesYaml);
  store.replaceSource('lab.yaml', a.resources, a.issues);
  store.replaceSource('policies.yaml', b.resources, b.issues);
  const t = translate(store.snapshot(), { resolvePodIp: (_ns, name) => `10.99.0.${name.length}` });
  const selectedBy = new Map<string, string[]>();
  for (const addr of t.addresses.values()) {
    if (addr.type !== 'workload') continue;
    const w: Workload = addr.workload;
    selectedBy.set(`${w.namespace ?? ''}/${w.name ?? ''}`, [...(w.authorizationPolicies ?? [])]);
  }
  return { policies: [...t.authorizations.values()], selectedBy, notes: t.notes, issues: store.issues().length + a.issues.length + b.issues.length };
}
