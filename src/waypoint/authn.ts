/**
 * RequestAuthentication: JWT validation with jose, as Istio does it.
 *   - no token: the request passes unauthenticated (policy decides; a
 *     `requestPrincipals` rule then yields 403);
 *   - a token that fails (signature, issuer, audience, expiry): 401;
 *   - a valid token: `requestPrincipal` = `iss/sub`, claims exposed to authz.
 * A token is tried against the rule whose issuer matches its (unverified)
 * `iss`. JWKS come from inline JSON, a local file (read once per cache
 * period) or an HTTP(S) URL (jose's remote set with its cache).
 */
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../common/clock.js';
import type { JwtRule } from './config.js';
import { WaypointJwksError } from './errors.js';

export type AuthnResult =
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'authenticated'; readonly principal: string; readonly claims: JWTPayload; readonly rule: JwtRule; readonly header: string }
  | { readonly kind: 'failed'; readonly reason: string };

interface KeySetEntry { getKey: JWTVerifyGetKey; loadedAt: number }

export class JwtAuthenticator {
  readonly #clock: Clock;
  readonly #sets = new Map<JwtRule, KeySetEntry | Promise<KeySetEntry>>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  async authenticate(rules: readonly JwtRule[], headers: Readonly<Record<string, string>>): Promise<AuthnResult> {
    if (rules.length === 0) return { kind: 'anonymous' };
    for (const rule of rules) {
      for (const from of rule.fromHeaders) {
        const raw = headers[from.name];
        if (raw === undefined) continue;
        if (!raw.startsWith(from.prefix)) continue;
        const token = raw.slice(from.prefix.length).trim();
        let iss: string | undefined;
        try {
          iss = decodeJwt(token).iss;
        } catch {
          return { kind: 'failed', reason: 'malformed jwt' };
        }
        const rule2 = rules.find((r) => r.issuer === iss);
        if (!rule2) return { kind: 'failed', reason: `jwt issuer ${iss ?? '(none)'} is not trusted` };
        try {
          const keys = await this.#keySet(rule2);
          const { payload } = await jwtVerify(token, keys.getKey, {
            issuer: rule2.issuer,
            ...(rule2.audiences.length > 0 ? { audience: [...rule2.audiences] } : {}),
            currentDate: new Date(this.#clock.now()),
          });
          return { kind: 'authenticated', principal: `${payload.iss}/${payload.sub ?? ''}`, claims: payload, rule: rule2, header: from.name };
        } catch (err) {
          return { kind: 'failed', reason: err instanceof Error ? err.message : String(err) };
        }
      }
    }
    return { kind: 'anonymous' };
  }

  #keySet(rule: JwtRule): Promise<KeySetEntry> {
    const cur = this.#sets.get(rule);
    if (cur && !(cur instanceof Promise) && (rule.jwksUri !== undefined || this.#clock.now() - cur.loadedAt < rule.jwksCacheMs)) return Promise.resolve(cur);
    if (cur instanceof Promise) return cur;
    const p = this.#load(rule).then(
      (e) => (this.#sets.set(rule, e), e),
      (err: unknown) => {
        this.#sets.delete(rule);
        throw err;
      },
    );
    this.#sets.set(rule, p);
    return p;
  }

  async #load(rule: JwtRule): Promise<KeySetEntry> {
    const loadedAt = this.#clock.now();
    if (rule.jwksUri !== undefined) {
      return { getKey: createRemoteJWKSet(new URL(rule.jwksUri), { cacheMaxAge: rule.jwksCacheMs, cooldownDuration: 30_000 }), loadedAt };
    }
    const source = rule.jwksFile ?? 'inline jwks';
    try {
      const text = rule.jwksFile !== undefined ? await readFile(rule.jwksFile, 'utf8') : (rule.jwks as string);
      return { getKey: createLocalJWKSet(JSON.parse(text) as JSONWebKeySet), loadedAt };
    } catch (err) {
      throw new WaypointJwksError(source, err);
    }
  }
}
