/**
 * X.509 building blocks: workload keys, CSRs, and certificates for the local
 * CA. This is the only module that loads @peculiar/x509, because that library
 * needs `reflect-metadata` loaded first and a crypto provider set once;
 * keeping both here means no other import order can break it.
 *
 * All keys are ECDSA P-256 and all signatures ECDSA with SHA-256, as ztunnel's
 * CSRs are. Private keys leave this module as PKCS#8 PEM so they can go
 * straight into `tls.createSecureContext({key})`.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { KeyObject, createPrivateKey, createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import type { SpiffeId } from './spiffe.js';
import { InvalidCsrError } from './errors.js';

x509.cryptoProvider.set(webcrypto);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

export interface WorkloadKey {
  /** PKCS#8 PEM, accepted by tls.createSecureContext({key}). */
  readonly privateKeyPem: string;
  /** SPKI PEM. */
  readonly publicKeyPem: string;
  /** The same key as WebCrypto keys, to sign a CSR without re-importing. */
  readonly keyPair: CryptoKeyPair;
}

/** A fresh ECDSA P-256 key pair. */
export async function generateWorkloadKey(): Promise<WorkloadKey> {
  const keyPair = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const priv = KeyObject.from(keyPair.privateKey);
  const pub = KeyObject.from(keyPair.publicKey);
  return {
    privateKeyPem: priv.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: pub.export({ type: 'spki', format: 'pem' }).toString(),
    keyPair,
  };
}

/** A PEM CSR for `id`: empty subject and one critical URI SAN, like Istio's. */
export function createCsr(key: WorkloadKey, id: SpiffeId): Promise<string> {
  return createCsrWithSans(key, { uris: [id.toString()] });
}

/**
 * A PEM CSR with arbitrary SANs (none, several, DNS). The data plane uses
 * `createCsr`; this exists for CA tests and for tools.
 */
export async function createCsrWithSans(key: WorkloadKey, sans: { uris?: readonly string[]; dns?: readonly string[] }): Promise<string> {
  const names: x509.JsonGeneralName[] = [
    ...(sans.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(sans.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: key.keyPair,
    signingAlgorithm: ECDSA_SHA256,
    // With an empty subject, RFC 5280 requires the SAN extension to be critical.
    extensions: names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names, true)] : [],
  });
  return pem(csr.toString('pem'));
}

export interface CsrInfo {
  /** DER SubjectPublicKeyInfo of the requested key. */
  readonly publicKeySpki: ArrayBuffer;
  /** URI SANs in request order. */
  readonly uris: readonly string[];
  /** Every other SAN as `<type>:<value>` (e.g. `dns:example.com`). */
  readonly otherSans: readonly string[];
  /** The requested key: `ec-p256`, or `rsa-<bits>` when `allowRsa` let an RSA key through. */
  readonly keyType?: string;
}

/** The smallest RSA modulus a CA accepts when RSA CSRs are allowed. */
export const MIN_RSA_BITS = 2048;

export interface ReadCsrOptions {
  /** Also accept RSA keys of at least `MIN_RSA_BITS` (the Istio CA server does; the local CA does not). */
  readonly allowRsa?: boolean;
}

/**
 * Parses a PEM CSR and verifies its self-signature (proof of possession of
 * the key). Only ECDSA P-256 keys are accepted: that is what the mesh issues,
 * and it keeps every leaf's strength equal to the root's.
 */
export async function readCsr(csrPem: string, opts: ReadCsrOptions = {}): Promise<CsrInfo> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new InvalidCsrError('the csr is not a valid pem pkcs#10 request; send the pem text of a certificate request', { cause: err });
  }
  const keyType = opts.allowRsa === true ? rsaKeyType(csr.publicKey.rawData) : undefined;
  const alg = csr.publicKey.algorithm as Partial<webcrypto.EcKeyAlgorithm>;
  if (keyType === undefined && (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256')) {
    const wanted = opts.allowRsa === true ? `generate an ecdsa p-256 key or an rsa key of at least ${MIN_RSA_BITS} bits` : 'generate an ecdsa p-256 key';
    throw new InvalidCsrError(`the csr key is ${alg.name ?? 'unknown'} ${alg.namedCurve ?? ''}`.trimEnd() + `; ${wanted}`);
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch (err) {
    throw new InvalidCsrError('the csr signature could not be checked; regenerate the request', { cause: err });
  }
  if (!ok) throw new InvalidCsrError('the csr signature does not verify; the request was altered or signed with another key');
  const uris: string[] = [];
  const otherSans: string[] = [];
  for (const ext of csr.extensions) {
    if (!(ext instanceof x509.SubjectAlternativeNameExtension)) continue;
    for (const n of ext.names.items) {
      if (n.type === 'url') uris.push(n.value);
      else otherSans.push(`${n.type}:${n.value}`);
    }
  }
  return { publicKeySpki: csr.publicKey.rawData, uris, otherSans, keyType: keyType ?? 'ec-p256' };
}

/** `rsa-<bits>` for an RSA key of acceptable size; undefined for a non-RSA key; throws for a short RSA key. */
function rsaKeyType(spki: ArrayBuffer): string | undefined {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch {
    return undefined;
  }
  if (key.asymmetricKeyType !== 'rsa') return undefined;
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) {
    throw new InvalidCsrError(`the csr key is rsa with ${bits} bits; use at least ${MIN_RSA_BITS} bits or an ecdsa p-256 key`);
  }
  return `rsa-${bits}`;
}

