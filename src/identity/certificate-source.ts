/**
 * Where workload certificates come from. The secret manager depends only on
 * this, so the in-process LocalCa (self-contained mode) and a future Istio CA
 * gRPC client (IstioCertificateService/CreateCertificate) are interchangeable.
 */
import type { SpiffeId } from './spiffe.js';

export interface SignRequest {
  /** PEM PKCS#10 request whose only SAN is `identity` as a URI. */
  readonly csrPem: string;
  /** The identity the caller asks for; in shared mode the CA must check it may impersonate it. */
  readonly identity: SpiffeId;
  /** Requested lifetime (IstioCertificateRequest.validity_duration). The CA may shorten it. */
  readonly ttlSeconds: number;
}

export interface SignResponse {
  /** Leaf first, then intermediates; each PEM ends with a newline. No roots. */
  readonly certChainPem: string[];
  /** Trust anchors (Istio's cert_chain puts the root last; a client moves it here). */
  readonly rootsPem: string[];
}

export interface CertificateSource {
  sign(req: SignRequest): Promise<SignResponse>;
}
