/**
 * The self-contained mode's certificate authority: an ECDSA P-256 root kept
 * in a directory shared by the agents on one machine (or in memory for
 * tests), signing workload leaves directly (no intermediate). It plays the
 * part istiod's CA plays in a cluster, behind the same CertificateSource
 * interface.
 */
import { X509Certificate, type webcrypto } from 'node:crypto';
import { systemClock, type Clock } from '../common/clock.js';
import { ConfigError } from '../common/errors.js';
import type { CertificateSource, SignRequest, SignResponse } from './certificate-source.js';
import { CaStoreError, CsrIdentityMismatchError, CsrSanError, InvalidTtlError, TrustDomainMismatchError } from './errors.js';
import { loadOrCreateRoot, type StoredRoot } from './local-ca-store.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId } from './spiffe.js';
import { createRootCertificate, importSigningKey, issueLeafCertificate, readCsr } from './x509.js';

/** Leaves start this far in the past so peers whose clocks lag a little accept them at once. */
const CLOCK_SKEW_MS = 60_000;
const DAY_MS = 86_400_000;
export const DEFAULT_ROOT_TTL_DAYS = 3650;

export interface LocalCaOptions {
  readonly trustDomain: string;
  /** Drives certificate validity; tests pass a FakeClock. */
  readonly clock?: Clock;
  /** Lifetime of a newly created root. An existing root keeps its own. */
  readonly rootTtlDays?: number;
  /** Also sign CSRs with RSA keys of at least 2048 bits (the Istio CA server allows them). Default: ECDSA P-256 only. */
  readonly allowRsaCsr?: boolean;
}

export class LocalCa implements CertificateSource {
  readonly trustDomain: string;
  /** The trust anchor every leaf chains to. */
  readonly rootCertPem: string;
  /** When the root expires (ms epoch); leaves never outlive it. */
  readonly rootNotAfter: number;
  readonly #key: webcrypto.CryptoKey;
  readonly #clock: Clock;
  readonly #allowRsa: boolean;

  private constructor(trustDomain: string, root: StoredRoot, key: webcrypto.CryptoKey, clock: Clock, allowRsa = false) {
    this.trustDomain = trustDomain;
    this.rootCertPem = root.certPem;
    this.rootNotAfter = Date.parse(new X509Certificate(root.certPem).validTo);
    this.#key = key;
    this.#clock = clock;
    this.#allowRsa = allowRsa;
  }

  /** Opens the root in `dir`, creating it if absent; safe when several processes do this at once. */
  static async openOrCreate(dir: string, opts: LocalCaOptions): Promise<LocalCa> {
    const { trustDomain, clock, ttlMs } = checkOptions(opts);
    const root = await loadOrCreateRoot(dir, () => newRoot(trustDomain, clock, ttlMs));
    checkRoot(root.certPem, trustDomain, clock, dir);
    return new LocalCa(trustDomain, root, await loadKey(root, dir), clock, opts.allowRsaCsr);
  }

  /**
   * A CA over a root held elsewhere (e.g. one step of a root rotation). The
   * root is checked like a stored one: a CA certificate for this trust
   * domain, valid now, with a usable ECDSA P-256 key.
   */
  static async fromRoot(root: StoredRoot, opts: LocalCaOptions): Promise<LocalCa> {
    const { trustDomain, clock } = checkOptions(opts);
    try {
      checkRoot(root.certPem, trustDomain, clock, 'the supplied root');
    } catch (err) {
      if (err instanceof CaStoreError) throw err;
      throw new CaStoreError(`the supplied root is not a pem certificate: ${(err as Error).message}; pass the root's certificate pem`, { cause: err });
    }
    return new LocalCa(trustDomain, root, await loadKey(root, 'the supplied root'), clock, opts.allowRsaCsr);
  }

  /** A fresh root for this CA's trust domain, not yet used by anything (the first step of a rotation). */
  static createRoot(opts: LocalCaOptions): Promise<StoredRoot> {
    const { trustDomain, clock, ttlMs } = checkOptions(opts);
    return newRoot(trustDomain, clock, ttlMs);
  }

  /** An in-memory root: for tests, including a second "foreign" CA that peers must not trust. */
  static async createEphemeral(opts: LocalCaOptions): Promise<LocalCa> {
    const { trustDomain, clock, ttlMs } = checkOptions(opts);
    const root = await newRoot(trustDomain, clock, ttlMs);
    return new LocalCa(trustDomain, root, await loadKey(root, 'memory'), clock, opts.allowRsaCsr);
  }

  /** The roots a peer must trust for this CA's leaves: just this one root. */
  trustBundle(): string[] {
    return [this.rootCertPem];
  }

