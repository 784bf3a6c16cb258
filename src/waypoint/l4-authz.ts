/**
 * AuthorizationPolicy for opaque TCP through the waypoint (tcp services,
 * non-HTTP fallback, workload passthrough). Only L4 attributes exist:
 * principals, namespaces, source.ip, source.principal, source.namespace,
 * destination.port. As Istio does for TCP: an ALLOW (or AUDIT) rule that uses
 * any HTTP-only field can never match (so an ALLOW policy made only of such
 * rules denies); a DENY rule drops its HTTP-only fields and matches on the
 * rest (more denial, never less).
 */
import { evaluateAuthz, type AuthzVerdict } from './authz.js';
import type { AuthzPolicy, AuthzRule } from './config.js';

const L4_CONDITION_KEYS = new Set(['source.ip', 'source.principal', 'source.namespace', 'destination.port']);

export interface L4AuthzRequest {
  /** Peer SPIFFE id, with or without spiffe:// */
  readonly principal?: string;
  readonly sourceIp: string;
  readonly destinationPort: number;
}

function hasL7(rule: AuthzRule): boolean {
  return rule.to.some((o) => o.hosts.length + o.notHosts.length + o.methods.length + o.notMethods.length + o.paths.length + o.notPaths.length > 0)
    || rule.from.some((s) => s.requestPrincipals.length + s.notRequestPrincipals.length > 0)
    || rule.when.some((c) => !L4_CONDITION_KEYS.has(c.key));
}

function l4Rule(rule: AuthzRule): AuthzRule {
  return {
    from: rule.from.map((s) => ({ ...s, requestPrincipals: [], notRequestPrincipals: [] })),
    to: [],
    when: rule.when.filter((c) => L4_CONDITION_KEYS.has(c.key)),
  };
}

/** The policies as they apply to a TCP connection. */
export function l4Policies(policies: readonly AuthzPolicy[]): AuthzPolicy[] {
  return policies.map((p) => ({
    ...p,
    rules: p.action === 'DENY' ? p.rules.map((r) => (hasL7(r) ? l4Rule(r) : r)) : p.rules.filter((r) => !hasL7(r)),
  }));
}

export function evaluateL4Authz(policies: readonly AuthzPolicy[], r: L4AuthzRequest): AuthzVerdict {
  const principal = r.principal?.replace(/^spiffe:\/\//, '');
  const namespace = principal ? /\/ns\/([^/]+)\//.exec(principal)?.[1] : undefined;
  return evaluateAuthz(l4Policies(policies), {
    host: '', method: '', path: '', headers: {}, sourceIp: r.sourceIp, destinationPort: r.destinationPort,
    ...(principal ? { principal } : {}), ...(namespace ? { namespace } : {}),
  });
}
