import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { X509Certificate, createPrivateKey, webcrypto } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FakeClock } from '../../src/common/clock.js';
import { ConfigError } from '../../src/common/errors.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { spiffeId, type SpiffeId } from '../../src/identity/spiffe.js';
import { createCsr, createCsrWithSans, createRootCertificate, generateWorkloadKey } from '../../src/identity/x509.js';

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const TD = 'cluster.local';

async function csrFor(id: SpiffeId): Promise<{ csrPem: string; keyPem: string }> {
  const key = await generateWorkloadKey();
  return { csrPem: await createCsr(key, id), keyPem: key.privateKeyPem };
}

async function assertRejectsWith(p: Promise<unknown>, code: string, fragment: string): Promise<void> {
  await assert.rejects(p, (err: Error & { code?: string }) => {
    assert.equal(err.code, code, err.message);
    assert.ok(err.message.includes(fragment), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(fragment)}`);
    return true;
  });
}

void describe('LocalCa.sign', () => {
  const clock = new FakeClock(T0);
  let ca: LocalCa;
  before(async () => {
    ca = await LocalCa.createEphemeral({ trustDomain: TD, clock });
  });

  void it('issues a P-256 leaf that chains to the root, with exactly the URI SAN and the requested validity', async () => {
    const id = spiffeId(TD, 'default', 'web');
    const { csrPem, keyPem } = await csrFor(id);
    const res = await ca.sign({ csrPem, identity: id, ttlSeconds: 3600 });
    assert.equal(res.certChainPem.length, 1);
    assert.deepEqual(res.rootsPem, [ca.rootCertPem]);
    const leaf = new X509Certificate(res.certChainPem[0] as string);
    const root = new X509Certificate(ca.rootCertPem);

    assert.ok(leaf.verify(root.publicKey));
    assert.ok(leaf.checkIssued(root));
    assert.ok(leaf.checkPrivateKey(createPrivateKey(keyPem)));
    assert.equal(leaf.publicKey.asymmetricKeyType, 'ec');
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(leaf.subjectAltName, `URI:${id.toString()}`);
    assert.equal(leaf.subject, undefined, 'the subject is empty, like Istio leaves');
    assert.equal(leaf.ca, false);
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'extended key usage serverAuth + clientAuth');
    assert.equal(Date.parse(leaf.validFrom), T0 - 60_000);
    assert.equal(Date.parse(leaf.validTo), T0 + 3600_000);
    assert.match(leaf.serialNumber, /^[0-9A-F]{1,34}$/);

    assert.ok(root.ca);
    assert.equal(root.subject, `O=${TD}`);
    assert.ok(root.verify(root.publicKey), 'the root is self-signed');
    assert.equal(root.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  });

  void it('uses a fresh random serial for each leaf and follows the clock', async () => {
    const id = spiffeId(TD, 'default', 'web');
    const a = new X509Certificate((await ca.sign({ ...(await csrFor(id)), identity: id, ttlSeconds: 60 })).certChainPem[0] as string);
    clock.advance(5000);
    const b = new X509Certificate((await ca.sign({ ...(await csrFor(id)), identity: id, ttlSeconds: 60 })).certChainPem[0] as string);
    assert.notEqual(a.serialNumber, b.serialNumber);
    assert.equal(Date.parse(b.validFrom) - Date.parse(a.validFrom), 5000);
  });

  void it('never issues past the root expiry', async () => {
    const short = await LocalCa.createEphemeral({ trustDomain: TD, clock, rootTtlDays: 1 });
    const id = spiffeId(TD, 'default', 'web');
    const leaf = new X509Certificate((await short.sign({ ...(await csrFor(id)), identity: id, ttlSeconds: 7 * 86400 })).certChainPem[0] as string);
    assert.equal(leaf.validTo, new X509Certificate(short.rootCertPem).validTo);
    assert.equal(Date.parse(leaf.validTo), short.rootNotAfter);
  });

  void it('refuses an identity in another trust domain', async () => {
    const foreign = spiffeId('evil.local', 'default', 'web');
    await assertRejectsWith(ca.sign({ ...(await csrFor(foreign)), identity: foreign, ttlSeconds: 60 }), 'AMBIT_ERR_IDENTITY_TRUST_DOMAIN_MISMATCH', '"evil.local"');
  });

  void it('refuses a CSR for another trust domain even when the request names a local identity', async () => {
    const { csrPem } = await csrFor(spiffeId('evil.local', 'default', 'web'));
    await assertRejectsWith(ca.sign({ csrPem, identity: spiffeId(TD, 'default', 'web'), ttlSeconds: 60 }), 'AMBIT_ERR_IDENTITY_TRUST_DOMAIN_MISMATCH', 'evil.local');
  });

  void it('refuses a CSR for a different identity', async () => {
    const { csrPem } = await csrFor(spiffeId(TD, 'kube-system', 'admin'));
    await assertRejectsWith(ca.sign({ csrPem, identity: spiffeId(TD, 'default', 'web'), ttlSeconds: 60 }), 'AMBIT_ERR_IDENTITY_CSR_MISMATCH', 'kube-system/sa/admin');
  });

  void it('refuses a CSR without exactly one URI SAN', async () => {
    const id = spiffeId(TD, 'default', 'web');
    const key = await generateWorkloadKey();
    const cases: Array<[Parameters<typeof createCsrWithSans>[1], string]> = [
      [{}, 'no subject alternative name'],
      [{ uris: [id.toString(), spiffeId(TD, 'default', 'other').toString()] }, '2 subject alternative names'],
      [{ uris: [id.toString()], dns: ['web.default.svc'] }, 'dns:web.default.svc'],
      [{ dns: ['web.default.svc'] }, '1 subject alternative names'],
      [{ uris: ['https://web.example/'] }, 'is not a spiffe id'],
    ];
    for (const [sans, fragment] of cases) {
      await assertRejectsWith(ca.sign({ csrPem: await createCsrWithSans(key, sans), identity: id, ttlSeconds: 60 }), 'AMBIT_ERR_IDENTITY_CSR_SAN', fragment);
    }
  });

  void it('refuses a CSR that is not PEM or whose signature does not verify', async () => {
    const id = spiffeId(TD, 'default', 'web');
    await assertRejectsWith(ca.sign({ csrPem: 'not a csr', identity: id, ttlSeconds: 60 }), 'AMBIT_ERR_IDENTITY_INVALID_CSR', 'not a valid pem');
    // Rewrite the SAN of a signed CSR for .../sa/web into .../sa/wex: the
    // structure stays valid but the self-signature no longer matches.
    const other = spiffeId(TD, 'default', 'wex');
    const { csrPem } = await csrFor(id);
    const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('/sa/web'));
    assert.ok(at > 0);
    der.write('/sa/wex', at, 'latin1');
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assertRejectsWith(ca.sign({ csrPem: tampered, identity: other, ttlSeconds: 60 }), 'AMBIT_ERR_IDENTITY_INVALID_CSR', 'does not verify');
  });

  void it('refuses a CSR whose key is not ECDSA P-256', async () => {
    const id = spiffeId(TD, 'default', 'web');
    const keyPair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']);
    const csrPem = await createCsrWithSans({ privateKeyPem: '', publicKeyPem: '', keyPair }, { uris: [id.toString()] });
    await assertRejectsWith(ca.sign({ csrPem, identity: id, ttlSeconds: 60 }), 'AMBIT_ERR_IDENTITY_INVALID_CSR', 'ECDSA P-384; generate an ecdsa p-256 key');
  });

  void it('refuses a non-positive ttl', async () => {
    const id = spiffeId(TD, 'default', 'web');
    for (const ttlSeconds of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await assertRejectsWith(ca.sign({ ...(await csrFor(id)), identity: id, ttlSeconds }), 'AMBIT_ERR_IDENTITY_INVALID_TTL', 'positive');
    }
  });

  void it('rejects an invalid trust domain option', async () => {
    await assert.rejects(LocalCa.createEphemeral({ trustDomain: 'Bad Domain' }), ConfigError);
    await assert.rejects(LocalCa.createEphemeral({ trustDomain: TD, rootTtlDays: 0 }), ConfigError);
  });
});

void describe('LocalCa.openOrCreate', () => {
  let base: string;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'ambit-ca-'));
  });
  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  async function assertStore(dir: string, certPem: string): Promise<void> {
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.deepEqual((await readdir(dir)).sort(), ['root-cert.pem', 'root-key.pem'], 'no temporary files are left behind');
    for (const f of ['root-cert.pem', 'root-key.pem']) assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
    assert.equal(await readFile(join(dir, 'root-cert.pem'), 'utf8'), certPem);
  }

  void it('creates a root once and reopens the same root', async () => {
    const dir = join(base, 'single', 'ca');
    const a = await LocalCa.openOrCreate(dir, { trustDomain: TD });
    await assertStore(dir, a.rootCertPem);
    const b = await LocalCa.openOrCreate(dir, { trustDomain: TD });
    assert.equal(b.rootCertPem, a.rootCertPem);
    // A leaf from the reopened CA chains to the root the first one created.
    const id = spiffeId(TD, 'default', 'web');
    const leaf = new X509Certificate((await b.sign({ ...(await csrFor(id)), identity: id, ttlSeconds: 60 })).certChainPem[0] as string);
    assert.ok(leaf.checkIssued(new X509Certificate(a.rootCertPem)));
    assert.ok(leaf.verify(new X509Certificate(a.rootCertPem).publicKey));
  });

  void it('yields one root when opened concurrently in one process', async () => {
    const dir = join(base, 'concurrent');
    const cas = await Promise.all(Array.from({ length: 8 }, () => LocalCa.openOrCreate(dir, { trustDomain: TD })));
    for (const ca of cas) assert.equal(ca.rootCertPem, cas[0]?.rootCertPem);
    await assertStore(dir, cas[0]?.rootCertPem as string);
  });

  void it('yields one root when child processes create it at the same moment', async () => {
    const dir = join(base, 'processes');
    const moduleUrl = new URL('../../src/identity/local-ca.js', import.meta.url).href;
    // Every child waits for the same wall-clock instant after loading, so
    // their create attempts overlap instead of being serialized by start-up.
    const startAt = Date.now() + 800;
    const script = `
      const { LocalCa } = await import(${JSON.stringify(moduleUrl)});
      while (Date.now() < ${startAt}) await new Promise((r) => setTimeout(r, 1));
      const ca = await LocalCa.openOrCreate(${JSON.stringify(dir)}, { trustDomain: ${JSON.stringify(TD)} });
      process.stdout.write(JSON.stringify(ca.rootCertPem));`;
    const run = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let errText = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (errText += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as string) : reject(new Error(`child exited ${code}: ${errText}`))));
      });
    const roots = await Promise.all([run(), run(), run(), run()]);
    assert.equal(new Set(roots).size, 1, 'all processes share one root');
    await assertStore(dir, roots[0] as string);
    assert.equal((await LocalCa.openOrCreate(dir, { trustDomain: TD })).rootCertPem, roots[0]);
  });

  void it('refuses a root made for another trust domain', async () => {
    const dir = join(base, 'other-td');
    await LocalCa.openOrCreate(dir, { trustDomain: 'other.local' });
    await assertRejectsWith(LocalCa.openOrCreate(dir, { trustDomain: TD }), 'AMBIT_ERR_IDENTITY_CA_STORE', 'belongs to trust domain "other.local"');
  });

  void it('refuses an expired root', async () => {
    const dir = join(base, 'expired');
    await LocalCa.openOrCreate(dir, { trustDomain: TD, clock: new FakeClock(T0), rootTtlDays: 1 });
    await assertRejectsWith(LocalCa.openOrCreate(dir, { trustDomain: TD, clock: new FakeClock(T0 + 2 * 86400_000) }), 'AMBIT_ERR_IDENTITY_CA_STORE', 'valid only from');
  });

  void it('refuses an unreadable root key', async () => {
    const dir = join(base, 'corrupt');
    await mkdir(dir, { mode: 0o700 });
    await writeFile(join(dir, 'root-key.pem'), 'garbage\n', { mode: 0o600 });
    await assertRejectsWith(LocalCa.openOrCreate(dir, { trustDomain: TD }), 'AMBIT_ERR_IDENTITY_CA_STORE', 'no pem private key');
  });

  void it('accepts an operator-supplied key and certificate in separate files', async () => {
    const dir = join(base, 'supplied');
    await mkdir(dir, { mode: 0o700 });
    const root = await createRootCertificate({ organization: TD, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86400_000) });
    await writeFile(join(dir, 'root-key.pem'), root.privateKeyPem, { mode: 0o600 });
    await writeFile(join(dir, 'root-cert.pem'), root.certPem, { mode: 0o600 });
    const ca = await LocalCa.openOrCreate(dir, { trustDomain: TD });
    assert.equal(ca.rootCertPem, root.certPem);
    assert.equal(await readFile(join(dir, 'root-key.pem'), 'utf8'), root.privateKeyPem, 'the supplied key file is left alone');
  });
});
