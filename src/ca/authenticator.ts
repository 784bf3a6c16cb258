/**
 * Who is calling the CA. An authenticator turns the request's headers into
 * the caller's node (the node agent on that node may request identities of
 * that node's pods only). Expected failures are values: `unauthenticated`
 * becomes UNAUTHENTICATED, `unavailable` (the authenticator's own backend
 * failed, e.g. the Kubernetes API) becomes UNAVAILABLE so the agent retries.
 */
import type { Metadata } from '@grpc/grpc-js';

export interface CallerIdentity {
  /** The node the caller runs on. */
  readonly node: string;
  /** How the caller was authenticated. */
  readonly method: 'node-token' | 'kube-token-review';
  /** For logs: a token-file line number, or the service account `system:serviceaccount:<ns>:<sa>` and pod. */
  readonly subject: string;
}

export interface AuthContext {
  readonly metadata: Metadata;
  /** The caller's address as grpc-js reports it, for logs. */
  readonly peer: string;
}

export type AuthResult =
  | { readonly ok: true; readonly caller: CallerIdentity }
  | { readonly ok: false; readonly kind: 'unauthenticated' | 'unavailable'; readonly reason: string };

export interface CaAuthenticator {
  authenticate(ctx: AuthContext): Promise<AuthResult>;
}

/** Longest bearer token we look at; Kubernetes tokens are ~1 KiB. */
export const MAX_TOKEN_LENGTH = 16 * 1024;

/** The token of a single `authorization: Bearer <token>` header. */
export function bearerToken(metadata: Metadata): { ok: true; token: string } | { ok: false; reason: string } {
  const values = metadata.get('authorization');
  if (values.length === 0) return { ok: false, reason: 'no authorization header; send "authorization: Bearer <token>"' };
  if (values.length > 1) return { ok: false, reason: `${values.length} authorization headers; send exactly one` };
  const v = values[0];
  const raw = typeof v === 'string' ? v : '';
  const m = /^bearer +(\S+) *$/i.exec(raw);
  if (m === null || m[1] === undefined) return { ok: false, reason: 'the authorization header is not "Bearer <token>"' };
  if (m[1].length > MAX_TOKEN_LENGTH) return { ok: false, reason: `the bearer token is longer than ${MAX_TOKEN_LENGTH} bytes` };
  return { ok: true, token: m[1] };
}
