import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { RotatingCa } from '../../src/ca/rotating-ca.js';
import { FakeClock } from '../../src/common/clock.js';
import { spiffeId } from '../../src/identity/spiffe.js';
import { createCsr, generateWorkloadKey } from '../../src/identity/x509.js';

const TD = 'cluster.local';
const ID = spiffeId(TD, 'default', 'web');

async function leafFrom(ca: RotatingCa): Promise<{ leaf: X509Certificate; rootsPem: string[] }> {
  const key = await generateWorkloadKey();
  const res = await ca.sign({ csrPem: await createCsr(key, ID), identity: ID, ttlSeconds: 3600 });
  return { leaf: new X509Certificate(res.certChainPem[0] as string), rootsPem: res.rootsPem };
}

function verifiesAgainst(leaf: X509Certificate, bundle: readonly string[]): boolean {
  return bundle.some((p) => {
    const r = new X509Certificate(p);
    return leaf.checkIssued(r) && leaf.verify(r.publicKey);
  });
}

void describe('RotatingCa', () => {
  void it('adds a root to the bundle before it signs, then activates and retires', async () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const ca = await RotatingCa.create({ trustDomain: TD, clock });
    const oldRoot = ca.activeRootPem;
    const before = await leafFrom(ca);
    assert.deepEqual(before.rootsPem, [oldRoot]);

    const next = await ca.newRoot();
    await ca.addRoot(next);
    assert.deepEqual(ca.trustBundle(), [oldRoot, next.certPem], 'both roots are trusted');
    assert.equal(ca.activeRootPem, oldRoot, 'the new root does not sign yet');
    const during = await leafFrom(ca);
    assert.ok(verifiesAgainst(during.leaf, [oldRoot]));
    assert.deepEqual(during.rootsPem, [oldRoot, next.certPem], 'leaves signed now already carry the new root');

    ca.activate(next.certPem);
    const after = await leafFrom(ca);
    assert.ok(verifiesAgainst(after.leaf, [next.certPem]) && !verifiesAgainst(after.leaf, [oldRoot]), 'signed by the new root');
    assert.ok(verifiesAgainst(after.leaf, ca.trustBundle()));
    assert.ok(verifiesAgainst(before.leaf, ca.trustBundle()), 'old leaves still verify until the old root is retired');

    assert.throws(() => ca.retire(next.certPem), { code: 'AMBIT_ERR_CA_ROOT_ROTATION', message: /signing; activate another root/ });
    ca.retire(oldRoot);
    assert.deepEqual(ca.trustBundle(), [next.certPem]);
    assert.ok(!verifiesAgainst(before.leaf, ca.trustBundle()), 'after retire, old leaves no longer verify');
    assert.ok(verifiesAgainst(after.leaf, ca.trustBundle()));
  });

  void it('refuses out-of-order steps and foreign roots', async () => {
    const ca = await RotatingCa.create({ trustDomain: TD });
    const other = await RotatingCa.create({ trustDomain: 'other.domain' });
    const stranger = await ca.newRoot();
    assert.throws(() => ca.activate(stranger.certPem), { code: 'AMBIT_ERR_CA_ROOT_ROTATION', message: /not in the trust bundle; addRoot\(\) it/ });
    assert.throws(() => ca.retire(stranger.certPem), { message: /nothing to retire/ });
    await ca.addRoot(stranger);
    await assert.rejects(ca.addRoot(stranger), { code: 'AMBIT_ERR_CA_ROOT_ROTATION', message: /already in the trust bundle/ });
    await assert.rejects(ca.addRoot(await other.newRoot()), { code: 'AMBIT_ERR_IDENTITY_CA_STORE', message: /trust domain "other.domain"/ });
    assert.throws(() => ca.activate('garbage'), { message: /not a pem certificate/ });
  });
});
