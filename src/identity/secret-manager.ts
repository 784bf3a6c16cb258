/**
 * Per-identity workload certificates: fetched on first use, cached, renewed
 * in the background at half their lifetime (as ztunnel does), each renewal
 * with a fresh key.
 *
 * Failure policy: concurrent first requests share one call to the source; if
 * it fails they all get CertificateUnavailableError and a retry is scheduled
 * with exponential backoff (0.5 s doubling to 150 s). While a retry is
 * pending, callers fail fast instead of each hitting the CA. A failed renewal
 * keeps serving the old certificate until it expires, retrying with the same
 * backoff.
 *
 * All timing goes through the injected Clock. With a FakeClock, `advance()`
 * only starts the work; `settled()` waits for it to finish.
 */
import { systemClock, type Clock, type Timer } from '../common/clock.js';
import { ConfigError, toError } from '../common/errors.js';
import { silentLogger, type Logger } from '../common/logger.js';
import type { CertificateSource } from './certificate-source.js';
import { CertificateUnavailableError, SecretManagerClosedError } from './errors.js';
import type { SpiffeId } from './spiffe.js';
import { toWorkloadCertificate, type WorkloadCertificate } from './workload-certificate.js';
import { createCsr, generateWorkloadKey } from './x509.js';

export type { WorkloadCertificate } from './workload-certificate.js';

/** ztunnel's SECRET_TTL default. */
export const DEFAULT_SECRET_TTL_SECONDS = 24 * 60 * 60;
export const DEFAULT_BACKOFF_INITIAL_MS = 500;
export const DEFAULT_BACKOFF_MAX_MS = 150_000;
/** Floor for the renewal delay, so a source handing out certificates already past half-life cannot make us spin. */
const MIN_RENEW_DELAY_MS = 1_000;
/** setTimeout fires at once for longer delays; with a very long TTL we just renew earlier than half-life. */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

export type CertificateState = 'Initializing' | 'Available' | `Unavailable: ${string}`;

export interface SecretManagerOptions {
  readonly source: CertificateSource;
  readonly clock?: Clock;
  /** Requested leaf lifetime. */
  readonly ttlSeconds?: number;
  readonly logger?: Logger;
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
}

export interface CertificateDumpEntry {
  readonly identity: string;
  readonly state: CertificateState;
  readonly certificate:
    | { readonly serialNumber: string; readonly notBefore: string; readonly notAfter: string; readonly certChainPem: string[]; readonly rootsPem: string[] }
    | undefined;
}

/** Called after a certificate replaced an earlier one for the same identity. */
export type RotationListener = (current: WorkloadCertificate, previous: WorkloadCertificate) => void;

interface Entry {
  readonly id: SpiffeId;
  cert: WorkloadCertificate | undefined;
  inflight: Promise<WorkloadCertificate> | undefined;
  /** The pending renewal or retry. */
  timer: Timer | undefined;
  /** Consecutive failures; sets the next backoff. */
  failures: number;
  lastError: Error | undefined;
}

export class SecretManager {
  readonly #source: CertificateSource;
  readonly #clock: Clock;
  readonly #ttlSeconds: number;
  readonly #log: Logger;
  readonly #backoffInitialMs: number;
  readonly #backoffMaxMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #listeners = new Set<RotationListener>();
  #closed = false;

  constructor(opts: SecretManagerOptions) {
    this.#source = opts.source;
    this.#clock = opts.clock ?? systemClock;
    this.#ttlSeconds = positive(opts.ttlSeconds ?? DEFAULT_SECRET_TTL_SECONDS, 'ttlSeconds');
    this.#backoffInitialMs = positive(opts.backoff?.initialMs ?? DEFAULT_BACKOFF_INITIAL_MS, 'backoff.initialMs');
    this.#backoffMaxMs = Math.max(this.#backoffInitialMs, positive(opts.backoff?.maxMs ?? DEFAULT_BACKOFF_MAX_MS, 'backoff.maxMs'));
    this.#log = (opts.logger ?? silentLogger()).child({ component: 'secret-manager' });
  }

