/**
 * The control plane's mesh roots, kept in its CA directory, and the operator's
 * three-phase root rotation over a RotatingCa:
 *
 *   add       a new root joins the trust bundle sent with every certificate;
 *             the old root keeps signing. The new root is cross-signed by the
 *             old one (see serving chain below).
 *   activate  the new root signs new leaves; the old root stays trusted, so
 *             leaves it signed keep verifying.
 *   retire    the old root leaves the bundle.
 *
 * Each phase is only safe once every leaf issued before the previous phase
 * has expired (its holder has renewed and so holds the new bundle, or a leaf
 * from the new root): the CA records the latest notAfter it has issued
 * ("issued until") and refuses the next phase before that instant unless
 * forced. The instant survives restarts (file `issued-until`).
 *
 * Directory layout (0700, files 0600), compatible with LocalCa.openOrCreate:
 *   root-key.pem    the active root's key followed by its certificate
 *   root-cert.pem   every trusted root, active first: what agents' --root-cert
 *                   reads, so an agent started at any point trusts the roots
 *                   the control plane may serve from
 *   roots.json      written at the first rotation: every root with its key,
 *                   the active one, the cross-certificates, the phase gate
 *   issued-until    ISO time: no leaf issued so far outlives it
 *
 * Serving chain: the control plane's own TLS certificate is signed by the
 * active root and sent with the cross-certificate "new root signed by old
 * root", so an agent that still trusts only the old root (its --root-cert
 * file was read before the rotation) keeps verifying the control plane after
 * activate and retire, also across control plane restarts.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock, type Clock } from '../common/clock.js';
import { silentLogger, type Logger } from '../common/logger.js';
import type { SignRequest, SignResponse } from '../identity/certificate-source.js';
import { loadOrCreateRoot, ROOT_CERT_FILE, ROOT_KEY_FILE } from '../identity/local-ca-store.js';
import { DEFAULT_ROOT_TTL_DAYS } from '../identity/local-ca.js';
import { createRootCertificate, crossSignRoot, importSigningKey, type RootCertificate } from '../identity/x509.js';
import { CaRootRotationError, CaRotationTooEarlyError } from './errors.js';
import { RotatingCa, type CaSigner, type RotatingCaOptions } from './rotating-ca.js';

export const ROOTS_STATE_FILE = 'roots.json';
export const ISSUED_UNTIL_FILE = 'issued-until';
export const ROTATION_PHASES = ['add', 'activate', 'retire'] as const;
export type RotationPhase = (typeof ROTATION_PHASES)[number];
/** stable: one root. added: a second root is trusted, the old one signs. activated: the new root signs, the old one is still trusted. */
export type RotationStage = 'stable' | 'added' | 'activated';

const CLOCK_SKEW_MS = 60_000;
const DAY_MS = 86_400_000;

export interface CaRootsOptions {
  readonly trustDomain: string;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Lifetime of roots created here (the first one and each rotation's new one). */
  readonly rootTtlDays?: number;
}

export interface RootInfo {
  readonly fingerprint: string;
  readonly subject: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly active: boolean;
}

export interface RotationStatus {
  readonly trustDomain: string;
  readonly stage: RotationStage;
  /** Bundle order (oldest first). */
  readonly roots: RootInfo[];
  /** What an operator runs next, if a rotation is under way (or 'add' to start one). */
  readonly nextPhase: RotationPhase;
  /** The next phase is refused (without force) before this instant. */
  readonly nextPhaseSafeAt: string | undefined;
  readonly nextPhaseSafeInSeconds: number;
  /** No leaf issued so far outlives this. */
  readonly issuedUntil: string | undefined;
  readonly lastPhase: { readonly phase: RotationPhase; readonly at: string } | undefined;
}

interface StateFile {
  readonly version: 1;
  readonly active: string;
  readonly roots: ReadonlyArray<{ certPem: string; privateKeyPem: string }>;
  readonly crossCerts: readonly string[];
  readonly gateUntil?: number;
  readonly lastPhase?: { phase: RotationPhase; at: string };
}

export type RootsChangeListener = (status: RotationStatus) => void;

export class CaRoots implements CaSigner {
  readonly trustDomain: string;
  readonly #dir: string;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #rootTtlMs: number;
  readonly #caOptions: RotatingCaOptions;
  #ca: RotatingCa;
  /** Bundle order; each with its key. */
  #roots: RootCertificate[];
  #crossCerts: string[];
  #gateUntil: number;
  #lastPhase: { phase: RotationPhase; at: string } | undefined;
  #issuedUntil: number;
  #persistedIssuedUntil: number;
  #issuedWrite: Promise<void> = Promise.resolve();
  #issuedWriteWarned = false;
  #busy = false;
  readonly #listeners = new Set<RootsChangeListener>();

