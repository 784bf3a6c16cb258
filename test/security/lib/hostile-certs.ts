/**
 * Certificates a well-behaved CA would never issue, for the HBONE handshake
 * cases: expired, not yet valid, no SPIFFE SAN, two SANs, a DNS-only SAN,
 * all signed by a root the server trusts (so only the property under test is
 * wrong). Built with @peculiar/x509 after src/identity/x509.ts has set up its
 * crypto provider (importing it first does that).
 */
import { generateWorkloadKey, importSigningKey } from '../../../src/identity/x509.js';
import * as x509 from '@peculiar/x509';
import { randomBytes, type webcrypto } from 'node:crypto';
import { LocalCa } from '../../../src/identity/local-ca.js';
import type { StoredRoot } from '../../../src/identity/local-ca-store.js';
import type { TlsIdentity } from '../../../src/hbone/tls-identity.js';

export interface TestRoot {
  readonly root: StoredRoot;
  readonly ca: LocalCa;
  readonly key: webcrypto.CryptoKey;
}

export async function testRoot(trustDomain: string): Promise<TestRoot> {
  const root = await LocalCa.createRoot({ trustDomain });
  const ca = await LocalCa.fromRoot(root, { trustDomain });
  return { root, ca, key: await importSigningKey(root.privateKeyPem) };
}

export interface ForgeOptions {
  readonly uris?: readonly string[];
  readonly dns?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/** A client/server leaf with exactly the given SANs and validity window. */
export async function forgeLeaf(r: TestRoot, o: ForgeOptions): Promise<TlsIdentity> {
  const key = await generateWorkloadKey();
  const issuer = new x509.X509Certificate(r.root.certPem);
  const names: x509.JsonGeneralName[] = [...(o.uris ?? []).map((value) => ({ type: 'url' as const, value })), ...(o.dns ?? []).map((value) => ({ type: 'dns' as const, value }))];
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(16).toString('hex'),
    issuer: issuer.subjectName,
    subject: names.length === 0 ? 'CN=no-san' : '',
    notBefore: o.notBefore ?? new Date(now - 60_000),
    notAfter: o.notAfter ?? new Date(now + 3_600_000),
    publicKey: key.keyPair.publicKey,
    signingKey: r.key,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names, true)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.publicKey),
    ],
  });
  const pem = cert.toString('pem').replace(/\r\n/g, '\n');
  return {
    identity: o.uris?.[0] ?? 'spiffe://invalid/no-san',
    privateKeyPem: key.privateKeyPem,
    certChainPem: [pem.endsWith('\n') ? pem : `${pem}\n`],
    rootsPem: [r.root.certPem],
  };
}
