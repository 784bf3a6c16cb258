/**
 * Errors of the CA subsystem: the Istio CA gRPC client (what an agent sees
 * when asking for a certificate), the server's authenticators, and root
 * rotation. Client errors keep the gRPC status code they came from so
 * callers (and logs) can tell "retry later" from "fix the configuration".
 */
import { AmbitError } from '../common/errors.js';

/** The base of every CA error; the concrete classes below fix the code. */
export class CaError extends AmbitError {}

/** Options that name the gRPC status (if any) behind a client error. */
export interface CaErrorOptions {
  readonly cause?: unknown;
  /** The gRPC status code the CA answered with; undefined when no call was made. */
  readonly grpcCode?: number;
}

/** A client error with the gRPC status it was mapped from. */
export class CaClientError extends CaError {
  readonly grpcCode: number | undefined;
  constructor(code: string, message: string, options?: CaErrorOptions) {
    super(code, message, options);
    this.grpcCode = options?.grpcCode;
  }
}

/** The CA could not be reached or did not answer in time (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED). Retrying may help. */
export class CaUnavailableError extends CaClientError {
  constructor(message: string, options?: CaErrorOptions) {
    super('AMBIT_ERR_CA_UNAVAILABLE', message, options);
  }
}

/** The CA did not accept the caller's token (UNAUTHENTICATED). */
export class CaUnauthenticatedError extends CaClientError {
  constructor(message: string, options?: CaErrorOptions) {
    super('AMBIT_ERR_CA_UNAUTHENTICATED', message, options);
  }
}

/** The CA refused to issue the identity to this caller (PERMISSION_DENIED). */
export class CaPermissionDeniedError extends CaClientError {
  constructor(message: string, options?: CaErrorOptions) {
    super('AMBIT_ERR_CA_PERMISSION_DENIED', message, options);
  }
}

/** The CA rejected the request itself: CSR, SANs, identity, lifetime (INVALID_ARGUMENT). */
export class CaInvalidRequestError extends CaClientError {
  constructor(message: string, options?: CaErrorOptions) {
    super('AMBIT_ERR_CA_INVALID_REQUEST', message, options);
  }
}

/** Any other gRPC failure (INTERNAL, UNIMPLEMENTED, RESOURCE_EXHAUSTED, ...). */
export class CaRequestFailedError extends CaClientError {
  constructor(message: string, options?: CaErrorOptions) {
    super('AMBIT_ERR_CA_REQUEST_FAILED', message, options);
  }
}

/** The CA answered, but not with a usable chain for the requested identity. */
export class CaInvalidResponseError extends CaClientError {
  constructor(message: string, options?: CaErrorOptions) {
    super('AMBIT_ERR_CA_INVALID_RESPONSE', message, options);
  }
}

/** The client's token provider failed or returned an empty token; no call was made. */
export class CaTokenError extends CaClientError {
  constructor(message: string, options?: CaErrorOptions) {
    super('AMBIT_ERR_CA_TOKEN', message, options);
  }
}

/** The node token file of NodeTokenAuthenticator cannot be read or parsed. */
export class CaTokenFileError extends CaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_CA_TOKEN_FILE', message, options);
  }
}

/** A root rotation step out of order: activating an unknown root, retiring the active one, adding a duplicate. */
export class CaRootRotationError extends CaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_CA_ROOT_ROTATION', message, options);
  }
}

/** A rotation phase asked for before leaves issued under the previous phase have expired (forcing it may break connections). */
export class CaRotationTooEarlyError extends CaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_CA_ROTATION_TOO_EARLY', message, options);
  }
}
