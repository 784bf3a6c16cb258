/**
 * The certificate material an HBONE endpoint presents and the mesh roots it
 * trusts. A narrow shape so HBONE does not depend on where certificates come
 * from (the local CA today, the Istio CA API later).
 */
import type { X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { parseSpiffeId, spiffeUrisOf } from '../identity/spiffe.js';
import { TLS13_CIPHERSUITES } from './settings.js';

export interface TlsIdentity {
  /** Our SPIFFE id, e.g. spiffe://cluster.local/ns/default/sa/client. */
  readonly identity: string;
  readonly privateKeyPem: string;
  /** Leaf first, then intermediates. */
  readonly certChainPem: readonly string[];
  readonly rootsPem: readonly string[];
}

/** Builds a TLS 1.3-only context with our chain and the mesh roots. */
export function secureContextFor(id: TlsIdentity): SecureContext {
  return createSecureContext({
    key: id.privateKeyPem,
    cert: id.certChainPem.join('\n'),
    ca: [...id.rootsPem],
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ciphers: TLS13_CIPHERSUITES,
  });
}

export function trustDomainOf(identity: string): string {
  return parseSpiffeId(identity).trustDomain;
}

/** SPIFFE URIs in a peer certificate; empty when there is none. */
export function peerIdentities(cert: X509Certificate | undefined): string[] {
  if (!cert) return [];
  return spiffeUrisOf(cert);
}
