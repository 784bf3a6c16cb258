/**
 * Waypoint errors. Stable codes; messages are lowercase and say what to fix.
 * Bad config is refused at load time (WaypointConfigError names the field);
 * request-time failures are values (see error-table.ts), not exceptions.
 */
import { AmbitError } from '../common/errors.js';

export class WaypointError extends AmbitError {}

/** The L7 config failed validation; `field` is a path like `services[0].routes[1].retries.attempts`. */
export class WaypointConfigError extends WaypointError {
  constructor(readonly field: string, problem: string) {
    super('AMBIT_ERR_WAYPOINT_CONFIG_INVALID', `waypoint config field ${field} ${problem}`);
  }
}

/** A JWKS (file or URL) could not be loaded or parsed. */
export class WaypointJwksError extends WaypointError {
  constructor(readonly source: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('AMBIT_ERR_WAYPOINT_JWKS', `cannot load jwks from ${source}: ${why}; check the jwksUri/jwksFile of the request authentication`, { cause });
  }
}

/** An upstream attempt failed before a response arrived (connect failure, reset, timeout). */
export class WaypointUpstreamError extends WaypointError {
  constructor(readonly kind: 'connect_failure' | 'reset' | 'refused_stream' | 'timeout', endpoint: string, cause?: unknown) {
    const why = cause instanceof Error ? `: ${cause.message}` : '';
    super('AMBIT_ERR_WAYPOINT_UPSTREAM', `upstream ${endpoint} ${kind.replace('_', ' ')}${why}; is the backend up and speaking the configured protocol?`, cause === undefined ? undefined : { cause });
  }
}
