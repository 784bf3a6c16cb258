/**
 * A workload's key and certificate chain, in exactly the form
 * `tls.createSecureContext({key: privateKeyPem, cert: certChainPem.join(''), ca: rootsPem})`
 * takes. Built only after checking what the certificate source returned, so
 * the data plane never presents a certificate for the wrong identity or key.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { SignResponse } from './certificate-source.js';
import { InvalidCertificateError } from './errors.js';
import { spiffeUrisOf, type SpiffeId } from './spiffe.js';

export interface WorkloadCertificate {
  readonly identity: SpiffeId;
  /** PKCS#8 PEM of the key generated for this certificate (a new key on every renewal). */
  readonly privateKeyPem: string;
  /** Leaf first, then intermediates; each PEM ends with a newline. */
  readonly certChainPem: string[];
  readonly rootsPem: string[];
  /** Validity of the leaf, ms since the epoch (whole seconds, as in the certificate). */
  readonly notBefore: number;
  readonly notAfter: number;
  /** The leaf's serial number, uppercase hex as node:crypto prints it. */
  readonly serialNumber: string;
}

/** Checks a signing response against the identity and key it was requested for. */
export function toWorkloadCertificate(identity: SpiffeId, privateKeyPem: string, res: SignResponse, now: number): WorkloadCertificate {
  const bad = (why: string, cause?: unknown): InvalidCertificateError =>
    new InvalidCertificateError(`the certificate source returned ${why} for ${identity.toString()}; check the ca`, { cause });
  const [leafPem] = res.certChainPem;
  if (leafPem === undefined) throw bad('an empty certificate chain');
  if (res.rootsPem.length === 0) throw bad('no root certificates');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(leafPem);
  } catch (err) {
    throw bad('a leaf that is not a pem certificate', err);
  }
  const uris = spiffeUrisOf(leaf);
  if (!uris.includes(identity.toString())) throw bad(`a leaf for ${uris.join(', ') || 'no spiffe id'}`);
  if (!leaf.checkPrivateKey(createPrivateKey(privateKeyPem))) throw bad('a leaf for another key');
  const notBefore = Date.parse(leaf.validFrom);
  const notAfter = Date.parse(leaf.validTo);
  if (!(notAfter > now)) throw bad(`a leaf that expired at ${leaf.validTo}`);
  return Object.freeze({
    identity,
    privateKeyPem,
    // Frozen because one object is shared by every caller; typed mutable so it
    // can be passed straight to tls.createSecureContext({ca}).
    certChainPem: Object.freeze(res.certChainPem.map(withNewline)) as string[],
    rootsPem: Object.freeze(res.rootsPem.map(withNewline)) as string[],
    notBefore,
    notAfter,
    serialNumber: leaf.serialNumber,
  });
}

function withNewline(s: string): string {
  return s.endsWith('\n') ? s : `${s}\n`;
}
