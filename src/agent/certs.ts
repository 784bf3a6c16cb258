/**
 * Synchronous access to the current certificate of each local identity.
 * The HBONE server chooses its certificate during accept, which cannot wait,
 * so certificates are fetched when a workload is added and kept current on
 * rotation. The secret manager does the fetching, renewal and backoff.
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

  current(identity: string): TlsIdentity | undefined {
    return this.#current.get(identity);
  }
}
