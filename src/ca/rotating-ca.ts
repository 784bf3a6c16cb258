/**
 * A signer that can hold several roots, for root rotation without breaking
 * mTLS between workloads that got their certificates at different times:
 *
 *   addRoot(new)   the new root joins the trust bundle; it does not sign yet.
 *                  Wait until every agent has fetched a certificate (and so
 *                  the bundle) since then - one leaf lifetime is enough.
 *   activate(new)  new leaves are signed by the new root; old leaves keep
 *                  verifying because the old root is still in the bundle.
 *   retire(old)    once the old root's leaves have expired or been renewed,
 *                  drop it from the bundle.
 *
 * Each root is signed through a LocalCa, so CSR and SAN checks and the
 * "leaf never outlives its root" rule are the local CA's.
 */
import { X509Certificate } from 'node:crypto';
import type { Clock } from '../common/clock.js';
import type { CertificateSource, SignRequest, SignResponse } from '../identity/certificate-source.js';
import { LocalCa, type LocalCaOptions } from '../identity/local-ca.js';
import type { RootCertificate } from '../identity/x509.js';
import { CaRootRotationError } from './errors.js';

/** What the CA server needs from a signer: signing, and the roots it wants peers to trust. */
export interface CaSigner extends CertificateSource {
  readonly trustDomain: string;
  /** Every root peers must trust, PEM, each ending with a newline. */
  trustBundle(): string[];
}

export interface RotatingCaOptions {
  readonly trustDomain: string;
  readonly clock?: Clock;
  /** Lifetime of roots this class creates. */
  readonly rootTtlDays?: number;
  /** Sign RSA (>= 2048 bit) CSRs too; the Istio CA server accepts them. Default true. */
  readonly allowRsaCsr?: boolean;
}

interface Held {
  readonly fingerprint: string;
  readonly ca: LocalCa;
}

export class RotatingCa implements CaSigner {
  readonly trustDomain: string;
  readonly #opts: LocalCaOptions;
  /** Insertion order = bundle order. */
  readonly #roots = new Map<string, Held>();
  #active: Held;

  private constructor(opts: LocalCaOptions, first: Held) {
    this.trustDomain = first.ca.trustDomain;
    this.#opts = opts;
    this.#roots.set(first.fingerprint, first);
    this.#active = first;
  }

  /** A CA with one new in-memory root, active. */
  static async create(opts: RotatingCaOptions): Promise<RotatingCa> {
    const lo = localOptions(opts);
    return RotatingCa.fromRoot(await LocalCa.createRoot(lo), opts);
  }

  /** A CA over an existing root (e.g. the one in a local CA directory), active. */
  static async fromRoot(root: RootCertificate, opts: RotatingCaOptions): Promise<RotatingCa> {
    const lo = localOptions(opts);
    return new RotatingCa(lo, await hold(root, lo));
  }

  /** A fresh root for this trust domain, to pass to addRoot(). */
  newRoot(): Promise<RootCertificate> {
    return LocalCa.createRoot(this.#opts);
  }

  /** Trusted (in the bundle) but not signing. Throws CaRootRotationError for a root already held. */
  async addRoot(root: RootCertificate): Promise<void> {
    const h = await hold(root, this.#opts);
    if (this.#roots.has(h.fingerprint)) throw new CaRootRotationError(`the root ${h.fingerprint} is already in the trust bundle; add a new root`);
    this.#roots.set(h.fingerprint, h);
  }

  /** Starts signing with a root already added. */
  activate(rootCertPem: string): void {
    const h = this.#roots.get(fingerprintOf(rootCertPem));
    if (h === undefined) throw new CaRootRotationError('that root is not in the trust bundle; addRoot() it and let agents pick up the bundle before activating it');
    this.#active = h;
  }

  /** Drops a root from the bundle. The active root cannot be retired. */
  retire(rootCertPem: string): void {
    const fp = fingerprintOf(rootCertPem);
    if (!this.#roots.has(fp)) throw new CaRootRotationError('that root is not in the trust bundle; nothing to retire');
    if (this.#active.fingerprint === fp) throw new CaRootRotationError('that root is signing; activate another root before retiring it');
    this.#roots.delete(fp);
  }

  /** The root that signs new leaves. */
  get activeRootPem(): string {
    return this.#active.ca.rootCertPem;
  }

  trustBundle(): string[] {
    return [...this.#roots.values()].map((h) => h.ca.rootCertPem);
  }

  async sign(req: SignRequest): Promise<SignResponse> {
    const res = await this.#active.ca.sign(req);
    return { certChainPem: res.certChainPem, rootsPem: this.trustBundle() };
  }
}

function localOptions(opts: RotatingCaOptions): LocalCaOptions {
  return {
    trustDomain: opts.trustDomain,
    ...(opts.clock !== undefined ? { clock: opts.clock } : {}),
    ...(opts.rootTtlDays !== undefined ? { rootTtlDays: opts.rootTtlDays } : {}),
    allowRsaCsr: opts.allowRsaCsr ?? true,
  };
}

async function hold(root: RootCertificate, opts: LocalCaOptions): Promise<Held> {
  const ca = await LocalCa.fromRoot(root, opts);
  return { fingerprint: fingerprintOf(ca.rootCertPem), ca };
}

function fingerprintOf(certPem: string): string {
  try {
    return new X509Certificate(certPem).fingerprint256;
  } catch (err) {
    throw new CaRootRotationError('the root is not a pem certificate; pass the certificate pem of a root', { cause: err });
  }
}
