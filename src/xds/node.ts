/**
 * The xDS Node a client presents, built the way ztunnel builds it so istiod
 * (and Ambit's control plane) can identify the proxy: id
 * `<role>~<INSTANCE_IP>~<POD_NAME>.<POD_NAMESPACE>~<POD_NAMESPACE>.svc.cluster.local`
 * (role "ztunnel" for compatibility) and metadata NAME, NAMESPACE,
 * INSTANCE_IPS, NODE_NAME plus extra entries. The server side parses the id
 * back for logs and the debug dump; a malformed id is a value, not a throw.
 */
import type { JsonValue, XdsNode } from './codec.js';
import { XdsInvalidNodeIdError } from './errors.js';

export const DEFAULT_NODE_ROLE = 'ztunnel';
export const DEFAULT_DNS_DOMAIN = 'cluster.local';

export interface NodeIdParts {
  /** "ztunnel" for ztunnel compatibility; Ambit may pass its own role name. */
  role?: string;
  instanceIp: string;
  podName: string;
  podNamespace: string;
  /** Cluster DNS domain, default cluster.local. */
  dnsDomain?: string;
}

export interface ParsedNodeId {
  role: string;
  instanceIp: string;
  podName: string;
  podNamespace: string;
  dnsDomain: string;
}

export interface NodeOptions extends NodeIdParts {
  /** NODE_NAME: the Kubernetes node the pod runs on. */
  nodeName: string;
  /** INSTANCE_IPS: all pod IPs, comma separated on the wire; defaults to [instanceIp]. */
  instanceIps?: string[];
  cluster?: string;
  /** Extra metadata (ztunnel: ISTIO_META_* and ISTIO_METAJSON_*). Cannot override the four keys above. */
  extraMetadata?: Record<string, JsonValue>;
  userAgentName?: string;
  userAgentVersion?: string;
}

export function buildNodeId(parts: NodeIdParts): string {
  const role = parts.role ?? DEFAULT_NODE_ROLE;
  const domain = parts.dnsDomain ?? DEFAULT_DNS_DOMAIN;
  return `${role}~${parts.instanceIp}~${parts.podName}.${parts.podNamespace}~${parts.podNamespace}.svc.${domain}`;
}

export function buildNode(opts: NodeOptions): XdsNode {
  const metadata: Record<string, JsonValue> = {
    ...(opts.extraMetadata ?? {}),
    NAME: opts.podName,
    NAMESPACE: opts.podNamespace,
    INSTANCE_IPS: (opts.instanceIps ?? [opts.instanceIp]).join(','),
    NODE_NAME: opts.nodeName,
  };
  const node: XdsNode = { id: buildNodeId(opts), metadata };
  if (opts.cluster) node.cluster = opts.cluster;
  if (opts.userAgentName) node.userAgentName = opts.userAgentName;
  if (opts.userAgentVersion) node.userAgentVersion = opts.userAgentVersion;
  return node;
}

export type ParseNodeIdResult = { ok: true; value: ParsedNodeId } | { ok: false; error: XdsInvalidNodeIdError };

/**
 * Parses `<role>~<ip>~<pod>.<ns>~<ns>.svc.<domain>`. The pod name cannot
 * contain dots (DNS-1123 label), so the pod/namespace split is at the first
 * dot; the namespace in part 3 must equal the one in part 4.
 */
export function parseNodeId(id: string): ParseNodeIdResult {
  const fail = (reason: string): ParseNodeIdResult => ({ ok: false, error: new XdsInvalidNodeIdError(id, reason) });
  const parts = id.split('~');
  if (parts.length !== 4) return fail(`expected 4 '~'-separated parts, got ${parts.length}`);
  const [role, instanceIp, podDotNs, dnsPart] = parts as [string, string, string, string];
  if (!role) return fail('empty role');
  if (!instanceIp) return fail('empty instance ip');
  const dot = podDotNs.indexOf('.');
  if (dot <= 0 || dot === podDotNs.length - 1) return fail(`'${podDotNs}' is not <pod>.<namespace>`);
  const podName = podDotNs.slice(0, dot);
  const podNamespace = podDotNs.slice(dot + 1);
  const prefix = `${podNamespace}.svc.`;
  if (!dnsPart.startsWith(prefix) || dnsPart.length === prefix.length) return fail(`'${dnsPart}' is not ${podNamespace}.svc.<domain>`);
  return { ok: true, value: { role, instanceIp, podName, podNamespace, dnsDomain: dnsPart.slice(prefix.length) } };
}
