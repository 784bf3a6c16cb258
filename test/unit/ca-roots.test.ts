/**
 * CaRoots: the persisted three-phase root rotation (add, activate, retire),
 * its safety gate (no phase before the leaves issued under the previous one
 * have expired, unless forced), what it writes to the CA directory, and the
 * cross-signed serving chain that keeps the control plane trusted by agents
 * that know only the old root.
 */
import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, connect, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CaRoots } from '../../src/ca/ca-roots.js';
import { splitPemCertificates } from '../../src/ca/ca-client.js';
import { FakeClock } from '../../src/common/clock.js';
import { spiffeId } from '../../src/identity/spiffe.js';
import { createCsr, generateWorkloadKey } from '../../src/identity/x509.js';

const TD = 'cluster.local';
const web = spiffeId(TD, 'default', 'web');
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'ambit-ca-roots-'));
  dirs.push(d);
  return d;
}

async function leaf(ca: CaRoots, ttlSeconds = 60): Promise<{ key: string; chain: string[]; roots: string[] }> {
  const k = await generateWorkloadKey();
  const res = await ca.sign({ csrPem: await createCsr(k, web), identity: web, ttlSeconds });
  return { key: k.privateKeyPem, chain: res.certChainPem, roots: res.rootsPem };
}

function issuedBy(certPem: string, rootPem: string): boolean {
  const c = new X509Certificate(certPem);
  const r = new X509Certificate(rootPem);
  return c.checkIssued(r) && c.verify(r.publicKey);
}

