/**
 * Workload API errors. Decoding never throws (a bad resource is a value the
 * agent NACKs); these are for install problems and programming errors.
 */
import { AmbitError } from '../common/errors.js';

export class WorkloadApiError extends AmbitError {}

/** proto/istio/... could not be loaded: the install is incomplete. */
export class WorkloadApiProtoError extends WorkloadApiError {
  constructor(protoDir: string, options?: { cause?: unknown }) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super('AMBIT_ERR_WORKLOAD_API_PROTO', `cannot load the workload api .proto files from ${protoDir}${why}; is the install complete?`, options);
  }
}

/** encodeAddress/encodeAuthorization was given a value the agent would reject (a bug in the producer). */
export class WorkloadApiEncodeError extends WorkloadApiError {
  constructor(readonly reason: string) {
    super('AMBIT_ERR_WORKLOAD_API_ENCODE', `refusing to encode an invalid resource: ${reason}`);
  }
}
