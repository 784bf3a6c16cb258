/**
 * Shared pieces of the L7 kind validators (header modifiers, header names,
 * policy targetRefs) and the RequestAuthentication validator. The route
 * kinds live in kinds-gateway-api.ts (HTTPRoute, GRPCRoute) and
 * kinds-istio-networking.ts (VirtualService, DestinationRule). Each
 * validator turns the raw object into a normalized spec (API defaults
 * filled in, durations in milliseconds, regular expressions checked to
 * compile) or throws InvalidField naming the first bad field. Fields the
 * waypoint cannot apply are kept as names in `unsupported`, so translation
 * says so in a note instead of silently dropping them. All are registered
 * in kinds.ts.
 */
import type { FieldReader } from './validation.js';

// ---------------------------------------------------------------- shared

export interface HeaderModifier {
  readonly set: Readonly<Record<string, string>>;
  readonly add: Readonly<Record<string, string>>;
  readonly remove: readonly string[];
}

export interface PolicyTargetRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
}

export const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-zA-Z]+$/;
export const EMPTY_MODIFIER: HeaderModifier = { set: {}, add: {}, remove: [] };

export function headerName(r: FieldReader, key: string, v: string): string {
  if (!HEADER_NAME.test(v)) r.fail(key, `must be an HTTP header name (letters, digits, '-' ...); got '${v}'`);
  if (v.toLowerCase() === 'host' || v.startsWith(':')) r.fail(key, `cannot modify '${v}' (use a rewrite of the hostname/authority)`);
  return v.toLowerCase();
}

/** targetRef / targetRefs of Istio policies (group defaults to core ''). */
export function parseTargetRefs(spec: FieldReader): PolicyTargetRef[] {
  return [...(spec.has('targetRef') ? [spec.child('targetRef')] : []), ...spec.list('targetRefs')].map((t) => ({
    group: t.optString('group') ?? '',
    kind: t.string('kind'),
    name: t.string('name'),
  }));
}

// ---------------------------------------------------------------- RequestAuthentication

export interface JwtRuleSpec {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly jwksUri?: string;
  readonly jwks?: string;
  readonly fromHeaders: ReadonlyArray<{ readonly name: string; readonly prefix: string }>;
  readonly forwardOriginalToken: boolean;
  readonly unsupported: readonly string[];
}

export interface RequestAuthenticationSpec {
  readonly selector?: Readonly<Record<string, string>>;
  readonly targetRefs: readonly PolicyTargetRef[];
  readonly jwtRules: readonly JwtRuleSpec[];
}

export function parseRequestAuthentication(r: FieldReader): RequestAuthenticationSpec {
  const spec = r.child('spec');
  const selector = spec.has('selector') ? spec.child('selector').stringMap('matchLabels') : undefined;
  const targetRefs = parseTargetRefs(spec);
  if (selector && targetRefs.length > 0) spec.fail('targetRefs', 'cannot be combined with selector');
  const jwtRules = spec.list('jwtRules').map((j): JwtRuleSpec => {
    const issuer = j.string('issuer');
    const jwksUri = j.optString('jwksUri');
    if (jwksUri !== undefined && !/^https?:\/\/[^\s]+$/.test(jwksUri)) j.fail('jwksUri', `must be an http or https URL; got '${jwksUri}'`);
    const jwks = j.optString('jwks');
    if (jwks !== undefined) {
      try {
        JSON.parse(jwks);
      } catch {
        j.fail('jwks', 'must be a JSON Web Key Set (JSON text)');
      }
    }
    const fromHeaders = j.list('fromHeaders').map((h) => ({ name: h.string('name').toLowerCase(), prefix: h.optString('prefix') ?? '' }));
    return {
      issuer,
      audiences: j.strings('audiences'),
      ...(jwksUri ? { jwksUri } : {}),
      ...(jwks ? { jwks } : {}),
      fromHeaders,
      forwardOriginalToken: j.bool('forwardOriginalToken', false),
      unsupported: ['fromParams', 'fromCookies', 'outputPayloadToHeader', 'outputClaimToHeaders', 'timeout'].filter((k) => j.has(k)),
    };
  });
  return { ...(selector ? { selector } : {}), targetRefs, jwtRules };
}

