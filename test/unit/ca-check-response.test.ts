import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { checkResponse, splitPemCertificates } from '../../src/ca/ca-client.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { spiffeId } from '../../src/identity/spiffe.js';
import { createCsr, generateWorkloadKey } from '../../src/identity/x509.js';

const TD = 'cluster.local';
const ID = spiffeId(TD, 'default', 'web');
const OTHER = spiffeId(TD, 'default', 'db');

async function issue(ca: LocalCa, id = ID): Promise<string> {
  const key = await generateWorkloadKey();
  const res = await ca.sign({ csrPem: await createCsr(key, id), identity: id, ttlSeconds: 600 });
  return res.certChainPem[0] as string;
}

void describe('checkResponse (IstioCaClient answer checks)', () => {
  void it('splits leaf and root(s); the last element may hold several roots', async () => {
    const ca = await LocalCa.createEphemeral({ trustDomain: TD });
    const extra = await LocalCa.createEphemeral({ trustDomain: TD });
    const leaf = await issue(ca);
    const r = checkResponse([leaf, ca.rootCertPem + extra.rootCertPem], ID.toString(), 'ca:1');
    assert.deepEqual(r.certChainPem, [leaf]);
    assert.deepEqual(r.rootsPem, [ca.rootCertPem, extra.rootCertPem]);
    assert.equal(splitPemCertificates('junk').length, 0);
  });

  void it('refuses a short chain, a wrong identity, and a chain that does not verify', async () => {
    const ca = await LocalCa.createEphemeral({ trustDomain: TD });
    const foreign = await LocalCa.createEphemeral({ trustDomain: TD });
    const leaf = await issue(ca);
    const code = 'AMBIT_ERR_CA_INVALID_RESPONSE';
    assert.throws(() => checkResponse([leaf], ID.toString(), 'ca:1'), { code, message: /returned 1 certificate \(expected the leaf and then the root\)/ });
    const dbLeaf = await issue(ca, OTHER);
    assert.throws(() => checkResponse([dbLeaf, ca.rootCertPem], ID.toString(), 'ca:1'), { code, message: /a leaf for uri:spiffe:\/\/cluster.local\/ns\/default\/sa\/db \(expected exactly uri:spiffe:\/\/cluster.local\/ns\/default\/sa\/web\)/ });
    assert.throws(() => checkResponse([leaf, foreign.rootCertPem], ID.toString(), 'ca:1'), { code, message: /does not verify to any of the returned roots/ });
    assert.throws(() => checkResponse([leaf, 'not pem'], ID.toString(), 'ca:1'), { code, message: /no root certificate/ });
    assert.throws(() => checkResponse([leaf + leaf, ca.rootCertPem], ID.toString(), 'ca:1'), { code, message: /cert_chain\[0\] with 2 pem certificates/ });
  });
});
