/**
 * SPIFFE identities in Istio's form, `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`,
 * and extraction of URI SANs from certificates.
 *
 * Parsing is strict (SPIFFE ID spec): lowercase scheme and trust domain, no
 * port, userinfo, query, fragment or percent-encoding, path segments limited
 * to [A-Za-z0-9._-]. A lenient parser would let two spellings of one identity
 * compare unequal in authorization checks.
 */
import type { X509Certificate } from 'node:crypto';
import { InvalidSpiffeIdError } from './errors.js';

const SCHEME = 'spiffe://';
/** The SPIFFE spec caps the trust domain at 255 bytes and the whole ID at 2048 bytes. */
const MAX_TRUST_DOMAIN_LENGTH = 255;
const MAX_ID_LENGTH = 2048;
const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

/** An immutable, validated SPIFFE ID. Compare with `equals()` or by `toString()`. */
export class SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly #uri: string;

  private constructor(trustDomain: string, namespace: string, serviceAccount: string) {
    this.trustDomain = trustDomain;
    this.namespace = namespace;
    this.serviceAccount = serviceAccount;
    this.#uri = `${SCHEME}${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
    Object.freeze(this);
  }

  /** Validates the parts; used by `spiffeId()` and `parseSpiffeId()`. */
  static of(trustDomain: string, namespace: string, serviceAccount: string): SpiffeId {
    const id = new SpiffeId(trustDomain, namespace, serviceAccount);
    checkTrustDomain(trustDomain, id.#uri);
    checkSegment(namespace, 'namespace', id.#uri);
    checkSegment(serviceAccount, 'service account', id.#uri);
    if (id.#uri.length > MAX_ID_LENGTH) fail(id.#uri, `it is longer than ${MAX_ID_LENGTH} bytes`);
    return id;
  }

  equals(other: SpiffeId | undefined | null): boolean {
    return other instanceof SpiffeId && other.#uri === this.#uri;
  }

  toString(): string {
    return this.#uri;
  }

  toJSON(): string {
    return this.#uri;
  }
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): SpiffeId {
  return SpiffeId.of(trustDomain, namespace, serviceAccount);
}

/** Parses `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`; throws InvalidSpiffeIdError naming the problem. */
export function parseSpiffeId(uri: string): SpiffeId {
  if (typeof uri !== 'string' || uri === '') fail(String(uri), 'it is empty');
  if (uri.length > MAX_ID_LENGTH) fail(uri, `it is longer than ${MAX_ID_LENGTH} bytes`);
  if (!uri.startsWith(SCHEME)) fail(uri, `the scheme must be "${SCHEME}" (lowercase)`);
  const rest = uri.slice(SCHEME.length);
  for (const [ch, what] of [['?', 'a query'], ['#', 'a fragment'], ['%', 'percent-encoding']] as const) {
    if (rest.includes(ch)) fail(uri, `it must not contain ${what} ("${ch}")`);
  }
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  checkTrustDomain(trustDomain, uri);
  if (slash === -1) fail(uri, 'the path is missing; expected /ns/<namespace>/sa/<service-account>');
  const segments = rest.slice(slash + 1).split('/');
  segments.forEach((s, i) => {
    if (s === '') fail(uri, i === segments.length - 1 ? 'the path has a trailing "/"' : 'the path has an empty segment ("//")');
  });
  const [ns, namespace, sa, serviceAccount] = segments;
  if (segments.length !== 4 || ns !== 'ns' || sa !== 'sa' || namespace === undefined || serviceAccount === undefined) {
    fail(uri, 'the path must be /ns/<namespace>/sa/<service-account>');
  }
  return SpiffeId.of(trustDomain, namespace, serviceAccount);
}

/** Validates a bare trust domain (e.g. from configuration) and returns it. */
export function parseTrustDomain(td: string): string {
  checkTrustDomain(td, td, 'trust domain');
  return td;
}

function checkTrustDomain(td: string, uri: string, what = 'spiffe id'): void {
  if (td === '') fail(uri, 'the trust domain is empty', what);
  if (td.length > MAX_TRUST_DOMAIN_LENGTH) fail(uri, `the trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} bytes`, what);
  if (td.includes(':')) fail(uri, 'the trust domain must not contain a port or userinfo (":")', what);
  if (td.includes('@')) fail(uri, 'the trust domain must not contain userinfo ("@")', what);
  const bad = [...td].find((c) => !TRUST_DOMAIN_RE.test(c));
  if (bad !== undefined) fail(uri, `the trust domain contains ${JSON.stringify(bad)}; use lowercase letters, digits, ".", "-" and "_"`, what);
}

function checkSegment(seg: string, what: string, uri: string): void {
  if (seg === '') fail(uri, `the ${what} is empty`);
  if (seg === '.' || seg === '..') fail(uri, `the ${what} must not be "." or ".."`);
  const bad = [...seg].find((c) => !SEGMENT_RE.test(c));
  if (bad !== undefined) fail(uri, `the ${what} contains ${JSON.stringify(bad)}; use letters, digits, ".", "-" and "_"`);
}

function fail(uri: string, why: string, what = 'spiffe id'): never {
  const shown = uri.length > 120 ? `${uri.slice(0, 120)}...` : uri;
  throw new InvalidSpiffeIdError(`invalid ${what} ${JSON.stringify(shown)}: ${why}`);
}

/** One entry of an OpenSSL/Node subjectAltName string, e.g. {type: 'URI', value: 'spiffe://...'}. */
export interface AltName {
  readonly type: string;
  readonly value: string;
}

/**
 * Parses the `subjectAltName` string of node:crypto's X509Certificate (or a
 * TLS PeerCertificate's `subjectaltname`): `TYPE:value` entries joined by
 * ", ". Since Node 17.3.1 a value containing ',', quotes, backslashes or
 * control characters is written as a JSON string literal, so splitting on
 * commas alone would let a crafted SAN smuggle in a second identity.
 * Parsing stops at the first malformed entry; what follows is dropped, so a
 * verifier fails closed.
 */
export function parseSubjectAltNames(s: string | undefined): AltName[] {
  const out: AltName[] = [];
  let pos = 0;
  while (s !== undefined && pos < s.length) {
    const colon = s.indexOf(':', pos);
    if (colon === -1) break;
    const type = s.slice(pos, colon);
    let value: string;
    pos = colon + 1;
    if (s[pos] === '"') {
      let end = pos + 1;
      while (end < s.length && s[end] !== '"') end += s[end] === '\\' ? 2 : 1;
      if (end >= s.length) break;
      try {
        value = JSON.parse(s.slice(pos, end + 1)) as string;
      } catch {
        break;
      }
      pos = end + 1;
    } else {
      const end = s.indexOf(', ', pos);
      value = s.slice(pos, end === -1 ? s.length : end);
      pos = end === -1 ? s.length : end;
    }
    out.push({ type, value });
    if (pos < s.length) {
      if (!s.startsWith(', ', pos)) break;
      pos += 2;
    }
  }
  return out;
}

/** The `spiffe://` URI SANs of a certificate, unvalidated and in certificate order. */
export function spiffeUrisOf(cert: Pick<X509Certificate, 'subjectAltName'> | { subjectaltname?: string }): string[] {
  const raw = 'subjectAltName' in cert ? cert.subjectAltName : cert.subjectaltname;
  return parseSubjectAltNames(raw)
    .filter((n) => n.type === 'URI' && n.value.startsWith(SCHEME))
    .map((n) => n.value);
}
