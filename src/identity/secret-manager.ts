/**
 * Per-identity workload certificates: fetched on first use, cached, renewed
 * in the background at half their lifetime (as ztunnel does; counted from
 * when the certificate arrived, since CAs backdate notBefore), each renewal
 * with a fresh key.
 *
 * Failure policy: concurrent first requests share one call to the source; if
 * it fails they all get CertificateUnavailableError and a retry is scheduled
 * with exponential backoff (0.5 s doubling to 150 s). While a retry is
 * pending, callers fail fast instead of each hitting the CA. A failed renewal
 * keeps serving the old certificate until it expires, retrying with the same
 * backoff, except that the backoff is capped relative to what is left of the
 * certificate's life: at most a quarter of the remaining lifetime, never
 * below `expiredRetryMs` (default 5 s), and exactly `expiredRetryMs` once it
 * has expired. So after a CA outage an agent recovers within seconds of the
 * CA coming back instead of waiting out a 150 s backoff.
 *
 * Each failed request logs a warning saying how long the current certificate
 * has left (or that it expired) and whether the CA was unreachable, and is
 * counted per identity (dump().renewal.failuresTotal, exported by the agent
 * as ambit_certificate_renewal_failures_total). At the instant a certificate
 * expires without a replacement an error is logged and validCertificate()
 * stops returning it: the data plane must not present an expired certificate
 * (connections for that identity then fail closed).
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
/** Retry interval once a certificate has expired (and the floor of the near-expiry cap). */
export const DEFAULT_EXPIRED_RETRY_MS = 5_000;
/** Error code of an unreachable CA (CaUnavailableError); compared by code so identity does not depend on ca. */
const CA_UNAVAILABLE_CODE = 'AMBIT_ERR_CA_UNAVAILABLE';
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
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number; readonly expiredRetryMs?: number };
}

/** Renewal health of one identity, for metrics and /config_dump. */
export interface RenewalStatus {
  /** Failed requests since the last success. */
  readonly consecutiveFailures: number;
  /** Failed requests since the identity was first asked for (a counter: never decreases). */
  readonly failuresTotal: number;
  readonly lastError: string | undefined;
  /** ISO time of the pending renewal or retry, if one is scheduled. */
  readonly nextAttempt: string | undefined;
  /** Seconds until the held certificate expires (negative once expired); undefined with none. */
  readonly expiresInSeconds: number | undefined;
}

export interface CertificateDumpEntry {
  readonly identity: string;
  readonly state: CertificateState;
  readonly certificate:
    | { readonly serialNumber: string; readonly notBefore: string; readonly notAfter: string; readonly certChainPem: string[]; readonly rootsPem: string[] }
    | undefined;
  readonly renewal: RenewalStatus;
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
  /** Clock time the pending timer fires. */
  nextAt: number | undefined;
  /** Fires when the held certificate expires, to log it. */
  expiryTimer: Timer | undefined;
}

export class SecretManager {
  readonly #source: CertificateSource;
  readonly #clock: Clock;
  readonly #ttlSeconds: number;
  readonly #log: Logger;
  readonly #backoffInitialMs: number;
  readonly #backoffMaxMs: number;
  readonly #expiredRetryMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #listeners = new Set<RotationListener>();
  /** Failed requests per identity since start; kept across forget() so the exported counter never goes down. */
  readonly #failureTotals = new Map<string, number>();
  #closed = false;

