/**
 * The lab's address and namespace plan, computed from a LabSpec without
 * touching the system so it can be unit-tested as any user.
 *
 * Shape of the lab (one Linux machine):
 *
 *   <lab>-br        bridge netns: br0 with one port per node
 *   <lab>-n-<node>  node netns: eth0 on the bridge with the node's underlay IP,
 *                   one veth per pod, ip_forward=1
 *   <lab>-p-<ns>-<pod>  pod netns: eth0 with podIP/32, default via 169.254.1.1
 *
 * Pods use a link-local gateway with a static neighbour entry pointing at a
 * fixed MAC on the node side of their veth (Calico's scheme): the node needs
 * no address per pod, and the pod's routing never depends on ARP answers.
 */
import { createHash } from 'node:crypto';
import { ConfigError } from '../common/errors.js';
import type { LocalClusterConfig, LocalServicePort } from '../state/local-config.js';
import { cidrContains, cidrSize, formatCidr, formatIpv4, nthSubnet, parseIpv4, subnetOf, type Cidr } from './cidr.js';
import type { LabSpec } from './manifests.js';

export const NETNS_DIR = '/var/run/netns';
export const BRIDGE_NAME = 'br0';
/** Interface name of a node's uplink and of a pod's only interface. */
export const ETH0 = 'eth0';
export const POD_GATEWAY = '169.254.1.1';
/** Locally administered unicast MAC on every node-side pod veth. */
export const GATEWAY_MAC = 'ee:ee:ee:ee:ee:ee';
export const CLUSTER_DOMAIN = 'cluster.local';
/** Istio's label for opting a namespace or pod in or out of ambient mode. */
export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
/** Linux IFNAMSIZ - 1. */
export const MAX_IFNAME = 15;
/** Netns names are file names; this keeps them readable in `ip netns list`. */
export const MAX_NETNS_NAME = 63;
const NODE_POD_PREFIX = 24;

const LAB_NAME = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;

/** Lab names become netns prefixes and directory names, so they are kept short and plain. */
export function validateLabName(name: string): string {
  if (!LAB_NAME.test(name)) {
    throw new ConfigError(`lab name '${name}' must be 1 to 32 lowercase letters, digits or '-', starting and ending with a letter or digit`);
  }
  return name;
}

export interface PlannedRoute {
  readonly dst: string;
  readonly dev: string;
  readonly via?: string;
  readonly src?: string;
  readonly scope?: 'link';
}

export interface PlannedNode {
  readonly name: string;
  readonly index: number;
  readonly netns: string;
  /** Underlay address on the node's eth0. */
  readonly ip: string;
  /** Prefix length of the node CIDR (the underlay is one L2 segment). */
  readonly prefix: number;
  readonly podCidr: string;
  /** The bridge-side end of the node's uplink veth, in the bridge netns. */
  readonly bridgePort: string;
  readonly routes: readonly PlannedRoute[];
}

export interface PlannedPod {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  readonly serviceAccount: string;
  readonly labels: Readonly<Record<string, string>>;
  /** False when the pod or its namespace opts out of the mesh (dataplane-mode label). */
  readonly inMesh: boolean;
  readonly ip: string;
  readonly netns: string;
  /** The node-side end of the pod's veth, in the node netns. */
  readonly nodeVeth: string;
  /** Contents of /etc/netns/<netns>/hosts. */
  readonly hosts: string;
}

export interface PlannedService {
  readonly namespace: string;
  readonly name: string;
  readonly hostname: string;
  readonly vips: readonly string[];
  readonly ports: readonly LocalServicePort[];
  readonly selector: Readonly<Record<string, string>>;
}

export interface LabPlan {
  readonly name: string;
  /** Short hash of the name; makes interface names unique per lab. */
  readonly tag: string;
  readonly bridgeNetns: string;
  readonly ranges: { readonly pod: string; readonly service: string; readonly node: string };
  readonly nodes: readonly PlannedNode[];
  readonly pods: readonly PlannedPod[];
  readonly services: readonly PlannedService[];
  /** Host-netns blackhole routes: lab traffic that reaches the host goes nowhere. */
  readonly hostBlackholes: readonly string[];
}

function shortHash(s: string, len: number): string {
  return createHash('sha256').update(s).digest('hex').slice(0, len);
}

export function labTag(name: string): string {
  return shortHash(`ambit-lab:${name}`, 5);
}

