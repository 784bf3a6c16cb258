/**
 * What the agent does while the CA is away and its certificates approach
 * expiry: renewal failures are counted and logged with the time left, the
 * retry backoff shrinks with the remaining lifetime (5 s once expired), an
 * expired certificate is never handed to the data plane, and service resumes
 * within one retry interval of the CA coming back.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { WorkloadCertificates } from '../../src/agent/certs.js';
import { AgentMetrics } from '../../src/agent/agent-metrics.js';
import { CaUnavailableError } from '../../src/ca/errors.js';
import { FakeClock } from '../../src/common/clock.js';
import { loggerWithControl } from '../../src/common/logger.js';
import type { CertificateSource, SignRequest, SignResponse } from '../../src/identity/certificate-source.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { retryDelayMs, SecretManager } from '../../src/identity/secret-manager.js';
import { spiffeId } from '../../src/identity/spiffe.js';

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const web = spiffeId('cluster.local', 'default', 'web');

class SwitchableCa implements CertificateSource {
  down = false;
  readonly calls: number[] = [];
  constructor(
    readonly ca: LocalCa,
    readonly clock: FakeClock,
  ) {}
  async sign(req: SignRequest): Promise<SignResponse> {
    this.calls.push(this.clock.now());
    if (this.down) throw new CaUnavailableError('the ca at 10.0.0.1:15012 is unavailable for x: unavailable (connection refused); check that the ca is running and reachable');
    return this.ca.sign(req);
  }
}

async function setup(ttlSeconds = 60): Promise<{ clock: FakeClock; src: SwitchableCa; sm: SecretManager; logs: Array<Record<string, unknown>>; advanceTo(at: number): Promise<void> }> {
  const clock = new FakeClock(T0);
  const src = new SwitchableCa(await LocalCa.createEphemeral({ trustDomain: 'cluster.local', clock }), clock);
  const logs: Array<Record<string, unknown>> = [];
  const logger = loggerWithControl('debug', (line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  const sm = new SecretManager({ source: src, clock, ttlSeconds, logger });
  return {
    clock,
    src,
    sm,
    logs,
    async advanceTo(at: number) {
      while (clock.now() < at) {
        clock.advance(Math.min(250, at - clock.now()));
        await sm.settled();
      }
    },
  };
}

void describe('retryDelayMs', () => {
  const base = { initialMs: 500, maxMs: 150_000, expiredRetryMs: 5_000 };
  void it('is the plain exponential backoff without a certificate', () => {
    assert.deepEqual([0, 1, 2, 9, 20].map((failures) => retryDelayMs({ ...base, failures, remainingMs: undefined })), [500, 1000, 2000, 150_000, 150_000]);
  });
  void it('is capped at a quarter of the remaining lifetime, never below 5 s', () => {
    assert.equal(retryDelayMs({ ...base, failures: 10, remainingMs: 12 * 3600_000 }), 150_000);
    assert.equal(retryDelayMs({ ...base, failures: 10, remainingMs: 400_000 }), 100_000);
    assert.equal(retryDelayMs({ ...base, failures: 10, remainingMs: 30_000 }), 7_500);
    assert.equal(retryDelayMs({ ...base, failures: 10, remainingMs: 8_000 }), 5_000);
    assert.equal(retryDelayMs({ ...base, failures: 1, remainingMs: 8_000 }), 1_000, 'a shorter plain backoff wins');
  });
  void it('retries every 5 s once expired', () => {
    assert.equal(retryDelayMs({ ...base, failures: 30, remainingMs: 0 }), 5_000);
    assert.equal(retryDelayMs({ ...base, failures: 30, remainingMs: -3600_000 }), 5_000);
  });
});

void describe('certificate expiry while the CA is down', () => {
  void it('counts and logs failed renewals, never hands out an expired certificate, and recovers within 5 s', async () => {
    const { clock, src, sm, logs, advanceTo } = await setup(60);
    const registry = new Registry();
    new AgentMetrics(registry, { pods: () => [], certificates: () => sm.dump() });
    const certs = new WorkloadCertificates(sm);
    const first = await certs.ensure(web.toString());
    assert.equal(certs.current(web.toString()), first);
    const notAfter = (sm.validCertificate(web) ?? assert.fail('no cert')).notAfter;

    src.down = true;
    // Renewal at half-life (30 s after issue), then retries until just before expiry.
    await advanceTo(notAfter - 1000);
    const failures = sm.dump()[0]?.renewal.failuresTotal ?? 0;
    assert.ok(failures >= 5, `renewals were retried (${failures})`);
    assert.equal(certs.current(web.toString()), first, 'the old certificate stays in use until it expires');
    const warn = logs.filter((l) => l.level === 40 || l.level === 'warn');
    assert.ok(warn.length >= failures, 'one warning per failed renewal');
    const last = warn.at(-1) as Record<string, unknown>;
    assert.match(String(last.msg), /renewal failed: the ca is unreachable; the current certificate expires in \d+ s/);
    assert.equal(last.caUnreachable, true);
    assert.equal(typeof last.expiresInSeconds, 'number');
    // Near expiry the gaps between attempts are at most 5 s... plus the plain backoff's own steps.
    const retries = src.calls.slice(1); // after the first issue: the renewal and its retries
    const gaps = retries.slice(1).map((t, i) => t - (retries[i] as number));
    assert.ok(gaps.every((g) => g <= 15_000), `no retry gap longer than a quarter of 60 s: ${gaps.join(',')}`);

    const text = await registry.metrics();
    assert.match(text, new RegExp(`ambit_certificate_renewal_failures_total\\{identity="${web.toString()}"\\} ${failures}`));
    assert.match(text, /ambit_certificate_expires_in_seconds\{identity="spiffe:\/\/cluster.local\/ns\/default\/sa\/web"\} 1\n/);

    await advanceTo(notAfter);
    assert.equal(sm.validCertificate(web), undefined);
    assert.equal(certs.current(web.toString()), undefined, 'an expired certificate is never presented');
    await assert.rejects(certs.ensure(web.toString()), { code: 'AMBIT_ERR_IDENTITY_CERT_UNAVAILABLE' });
    assert.ok(
      logs.some((l) => /expired without a renewal; new connections for this identity fail closed/.test(String(l.msg))),
      'the expiry itself is logged',
    );
    await advanceTo(notAfter + 20_000);
    const after = src.calls.filter((t) => t > notAfter);
    assert.ok(after.length >= 3 && after.length <= 5, `retries every 5 s once expired (${after.length} in 20 s)`);
    assert.match(await registry.metrics(), /ambit_certificate_expires_in_seconds\{identity="spiffe:\/\/cluster.local\/ns\/default\/sa\/web"\} -20\n/);
    assert.match(await registry.metrics(), /ambit_certificate_state\{identity="spiffe:\/\/cluster.local\/ns\/default\/sa\/web",state="Unavailable"\} 1/);

    src.down = false;
    const back = clock.now();
    while (sm.validCertificate(web) === undefined && clock.now() < back + 10_000) await advanceTo(clock.now() + 250);
    assert.ok(clock.now() - back <= 5_000, `recovered ${clock.now() - back} ms after the ca came back`);
    const renewed = certs.current(web.toString());
    assert.ok(renewed && renewed !== first && renewed.certChainPem[0] !== first.certChainPem[0], 'a new certificate is presented');
    const total = sm.dump()[0]?.renewal;
    assert.equal(total?.consecutiveFailures, 0);
    assert.ok((total?.failuresTotal ?? 0) > failures, 'the failure total never goes down');
    assert.match(await registry.metrics(), /ambit_certificate_state\{identity="spiffe:\/\/cluster.local\/ns\/default\/sa\/web",state="Available"\} 1/);
    sm.close();
    assert.equal(clock.pendingTimers, 0);
  });

  void it('the failure counter stays monotonic when an identity is forgotten and asked for again', async () => {
    const { src, sm } = await setup(3600);
    const registry = new Registry();
    new AgentMetrics(registry, { pods: () => [], certificates: () => sm.dump() });
    src.down = true;
    await assert.rejects(sm.getCertificate(web));
    const read = async (): Promise<number> => Number(/ambit_certificate_renewal_failures_total\{[^}]*\} (\d+)/.exec(await registry.metrics())?.[1]);
    assert.equal(await read(), 1);
    sm.forget(web);
    await assert.rejects(sm.getCertificate(web));
    assert.equal(await read(), 2);
    sm.close();
  });
});
