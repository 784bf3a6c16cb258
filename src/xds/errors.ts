/**
 * Delta xDS transport errors (src/xds). Stable codes; messages are lowercase
 * and say what to check. Stream failures, NACKs and rejected resources are
 * reported as values (events, handler results, gRPC statuses) rather than
 * thrown: one bad peer or resource never takes down the server or client.
 */
import { AmbitError } from '../common/errors.js';

export class XdsError extends AmbitError {}

/** The .proto files under <repo>/proto could not be loaded (missing or broken install). */
export class XdsProtoLoadError extends XdsError {
  constructor(dir: string, options?: { cause?: unknown }) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super('AMBIT_ERR_XDS_PROTO_LOAD', `cannot load the xds .proto files from ${dir}${why}; is the proto/ directory installed next to dist/?`, options);
  }
}

/** A Node id is not `<role>~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>`. */
export class XdsInvalidNodeIdError extends XdsError {
  constructor(
    readonly nodeId: string,
    readonly reason: string,
  ) {
    super('AMBIT_ERR_XDS_INVALID_NODE_ID', `invalid xds node id '${nodeId}': ${reason}; expected <role>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`);
  }
}

/** A type URL is not one this server serves (or, on the client, one no handler is registered for). */
export class XdsUnknownTypeError extends XdsError {
  constructor(readonly typeUrl: string) {
    super('AMBIT_ERR_XDS_UNKNOWN_TYPE', `xds type url '${typeUrl}' is not served here; check the subscribed type urls`);
  }
}

/** The peer rejected a response (a NACK: a request with response_nonce and error_detail). */
export class XdsNackError extends XdsError {
  constructor(
    readonly nodeId: string,
    readonly typeUrl: string,
    readonly nonce: string,
    readonly detail: string,
  ) {
    super('AMBIT_ERR_XDS_NACK', `xds client '${nodeId}' rejected ${typeUrl} (nonce ${nonce}): ${detail}`);
  }
}

/** A resource in a response cannot be applied (empty name, wrong Any type, duplicate, handler threw). */
export class XdsInvalidResourceError extends XdsError {
  constructor(
    readonly typeUrl: string,
    readonly resourceName: string,
    readonly reason: string,
  ) {
    super('AMBIT_ERR_XDS_INVALID_RESOURCE', `xds resource '${resourceName}' of ${typeUrl} rejected: ${reason}`);
  }
}

/** The stream to the control plane ended or failed; the client reconnects with backoff. */
export class XdsStreamError extends XdsError {
  constructor(
    readonly address: string,
    readonly grpcCode: number | undefined,
    readonly details: string,
  ) {
    super('AMBIT_ERR_XDS_STREAM', `xds stream to ${address} ended (grpc status ${grpcCode ?? 'none'}: ${details}); reconnecting with backoff`);
  }
}

/** The authenticate hook refused a stream (missing or bad bearer token). */
export class XdsUnauthenticatedError extends XdsError {
  constructor(
    readonly peer: string,
    readonly reason: string,
  ) {
    super('AMBIT_ERR_XDS_UNAUTHENTICATED', `xds stream from ${peer} refused: ${reason}; does the client send 'authorization: Bearer <token>'?`);
  }
}

/** The client or server was used after close(). */
export class XdsClosedError extends XdsError {
  constructor(what: string) {
    super('AMBIT_ERR_XDS_CLOSED', `xds ${what} is closed; create a new one`);
  }
}