export interface RootCertificate {
  readonly certPem: string;
  readonly privateKeyPem: string;
}

/**
 * A self-signed ECDSA P-256 root: CA:true critical, keyCertSign|cRLSign
 * critical, subject O=<org> (plus CN=<commonName> when given: roots made for
 * a rotation get a distinct subject so chain building never confuses them).
 */
export async function createRootCertificate(opts: { organization: string; commonName?: string; notBefore: Date; notAfter: Date }): Promise<RootCertificate> {
  const key = await generateWorkloadKey();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: opts.commonName !== undefined ? [{ O: [opts.organization] }, { CN: [opts.commonName] }] : [{ O: [opts.organization] }],
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    keys: key.keyPair,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(key.keyPair.publicKey),
    ],
  });
  return { certPem: pem(cert.toString('pem')), privateKeyPem: key.privateKeyPem };
}

/** Imports a PKCS#8 (or SEC1) PEM ECDSA P-256 private key as a WebCrypto signing key. */
export async function importSigningKey(privateKeyPem: string): Promise<CryptoKey> {
  const key = createPrivateKey(privateKeyPem);
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error(`the ca key is ${key.asymmetricKeyType ?? 'unknown'} ${key.asymmetricKeyDetails?.namedCurve ?? ''}, not ecdsa p-256`);
  }
  const der = key.export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, EC_P256, false, ['sign']);
}

export interface LeafParams {
  readonly issuerCertPem: string;
  readonly issuerKey: CryptoKey;
  readonly publicKeySpki: ArrayBuffer;
  readonly uri: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * A workload leaf: empty subject and a critical URI SAN (as Istio issues),
 * CA:false critical, digitalSignature|keyEncipherment critical, serverAuth +
 * clientAuth (the same cert serves both ends of HBONE mTLS), an authority key
 * identifier pointing at the issuer, and a random 128-bit serial.
 */
export async function issueLeafCertificate(p: LeafParams): Promise<string> {
  const issuer = new x509.X509Certificate(p.issuerCertPem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    issuer: issuer.subjectName,
    notBefore: p.notBefore,
    notAfter: p.notAfter,
    publicKey: p.publicKeySpki,
    signingKey: p.issuerKey,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: p.uri }], true),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.publicKey),
    ],
  });
  return pem(cert.toString('pem'));
}

/**
 * A cross-certificate: the subject root's name and public key, signed by
 * another root (CA:true, keyCertSign). A client that trusts only the issuer
 * root verifies leaves of the subject root through it; a client that trusts
 * the subject root finds that root itself first. Used so a control plane
 * serving a certificate from a new root stays trusted by agents started with
 * only the old root.
 */
export async function crossSignRoot(p: { subjectCertPem: string; issuerCertPem: string; issuerKey: CryptoKey; notBefore: Date; notAfter: Date }): Promise<string> {
  const subject = new x509.X509Certificate(p.subjectCertPem);
  const issuer = new x509.X509Certificate(p.issuerCertPem);
  const publicKey = subject.publicKey;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: subject.subjectName,
    issuer: issuer.subjectName,
    notBefore: p.notBefore,
    notAfter: p.notAfter,
    publicKey,
    signingKey: p.issuerKey,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.publicKey),
    ],
  });
  return pem(cert.toString('pem'));
}

/**
 * 16 random bytes. RFC 5280 wants serials positive and unique per CA; with
 * 128 random bits collisions are negligible, and the encoder adds a leading
 * zero byte when the top bit is set so the integer stays positive.
 */
function randomSerialHex(): string {
  return randomBytes(16).toString('hex');
}

/** PEM blocks are concatenated into chains, so each must end with a newline. */
function pem(text: string): string {
  const t = text.replace(/\r\n/g, '\n');
  return t.endsWith('\n') ? t : `${t}\n`;
}
