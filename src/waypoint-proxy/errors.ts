/**
 * Waypoint proxy runtime errors (src/waypoint-proxy). Stable codes; lowercase
 * messages that say what to check. The L7 engine's own errors stay in
 * src/waypoint/errors.ts.
 */
import { AmbitError } from '../common/errors.js';

export class WaypointProxyError extends AmbitError {}

/** The waypoint's certificate could not be obtained from the CA (it keeps retrying). */
export class WaypointProxyCertificateError extends WaypointProxyError {
  constructor(identity: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('AMBIT_ERR_WAYPOINT_PROXY_CERTIFICATE', `cannot get a certificate for ${identity}: ${why}; check --xds-address, --token-file and that the CA knows this waypoint pod`, { cause });
  }
}

/** An upstream endpoint has no usable SPIFFE principal, so its HBONE peer cannot be verified. */
export class WaypointProxyEndpointIdentityError extends WaypointProxyError {
  constructor(endpoint: string) {
    super('AMBIT_ERR_WAYPOINT_PROXY_ENDPOINT_IDENTITY', `endpoint ${endpoint} has no principal in the l7 config; the control plane must set endpoints[].principal (or workloads[].principal) so the waypoint can verify the peer`);
  }
}

/** Reading the startup inputs (root cert, token file, pod address) failed. */
export class WaypointProxyStartupError extends WaypointProxyError {
  constructor(what: string, cause?: unknown) {
    const why = cause instanceof Error ? `: ${cause.message}` : '';
    super('AMBIT_ERR_WAYPOINT_PROXY_STARTUP', `waypoint proxy cannot start: ${what}${why}`, cause === undefined ? undefined : { cause });
  }
}
