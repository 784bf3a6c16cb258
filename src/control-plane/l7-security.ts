/**
 * AuthorizationPolicy and RequestAuthentication attached by targetRefs ->
 * the waypoint's per-service `authorization` and `requestAuthentication`.
 *
 * A policy applies to a service of the waypoint when a targetRef names the
 * Service (group '' in the policy's namespace), its ServiceEntry
 * (networking.istio.io), the waypoint Gateway itself (same namespace), or
 * the istio-waypoint GatewayClass (policy in the root namespace).
 *
 * AuthorizationPolicy rules keep their L7 fields (paths, methods, hosts,
 * request principals, `when` keys such as request.auth.claims[...] and
 * request.headers[...]). Ports are decided here, because each waypoint
 * service entry is one port: an operation whose ports exclude it can never
 * match and is dropped (a rule whose operations are all dropped is
 * dropped). What the waypoint cannot evaluate is handled so the policy
 * errs on the safe side: an ALLOW rule using it is dropped (allows less),
 * a DENY/AUDIT rule loses that part (matches more). CUSTOM (ext_authz) is
 * not supported: it is enforced as DENY of the requests it selects (fail
 * closed), with a note. dryRun comes from the istio.io/dry-run annotation.
 */
import type { AuthorizationPolicySpec, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource, Resource } from './kinds.js';
import type { PolicyTargetRef, RequestAuthenticationSpec } from './kinds-l7.js';
import type { CatalogService } from './l7-catalog.js';
import type { AuthzPolicyInput, JwtRuleInput } from './l7-input.js';
import type { ResourceSnapshot } from './resource-store.js';
import { WAYPOINT_CLASS, type WaypointInfo } from './translate.js';

/** `when` keys the waypoint evaluates (src/waypoint/config.ts). */
const L7_CONDITION = /^(request\.headers\[[^\]]+\]|request\.auth\.claims(\[[^\]]+\])+|request\.auth\.principal|request\.auth\.audiences|request\.auth\.presenter|source\.principal|source\.namespace|source\.ip|destination\.port|connection\.sni)$/;

const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** Whether `refs` of a policy in `policyNs` attach it to `svc` served by waypoint `wp`. */
export function targetsService(refs: readonly PolicyTargetRef[], policyNs: string, svc: CatalogService, wp: WaypointInfo, rootNamespace: string): boolean {
  return refs.some((r) => {
    if ((r.group === '' || r.group === 'core') && r.kind === 'Service') return svc.kind === 'Service' && policyNs === svc.namespace && r.name === svc.name;
    if (r.group === 'networking.istio.io' && r.kind === 'ServiceEntry') return svc.kind === 'ServiceEntry' && policyNs === svc.namespace && r.name === svc.name;
    if (r.group === GATEWAY_GROUP && r.kind === 'Gateway') return policyNs === wp.namespace && r.name === wp.name;
    if (r.group === GATEWAY_GROUP && r.kind === 'GatewayClass') return policyNs === rootNamespace && r.name === WAYPOINT_CLASS;
    return false;
  });
}

type Json = Record<string, string[]>;

function nonEmpty(o: Record<string, readonly string[]>): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(o)) if (v.length > 0) out[k] = [...v];
  return out;
}

function source(s: AuthzSource): { json: Json; dropped: boolean } {
  const dropped = [s.ipBlocks, s.notIpBlocks, s.remoteIpBlocks, s.notRemoteIpBlocks].some((l) => l.length > 0);
  return {
    json: nonEmpty({
      principals: s.principals,
      notPrincipals: s.notPrincipals,
      namespaces: s.namespaces,
      notNamespaces: s.notNamespaces,
      requestPrincipals: s.requestPrincipals,
      notRequestPrincipals: s.notRequestPrincipals,
    }),
    dropped,
  };
}

/** undefined when the operation cannot match `port`. */
function operation(op: AuthzOperation, port: number): Json | undefined {
  if (op.ports.length > 0 && !op.ports.includes(port)) return undefined;
  if (op.notPorts.includes(port)) return undefined;
  return nonEmpty({ hosts: op.hosts, notHosts: op.notHosts, methods: op.methods, notMethods: op.notMethods, paths: op.paths, notPaths: op.notPaths });
}

