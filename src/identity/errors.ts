/**
 * Errors of the identity subsystem (SPIFFE IDs, CSRs, the local CA and the
 * secret manager). One subclass per condition so callers can branch on
 * `instanceof` or on the stable `code`; messages are lowercase and say what
 * to do next.
 */
import { AmbitError } from '../common/errors.js';

/** The base of every identity error; the concrete classes below fix the code. */
export class IdentityError extends AmbitError {}

/** A string is not a `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` identity. */
export class InvalidSpiffeIdError extends IdentityError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_INVALID_SPIFFE_ID', message, options);
  }
}

/** A CSR that cannot be parsed, whose signature does not verify, or whose key is not ECDSA P-256. */
export class InvalidCsrError extends IdentityError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_INVALID_CSR', message, options);
  }
}

/** A requested certificate lifetime that is not a positive number of seconds. */
export class InvalidTtlError extends IdentityError {
  constructor(message: string) {
    super('AMBIT_ERR_IDENTITY_INVALID_TTL', message);
  }
}

/** A CSR whose subject alternative names are not exactly one URI SAN. */
export class CsrSanError extends IdentityError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_CSR_SAN', message, options);
  }
}

/** A CSR whose URI SAN is not the identity the caller asked to be signed. */
export class CsrIdentityMismatchError extends IdentityError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_CSR_MISMATCH', message, options);
  }
}

/** An identity outside the trust domain of the CA asked to sign it. */
export class TrustDomainMismatchError extends IdentityError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_TRUST_DOMAIN_MISMATCH', message, options);
  }
}

/** The local CA directory cannot be created, read, or holds an unusable root. */
export class CaStoreError extends IdentityError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_CA_STORE', message, options);
  }
}

/** A certificate source answered with something that is not a usable certificate for the identity. */
export class InvalidCertificateError extends IdentityError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_INVALID_CERTIFICATE', message, options);
  }
}

/** No valid certificate for an identity: the first request failed, or renewals failed until it expired. */
export class CertificateUnavailableError extends IdentityError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_CERT_UNAVAILABLE', message, options);
  }
}

/** The secret manager was closed; no more certificates are fetched. */
export class SecretManagerClosedError extends IdentityError {
  constructor() {
    super('AMBIT_ERR_IDENTITY_CLOSED', 'the secret manager is closed; certificates are no longer issued (the agent is shutting down)');
  }
}
