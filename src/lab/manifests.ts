/**
 * Reads ordinary Kubernetes YAML (Namespace, Node, Pod, Service, List) plus
 * the lab's own `LabConfig` into a typed LabSpec. Only the fields the lab
 * needs are read; everything else is ignored so real manifests work as-is.
 * Every error is a ConfigError naming the file, the object and the field, so
 * `ambit lab up` exits 64 with a message the user can act on.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ConfigError } from '../common/errors.js';
import type { LocalServicePort } from '../state/local-config.js';
import { cidrsOverlap, formatCidr, parseCidr, parseIpv4, type Cidr } from './cidr.js';

export const LAB_API_VERSION = 'ambit.dev/v1alpha1';

export interface LabRanges {
  readonly podCIDR: Cidr;
  readonly serviceCIDR: Cidr;
  readonly nodeCIDR: Cidr;
}

export const DEFAULT_RANGES: LabRanges = {
  podCIDR: { base: parseIpv4('10.244.0.0') ?? 0, prefix: 16 },
  serviceCIDR: { base: parseIpv4('10.96.0.0') ?? 0, prefix: 16 },
  nodeCIDR: { base: parseIpv4('10.243.0.0') ?? 0, prefix: 24 },
};

export interface LabPodSpec {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  readonly serviceAccount: string;
  readonly labels: Readonly<Record<string, string>>;
  /** status.podIP when the manifest pins it; otherwise the planner allocates one. */
  readonly ip?: string;
  /** File the pod came from, for error messages raised after parsing. */
  readonly source: string;
}

export interface LabServiceSpec {
  readonly namespace: string;
  readonly name: string;
  /** spec.clusterIP: an address, 'None' (headless) or undefined (allocate). */
  readonly clusterIP?: string;
  readonly ports: readonly LocalServicePort[];
  readonly selector: Readonly<Record<string, string>>;
  readonly source: string;
}

export interface LabNamespaceSpec {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface LabSpec {
  readonly ranges: LabRanges;
  /** Declared Namespace objects (pods may also use undeclared namespaces). */
  readonly namespaces: readonly LabNamespaceSpec[];
  /** Node names in first-seen order (Node objects and Pod spec.nodeName). */
  readonly nodes: readonly string[];
  readonly pods: readonly LabPodSpec[];
  readonly services: readonly LabServiceSpec[];
  /** Ignored documents and similar non-fatal findings. */
  readonly warnings: readonly string[];
}

export interface ManifestSource {
  /** Shown in errors; usually the file path. */
  readonly file: string;
  readonly text: string;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// DNS-1123 label / subdomain, as Kubernetes validates them. Enforcing these
// keeps names safe to embed in netns names, paths and hosts files.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Builds messages like `pods.yaml: Pod default/client: spec.nodeName is required`. */
class Where {
  constructor(
    readonly file: string,
    /** Set once the kind and name are known, e.g. `Pod default/client`. */
    public what: string,
    /** Position inside an enclosing List, e.g. `List items[2]: `. */
    readonly context = '',
  ) {}

  get label(): string {
    return `${this.file}: ${this.context}${this.what}`;
  }