/** One rule for one service port; undefined = the rule is dropped (never matches, or ALLOW needing what the waypoint lacks). */
function convertRule(rule: AuthzRule, allow: boolean, port: number, what: string, notes: string[]): AuthzPolicyInput['rules'][number] | undefined {
  const out: AuthzPolicyInput['rules'][number] = {};
  if (rule.from.length > 0) {
    const from = rule.from.map(source);
    if (from.some((f) => f.dropped)) {
      if (allow) {
        notes.push(`${what}: ipBlocks/remoteIpBlocks are not evaluated by the waypoint; the ALLOW rule is left out (allows less)`);
        return undefined;
      }
      notes.push(`${what}: ipBlocks/remoteIpBlocks are not evaluated by the waypoint; the rule matches regardless of them (matches more)`);
    }
    // An empty source matches any request; keeping it keeps that meaning.
    out.from = from.map((f) => ({ source: f.json }));
  }
  if (rule.to.length > 0) {
    const ops = rule.to.map((o) => operation(o, port)).filter((o): o is Json => o !== undefined);
    if (ops.length === 0) return undefined;
    out.to = ops.map((o) => ({ operation: o }));
  }
  const when: NonNullable<AuthzPolicyInput['rules'][number]['when']> = [];
  for (const c of rule.when as readonly AuthzCondition[]) {
    if (!L7_CONDITION.test(c.key)) {
      if (allow) {
        notes.push(`${what}: condition key '${c.key}' is not evaluated by the waypoint; the ALLOW rule is left out (allows less)`);
        return undefined;
      }
      notes.push(`${what}: condition key '${c.key}' is not evaluated by the waypoint; the condition is dropped (matches more)`);
      continue;
    }
    if (c.key === 'destination.port') {
      // Decided here: this entry is one port.
      const p = String(port);
      if ((c.values.length > 0 && !c.values.includes(p)) || c.notValues.includes(p)) return undefined;
      continue;
    }
    when.push({ key: c.key, ...(c.values.length > 0 ? { values: [...c.values] } : {}), ...(c.notValues.length > 0 ? { notValues: [...c.notValues] } : {}) });
  }
  if (when.length > 0) out.when = when;
  return out;
}

export interface L7Security {
  readonly authorization: AuthzPolicyInput[];
  readonly requestAuthentication: JwtRuleInput[];
}

/** The policies attached to one service port of waypoint `wp`. */
export function securityFor(snap: ResourceSnapshot, wp: WaypointInfo, svc: CatalogService, port: number, rootNamespace: string, notes: string[]): L7Security {
  const authorization: AuthzPolicyInput[] = [];
  for (const ap of snap.list<AuthorizationPolicySpec>('AuthorizationPolicy.security.istio.io')) {
    if (ap.spec.targetRefs.length === 0 || !targetsService(ap.spec.targetRefs, ap.namespace, svc, wp, rootNamespace)) continue;
    const what = `AuthorizationPolicy ${ap.namespace}/${ap.name}`;
    let action = ap.spec.action;
    if (action === 'CUSTOM') {
      notes.push(`${what}: CUSTOM (ext_authz) is not supported by the waypoint; enforced as DENY of the requests it selects (fail closed)`);
      action = 'DENY';
    }
    const rules = ap.spec.rules.flatMap((r, i) => {
      const c = convertRule(r, action === 'ALLOW', port, `${what} rules[${i}]`, notes);
      return c ? [c] : [];
    });
    authorization.push({ name: `${ap.namespace}/${ap.name}`, action, ...(ap.annotations['istio.io/dry-run'] === 'true' ? { dryRun: true } : {}), rules });
  }
  const requestAuthentication: JwtRuleInput[] = [];
  for (const ra of snap.list<RequestAuthenticationSpec>('RequestAuthentication.security.istio.io')) {
    if (ra.spec.targetRefs.length === 0 || !targetsService(ra.spec.targetRefs, ra.namespace, svc, wp, rootNamespace)) continue;
    requestAuthentication.push(...jwtRules(ra, notes));
  }
  return { authorization, requestAuthentication };
}

function jwtRules(ra: Resource<RequestAuthenticationSpec>, notes: string[]): JwtRuleInput[] {
  const what = `RequestAuthentication ${ra.namespace}/${ra.name}`;
  return ra.spec.jwtRules.flatMap((j, i) => {
    if (j.unsupported.length > 0) notes.push(`${what} jwtRules[${i}]: ${j.unsupported.join(', ')} not supported by the waypoint; ignored`);
    if (j.jwksUri === undefined && j.jwks === undefined) {
      notes.push(`${what} jwtRules[${i}]: neither jwksUri nor jwks is set (OIDC discovery is not supported); tokens of issuer ${j.issuer} are rejected`);
      return [];
    }
    return [
      {
        issuer: j.issuer,
        ...(j.audiences.length > 0 ? { audiences: [...j.audiences] } : {}),
        ...(j.jwksUri !== undefined ? { jwksUri: j.jwksUri } : { jwks: j.jwks as string }),
        ...(j.fromHeaders.length > 0 ? { fromHeaders: j.fromHeaders.map((h) => ({ name: h.name, ...(h.prefix ? { prefix: h.prefix } : {}) })) } : {}),
        ...(j.forwardOriginalToken ? { forwardOriginalToken: true } : {}),
      },
    ];
  });
}

/** Notes for L7 policies that cannot reach a waypoint (no targetRefs). */
export function unattachedPolicyNotes(snap: ResourceSnapshot): string[] {
  return snap
    .list<RequestAuthenticationSpec>('RequestAuthentication.security.istio.io')
    .filter((ra) => ra.spec.targetRefs.length === 0)
    .map((ra) => `RequestAuthentication ${ra.namespace}/${ra.name}: has no targetRefs; in ambient mode JWT rules take effect only on a waypoint (targetRefs to the waypoint Gateway or a Service)`);
}