/** Builds unique, length-limited netns names; collisions and overlong names get a hash suffix. */
class NetnsNamer {
  private readonly used = new Set<string>();

  take(wanted: string, key: string): string {
    let name = wanted.replace(/[^a-z0-9.-]/g, '-');
    if (name.length > MAX_NETNS_NAME || this.used.has(name)) {
      name = `${name.slice(0, MAX_NETNS_NAME - 7).replace(/[-.]+$/, '')}-${shortHash(key, 6)}`;
    }
    if (this.used.has(name)) throw new Error(`BUG: netns name ${name} planned twice`);
    this.used.add(name);
    return name;
  }
}

export function labNetnsPrefixes(lab: string): { bridge: string; node: string; pod: string } {
  return { bridge: `${lab}-br`, node: `${lab}-n-`, pod: `${lab}-p-` };
}

/** True when a netns name has the shape the lab `lab` would create. */
export function isLabNetns(lab: string, netns: string): boolean {
  const p = labNetnsPrefixes(lab);
  return netns === p.bridge || netns.startsWith(p.node) || netns.startsWith(p.pod);
}

function podErr(pod: { source: string; namespace: string; name: string }, field: string, problem: string): ConfigError {
  return new ConfigError(`${pod.source}: Pod ${pod.namespace}/${pod.name}: ${field} ${problem}`);
}

function svcErr(svc: { source: string; namespace: string; name: string }, field: string, problem: string): ConfigError {
  return new ConfigError(`${svc.source}: Service ${svc.namespace}/${svc.name}: ${field} ${problem}`);
}