  constructor(opts: SecretManagerOptions) {
    this.#source = opts.source;
    this.#clock = opts.clock ?? systemClock;
    this.#ttlSeconds = positive(opts.ttlSeconds ?? DEFAULT_SECRET_TTL_SECONDS, 'ttlSeconds');
    this.#backoffInitialMs = positive(opts.backoff?.initialMs ?? DEFAULT_BACKOFF_INITIAL_MS, 'backoff.initialMs');
    this.#backoffMaxMs = Math.max(this.#backoffInitialMs, positive(opts.backoff?.maxMs ?? DEFAULT_BACKOFF_MAX_MS, 'backoff.maxMs'));
    this.#expiredRetryMs = positive(opts.backoff?.expiredRetryMs ?? DEFAULT_EXPIRED_RETRY_MS, 'backoff.expiredRetryMs');
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
      e = { id, cert: undefined, inflight: undefined, timer: undefined, failures: 0, lastError: undefined, nextAt: undefined, expiryTimer: undefined };
      this.#entries.set(key, e);
    }
    if (e.cert !== undefined && this.#clock.now() < e.cert.notAfter) return Promise.resolve(e.cert);
    if (e.inflight !== undefined) return e.inflight;
    if (e.lastError !== undefined && e.timer !== undefined) return Promise.reject(this.#unavailable(e));
    return this.#fetch(e);
  }

  /**
   * The held certificate for `id` if it is valid now, without fetching: for
   * code that cannot wait (choosing the certificate during a TLS accept).
   * Never returns an expired certificate.
   */
  validCertificate(id: SpiffeId | string): WorkloadCertificate | undefined {
    const c = this.#entries.get(id.toString())?.cert;
    return c !== undefined && this.#clock.now() < c.notAfter ? c : undefined;
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
    const now = this.#clock.now();
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
      renewal: {
        consecutiveFailures: e.failures,
        failuresTotal: this.#failureTotals.get(e.id.toString()) ?? 0,
        lastError: e.lastError?.message,
        nextAttempt: e.nextAt !== undefined ? new Date(e.nextAt).toISOString() : undefined,
        expiresInSeconds: e.cert !== undefined ? Math.round((e.cert.notAfter - now) / 1000) : undefined,
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
    const e = this.#entries.get(key);
    e?.timer?.cancel();
    e?.expiryTimer?.cancel();
    this.#entries.delete(key);
  }

  /** Cancels every timer; later getCertificate calls fail with SecretManagerClosedError. */
  close(): void {
    this.#closed = true;
    for (const e of this.#entries.values()) {
      e.timer?.cancel();
      e.expiryTimer?.cancel();
    }
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
    e.nextAt = undefined;
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
    // Half of the lifetime from when we got it: CAs backdate notBefore for clock skew (ours by
    // 60 s), which with a short TTL (60 s) would otherwise mean renewing right away, every second.
    const now = this.#clock.now();
    const from = Math.max(cert.notBefore, Math.min(now, cert.notAfter));
    const renewAt = from + (cert.notAfter - from) / 2;
    const delay = Math.max(MIN_RENEW_DELAY_MS, renewAt - now);
    this.#schedule(e, delay);
    this.#armExpiry(e, cert);
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
    const now = this.#clock.now();
    const delay = retryDelayMs({
      failures: e.failures,
      initialMs: this.#backoffInitialMs,
      maxMs: this.#backoffMaxMs,
      expiredRetryMs: this.#expiredRetryMs,
      remainingMs: e.cert !== undefined ? e.cert.notAfter - now : undefined,
    });
    e.inflight = undefined;
    e.failures += 1;
    this.#failureTotals.set(e.id.toString(), (this.#failureTotals.get(e.id.toString()) ?? 0) + 1);
    e.lastError = err;
    this.#schedule(e, delay);
    const caUnreachable = (err as { code?: unknown }).code === CA_UNAVAILABLE_CODE;
    const ctx = { err: err.message, code: (err as { code?: unknown }).code, identity: e.id.toString(), retryInMs: delay, failures: e.failures, caUnreachable };
    if (e.cert === undefined) {
      this.#log.warn(ctx, `workload certificate request failed${caUnreachable ? ': the ca is unreachable' : ''}; no certificate yet, connections for this identity fail until one is issued`);
    } else {
      const leftS = Math.round((e.cert.notAfter - now) / 1000);
      const expiresAt = new Date(e.cert.notAfter).toISOString();
      const what = leftS > 0 ? `the current certificate expires in ${leftS} s (${expiresAt}) and stays in use until then` : `the certificate expired at ${expiresAt}; connections for this identity fail closed`;
      this.#log.warn({ ...ctx, expiresInSeconds: leftS, expiresAt }, `workload certificate renewal failed${caUnreachable ? ': the ca is unreachable' : ''}; ${what}`);
    }
    return this.#unavailable(e);
  }

  /** Logs the moment a certificate expires with no replacement (the data plane then refuses to use it). */
  #armExpiry(e: Entry, cert: WorkloadCertificate): void {
    e.expiryTimer?.cancel();
    e.expiryTimer = this.#clock.setTimeout(
      () => {
        e.expiryTimer = undefined;
        if (!this.#isCurrent(e) || e.cert !== cert) return;
        this.#log.error(
          { identity: e.id.toString(), expiredAt: new Date(cert.notAfter).toISOString(), failures: e.failures, lastError: e.lastError?.message },
          'workload certificate expired without a renewal; new connections for this identity fail closed until the ca issues a certificate',
        );
      },
      Math.min(Math.max(0, cert.notAfter - this.#clock.now()), MAX_TIMER_DELAY_MS),
    );
  }

  #schedule(e: Entry, delayMs: number): void {
    e.timer?.cancel();
    e.nextAt = this.#clock.now() + delayMs;
    e.timer = this.#clock.setTimeout(
      () => {
        e.timer = undefined;
        e.nextAt = undefined;
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

/**
 * The wait before retrying a failed request: exponential backoff
 * (initialMs * 2^failures, at most maxMs); with a certificate held, capped at
 * a quarter of its remaining life but never below expiredRetryMs; once it has
 * expired, expiredRetryMs (unless the plain backoff is shorter).
 */
export function retryDelayMs(o: { failures: number; initialMs: number; maxMs: number; expiredRetryMs: number; remainingMs: number | undefined }): number {
  const backoff = Math.min(o.initialMs * 2 ** o.failures, o.maxMs);
  if (o.remainingMs === undefined) return backoff;
  const cap = o.remainingMs <= 0 ? o.expiredRetryMs : Math.max(o.expiredRetryMs, Math.floor(o.remainingMs / 4));
  return Math.min(backoff, cap);
}

function positive(v: number, name: string): number {
  if (!Number.isFinite(v) || v <= 0) throw new ConfigError(`secret manager: ${name} must be a positive number, got ${v}`);
  return v;
}
