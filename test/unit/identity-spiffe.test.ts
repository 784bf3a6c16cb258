import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { InvalidSpiffeIdError, IdentityError } from '../../src/identity/errors.js';
import { parseSpiffeId, parseSubjectAltNames, parseTrustDomain, spiffeId, spiffeUrisOf, SpiffeId } from '../../src/identity/spiffe.js';
import { createRootCertificate, generateWorkloadKey, importSigningKey, issueLeafCertificate, readCsr, createCsrWithSans } from '../../src/identity/x509.js';

const CODE = 'AMBIT_ERR_IDENTITY_INVALID_SPIFFE_ID';

function rejects(fn: () => unknown, fragment: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidSpiffeIdError);
    assert.ok(err instanceof IdentityError);
    assert.equal(err.code, CODE);
    assert.ok(err.message.includes(fragment), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(fragment)}`);
    return true;
  });
}

void describe('SpiffeId', () => {
  void it('parses and formats the Istio form', () => {
    const uri = 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage';
    const id = parseSpiffeId(uri);
    assert.equal(id.trustDomain, 'cluster.local');
    assert.equal(id.namespace, 'bookinfo');
    assert.equal(id.serviceAccount, 'bookinfo-productpage');
    assert.equal(id.toString(), uri);
    assert.equal(JSON.stringify({ id }), JSON.stringify({ id: uri }));
    assert.ok(id instanceof SpiffeId);
  });

  void it('round-trips between spiffeId() and parseSpiffeId()', () => {
    for (const [td, ns, sa] of [
      ['cluster.local', 'default', 'default'],
      ['td-1_x.example', 'kube-system', 'My_SA.v2'],
      ['a', 'b', 'c'],
    ] as const) {
      const built = spiffeId(td, ns, sa);
      const parsed = parseSpiffeId(built.toString());
      assert.ok(parsed.equals(built));
      assert.ok(built.equals(parsed));
      assert.deepEqual([parsed.trustDomain, parsed.namespace, parsed.serviceAccount], [td, ns, sa]);
    }
  });

  void it('compares by value', () => {
    const a = spiffeId('cluster.local', 'ns1', 'sa1');
    assert.ok(a.equals(spiffeId('cluster.local', 'ns1', 'sa1')));
    assert.ok(!a.equals(spiffeId('cluster.local', 'ns1', 'sa2')));
    assert.ok(!a.equals(spiffeId('other.local', 'ns1', 'sa1')));
    assert.ok(!a.equals(undefined));
    assert.ok(!a.equals(null));
  });

  void it('is immutable', () => {
    const id = spiffeId('cluster.local', 'a', 'b');
    assert.ok(Object.isFrozen(id));
    assert.throws(() => {
      (id as { namespace: string }).namespace = 'x';
    }, TypeError);
  });

  const invalid: Array<[string, string]> = [
    ['', 'empty'],
    ['http://cluster.local/ns/a/sa/b', 'scheme'],
    ['SPIFFE://cluster.local/ns/a/sa/b', 'scheme'],
    ['spiffe:/cluster.local/ns/a/sa/b', 'scheme'],
    ['spiffe://Cluster.local/ns/a/sa/b', 'trust domain contains "C"'],
    ['spiffe://clu$ter/ns/a/sa/b', 'trust domain contains "$"'],
    ['spiffe:///ns/a/sa/b', 'trust domain is empty'],
    ['spiffe://cluster.local:8080/ns/a/sa/b', 'port'],
    ['spiffe://user@cluster.local/ns/a/sa/b', 'userinfo'],
    [`spiffe://${'a'.repeat(256)}/ns/a/sa/b`, 'longer than 255'],
    [`spiffe://td/ns/a/sa/${'b'.repeat(2048)}`, 'longer than 2048'],
    ['spiffe://cluster.local', 'path is missing'],
    ['spiffe://cluster.local/', 'trailing "/"'],
    ['spiffe://cluster.local/ns/a/sa/b/', 'trailing "/"'],
    ['spiffe://cluster.local/ns//sa/b', 'empty segment'],
    ['spiffe://cluster.local/ns/a/sa', '/ns/<namespace>/sa/<service-account>'],
    ['spiffe://cluster.local/ns/a/sa/b/c', '/ns/<namespace>/sa/<service-account>'],
    ['spiffe://cluster.local/namespace/a/sa/b', '/ns/<namespace>/sa/<service-account>'],
    ['spiffe://cluster.local/workload-1', '/ns/<namespace>/sa/<service-account>'],
    ['spiffe://cluster.local/ns/../sa/b', 'namespace must not be "." or ".."'],
    ['spiffe://cluster.local/ns/a/sa/.', 'service account must not be "." or ".."'],
    ['spiffe://cluster.local/ns/a b/sa/b', 'namespace contains " "'],
    ['spiffe://cluster.local/ns/a/sa/b*', 'service account contains "*"'],
    ['spiffe://cluster.local/ns/a/sa/b?x=1', 'query'],
    ['spiffe://cluster.local/ns/a/sa/b#f', 'fragment'],
    ['spiffe://cluster.local/ns/%61/sa/b', 'percent-encoding'],
  ];
  for (const [uri, fragment] of invalid) {
    void it(`rejects ${JSON.stringify(uri.length > 60 ? uri.slice(0, 60) + '...' : uri)}`, () => rejects(() => parseSpiffeId(uri), fragment));
  }

  void it('validates the parts given to spiffeId()', () => {
    rejects(() => spiffeId('Cluster.local', 'a', 'b'), 'trust domain contains "C"');
    rejects(() => spiffeId('cluster.local', 'a/b', 'c'), 'namespace contains "/"');
    rejects(() => spiffeId('cluster.local', 'a', ''), 'service account is empty');
    rejects(() => spiffeId('', 'a', 'b'), 'trust domain is empty');
  });

  void it('validates a bare trust domain', () => {
    assert.equal(parseTrustDomain('example.org'), 'example.org');
    rejects(() => parseTrustDomain('Example.org'), 'invalid trust domain "Example.org"');
  });
});