function selects(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

/** Gives each node a /24 of the pod range: inferred from pinned pod IPs, else the (index+1)-th /24. */
/**
 * Every lab pod is in the mesh unless it opts out like in Istio: the pod
 * label `istio.io/dataplane-mode: none`, or a namespace label with any value
 * other than `ambient`. (The lab has no other way to say "not meshed".)
 */
export function inMesh(podLabels: Readonly<Record<string, string>>, namespaceLabels: Readonly<Record<string, string>> | undefined): boolean {
  const pod = podLabels[DATAPLANE_MODE_LABEL];
  if (pod !== undefined) return pod !== 'none';
  const ns = namespaceLabels?.[DATAPLANE_MODE_LABEL];
  return ns === undefined || ns === 'ambient';
}

function planPodCidrs(spec: LabSpec): Map<string, Cidr> {
  const range = spec.ranges.podCIDR;
  const byNode = new Map<string, Cidr>();
  const owner = new Map<number, string>();
  for (const node of spec.nodes) {
    for (const pod of spec.pods) {
      if (pod.node !== node || pod.ip === undefined) continue;
      const ip = parseIpv4(pod.ip) ?? 0;
      if (!cidrContains(range, ip)) throw podErr(pod, 'status.podIP', `${pod.ip} is outside the pod range ${formatCidr(range)}`);
      const sub = subnetOf(ip, NODE_POD_PREFIX);
      const have = byNode.get(node);
      if (have && have.base !== sub.base) {
        throw podErr(pod, 'status.podIP', `${pod.ip} is not in ${formatCidr(have)}, the /24 inferred for node ${node} from its other pods; the lab gives each node one /24`);
      }
      const other = owner.get(sub.base);
      if (other !== undefined && other !== node) {
        throw podErr(pod, 'status.podIP', `${pod.ip} is in ${formatCidr(sub)}, which pods on node ${other} already use; each node needs its own /24`);
      }
      byNode.set(node, sub);
      owner.set(sub.base, node);
    }
  }
  const count = 2 ** (NODE_POD_PREFIX - range.prefix);
  spec.nodes.forEach((node, i) => {
    if (byNode.has(node)) return;
    // Prefer 10.244.<i+1>.0/24 (like kind); fall back to the first free /24.
    const candidates = [i + 1, ...Array.from({ length: count - 1 }, (_, k) => k + 1), 0];
    for (const k of candidates) {
      const sub = nthSubnet(range, NODE_POD_PREFIX, k);
      if (sub && !owner.has(sub.base)) {
        byNode.set(node, sub);
        owner.set(sub.base, node);
        return;
      }
    }
    throw new ConfigError(`the pod range ${formatCidr(range)} has no free /24 for node ${node}; use a larger LabConfig spec.podCIDR`);
  });
  return byNode;
}

function planPodIps(spec: LabSpec, podCidrs: Map<string, Cidr>): string[] {
  const taken = new Map<number, string>();
  for (const pod of spec.pods) {
    if (pod.ip === undefined) continue;
    const ip = parseIpv4(pod.ip) ?? 0;
    const sub = podCidrs.get(pod.node) as Cidr;
    if (ip === sub.base || ip === sub.base + cidrSize(sub) - 1) {
      throw podErr(pod, 'status.podIP', `${pod.ip} is the network or broadcast address of ${formatCidr(sub)}`);
    }
    const prev = taken.get(ip);
    if (prev !== undefined) throw podErr(pod, 'status.podIP', `${pod.ip} is already used by pod ${prev}`);
    taken.set(ip, `${pod.namespace}/${pod.name}`);
  }
  return spec.pods.map((pod) => {
    if (pod.ip !== undefined) return pod.ip;
    const sub = podCidrs.get(pod.node) as Cidr;
    // .1 is left free by convention (many CNIs put the node's gateway there).
    for (let ip = sub.base + 2; ip < sub.base + cidrSize(sub) - 1; ip++) {
      if (!taken.has(ip)) {
        taken.set(ip, `${pod.namespace}/${pod.name}`);
        return formatIpv4(ip);
      }
    }
    throw podErr(pod, 'status.podIP', `cannot be allocated: ${formatCidr(sub)} (node ${pod.node}) is full`);
  });
}

function planServices(spec: LabSpec): PlannedService[] {
  const range = spec.ranges.serviceCIDR;
  const taken = new Map<number, string>();
  for (const svc of spec.services) {
    if (svc.clusterIP === undefined || svc.clusterIP === 'None') continue;
    const ip = parseIpv4(svc.clusterIP) ?? 0;
    if (!cidrContains(range, ip)) throw svcErr(svc, 'spec.clusterIP', `${svc.clusterIP} is outside the service range ${formatCidr(range)}`);
    const prev = taken.get(ip);
    if (prev !== undefined) throw svcErr(svc, 'spec.clusterIP', `${svc.clusterIP} is already used by service ${prev}`);
    taken.set(ip, `${svc.namespace}/${svc.name}`);
  }
  // Allocation starts at .10, leaving the low addresses for well-known services.
  let next = range.base + 10;
  const last = range.base + cidrSize(range) - 2;
  return spec.services.map((svc): PlannedService => {
    let vips: string[];
    if (svc.clusterIP === 'None') vips = [];
    else if (svc.clusterIP !== undefined) vips = [svc.clusterIP];
    else {
      while (next <= last && taken.has(next)) next++;
      if (next > last) throw svcErr(svc, 'spec.clusterIP', `cannot be allocated: the service range ${formatCidr(range)} is full`);
      taken.set(next, `${svc.namespace}/${svc.name}`);
      vips = [formatIpv4(next)];
    }
    return {
      namespace: svc.namespace,
      name: svc.name,
      hostname: `${svc.name}.${svc.namespace}.svc.${CLUSTER_DOMAIN}`,
      vips,
      ports: svc.ports,
      selector: svc.selector,
    };
  });
}

/**
 * The pod's /etc/hosts. There is no cluster DNS in the lab, so service names
 * resolve from here: the short name only within the pod's own namespace (as
 * the Kubernetes search path would), the qualified forms everywhere.
 * Headless services list the addresses of the pods they select.
 */
export function renderHosts(lab: string, pod: { namespace: string; name: string; ip: string }, services: readonly PlannedService[], pods: readonly { ip: string; labels: Readonly<Record<string, string>>; namespace: string }[]): string {
  const lines = [`# Written by 'ambit lab up' for lab ${lab}; removed by 'ambit lab down'.`, '127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const svc of services) {
    const names = [svc.hostname, `${svc.name}.${svc.namespace}.svc`, `${svc.name}.${svc.namespace}`];
    if (svc.namespace === pod.namespace) names.push(svc.name);
    const addrs = svc.vips.length > 0 ? svc.vips : pods.filter((p) => p.namespace === svc.namespace && selects(svc.selector, p.labels)).map((p) => p.ip);
    for (const a of addrs) lines.push(`${a}\t${names.join(' ')}`);
  }
  lines.push(`${pod.ip}\t${pod.name}`);
  return lines.join('\n') + '\n';
}

/**
 * Pods get a resolv.conf pointing at their own loopback, where nothing
 * listens: names not in the hosts file fail at once instead of sending DNS
 * queries toward the host's resolver (which the lab cannot reach anyway).
 */
export const POD_RESOLV_CONF = "# Written by 'ambit lab up': the lab has no DNS server; names come from /etc/hosts.\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n";

export function planLab(name: string, spec: LabSpec): LabPlan {
  validateLabName(name);
  const tag = labTag(name);
  const namer = new NetnsNamer();
  const prefixes = labNetnsPrefixes(name);
  const bridgeNetns = namer.take(prefixes.bridge, 'bridge');
  const { nodeCIDR } = spec.ranges;
  if (spec.nodes.length > cidrSize(nodeCIDR) - 2) {
    throw new ConfigError(`${spec.nodes.length} nodes do not fit in the node range ${formatCidr(nodeCIDR)}; use a larger LabConfig spec.nodeCIDR`);
  }
  const podCidrs = planPodCidrs(spec);
  const podIps = planPodIps(spec, podCidrs);
  const services = planServices(spec);

  const nodeBase = spec.nodes.map((node, index) => ({
    name: node,
    index,
    netns: namer.take(`${prefixes.node}${node}`, `node:${node}`),
    ip: formatIpv4(nodeCIDR.base + index + 1),
    prefix: nodeCIDR.prefix,
    podCidr: formatCidr(podCidrs.get(node) as Cidr),
    bridgePort: `b${tag}n${index}`,
  }));
  const nsLabels = new Map(spec.namespaces.map((n) => [n.name, n.labels]));
  const podBase = spec.pods.map((pod, index) => ({
    uid: `${pod.namespace}/${pod.name}`,
    namespace: pod.namespace,
    name: pod.name,
    node: pod.node,
    serviceAccount: pod.serviceAccount,
    labels: pod.labels,
    inMesh: inMesh(pod.labels, nsLabels.get(pod.namespace)),
    ip: podIps[index] as string,
    netns: namer.take(`${prefixes.pod}${pod.namespace}-${pod.name}`, `pod:${pod.namespace}/${pod.name}`),
    nodeVeth: `v${tag}p${index}`,
  }));
  for (const n of nodeBase) if (n.bridgePort.length > MAX_IFNAME) throw new ConfigError(`too many nodes for interface names (${n.bridgePort})`);
  for (const p of podBase) if (p.nodeVeth.length > MAX_IFNAME) throw new ConfigError(`too many pods for interface names (${p.nodeVeth})`);

  const nodes: PlannedNode[] = nodeBase.map((n) => ({
    ...n,
    routes: [
      // Local pods: directly on their veth, answered from the node's underlay address.
      ...podBase.filter((p) => p.node === n.name).map((p): PlannedRoute => ({ dst: `${p.ip}/32`, dev: p.nodeVeth, scope: 'link', src: n.ip })),
      // Other nodes' pods: via that node on the shared underlay.
      ...nodeBase.filter((o) => o.name !== n.name).map((o): PlannedRoute => ({ dst: o.podCidr, via: o.ip, dev: ETH0 })),
    ],
  }));
  const pods: PlannedPod[] = podBase.map((p) => ({ ...p, hosts: renderHosts(name, p, services, podBase) }));
  const ranges = { pod: formatCidr(spec.ranges.podCIDR), service: formatCidr(spec.ranges.serviceCIDR), node: formatCidr(nodeCIDR) };
  return { name, tag, bridgeNetns, ranges, nodes, pods, services, hostBlackholes: [ranges.pod, ranges.service, ranges.node] };
}

export function netnsPath(netns: string): string {
  return `${NETNS_DIR}/${netns}`;
}

/** The LocalClusterConfig the agents read (validate with parseLocalClusterConfig before writing). */
export function toClusterConfig(plan: LabPlan): LocalClusterConfig {
  return {
    trustDomain: CLUSTER_DOMAIN,
    clusterDomain: CLUSTER_DOMAIN,
    nodes: plan.nodes.map((n) => ({ name: n.name, ip: n.ip, netns: netnsPath(n.netns) })),
    workloads: plan.pods.map((p) => ({
      uid: p.uid,
      name: p.name,
      namespace: p.namespace,
      serviceAccount: p.serviceAccount,
      node: p.node,
      ip: p.ip,
      netns: netnsPath(p.netns),
      labels: p.labels,
      ...(p.inMesh ? {} : { tunnelProtocol: 'NONE' as const }),
    })),
    services: plan.services.map((s) => ({ name: s.name, namespace: s.namespace, hostname: s.hostname, vips: s.vips, ports: s.ports, selector: s.selector })),
  };
}
