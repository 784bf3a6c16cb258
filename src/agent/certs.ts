/**
 * Synchronous access to the current certificate of each local identity.
 * The HBONE server chooses its certificate during accept, which cannot wait,
 * so certificates are fetched when a workload is added and kept current on
 * rotation. The secret manager does the fetching, renewal and backoff.
 * Expired certificates are never handed out (current() checks validity on
 * every call; ensure() goes through the secret manager, which refuses them).
 */
import { parseSpiffeId } from '../identity/spiffe.js';
import type { SecretManager, WorkloadCertificate } from '../identity/secret-manager.js';
import type { TlsIdentity } from '../hbone/tls-identity.js';

function toTlsIdentity(c: WorkloadCertificate): TlsIdentity {
  return { identity: c.identity.toString(), privateKeyPem: c.privateKeyPem, certChainPem: c.certChainPem, rootsPem: c.rootsPem };
}

export class WorkloadCertificates {
  readonly #secrets: SecretManager;
  readonly #current = new Map<string, TlsIdentity>();

  constructor(secrets: SecretManager) {
    this.#secrets = secrets;
    secrets.onRotate((cur) => this.#current.set(cur.identity.toString(), toTlsIdentity(cur)));
  }

  /** Fetches (or returns the cached) certificate for a SPIFFE id. */
  async ensure(identity: string): Promise<TlsIdentity> {
    const cert = await this.#secrets.getCertificate(parseSpiffeId(identity));
    const tls = this.#current.get(identity);
    // keep the object stable between rotations: the HBONE server caches TLS state per object
    if (tls && tls.certChainPem[0] === cert.certChainPem[0]) return tls;
    const fresh = toTlsIdentity(cert);
    this.#current.set(identity, fresh);
    return fresh;
  }

  /**
   * The certificate to present for `identity` right now, or undefined when
   * there is none or it has expired: an expired certificate is never
   * presented (the HBONE server then refuses the connection, fail closed).
   */
  current(identity: string): TlsIdentity | undefined {
    const valid = this.#secrets.validCertificate(identity);
    if (valid === undefined) return undefined;
    const tls = this.#current.get(identity);
    if (tls && tls.certChainPem[0] === valid.certChainPem[0]) return tls;
    const fresh = toTlsIdentity(valid);
    this.#current.set(identity, fresh);
    return fresh;
  }
}
