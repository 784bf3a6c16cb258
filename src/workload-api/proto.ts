/**
 * Loads proto/istio/workload/workload.proto and
 * proto/istio/security/authorization.proto with protobufjs once per process
 * (the .proto files are the source of truth for field numbers). The proto
 * directory is found relative to this module, as dist/src/workload-api/ ->
 * <repo>/proto, like the other non-TS assets of the repo.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { WorkloadApiProtoError } from './errors.js';

export const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));
export const WORKLOAD_PROTO = 'istio/workload/workload.proto';
export const AUTHORIZATION_PROTO = 'istio/security/authorization.proto';

export interface WorkloadApiTypes {
  readonly root: protobuf.Root;
  readonly Address: protobuf.Type;
  readonly Workload: protobuf.Type;
  readonly Service: protobuf.Type;
  readonly Authorization: protobuf.Type;
}

let cached: WorkloadApiTypes | undefined;

/** The loaded types; throws WorkloadApiProtoError if the .proto files are missing or invalid (an install problem). */
export function workloadApiTypes(protoDir: string = PROTO_DIR): WorkloadApiTypes {
  if (cached && protoDir === PROTO_DIR) return cached;
  try {
    const root = new protobuf.Root();
    root.resolvePath = (_origin: string, target: string) => (path.isAbsolute(target) ? target : path.join(protoDir, target));
    root.loadSync([WORKLOAD_PROTO, AUTHORIZATION_PROTO], { keepCase: false });
    root.resolveAll();
    const types: WorkloadApiTypes = {
      root,
      Address: root.lookupType('istio.workload.Address'),
      Workload: root.lookupType('istio.workload.Workload'),
      Service: root.lookupType('istio.workload.Service'),
      Authorization: root.lookupType('istio.security.Authorization'),
    };
    if (protoDir === PROTO_DIR) cached = types;
    return types;
  } catch (err) {
    throw new WorkloadApiProtoError(protoDir, { cause: err });
  }
}