  /**
   * Issues a leaf for `req.identity` after checking that the CSR is
   * well-formed and self-signed, and that its only SAN is exactly that
   * identity in this CA's trust domain. The lifetime is cut to the root's.
   */
  async sign(req: SignRequest): Promise<SignResponse> {
    if (!Number.isFinite(req.ttlSeconds) || req.ttlSeconds <= 0) {
      throw new InvalidTtlError(`certificate ttl must be a positive number of seconds, got ${req.ttlSeconds}`);
    }
    this.#checkTrustDomain(req.identity.trustDomain, req.identity.toString());
    const csr = await readCsr(req.csrPem, { allowRsa: this.#allowRsa });
    const sans = [...csr.uris.map((u) => `uri:${u}`), ...csr.otherSans];
    if (csr.uris.length !== 1 || csr.otherSans.length > 0) {
      const found = sans.length === 0 ? 'no subject alternative name' : `${sans.length} subject alternative names (${sans.join(', ')})`;
      throw new CsrSanError(`the csr has ${found}; it must carry exactly one uri san, the spiffe id ${req.identity.toString()}`);
    }
    const uri = csr.uris[0] as string;
    let requested: SpiffeId;
    try {
      requested = parseSpiffeId(uri);
    } catch (err) {
      throw new CsrSanError(`the csr uri san ${JSON.stringify(uri)} is not a spiffe id; request ${req.identity.toString()}`, { cause: err });
    }
    this.#checkTrustDomain(requested.trustDomain, uri);
    if (!requested.equals(req.identity)) {
      throw new CsrIdentityMismatchError(`the csr asks for ${uri} but the request is for ${req.identity.toString()}; put the requested identity in the csr`);
    }
    const now = this.#clock.now();
    const notAfter = Math.min(now + req.ttlSeconds * 1000, this.rootNotAfter);
    const leaf = await issueLeafCertificate({
      issuerCertPem: this.rootCertPem,
      issuerKey: this.#key,
      publicKeySpki: csr.publicKeySpki,
      uri,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(notAfter),
    });
    return { certChainPem: [leaf], rootsPem: [this.rootCertPem] };
  }

  #checkTrustDomain(td: string, what: string): void {
    if (td !== this.trustDomain) {
      throw new TrustDomainMismatchError(
        `${what} is in trust domain "${td}" but this ca signs only for "${this.trustDomain}"; request an identity in "${this.trustDomain}"`,
      );
    }
  }
}

function checkOptions(opts: LocalCaOptions): { trustDomain: string; clock: Clock; ttlMs: number } {
  let trustDomain: string;
  try {
    trustDomain = parseTrustDomain(opts.trustDomain);
  } catch (err) {
    throw new ConfigError(`local ca: ${(err as Error).message}`, { cause: err });
  }
  const days = opts.rootTtlDays ?? DEFAULT_ROOT_TTL_DAYS;
  if (!Number.isFinite(days) || days <= 0) throw new ConfigError(`local ca: rootTtlDays must be a positive number, got ${days}`);
  return { trustDomain, clock: opts.clock ?? systemClock, ttlMs: days * DAY_MS };
}

function newRoot(trustDomain: string, clock: Clock, ttlMs: number): Promise<StoredRoot> {
  const now = clock.now();
  return createRootCertificate({ organization: trustDomain, notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(now + ttlMs) });
}

async function loadKey(root: StoredRoot, where: string): Promise<webcrypto.CryptoKey> {
  try {
    return await importSigningKey(root.privateKeyPem);
  } catch (err) {
    throw new CaStoreError(`the root key in ${where} cannot be used: ${(err as Error).message}; use an ecdsa p-256 key or remove the directory`, { cause: err });
  }
}

/** A shared root must be a CA for our trust domain and valid now; refuse rather than issue unverifiable leaves. */
function checkRoot(certPem: string, trustDomain: string, clock: Clock, dir: string): void {
  const cert = new X509Certificate(certPem);
  const org = (cert.subject ?? '').split('\n').find((l) => l.startsWith('O='))?.slice(2);
  const fix = `use another directory or remove ${dir} to create a new root`;
  if (!cert.ca) throw new CaStoreError(`the root certificate in ${dir} is not a ca certificate; ${fix}`);
  if (org !== undefined && org !== trustDomain) {
    throw new CaStoreError(`the root in ${dir} belongs to trust domain "${org}", not "${trustDomain}"; ${fix}`);
  }
  const now = clock.now();
  if (now >= Date.parse(cert.validTo) || now < Date.parse(cert.validFrom)) {
    throw new CaStoreError(`the root certificate in ${dir} is valid only from ${cert.validFrom} to ${cert.validTo}; ${fix}`);
  }
}