  private constructor(dir: string, opts: CaRootsOptions, ca: RotatingCa, roots: RootCertificate[], state: Partial<StateFile>, issuedUntil: number) {
    this.trustDomain = ca.trustDomain;
    this.#dir = dir;
    this.#clock = opts.clock ?? systemClock;
    this.#log = (opts.logger ?? silentLogger()).child({ component: 'ca-roots' });
    this.#rootTtlMs = (opts.rootTtlDays ?? DEFAULT_ROOT_TTL_DAYS) * DAY_MS;
    this.#caOptions = caOptions(opts);
    this.#ca = ca;
    this.#roots = roots;
    this.#crossCerts = [...(state.crossCerts ?? [])];
    this.#gateUntil = state.gateUntil ?? 0;
    this.#lastPhase = state.lastPhase;
    this.#issuedUntil = issuedUntil;
    this.#persistedIssuedUntil = issuedUntil;
  }

  /** Opens the roots in `dir`: roots.json after a rotation, else the single root (created if absent). */
  static async open(dir: string, opts: CaRootsOptions): Promise<CaRoots> {
    const clock = opts.clock ?? systemClock;
    const ttlMs = (opts.rootTtlDays ?? DEFAULT_ROOT_TTL_DAYS) * DAY_MS;
    const rcOpts = caOptions(opts);
    const issuedUntil = await readIssuedUntil(dir);
    const state = await readState(dir);
    if (state === undefined) {
      const root = await loadOrCreateRoot(dir, () => createRootCertificate({ organization: opts.trustDomain, notBefore: new Date(clock.now() - CLOCK_SKEW_MS), notAfter: new Date(clock.now() + ttlMs) }));
      const ca = await RotatingCa.fromRoot(root, rcOpts);
      return new CaRoots(dir, opts, ca, [root], {}, issuedUntil);
    }
    const roots = state.roots.map((r) => ({ certPem: r.certPem, privateKeyPem: r.privateKeyPem }));
    if (roots.length === 0) throw new CaRootRotationError(`${join(dir, ROOTS_STATE_FILE)} lists no root; restore it from a backup or remove it to fall back to ${ROOT_KEY_FILE}`);
    const active = roots.find((r) => fingerprintOf(r.certPem) === state.active);
    if (active === undefined) throw new CaRootRotationError(`${join(dir, ROOTS_STATE_FILE)} names an active root that is not among its roots; restore it from a backup`);
    const ca = await buildCa(roots, active.certPem, rcOpts);
    // roots.json is the source of truth; bring the derived files in line (a crash between writes).
    await writeRootFiles(dir, active, roots).catch((err: unknown) => opts.logger?.warn({ err: (err as Error).message }, 'cannot refresh root-key.pem / root-cert.pem from roots.json'));
    return new CaRoots(dir, opts, ca, roots, state, issuedUntil);
  }

  /** The active root (its certificate). */
  get activeRootPem(): string {
    return this.#ca.activeRootPem;
  }

  trustBundle(): string[] {
    return this.#ca.trustBundle();
  }

  /** Signs a workload leaf and records its expiry (the rotation gate) before returning it. */
  async sign(req: SignRequest): Promise<SignResponse> {
    const res = await this.#ca.sign(req);
    const leaf = res.certChainPem[0];
    if (leaf !== undefined) await this.#recordIssued(Date.parse(new X509Certificate(leaf).validTo));
    return res;
  }

  /** Signs without recording: the control plane's own long-lived serving certificate. */
  signUnrecorded(req: SignRequest): Promise<SignResponse> {
    return this.#ca.sign(req);
  }