  /**
   * A valid certificate for `id`: cached, shared with concurrent callers, or
   * fetched now. From the first call on, the identity is kept renewed (or
   * retried) until forget().
   */
  getCertificate(id: SpiffeId): Promise<WorkloadCertificate> {
    if (this.#closed) return Promise.reject(new SecretManagerClosedError());
    const key = id.toString();
    let e = this.#entries.get(key);
    if (e === undefined) {
      e = { id, cert: undefined, inflight: undefined, timer: undefined, failures: 0, lastError: undefined };
      this.#entries.set(key, e);
    }
    if (e.cert !== undefined && this.#clock.now() < e.cert.notAfter) return Promise.resolve(e.cert);
    if (e.inflight !== undefined) return e.inflight;
    if (e.lastError !== undefined && e.timer !== undefined) return Promise.reject(this.#unavailable(e));
    return this.#fetch(e);
  }

  /** ztunnel-style state of an identity; undefined for one never asked for (or forgotten). */
  state(id: SpiffeId): CertificateState | undefined {
    const e = this.#entries.get(id.toString());
    if (e === undefined) return undefined;
    if (e.cert !== undefined && this.#clock.now() < e.cert.notAfter) return 'Available';
    if (e.lastError !== undefined) return `Unavailable: ${e.lastError.message}`;
    if (e.cert !== undefined) return `Unavailable: the certificate expired at ${new Date(e.cert.notAfter).toISOString()}`;
    return 'Initializing';
  }

  /** Every known identity with its state and certificate metadata, for /config_dump. Never includes keys. */
  dump(): CertificateDumpEntry[] {
    return [...this.#entries.values()].map((e) => ({
      identity: e.id.toString(),
      state: this.state(e.id) ?? 'Initializing',
      certificate: e.cert && {
        serialNumber: e.cert.serialNumber,
        notBefore: new Date(e.cert.notBefore).toISOString(),
        notAfter: new Date(e.cert.notAfter).toISOString(),
        certChainPem: [...e.cert.certChainPem],
        rootsPem: [...e.cert.rootsPem],
      },
    }));
  }

  /** Subscribes to rotations; returns the unsubscribe function. */
  onRotate(cb: RotationListener): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  /** Drops an identity (its workload left): no more renewals; an in-flight result is discarded. */
  forget(id: SpiffeId): void {
    const key = id.toString();
    this.#entries.get(key)?.timer?.cancel();
    this.#entries.delete(key);
  }

  /** Cancels every timer; later getCertificate calls fail with SecretManagerClosedError. */
  close(): void {
    this.#closed = true;
    for (const e of this.#entries.values()) e.timer?.cancel();
    this.#entries.clear();
    this.#listeners.clear();
  }

  /** Resolves once no request to the source is in flight (tests, orderly shutdown). */
  async settled(): Promise<void> {
    for (;;) {
      const pending = [...this.#entries.values()].flatMap((e) => (e.inflight ? [e.inflight] : []));
      if (pending.length === 0) return;
      await Promise.allSettled(pending);
    }
  }

  #fetch(e: Entry): Promise<WorkloadCertificate> {
    e.timer?.cancel();
    e.timer = undefined;
    const p = this.#request(e.id).then(
      (cert) => this.#onSuccess(e, cert),
      (err: unknown) => {
        throw this.#onFailure(e, toError(err));
      },
    );
    e.inflight = p;
    // A renewal has no caller awaiting it; its outcome is recorded in the entry.
    p.catch(() => undefined);
    return p;
  }

  async #request(id: SpiffeId): Promise<WorkloadCertificate> {
    const key = await generateWorkloadKey();
    const csrPem = await createCsr(key, id);
    const res = await this.#source.sign({ csrPem, identity: id, ttlSeconds: this.#ttlSeconds });
    return toWorkloadCertificate(id, key.privateKeyPem, res, this.#clock.now());
  }

  #onSuccess(e: Entry, cert: WorkloadCertificate): WorkloadCertificate {
    if (!this.#isCurrent(e)) return cert;
    const previous = e.cert;
    e.cert = cert;
    e.inflight = undefined;
    e.failures = 0;
    e.lastError = undefined;
    const renewAt = cert.notBefore + (cert.notAfter - cert.notBefore) / 2;
    const delay = Math.max(MIN_RENEW_DELAY_MS, renewAt - this.#clock.now());
    this.#schedule(e, delay);
    this.#log.info({ identity: e.id.toString(), serial: cert.serialNumber, notAfter: new Date(cert.notAfter).toISOString(), renewInMs: delay }, 'workload certificate issued');
    if (previous !== undefined) {
      for (const cb of this.#listeners) {
        try {
          cb(cert, previous);
        } catch (err) {
          this.#log.error({ err, identity: e.id.toString() }, 'certificate rotation listener threw');
        }
      }
    }
    return cert;
  }

  #onFailure(e: Entry, err: Error): CertificateUnavailableError {
    if (!this.#isCurrent(e)) return new CertificateUnavailableError(`certificate request for ${e.id.toString()} was abandoned: ${err.message}`, { cause: err });
    const delay = Math.min(this.#backoffInitialMs * 2 ** e.failures, this.#backoffMaxMs);
    e.inflight = undefined;
    e.failures += 1;
    e.lastError = err;
    this.#schedule(e, delay);
    const serving = e.cert !== undefined && this.#clock.now() < e.cert.notAfter;
    this.#log.warn({ err, identity: e.id.toString(), retryInMs: delay, servingPrevious: serving }, 'workload certificate request failed');
    return this.#unavailable(e);
  }

  #schedule(e: Entry, delayMs: number): void {
    e.timer?.cancel();
    e.timer = this.#clock.setTimeout(
      () => {
        e.timer = undefined;
        if (this.#isCurrent(e)) void this.#fetch(e);
      },
      Math.min(delayMs, MAX_TIMER_DELAY_MS),
    );
  }

  #unavailable(e: Entry): CertificateUnavailableError {
    const why = e.lastError?.message ?? 'no certificate has been issued yet';
    return new CertificateUnavailableError(`no valid certificate for ${e.id.toString()}: ${why}; a retry is scheduled, check that the ca is reachable`, {
      cause: e.lastError,
    });
  }

  #isCurrent(e: Entry): boolean {
    return !this.#closed && this.#entries.get(e.id.toString()) === e;
  }
}

function positive(v: number, name: string): number {
  if (!Number.isFinite(v) || v <= 0) throw new ConfigError(`secret manager: ${name} must be a positive number, got ${v}`);
  return v;
}
