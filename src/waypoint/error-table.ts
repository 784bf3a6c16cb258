/**
 * The single table from a local outcome to what the client sees: HTTP
 * status, gRPC status (for gRPC requests, sent as a trailers-only response
 * with HTTP 200), Envoy response flag and body. Every locally generated
 * response goes through `localReply`, so no phase invents its own status.
 */
export type LocalOutcome =
  | 'authn_failed'
  | 'authz_denied'
  | 'no_route'
  | 'no_cluster'
  | 'no_healthy_upstream'
  | 'overflow'
  | 'connect_failure'
  | 'upstream_reset'
  | 'refused_stream'
  | 'timeout'
  | 'per_try_timeout'
  | 'body_too_large'
  | 'bad_request';

export interface LocalReply { readonly status: number; readonly grpcStatus: number; readonly flag: string; readonly body: string }

export const ERROR_TABLE: Readonly<Record<LocalOutcome, LocalReply>> = Object.freeze({
  authn_failed: { status: 401, grpcStatus: 16, flag: 'UAEX', body: 'Jwt verification fails' },
  authz_denied: { status: 403, grpcStatus: 7, flag: 'RBAC', body: 'RBAC: access denied' },
  no_route: { status: 404, grpcStatus: 12, flag: 'NR', body: 'no route for this request' },
  no_cluster: { status: 503, grpcStatus: 14, flag: 'NC', body: 'no cluster for this route' },
  no_healthy_upstream: { status: 503, grpcStatus: 14, flag: 'UH', body: 'no healthy upstream' },
  overflow: { status: 503, grpcStatus: 14, flag: 'UO', body: 'upstream connect error or disconnect/reset before headers. reset reason: overflow' },
  connect_failure: { status: 503, grpcStatus: 14, flag: 'UF', body: 'upstream connect error or disconnect/reset before headers. reset reason: connection failure' },
  upstream_reset: { status: 502, grpcStatus: 14, flag: 'UR', body: 'upstream connect error or disconnect/reset before headers. reset reason: remote reset' },
  refused_stream: { status: 503, grpcStatus: 14, flag: 'UR', body: 'upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset' },
  timeout: { status: 504, grpcStatus: 4, flag: 'UT', body: 'upstream request timeout' },
  per_try_timeout: { status: 504, grpcStatus: 4, flag: 'UT', body: 'upstream request timeout' },
  body_too_large: { status: 413, grpcStatus: 8, flag: 'DPE', body: 'request body too large' },
  bad_request: { status: 400, grpcStatus: 13, flag: 'DPE', body: 'bad request' },
});

export function localReply(outcome: LocalOutcome): LocalReply {
  return ERROR_TABLE[outcome];
}

/** HTTP status → gRPC status for a non-gRPC upstream answer to a gRPC client (gRPC spec mapping). */
export function httpToGrpcStatus(status: number): number {
  switch (status) {
    case 400: return 13;
    case 401: return 16;
    case 403: return 7;
    case 404: return 12;
    case 429: case 502: case 503: case 504: return 14;
    default: return 2;
  }
}
