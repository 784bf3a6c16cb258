/**
 * The waypoint's own workload certificate (spiffe://<td>/ns/<ns>/sa/<name>):
 * fetched from a CertificateSource (the Istio CA API client in production)
 * through a SecretManager, which renews it at half-life with a fresh key.
 * `current()` is a stable TlsIdentity object between rotations (the HBONE
 * server caches TLS state per object). `ready()` resolves with the first
 * certificate, retrying failed fetches with capped exponential backoff.
 */
import type { Clock, Timer } from '../common/clock.js';
import { systemClock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import type { TlsIdentity } from '../hbone/tls-identity.js';
import type { CertificateSource } from '../identity/certificate-source.js';
import { SecretManager, type WorkloadCertificate } from '../identity/secret-manager.js';
import type { SpiffeId } from '../identity/spiffe.js';
import { WaypointProxyCertificateError } from './errors.js';

export interface WaypointIdentityOptions {
  readonly id: SpiffeId;
  readonly source: CertificateSource;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly ttlSeconds?: number;
}

const toTls = (c: WorkloadCertificate): TlsIdentity => ({ identity: c.identity.toString(), privateKeyPem: c.privateKeyPem, certChainPem: c.certChainPem, rootsPem: c.rootsPem });

export class WaypointIdentity {
  readonly id: SpiffeId;
  readonly #secrets: SecretManager;
  readonly #log: Logger;
  readonly #clock: Clock;
  #current: TlsIdentity | undefined;
  #closed = false;
  #retry: Timer | undefined;

  constructor(o: WaypointIdentityOptions) {
    this.id = o.id;
    this.#log = o.logger.child({ component: 'waypoint-identity' });
    this.#clock = o.clock ?? systemClock;
    this.#secrets = new SecretManager({ source: o.source, logger: o.logger, ...(o.clock ? { clock: o.clock } : {}), ...(o.ttlSeconds ? { ttlSeconds: o.ttlSeconds } : {}) });
    this.#secrets.onRotate((cur) => {
      this.#current = toTls(cur);
      this.#log.info({ identity: cur.identity.toString(), notAfter: new Date(cur.notAfter).toISOString() }, 'waypoint certificate rotated');
    });
  }

  /** The certificate to present now; undefined before the first one arrived. */
  current(): TlsIdentity | undefined {
    return this.#current;
  }

  /** The current certificate (fetching it if needed). Rejects while the CA is unreachable. */
  async get(): Promise<TlsIdentity> {
    const cert = await this.#secrets.getCertificate(this.id);
    if (!this.#current || this.#current.certChainPem[0] !== cert.certChainPem[0]) this.#current = toTls(cert);
    return this.#current;
  }

  /** Resolves with the first certificate; retries (1 s doubling to 30 s) until it comes or close(). */
  ready(): Promise<TlsIdentity> {
    return new Promise((resolve, reject) => {
      let delay = 1000;
      const attempt = (): void => {
        if (this.#closed) {
          reject(new WaypointProxyCertificateError(this.id.toString(), new Error('closed')));
          return;
        }
        this.get().then(resolve, (err: unknown) => {
          this.#log.warn({ err: new WaypointProxyCertificateError(this.id.toString(), err), retryMs: delay }, 'waypoint certificate not available yet');
          this.#retry = this.#clock.setTimeout(attempt, delay);
          delay = Math.min(delay * 2, 30_000);
        });
      };
      attempt();
    });
  }

  close(): void {
    this.#closed = true;
    this.#retry?.cancel();
    this.#secrets.close();
  }
}
