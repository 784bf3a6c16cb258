import { strict as assert } from 'node:assert';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { beforeEach, describe, it } from 'node:test';
import { createSecureContext } from 'node:tls';
import { FakeClock } from '../../src/common/clock.js';
import { ConfigError } from '../../src/common/errors.js';
import type { CertificateSource, SignRequest, SignResponse } from '../../src/identity/certificate-source.js';
import { CertificateUnavailableError, InvalidCertificateError } from '../../src/identity/errors.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { SecretManager, type WorkloadCertificate } from '../../src/identity/secret-manager.js';
import { spiffeId } from '../../src/identity/spiffe.js';
import { createCsr, generateWorkloadKey } from '../../src/identity/x509.js';

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const TD = 'cluster.local';
const web = spiffeId(TD, 'default', 'web');
const db = spiffeId(TD, 'default', 'db');

/** A real ephemeral CA behind a switch that makes it fail, counting calls. */
class FlakySource implements CertificateSource {
  failing = false;
  /** Clock time of each sign() call. */
  readonly calls: number[] = [];
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;

  constructor(
    readonly ca: LocalCa,
    readonly clock: FakeClock,
  ) {}

  /** Holds sign() calls until release(), to overlap concurrent requests. */
  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }

  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }

  async sign(req: SignRequest): Promise<SignResponse> {
    this.calls.push(this.clock.now());
    await this.#gate;
    if (this.failing) throw new Error('ca unreachable');
    return this.ca.sign(req);
  }
}

/**
 * The renewal instant for a certificate: half of its validity counted from
 * when it arrived (the local CA backdates notBefore by 60 s; here it always
 * arrives at notBefore + 60 s, the fake clock does not move during a request).
 */
function halfLife(c: WorkloadCertificate): number {
  const arrived = c.notBefore + 60_000;
  return arrived + (c.notAfter - arrived) / 2;
}

