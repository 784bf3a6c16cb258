/**
 * L7 AuthorizationPolicy evaluation as Istio defines it: any matching DENY
 * denies; with no ALLOW policy every request is allowed; otherwise one ALLOW
 * must match. AUDIT policies and dry-run policies are reported, never decide.
 * A rule matches when all of from/to/when hold (each list is an OR; empty is
 * true); a field holds when a positive list hits (or is empty) and a `not*`
 * list does not. Pure and synchronous.
 */
import type { AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource, StringMatcher } from './config.js';

export interface AuthzRequest {
  readonly host: string;
  readonly method: string;
  /** Path without query. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Peer SPIFFE id without the spiffe:// scheme (Istio principal form), if any. */
  readonly principal?: string;
  readonly namespace?: string;
  readonly sourceIp: string;
  readonly destinationPort: number;
  /** `iss/sub` of a validated JWT. */
  readonly requestPrincipal?: string;
  readonly claims?: Readonly<Record<string, unknown>>;
}

export interface AuthzVerdict {
  readonly allowed: boolean;
  readonly policy?: string;
  readonly reason: string;
  readonly dryRun: readonly { policy: string; action: string; matched: boolean }[];
}

function hit(m: StringMatcher, v: string): boolean {
  switch (m.kind) {
    case 'any': return true;
    case 'exact': return v === m.value;
    case 'prefix': return v.startsWith(m.value);
    case 'suffix': return v.endsWith(m.value);
  }
}
/** Positive list: empty or one hit. Values undefined never hit. */
function pos(list: readonly StringMatcher[], values: readonly string[]): boolean {
  return list.length === 0 || list.some((m) => values.some((v) => hit(m, v)));
}
function neg(list: readonly StringMatcher[], values: readonly string[]): boolean {
  return list.length === 0 || !list.some((m) => values.some((v) => hit(m, v)));
}
const one = (v: string | undefined): string[] => (v === undefined ? [] : [v]);

function sourceMatches(s: AuthzSource, r: AuthzRequest): boolean {
  return pos(s.principals, one(r.principal)) && neg(s.notPrincipals, one(r.principal))
    && pos(s.namespaces, one(r.namespace)) && neg(s.notNamespaces, one(r.namespace))
    && pos(s.requestPrincipals, one(r.requestPrincipal)) && neg(s.notRequestPrincipals, one(r.requestPrincipal));
}

function operationMatches(o: AuthzOperation, r: AuthzRequest): boolean {
  const host = [r.host.toLowerCase()];
  const method = [r.method.toUpperCase()];
  const path = [r.path];
  return pos(o.hosts, host) && neg(o.notHosts, host) && pos(o.methods, method) && neg(o.notMethods, method) && pos(o.paths, path) && neg(o.notPaths, path);
}

function claimValues(claims: Readonly<Record<string, unknown>> | undefined, keyPath: string[]): string[] {
  let cur: unknown = claims;
  for (const k of keyPath) {
    if (cur === null || typeof cur !== 'object') return [];
    cur = (cur as Record<string, unknown>)[k];
  }
  if (typeof cur === 'string') return [cur];
  if (typeof cur === 'number' || typeof cur === 'boolean') return [String(cur)];
  if (Array.isArray(cur)) return cur.filter((x): x is string => typeof x === 'string');
  return [];
}

export function conditionValues(key: string, r: AuthzRequest): string[] {
  const hdr = /^request\.headers\[(.+)\]$/.exec(key);
  if (hdr) return one(r.headers[(hdr[1] as string).toLowerCase()]);
  if (key.startsWith('request.auth.claims[')) {
    const parts = [...key.slice('request.auth.claims'.length).matchAll(/\[([^\]]+)\]/g)].map((m) => m[1] as string);
    return claimValues(r.claims, parts);
  }
  switch (key) {
    case 'request.auth.principal': return one(r.requestPrincipal);
    case 'request.auth.audiences': return claimValues(r.claims, ['aud']);
    case 'request.auth.presenter': return claimValues(r.claims, ['azp']);
    case 'source.principal': return one(r.principal);
    case 'source.namespace': return one(r.namespace);
    case 'source.ip': return [r.sourceIp];
    case 'destination.port': return [String(r.destinationPort)];
    default: return [];
  }
}

function conditionMatches(c: AuthzCondition, r: AuthzRequest): boolean {
  const vals = conditionValues(c.key, r);
  return (c.values.length === 0 || pos(c.values, vals)) && neg(c.notValues, vals);
}

function ruleMatches(rule: AuthzRule, r: AuthzRequest): boolean {
  return (rule.from.length === 0 || rule.from.some((s) => sourceMatches(s, r)))
    && (rule.to.length === 0 || rule.to.some((o) => operationMatches(o, r)))
    && rule.when.every((c) => conditionMatches(c, r));
}

/** A policy with no rules never matches, except an ALLOW with an empty rule list... which Istio treats as deny-all: no rule can match. */
export function policyMatches(p: AuthzPolicy, r: AuthzRequest): boolean {
  return p.rules.some((rule) => ruleMatches(rule, r));
}

export function evaluateAuthz(policies: readonly AuthzPolicy[], r: AuthzRequest): AuthzVerdict {
  const dryRun: { policy: string; action: string; matched: boolean }[] = [];
  const live = policies.filter((p) => {
    if (p.dryRun || p.action === 'AUDIT') {
      dryRun.push({ policy: p.name, action: p.action, matched: policyMatches(p, r) });
      return false;
    }
    return true;
  });
  for (const p of live) if (p.action === 'DENY' && policyMatches(p, r)) return { allowed: false, policy: p.name, reason: `denied by DENY policy ${p.name}`, dryRun };
  const allows = live.filter((p) => p.action === 'ALLOW');
  if (allows.length === 0) return { allowed: true, reason: 'no ALLOW policy applies', dryRun };
  const m = allows.find((p) => policyMatches(p, r));
  return m ? { allowed: true, policy: m.name, reason: `allowed by ${m.name}`, dryRun } : { allowed: false, reason: 'no ALLOW policy matched', dryRun };
}