  /** Cross-certificates to send after a leaf of the active root (the control plane's serving chain). */
  servingChainExtras(): string[] {
    const activeKey = new X509Certificate(this.activeRootPem).publicKey;
    const now = this.#clock.now();
    return this.#crossCerts.filter((c) => {
      const x = new X509Certificate(c);
      return Date.parse(x.validTo) > now && x.publicKey.equals(activeKey);
    });
  }

  onChange(cb: RootsChangeListener): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  status(): RotationStatus {
    const now = this.#clock.now();
    const activeFp = fingerprintOf(this.activeRootPem);
    const stage = this.#stage();
    const gate = stage === 'stable' ? 0 : this.#gateUntil;
    return {
      trustDomain: this.trustDomain,
      stage,
      roots: this.#ca.trustBundle().map((pem) => {
        const x = new X509Certificate(pem);
        const fp = x.fingerprint256;
        return { fingerprint: fp, subject: x.subject.replace(/\n/g, ', '), notBefore: new Date(x.validFrom).toISOString(), notAfter: new Date(x.validTo).toISOString(), active: fp === activeFp };
      }),
      nextPhase: stage === 'stable' ? 'add' : stage === 'added' ? 'activate' : 'retire',
      nextPhaseSafeAt: gate > now ? new Date(gate).toISOString() : undefined,
      nextPhaseSafeInSeconds: Math.max(0, Math.ceil((gate - now) / 1000)),
      issuedUntil: this.#issuedUntil > 0 ? new Date(this.#issuedUntil).toISOString() : undefined,
      lastPhase: this.#lastPhase,
    };
  }

  /**
   * Runs one phase. Refuses (CaRootRotationError) a phase out of order and
   * (CaRotationTooEarlyError) one before the gate unless `force`.
   */
  async rotate(phase: RotationPhase, opts: { force?: boolean } = {}): Promise<RotationStatus> {
    if (this.#busy) throw new CaRootRotationError('another rotation phase is running; retry in a moment');
    this.#busy = true;
    try {
      const stage = this.#stage();
      const want: Record<RotationPhase, RotationStage> = { add: 'stable', activate: 'added', retire: 'activated' };
      if (want[phase] !== stage) {
        const next = this.status().nextPhase;
        throw new CaRootRotationError(`cannot ${phase} now: the rotation is at stage '${stage}'; the next phase is '${next}'`);
      }
      const now = this.#clock.now();
      if (phase !== 'add' && now < this.#gateUntil && opts.force !== true) {
        const left = Math.ceil((this.#gateUntil - now) / 1000);
        throw new CaRotationTooEarlyError(
          `too early to ${phase}: leaves issued before the last phase are valid until ${new Date(this.#gateUntil).toISOString()} (${left} s); wait for every agent to renew, or force it`,
        );
      }
      const oldActive = this.activeRootPem;
      // Build the next state aside, persist it, then switch: a failed write (read-only directory)
      // leaves the running CA exactly as it was.
      let roots = this.#roots;
      let activePem = oldActive;
      let crossCerts = this.#crossCerts;
      if (phase === 'add') {
        const root = await createRootCertificate({
          organization: this.trustDomain,
          commonName: `ambit root ${new Date(now).toISOString()}`,
          notBefore: new Date(now - CLOCK_SKEW_MS),
          notAfter: new Date(now + this.#rootTtlMs),
        });
        const issuer = this.#roots.find((r) => r.certPem === oldActive);
        if (issuer === undefined) throw new CaRootRotationError('the active root has no key in the ca directory; restore roots.json');
        const cross = await crossSignRoot({
          subjectCertPem: root.certPem,
          issuerCertPem: issuer.certPem,
          issuerKey: await importSigningKey(issuer.privateKeyPem),
          notBefore: new Date(now - CLOCK_SKEW_MS),
          notAfter: new Date(Math.min(Date.parse(new X509Certificate(issuer.certPem).validTo), now + this.#rootTtlMs)),
        });
        roots = [...this.#roots, root];
        crossCerts = [cross];
      } else if (phase === 'activate') {
        const next = this.#roots.find((r) => r.certPem !== oldActive);
        if (next === undefined) throw new CaRootRotationError('there is no second root to activate; run add first');
        activePem = next.certPem;
      } else {
        roots = this.#roots.filter((x) => x.certPem === oldActive);
      }
      const ca = await buildCa(roots, activePem, this.#caOptions);
      const gateUntil = Math.max(this.#issuedUntil, now);
      const lastPhase = { phase, at: new Date(now).toISOString() };
      await this.#persist({ version: 1, active: fingerprintOf(activePem), roots, crossCerts, gateUntil, lastPhase });
      this.#ca = ca;
      this.#roots = roots;
      this.#crossCerts = [...crossCerts];
      this.#gateUntil = gateUntil;
      this.#lastPhase = lastPhase;
      const status = this.status();
      this.#log.warn({ phase, stage: status.stage, active: fingerprintOf(this.activeRootPem), roots: status.roots.length, nextPhase: status.nextPhase, nextPhaseSafeAt: status.nextPhaseSafeAt }, 'mesh root rotation phase applied');
      for (const cb of this.#listeners) {
        try {
          cb(status);
        } catch (err) {
          this.#log.error({ err }, 'root change listener threw');
        }
      }
      return status;
    } finally {
      this.#busy = false;
    }
  }

  /** Resolves once the issued-until file is written (tests, shutdown). */
  flushed(): Promise<void> {
    return this.#issuedWrite;
  }

  #stage(): RotationStage {
    if (this.#roots.length <= 1) return 'stable';
    const last = this.#roots[this.#roots.length - 1] as RootCertificate;
    return last.certPem === this.activeRootPem ? 'activated' : 'added';
  }

  async #recordIssued(notAfter: number): Promise<void> {
    if (!(notAfter > this.#issuedUntil)) return;
    this.#issuedUntil = notAfter;
    // Serialized so an older value never overwrites a newer one.
    const write = this.#issuedWrite.then(async () => {
      const v = this.#issuedUntil;
      if (v <= this.#persistedIssuedUntil) return;
      await atomicWrite(this.#dir, ISSUED_UNTIL_FILE, `${new Date(v).toISOString()}\n`);
      this.#persistedIssuedUntil = v;
    });
    this.#issuedWrite = write.catch((err: unknown) => {
      if (this.#issuedWriteWarned) return;
      this.#issuedWriteWarned = true;
      this.#log.warn({ err: (err as Error).message }, 'cannot record the issued-until time (read-only ca directory?); after a restart the rotation gate may open early');
    });
    await this.#issuedWrite;
  }

  async #persist(state: StateFile): Promise<void> {
    await atomicWrite(this.#dir, ROOTS_STATE_FILE, JSON.stringify(state, null, 2) + '\n');
    const active = state.roots.find((r) => fingerprintOf(r.certPem) === state.active);
    if (active !== undefined) await writeRootFiles(this.#dir, active, state.roots);
  }

}

/** root-key.pem = the active root; root-cert.pem = the bundle, active first. */
async function writeRootFiles(dir: string, active: RootCertificate, roots: readonly RootCertificate[]): Promise<void> {
  const others = roots.filter((r) => r.certPem !== active.certPem).map((r) => r.certPem);
  await atomicWrite(dir, ROOT_KEY_FILE, active.privateKeyPem + active.certPem);
  await atomicWrite(dir, ROOT_CERT_FILE, [active.certPem, ...others].join(''));
}

/** A RotatingCa over `roots` (bundle order) signing with `activePem`. */
async function buildCa(roots: readonly RootCertificate[], activePem: string, opts: RotatingCaOptions): Promise<RotatingCa> {
  const [first, ...rest] = roots;
  if (first === undefined) throw new CaRootRotationError('no root left in the trust bundle; restore roots.json');
  const ca = await RotatingCa.fromRoot(first, opts);
  for (const r of rest) await ca.addRoot(r);
  ca.activate(activePem);
  return ca;
}

function caOptions(opts: CaRootsOptions): RotatingCaOptions {
  return { trustDomain: opts.trustDomain, ...(opts.clock !== undefined ? { clock: opts.clock } : {}), ...(opts.rootTtlDays !== undefined ? { rootTtlDays: opts.rootTtlDays } : {}), allowRsaCsr: true };
}

function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

async function readState(dir: string): Promise<StateFile | undefined> {
  const file = join(dir, ROOTS_STATE_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CaRootRotationError(`cannot read ${file}: ${(err as Error).message}; check its permissions`, { cause: err });
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new CaRootRotationError(`${file} is not json; restore it from a backup`, { cause: err });
  }
  const s = v as Partial<StateFile>;
  if (s.version !== 1 || typeof s.active !== 'string' || !Array.isArray(s.roots) || !s.roots.every((r) => typeof r?.certPem === 'string' && typeof r.privateKeyPem === 'string')) {
    throw new CaRootRotationError(`${file} is not a version 1 roots file; restore it from a backup`);
  }
  return { version: 1, active: s.active, roots: s.roots, crossCerts: Array.isArray(s.crossCerts) ? s.crossCerts.filter((c) => typeof c === 'string') : [], ...(typeof s.gateUntil === 'number' ? { gateUntil: s.gateUntil } : {}), ...(s.lastPhase ? { lastPhase: s.lastPhase } : {}) };
}

async function readIssuedUntil(dir: string): Promise<number> {
  try {
    const t = Date.parse((await readFile(join(dir, ISSUED_UNTIL_FILE), 'utf8')).trim());
    return Number.isFinite(t) ? t : 0;
  } catch {
    return 0;
  }
}

async function atomicWrite(dir: string, name: string, content: string): Promise<void> {
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, content, { mode: 0o600, flag: 'wx' });
    await rename(tmp, join(dir, name));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new CaRootRotationError(`cannot write ${join(dir, name)}: ${(err as Error).message}; check the ca directory's permissions`, { cause: err });
  }
}