  err(field: string, problem: string): ConfigError {
    return new ConfigError(`${this.label}: ${field} ${problem}`);
  }
}

function optString(o: Obj, key: string, w: Where, field: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw w.err(field, `must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function dnsName(o: Obj, key: string, w: Where, field: string, kind: 'label' | 'subdomain', fallback?: string): string {
  const v = optString(o, key, w, field) ?? fallback;
  if (v === undefined || v === '') throw w.err(field, 'is required');
  const re = kind === 'label' ? DNS_LABEL : DNS_SUBDOMAIN;
  const max = kind === 'label' ? 63 : 253;
  if (!re.test(v) || v.length > max) {
    throw w.err(field, `must be a DNS-1123 ${kind} (lowercase letters, digits, '-'${kind === 'subdomain' ? ", '.'" : ''}; at most ${max} characters), got '${v}'`);
  }
  return v;
}

function stringMap(v: unknown, w: Where, field: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw w.err(field, 'must be a map of strings');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw w.err(`${field}.${k}`, `must be a string (quote it in YAML), got ${JSON.stringify(val)}`);
    out[k] = val;
  }
  return out;
}

function mapping(o: Obj, key: string, w: Where, field: string, required: boolean): Obj {
  const v = o[key];
  if (v === undefined || v === null) {
    if (required) throw w.err(field, 'is required');
    return {};
  }
  if (!isObj(v)) throw w.err(field, 'must be a mapping');
  return v;
}

function portNumber(v: unknown, w: Where, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    const hint = typeof v === 'string' ? ' (named ports are not supported by the lab)' : '';
    throw w.err(field, `must be a port number from 1 to 65535${hint}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function ipv4(v: string, w: Where, field: string): string {
  if (parseIpv4(v) === undefined) throw w.err(field, `must be an IPv4 address (the lab is IPv4-only), got '${v}'`);
  return v;
}

function cidr(o: Obj, key: string, w: Where, fallback: Cidr): Cidr {
  const v = optString(o, key, w, `spec.${key}`);
  if (v === undefined) return fallback;
  const c = parseCidr(v);
  if (!c) throw w.err(`spec.${key}`, `must be an IPv4 CIDR with no host bits set, e.g. '${formatCidr(fallback)}', got '${v}'`);
  return c;
}

/** Accumulates objects across documents and files, then validates the whole. */
class Collector {
  readonly namespaces: LabNamespaceSpec[] = [];
  readonly nodes: string[] = [];
  readonly pods: LabPodSpec[] = [];
  readonly services: LabServiceSpec[] = [];
  readonly warnings: string[] = [];
  ranges: LabRanges = DEFAULT_RANGES;
  private labConfigAt: string | undefined;
  private readonly seen = new Map<string, string>();

  private once(key: string, w: Where): void {
    const prev = this.seen.get(key);
    if (prev !== undefined) throw new ConfigError(`${w.label} is defined twice (also in ${prev})`);
    this.seen.set(key, w.file);
  }

  private addNode(name: string): void {
    if (!this.nodes.includes(name)) this.nodes.push(name);
  }

  add(doc: unknown, w: Where): void {
    if (doc === null || doc === undefined) return; // empty document (`---` with nothing after)
    if (!isObj(doc)) throw w.err('the document', 'must be a mapping (a Kubernetes object)');
    const kind = doc.kind;
    if (typeof kind !== 'string' || kind === '') throw w.err('kind', 'is required');
    // Until the name is known, say which document it is: `Pod in document 2`.
    w.what = `${kind} in ${w.what}`;
    const meta = mapping(doc, 'metadata', w, 'metadata', kind !== 'List' && kind !== 'LabConfig');
    switch (kind) {
      case 'List':
        return this.list(doc, w);
      case 'LabConfig':
        return this.labConfig(doc, w);
      case 'Namespace': {
        const name = dnsName(meta, 'name', w, 'metadata.name', 'label');
        w.what = `Namespace ${name}`;
        this.once(`Namespace/${name}`, w);
        this.namespaces.push({ name, labels: stringMap(meta.labels, w, 'metadata.labels') });
        return;
      }
      case 'Node': {
        const name = dnsName(meta, 'name', w, 'metadata.name', 'subdomain');
        w.what = `Node ${name}`;
        this.once(`Node/${name}`, w);
        this.addNode(name);
        return;
      }
      case 'Pod':
        return this.pod(doc, meta, w);
      case 'Service':
        return this.service(doc, meta, w);
      default: {
        const name = typeof meta.name === 'string' ? meta.name : '(unnamed)';
        const ns = typeof meta.namespace === 'string' ? `${meta.namespace}/` : '';
        this.warnings.push(`${w.file}: ignoring ${kind} ${ns}${name}: the lab reads only Namespace, Node, Pod, Service and ${LAB_API_VERSION} LabConfig`);
      }
    }
  }

  private list(doc: Obj, w: Where): void {
    const items = doc.items;
    if (items === undefined || items === null) return;
    if (!Array.isArray(items)) throw w.err('items', 'must be a list');
    items.forEach((item, i) => this.add(item, new Where(w.file, 'item', `${w.context}List items[${i}]: `)));
  }

  private labConfig(doc: Obj, w: Where): void {
    if (doc.apiVersion !== LAB_API_VERSION) {
      throw w.err('apiVersion', `must be '${LAB_API_VERSION}', got ${JSON.stringify(doc.apiVersion)}`);
    }
    if (this.labConfigAt !== undefined) throw new ConfigError(`${w.label} is defined twice (also in ${this.labConfigAt})`);
    this.labConfigAt = w.file;
    const spec = mapping(doc, 'spec', w, 'spec', false);
    const ranges: LabRanges = {
      podCIDR: cidr(spec, 'podCIDR', w, DEFAULT_RANGES.podCIDR),
      serviceCIDR: cidr(spec, 'serviceCIDR', w, DEFAULT_RANGES.serviceCIDR),
      nodeCIDR: cidr(spec, 'nodeCIDR', w, DEFAULT_RANGES.nodeCIDR),
    };
    // Each node gets a /24 of pods, so the pod range must hold at least one.
    if (ranges.podCIDR.prefix > 24) throw w.err('spec.podCIDR', `must be /24 or larger (each node gets a /24), got /${ranges.podCIDR.prefix}`);
    if (ranges.serviceCIDR.prefix > 30) throw w.err('spec.serviceCIDR', `must be /30 or larger, got /${ranges.serviceCIDR.prefix}`);
    if (ranges.nodeCIDR.prefix > 30) throw w.err('spec.nodeCIDR', `must be /30 or larger, got /${ranges.nodeCIDR.prefix}`);
    const named: Array<[string, Cidr]> = [
      ['spec.podCIDR', ranges.podCIDR],
      ['spec.serviceCIDR', ranges.serviceCIDR],
      ['spec.nodeCIDR', ranges.nodeCIDR],
    ];
    for (let i = 0; i < named.length; i++) {
      for (let j = i + 1; j < named.length; j++) {
        const [an, a] = named[i] as [string, Cidr];
        const [bn, b] = named[j] as [string, Cidr];
        if (cidrsOverlap(a, b)) throw w.err(bn, `${formatCidr(b)} overlaps ${an} ${formatCidr(a)}`);
      }
    }
    this.ranges = ranges;
  }

  private pod(doc: Obj, meta: Obj, w: Where): void {
    const name = dnsName(meta, 'name', w, 'metadata.name', 'subdomain');
    const namespace = dnsName(meta, 'namespace', w, 'metadata.namespace', 'label', 'default');
    w.what = `Pod ${namespace}/${name}`;
    this.once(`Pod/${namespace}/${name}`, w);
    const labels = stringMap(meta.labels, w, 'metadata.labels');
    const spec = mapping(doc, 'spec', w, 'spec', true);
    if (spec.nodeName === undefined || spec.nodeName === null || spec.nodeName === '') {
      throw w.err('spec.nodeName', 'is required (the lab has no scheduler; say which node the pod runs on)');
    }
    const node = dnsName(spec, 'nodeName', w, 'spec.nodeName', 'subdomain');
    const serviceAccount = dnsName(spec, 'serviceAccountName', w, 'spec.serviceAccountName', 'subdomain', 'default');
    const status = mapping(doc, 'status', w, 'status', false);
    const podIP = optString(status, 'podIP', w, 'status.podIP');
    const ip = podIP === undefined || podIP === '' ? undefined : ipv4(podIP, w, 'status.podIP');
    this.addNode(node);
    this.pods.push({ namespace, name, node, serviceAccount, labels, ...(ip ? { ip } : {}), source: w.file });
  }

  private service(doc: Obj, meta: Obj, w: Where): void {
    const name = dnsName(meta, 'name', w, 'metadata.name', 'label');
    const namespace = dnsName(meta, 'namespace', w, 'metadata.namespace', 'label', 'default');
    w.what = `Service ${namespace}/${name}`;
    this.once(`Service/${namespace}/${name}`, w);
    const spec = mapping(doc, 'spec', w, 'spec', true);
    const rawIP = optString(spec, 'clusterIP', w, 'spec.clusterIP');
    const clusterIP = rawIP === undefined || rawIP === '' ? undefined : rawIP === 'None' ? 'None' : ipv4(rawIP, w, 'spec.clusterIP');
    const rawPorts = spec.ports ?? [];
    if (!Array.isArray(rawPorts)) throw w.err('spec.ports', 'must be a list');
    const seenPorts = new Set<string>();
    const ports = rawPorts.map((p: unknown, i): LocalServicePort => {
      const f = `spec.ports[${i}]`;
      if (!isObj(p)) throw w.err(f, 'must be a mapping');
      const port = portNumber(p.port, w, `${f}.port`);
      const targetPort = p.targetPort === undefined || p.targetPort === null ? port : portNumber(p.targetPort, w, `${f}.targetPort`);
      const protocol = optString(p, 'protocol', w, `${f}.protocol`) ?? 'TCP';
      if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') throw w.err(`${f}.protocol`, `must be TCP, UDP or SCTP, got '${protocol}'`);
      const pname = optString(p, 'name', w, `${f}.name`);
      const key = `${protocol}/${port}`;
      if (seenPorts.has(key)) throw w.err(`${f}.port`, `${port}/${protocol} is listed twice`);
      seenPorts.add(key);
      return { ...(pname ? { name: pname } : {}), port, targetPort, protocol };
    });
    const selector = stringMap(spec.selector, w, 'spec.selector');
    this.services.push({ namespace, name, ...(clusterIP ? { clusterIP } : {}), ports, selector, source: w.file });
  }

  finish(): LabSpec {
    if (this.pods.length === 0 && this.nodes.length === 0) {
      throw new ConfigError('the manifests define no Pod and no Node; the lab needs at least one node');
    }
    return {
      ranges: this.ranges,
      namespaces: this.namespaces,
      nodes: this.nodes,
      pods: this.pods,
      services: this.services,
      warnings: this.warnings,
    };
  }
}

/** Parses manifest texts (each may hold several `---` documents) into one spec. */
export function parseManifests(sources: readonly ManifestSource[]): LabSpec {
  const c = new Collector();
  for (const { file, text } of sources) {
    const docs = parseAllDocuments(text);
    const list = Array.isArray(docs) ? docs : [];
    list.forEach((d, i) => {
      const first = d.errors[0];
      if (first) {
        throw new ConfigError(`${file}: document ${i + 1} is not valid YAML: ${first.message.split('\n')[0] ?? ''}`, { cause: first });
      }
      c.add(d.toJS(), new Where(file, `document ${i + 1}`));
    });
  }
  return c.finish();
}

const YAML_EXT = /\.(ya?ml)$/i;

/**
 * Reads a YAML file or every `*.yaml`/`*.yml` in a directory (not recursive,
 * sorted by name so the address plan is reproducible).
 */
export async function loadManifests(path: string): Promise<LabSpec> {
  let files: string[];
  try {
    const st = await stat(path);
    if (st.isDirectory()) {
      files = (await readdir(path))
        .filter((n) => YAML_EXT.test(n))
        .sort()
        .map((n) => join(path, n));
      if (files.length === 0) throw new ConfigError(`${path}: the directory has no .yaml or .yml files`);
    } else {
      files = [path];
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${path}: cannot read the manifests: ${(err as Error).message}`, { cause: err });
  }
  const sources: ManifestSource[] = [];
  for (const file of files) {
    try {
      sources.push({ file, text: await readFile(file, 'utf8') });
    } catch (err) {
      throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`, { cause: err });
    }
  }
  return parseManifests(sources);
}
