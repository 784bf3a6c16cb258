/**
 * L4 authorization: Istio's `istio.security.Authorization` semantics, as
 * ztunnel evaluates them (src/rbac.rs; reference protocols.md §4b):
 *
 *   1. any matching DENY policy denies;
 *   2. otherwise, with no ALLOW policy in scope, the connection is allowed;
 *   3. otherwise it is allowed only when an ALLOW policy matches.
 *
 * Dry-run policies are evaluated and reported but never decide.
 *
 * A policy matches when ANY rule matches; a rule when ALL its clauses match
 * (an empty clause is true); a clause when ANY of its matches is true; a
 * match when every field holds: a positive list needs one hit (or is empty),
 * a `not_*` list needs no hit. Without a peer identity (plaintext), identity
 * fields never hit: a positive identity list fails, a `not_*` list passes.
 * A policy with no rules never matches.
 *
 * Pure and synchronous: the caller picks the policies in scope (the state
 * store's `policiesFor`), so this runs the same in any worker.
 */
import type { Authorization, CidrAddress, Match, ServiceAccountMatch, StringMatch } from '../workload-api/types.js';

export interface AuthzConnection {
  /** Source IP as 4 or 16 bytes (IPv4-mapped IPv6 already unwrapped). */
  readonly srcIp: Uint8Array;
  readonly dstIp: Uint8Array;
  readonly dstPort: number;
  /** The peer's SPIFFE identity when the connection arrived over mTLS. */
  readonly srcIdentity?: { readonly trustDomain: string; readonly namespace: string; readonly serviceAccount: string };
}

export type AuthzDecision =
  | { readonly allowed: true; readonly reason: string; readonly policy?: string; readonly dryRun: readonly DryRunResult[] }
  | { readonly allowed: false; readonly reason: string; readonly policy?: string; readonly dryRun: readonly DryRunResult[] };

/** What a dry-run policy would have done. */
export interface DryRunResult {
  readonly policy: string;
  readonly action: 'ALLOW' | 'DENY';
  readonly matched: boolean;
}

const key = (p: Authorization): string => `${p.namespace ?? ''}/${p.name ?? ''}`;

function stringMatches(m: StringMatch, value: string): boolean {
  if ('exact' in m) return value === m.exact;
  if ('prefix' in m) return value.startsWith(m.prefix);
  if ('suffix' in m) return value.endsWith(m.suffix);
  return value !== '';
}

function inCidr(c: CidrAddress, ip: Uint8Array): boolean {
  const addr = c.address;
  if (!addr || addr.length !== ip.length) return false;
  // The wire's prefix length (istiod writes 32/128 for a host; 0 is "any"); a locally built value may leave it out for a host.
  const bits = Math.min(c.length ?? addr.length * 8, addr.length * 8);
  const full = Math.floor(bits / 8);
  for (let i = 0; i < full; i++) if (addr[i] !== ip[i]) return false;
  const rest = bits % 8;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((addr[full] ?? 0) & mask) === ((ip[full] ?? 0) & mask);
}

/** Positive list: empty or one hit. Negative list: no hit. */
function field<T>(pos: readonly T[] | undefined, neg: readonly T[] | undefined, hit: (v: T) => boolean): boolean {
  if (pos && pos.length > 0 && !pos.some(hit)) return false;
  if (neg && neg.length > 0 && neg.some(hit)) return false;
  return true;
}

function matchHolds(m: Match, c: AuthzConnection): boolean {
  const id = c.srcIdentity;
  const principal = id ? `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}` : undefined;
  const sa = (s: ServiceAccountMatch): boolean => id !== undefined && s.namespace === id.namespace && s.serviceAccount === id.serviceAccount;
  return (
    field(m.namespaces, m.notNamespaces, (s) => id !== undefined && stringMatches(s, id.namespace)) &&
    field(m.principals, m.notPrincipals, (s) => principal !== undefined && stringMatches(s, principal)) &&
    field(m.serviceAccounts, m.notServiceAccounts, sa) &&
    field(m.sourceIps, m.notSourceIps, (a) => inCidr(a, c.srcIp)) &&
    field(m.destinationIps, m.notDestinationIps, (a) => inCidr(a, c.dstIp)) &&
    field(m.destinationPorts, m.notDestinationPorts, (p) => p === c.dstPort)
  );
}

function isEmptyMatch(m: Match): boolean {
  return [m.namespaces, m.notNamespaces, m.principals, m.notPrincipals, m.serviceAccounts, m.notServiceAccounts, m.sourceIps, m.notSourceIps, m.destinationIps, m.notDestinationIps, m.destinationPorts, m.notDestinationPorts].every((l) => !l || l.length === 0);
}

/** Whether a policy's rules match the connection (its action aside). */
export function policyMatches(p: Authorization, c: AuthzConnection): boolean {
  const rules = p.rules ?? [];
  if (rules.length === 0) return false;
  return rules.some((rule) =>
    (rule.clauses ?? []).every((clause) => {
      const matches = (clause.matches ?? []).filter((m) => !isEmptyMatch(m));
      return matches.length === 0 || matches.some((m) => matchHolds(m, c));
    }),
  );
}

/** Decides a connection against the policies in scope for its destination. */
export function authorize(policies: readonly Authorization[], c: AuthzConnection): AuthzDecision {
  const dryRun: DryRunResult[] = [];
  let allowPolicies = 0;
  let allowedBy: string | undefined;
  for (const p of policies) {
    const action = p.action === 'DENY' ? 'DENY' : 'ALLOW';
    if (p.dryRun) {
      dryRun.push({ policy: key(p), action, matched: policyMatches(p, c) });
      continue;
    }
    if (action === 'DENY') {
      if (policyMatches(p, c)) return { allowed: false, reason: `denied by DENY policy ${key(p)}`, policy: key(p), dryRun };
      continue;
    }
    allowPolicies++;
    if (allowedBy === undefined && policyMatches(p, c)) allowedBy = key(p);
  }
  if (allowPolicies === 0) return { allowed: true, reason: 'no ALLOW policy applies', dryRun };
  if (allowedBy !== undefined) return { allowed: true, reason: `allowed by ALLOW policy ${allowedBy}`, policy: allowedBy, dryRun };
  return { allowed: false, reason: `no ALLOW policy matched (${allowPolicies} in scope)`, dryRun };
}