void describe('SecretManager', () => {
  let clock: FakeClock;
  let source: FlakySource;
  let sm: SecretManager;

  beforeEach(async () => {
    clock = new FakeClock(T0);
    source = new FlakySource(await LocalCa.createEphemeral({ trustDomain: TD, clock }), clock);
    sm = new SecretManager({ source, clock, ttlSeconds: 3600 });
  });

  /**
   * Moves the fake clock to `at` in 0.5 s steps, waiting after each step for
   * the work the due timers started. A retry is only scheduled once the
   * failed (asynchronous) request settles, so a single big advance would skip
   * it; every delay under test is a multiple of 0.5 s, so steps land on them.
   */
  async function advanceTo(at: number): Promise<void> {
    while (clock.now() < at) {
      clock.advance(Math.min(500, at - clock.now()));
      await sm.settled();
    }
  }

  void it('issues a certificate usable as-is by node:tls', async () => {
    assert.equal(sm.state(web), undefined);
    const c = await sm.getCertificate(web);
    assert.ok(c.identity.equals(web));
    assert.equal(c.certChainPem.length, 1);
    assert.deepEqual(c.rootsPem, [source.ca.rootCertPem]);
    assert.equal(c.notBefore, T0 - 60_000);
    assert.equal(c.notAfter, T0 + 3600_000);
    const leaf = new X509Certificate(c.certChainPem[0] as string);
    assert.equal(c.serialNumber, leaf.serialNumber);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(c.privateKeyPem)));
    assert.doesNotThrow(() => createSecureContext({ key: c.privateKeyPem, cert: c.certChainPem.join(''), ca: c.rootsPem }));
    assert.equal(sm.state(web), 'Available');
    assert.deepEqual(sm.dump(), [
      {
        identity: web.toString(),
        state: 'Available',
        certificate: {
          serialNumber: c.serialNumber,
          notBefore: new Date(T0 - 60_000).toISOString(),
          notAfter: new Date(T0 + 3600_000).toISOString(),
          certChainPem: c.certChainPem,
          rootsPem: c.rootsPem,
        },
        renewal: { consecutiveFailures: 0, failuresTotal: 0, lastError: undefined, nextAttempt: new Date(T0 + 1_800_000).toISOString(), expiresInSeconds: 3600 },
      },
    ]);
    assert.ok(!JSON.stringify(sm.dump()).includes('PRIVATE KEY'), 'the dump never carries keys');
    sm.close();
  });

  void it('shares one request between concurrent callers and caches the result', async () => {
    source.hold();
    const pending = Array.from({ length: 10 }, () => sm.getCertificate(web));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(sm.state(web), 'Initializing');
    source.release();
    const certs = await Promise.all(pending);
    assert.equal(source.calls.length, 1);
    for (const c of certs) assert.equal(c, certs[0]);
    assert.equal(await sm.getCertificate(web), certs[0]);
    assert.equal(source.calls.length, 1);
    // Another identity is a separate request.
    const other = await sm.getCertificate(db);
    assert.ok(other.identity.equals(db));
    assert.equal(source.calls.length, 2);
    sm.close();
  });

  void it('renews at half the lifetime with a new key and serial, and notifies listeners', async () => {
    const rotations: Array<[WorkloadCertificate, WorkloadCertificate]> = [];
    sm.onRotate((cur, prev) => rotations.push([cur, prev]));
    const first = await sm.getCertificate(web);
    const renewAt = halfLife(first);
    assert.equal(renewAt, T0 + 1800_000, 'half of the 3600 s from issue (the 60 s backdating of notBefore does not count)');

    await advanceTo(renewAt - 1);
    assert.equal(source.calls.length, 1, 'no renewal before half-life');
    assert.equal(await sm.getCertificate(web), first);

    await advanceTo(renewAt);
    assert.deepEqual(source.calls, [T0, renewAt]);
    const second = await sm.getCertificate(web);
    assert.notEqual(second.serialNumber, first.serialNumber);
    assert.notEqual(second.privateKeyPem, first.privateKeyPem, 'each renewal generates a new key');
    assert.equal(second.notBefore, renewAt - 60_000);
    assert.deepEqual(rotations, [[second, first]]);

    // The next renewal follows the new certificate's lifetime.
    await advanceTo(halfLife(second));
    assert.equal(source.calls.length, 3);
    assert.equal(rotations.length, 2);
    sm.close();
  });

  void it('keeps serving the old certificate while renewals fail, then reports Unavailable after expiry', async () => {
    const first = await sm.getCertificate(web);
    source.failing = true;
    await advanceTo(halfLife(first));
    assert.equal(source.calls.length, 2);
    assert.equal(sm.state(web), 'Available');
    assert.equal(await sm.getCertificate(web), first);

    // Retries keep failing until after expiry.
    await advanceTo(first.notAfter - 1);
    assert.ok(source.calls.length > 3, 'renewal is retried');
    assert.equal(await sm.getCertificate(web), first);
    assert.equal(sm.state(web), 'Available');

    await advanceTo(first.notAfter);
    assert.equal(sm.state(web), 'Unavailable: ca unreachable');
    const calls = source.calls.length;
    await assert.rejects(sm.getCertificate(web), (err: unknown) => {
      assert.ok(err instanceof CertificateUnavailableError);
      assert.equal(err.code, 'AMBIT_ERR_IDENTITY_CERT_UNAVAILABLE');
      assert.match(err.message, /ca unreachable/);
      return true;
    });
    assert.equal(source.calls.length, calls, 'callers fail fast while a retry is pending');

    // The CA comes back: the next retry restores service.
    source.failing = false;
    await advanceTo(clock.now() + 150_000);
    const renewed = await sm.getCertificate(web);
    assert.notEqual(renewed.serialNumber, first.serialNumber);
    assert.equal(sm.state(web), 'Available');
    sm.close();
  });

  void it('backs off 0.5 s, 1 s, 2 s ... capped at 150 s, and resets after a success', async () => {
    source.failing = true;
    const waiters = [sm.getCertificate(web), sm.getCertificate(web)];
    for (const w of waiters) await assert.rejects(w, { code: 'AMBIT_ERR_IDENTITY_CERT_UNAVAILABLE' });
    assert.equal(source.calls.length, 1, 'concurrent first callers share the failed request');
    assert.equal(sm.state(web), 'Unavailable: ca unreachable');

    const expected = [500, 1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 150_000, 150_000];
    for (const delay of expected) {
      const last = source.calls.at(-1) as number;
      await advanceTo(last + delay - 1);
      assert.equal(source.calls.at(-1), last, `no retry before ${delay} ms`);
      await advanceTo(last + delay);
      assert.equal(source.calls.at(-1), last + delay, `retry after ${delay} ms`);
    }
    const gaps = source.calls.slice(1).map((t, i) => t - (source.calls[i] as number));
    assert.deepEqual(gaps, expected);

    source.failing = false;
    await advanceTo(clock.now() + 150_000);
    const cert = await sm.getCertificate(web);
    assert.equal(sm.state(web), 'Available');

    // A later renewal failure starts again from 0.5 s.
    source.failing = true;
    await advanceTo(halfLife(cert) - 1000);
    const n = source.calls.length;
    while (source.calls.length === n) await advanceTo(clock.now() + 100);
    const failedAt = source.calls.at(-1) as number;
    await advanceTo(failedAt + 500);
    assert.equal(source.calls.at(-1), failedAt + 500);
    sm.close();
  });

  void it('reports a source that returns a certificate for another identity', async () => {
    const wrong: CertificateSource = {
      async sign(): Promise<SignResponse> {
        const key = await generateWorkloadKey();
        return source.ca.sign({ csrPem: await createCsr(key, db), identity: db, ttlSeconds: 60 });
      },
    };
    const m = new SecretManager({ source: wrong, clock });
    await assert.rejects(m.getCertificate(web), (err: unknown) => {
      assert.ok(err instanceof CertificateUnavailableError);
      assert.ok(err.cause instanceof InvalidCertificateError);
      assert.match(err.cause.message, /a leaf for spiffe:\/\/cluster\.local\/ns\/default\/sa\/db/);
      return true;
    });
    assert.match(m.state(web) ?? '', /^Unavailable: the certificate source returned a leaf for /);
    m.close();
  });

  void it('forget() and close() cancel timers and discard in-flight results', async () => {
    await sm.getCertificate(web);
    await sm.getCertificate(db);
    assert.equal(clock.pendingTimers, 4, 'a renewal and an expiry timer per identity');
    sm.forget(web);
    assert.equal(clock.pendingTimers, 2);
    assert.equal(sm.state(web), undefined);

    // A result arriving after forget() is returned to its caller but not cached or renewed.
    source.hold();
    const late = sm.getCertificate(web);
    await new Promise((r) => setTimeout(r, 20));
    sm.forget(web);
    source.release();
    await late;
    assert.equal(sm.state(web), undefined);
    assert.equal(clock.pendingTimers, 2);

    sm.close();
    assert.equal(clock.pendingTimers, 0);
    await assert.rejects(sm.getCertificate(db), { code: 'AMBIT_ERR_IDENTITY_CLOSED' });
    clock.advance(7 * 86400_000);
    await sm.settled();
    assert.equal(source.calls.length, 3);
  });

  void it('isolates a throwing rotation listener and supports unsubscribing', async () => {
    const seen: string[] = [];
    sm.onRotate(() => {
      throw new Error('listener bug');
    });
    const off = sm.onRotate((cur) => seen.push(cur.serialNumber));
    const first = await sm.getCertificate(web);
    await advanceTo(halfLife(first));
    assert.equal(seen.length, 1);
    assert.equal(sm.state(web), 'Available');
    off();
    await advanceTo(halfLife(await sm.getCertificate(web)));
    assert.equal(seen.length, 1);
    sm.close();
  });

  void it('rejects invalid options', () => {
    assert.throws(() => new SecretManager({ source, clock, ttlSeconds: 0 }), ConfigError);
    assert.throws(() => new SecretManager({ source, clock, backoff: { initialMs: -1 } }), ConfigError);
  });
});
