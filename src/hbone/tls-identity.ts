/**
 * The certificate material an HBONE endpoint presents and the mesh roots it
 * trusts. A narrow shape so HBONE does not depend on where certificates come
 * from (the local CA today, the Istio CA API later).
 */
import { X509Certificate } from 'node:crypto';
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

/** setTimeout fires at once for longer delays; an expiry further away is checked on use instead. */
export const MAX_EXPIRY_TIMER_MS = 2 ** 31 - 1;

/**
 * When an HBONE connection stops being usable for new streams: the earlier of
 * our leaf's and the peer's leaf's notAfter (ms since the epoch). A TLS
 * session is never re-checked by TLS itself, so without this a connection
 * opened before a certificate expired would keep carrying new tunnels after
 * it (the CA-outage case: expiry must fail closed for new connections).
 */
export function connectionValidUntil(local: TlsIdentity, peer: X509Certificate | undefined): number | undefined {
  const times: number[] = [];
  const leaf = local.certChainPem[0];
  if (leaf !== undefined) times.push(Date.parse(new X509Certificate(leaf).validTo));
  if (peer) times.push(Date.parse(peer.validTo));
  const finite = times.filter((t) => Number.isFinite(t));
  return finite.length > 0 ? Math.min(...finite) : undefined;
}