void describe('CaRoots', () => {
  void it('rotates in three gated phases and persists every step', async () => {
    const dir = await tempDir();
    const clock = new FakeClock(Date.now());
    let ca = await CaRoots.open(dir, { trustDomain: TD, clock });
    const old = ca.activeRootPem;
    assert.equal(ca.status().stage, 'stable');
    assert.equal(ca.status().nextPhase, 'add');
    assert.deepEqual((await readdir(dir)).sort(), ['root-cert.pem', 'root-key.pem'], 'no rotation: the plain local-ca layout');

    const before = await leaf(ca);
    assert.ok(issuedBy(before.chain[0] as string, old));
    await ca.flushed();
    const issuedUntil = Date.parse(new X509Certificate(before.chain[0] as string).validTo);
    assert.equal(ca.status().issuedUntil, new Date(issuedUntil).toISOString());
    assert.equal((await readFile(join(dir, 'issued-until'), 'utf8')).trim(), new Date(issuedUntil).toISOString());

    await assert.rejects(ca.rotate('activate'), { code: 'AMBIT_ERR_CA_ROOT_ROTATION', message: /stage 'stable'; the next phase is 'add'/ });
    await assert.rejects(ca.rotate('retire'), { code: 'AMBIT_ERR_CA_ROOT_ROTATION' });

    // add: a second root is trusted; the old one still signs.
    const added = await ca.rotate('add');
    assert.equal(added.stage, 'added');
    assert.equal(added.roots.length, 2);
    assert.equal(added.nextPhase, 'activate');
    assert.equal(added.nextPhaseSafeAt, new Date(issuedUntil).toISOString(), 'activate waits until the leaves issued before add have expired');
    const newRootPem = ca.trustBundle().find((r) => r !== old) as string;
    assert.match(new X509Certificate(newRootPem).subject, /O=cluster.local\nCN=ambit root /, 'the new root has its own subject');
    const during = await leaf(ca);
    assert.ok(issuedBy(during.chain[0] as string, old), 'the old root still signs');
    assert.equal(during.roots.length, 2, 'the response carries both roots');
    const certFile = splitPemCertificates(await readFile(join(dir, 'root-cert.pem'), 'utf8'));
    assert.deepEqual(certFile, [old, newRootPem], 'root-cert.pem: the bundle, active first');

    await assert.rejects(ca.rotate('activate'), { code: 'AMBIT_ERR_CA_ROTATION_TOO_EARLY', message: /too early to activate/ });
    // The control plane restarts mid-rotation: the stage, the gate and the keys survive.
    ca = await CaRoots.open(dir, { trustDomain: TD, clock });
    assert.equal(ca.status().stage, 'added');
    assert.equal(ca.activeRootPem, old);
    await assert.rejects(ca.rotate('activate'), { code: 'AMBIT_ERR_CA_ROTATION_TOO_EARLY' });

    clock.advance(Date.parse(ca.status().nextPhaseSafeAt as string) - clock.now());
    const lastOld = await leaf(ca);
    assert.ok(issuedBy(lastOld.chain[0] as string, old));
    const activated = await ca.rotate('activate');
    assert.equal(activated.nextPhaseSafeAt, new Date(new X509Certificate(lastOld.chain[0] as string).validTo).toISOString(), 'retire waits for the last old-root leaf');
    assert.equal(activated.stage, 'activated');
    assert.equal(ca.activeRootPem, newRootPem);
    const next = await leaf(ca);
    assert.ok(issuedBy(next.chain[0] as string, newRootPem), 'the new root signs');
    assert.ok(!issuedBy(next.chain[0] as string, old));
    assert.deepEqual(new Set(next.roots), new Set([old, newRootPem]), 'old leaves still verify: the old root stays in the bundle');
    assert.ok(issuedBy(during.chain[0] as string, next.roots.find((r) => r === old) as string));
    assert.equal(splitPemCertificates(await readFile(join(dir, 'root-cert.pem'), 'utf8'))[0], newRootPem);
    assert.ok((await readFile(join(dir, 'root-key.pem'), 'utf8')).includes(newRootPem), 'root-key.pem holds the active root');

    await assert.rejects(ca.rotate('retire'), { code: 'AMBIT_ERR_CA_ROTATION_TOO_EARLY' });
    clock.advance(Date.parse(ca.status().nextPhaseSafeAt as string) - clock.now());
    const retired = await ca.rotate('retire');
    assert.equal(retired.stage, 'stable');
    assert.deepEqual(ca.trustBundle(), [newRootPem]);
    assert.deepEqual(splitPemCertificates(await readFile(join(dir, 'root-cert.pem'), 'utf8')), [newRootPem]);
    const later = await leaf(ca);
    assert.deepEqual(later.roots, [newRootPem]);

    ca = await CaRoots.open(dir, { trustDomain: TD, clock });
    assert.equal(ca.status().stage, 'stable');
    assert.equal(ca.activeRootPem, newRootPem);
    assert.equal(ca.servingChainExtras().length, 1, 'the cross-certificate survives the retire and a restart');
  });

  void it('a phase that cannot be persisted leaves the running ca unchanged', async () => {
    const dir = await tempDir();
    const ca = await CaRoots.open(dir, { trustDomain: TD });
    const before = ca.activeRootPem;
    // roots.json cannot be written: a directory is in its way.
    await mkdir(join(dir, 'roots.json', 'blocker'), { recursive: true });
    await assert.rejects(ca.rotate('add'), { code: 'AMBIT_ERR_CA_ROOT_ROTATION', message: /cannot write .*roots\.json/ });
    assert.equal(ca.status().stage, 'stable');
    assert.deepEqual(ca.trustBundle(), [before]);
    const l = await leaf(ca);
    assert.deepEqual(l.roots, [before]);
    await rm(join(dir, 'roots.json'), { recursive: true });
    assert.equal((await ca.rotate('add')).stage, 'added', 'works once the directory is writable');
  });

  void it('force skips the gate', async () => {
    const ca = await CaRoots.open(await tempDir(), { trustDomain: TD });
    await leaf(ca, 3600);
    await ca.rotate('add');
    await assert.rejects(ca.rotate('activate'), { code: 'AMBIT_ERR_CA_ROTATION_TOO_EARLY' });
    assert.equal((await ca.rotate('activate', { force: true })).stage, 'activated');
  });

  void it('the serving chain verifies for agents trusting only the old root, only the new root, and not for strangers', async () => {
    const ca = await CaRoots.open(await tempDir(), { trustDomain: TD });
    const old = ca.activeRootPem;
    await ca.rotate('add');
    await ca.rotate('activate', { force: true });
    const fresh = ca.activeRootPem;
    const stranger = (await CaRoots.open(await tempDir(), { trustDomain: TD })).activeRootPem;
    const istiod = spiffeId(TD, 'istio-system', 'istiod');
    const k = await generateWorkloadKey();
    const res = await ca.signUnrecorded({ csrPem: await createCsr(k, istiod), identity: istiod, ttlSeconds: 3600 });
    const extras = ca.servingChainExtras();
    assert.equal(extras.length, 1);
    const server = createServer({ key: k.privateKeyPem, cert: [...res.certChainPem, ...extras].join(''), minVersion: 'TLSv1.3' }, (s) => s.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const handshake = (trust: string[]): Promise<string> =>
      new Promise((resolve) => {
        const s: TLSSocket = connect({ host: '127.0.0.1', port, ca: trust, checkServerIdentity: () => undefined }, () => resolve('ok'));
        s.on('error', (err) => resolve(`error: ${err.message}`));
        s.on('data', () => s.end());
      });
    try {
      assert.equal(await handshake([old]), 'ok', 'an agent started before the rotation (old root only)');
      assert.equal(await handshake([fresh]), 'ok', 'an agent started after the rotation (new root only)');
      assert.equal(await handshake([old, fresh]), 'ok');
      assert.match(await handshake([stranger]), /^error: /);
    } finally {
      server.close();
    }
  });
});