void describe('parseSubjectAltNames', () => {
  void it('splits plain entries', () => {
    assert.deepEqual(parseSubjectAltNames('DNS:a.example, URI:spiffe://td/ns/a/sa/b, IP Address:127.0.0.1'), [
      { type: 'DNS', value: 'a.example' },
      { type: 'URI', value: 'spiffe://td/ns/a/sa/b' },
      { type: 'IP Address', value: '127.0.0.1' },
    ]);
  });

  void it('decodes JSON-quoted values, so an embedded ", URI:" is not a second SAN', () => {
    assert.deepEqual(parseSubjectAltNames('URI:"spiffe://td/ns/a\\u002c URI:spiffe://evil/ns/x/sa/y", DNS:"q\\"\\\\"'), [
      { type: 'URI', value: 'spiffe://td/ns/a, URI:spiffe://evil/ns/x/sa/y' },
      { type: 'DNS', value: 'q"\\' },
    ]);
  });

  void it('stops at a malformed entry', () => {
    assert.deepEqual(parseSubjectAltNames('URI:spiffe://td/ns/a/sa/b, garbage'), [{ type: 'URI', value: 'spiffe://td/ns/a/sa/b' }]);
    assert.deepEqual(parseSubjectAltNames('URI:"unterminated, DNS:x'), []);
    assert.deepEqual(parseSubjectAltNames('URI:"a"junk, DNS:x'), [{ type: 'URI', value: 'a' }]);
    assert.deepEqual(parseSubjectAltNames(undefined), []);
    assert.deepEqual(parseSubjectAltNames(''), []);
  });
});

void describe('spiffeUrisOf', () => {
  async function certWithUri(uri: string): Promise<X509Certificate> {
    const now = Date.now();
    const root = await createRootCertificate({ organization: 'td', notBefore: new Date(now - 60_000), notAfter: new Date(now + 3_600_000) });
    const csr = await readCsr(await createCsrWithSans(await generateWorkloadKey(), {}));
    const pem = await issueLeafCertificate({
      issuerCertPem: root.certPem,
      issuerKey: await importSigningKey(root.privateKeyPem),
      publicKeySpki: csr.publicKeySpki,
      uri,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
    });
    return new X509Certificate(pem);
  }

  void it('returns the spiffe URI SAN of a certificate', async () => {
    const cert = await certWithUri('spiffe://cluster.local/ns/default/sa/web');
    assert.deepEqual(spiffeUrisOf(cert), ['spiffe://cluster.local/ns/default/sa/web']);
    assert.deepEqual(spiffeUrisOf({ subjectaltname: cert.subjectAltName }), ['spiffe://cluster.local/ns/default/sa/web']);
  });

  void it('keeps a URI with a comma whole (node quotes it)', async () => {
    const crafted = 'spiffe://td/ns/a, URI:spiffe://evil/ns/x/sa/y';
    const cert = await certWithUri(crafted);
    assert.ok(cert.subjectAltName?.startsWith('URI:"'), `node did not quote: ${cert.subjectAltName}`);
    assert.deepEqual(spiffeUrisOf(cert), [crafted]);
  });

  void it('ignores non-spiffe URIs', async () => {
    assert.deepEqual(spiffeUrisOf(await certWithUri('https://example.com/x')), []);
    assert.deepEqual(spiffeUrisOf({ subjectaltname: undefined }), []);
  });
});
