/** Agent errors: stable codes, lowercase actionable messages. */
import { AmbitError } from '../common/errors.js';

export class AgentError extends AmbitError {}

export class NoHealthyUpstreamError extends AgentError {
  constructor(
    readonly service: string,
    readonly known = 0,
  ) {
    super(
      'AMBIT_ERR_AGENT_NO_HEALTHY_UPSTREAM',
      known === 0
        ? `service ${service} has no endpoint for this port; check the service selector and pod labels`
        : `service ${service} has ${known} endpoint(s) for this port but none is eligible (unhealthy, zero capacity or outside the strict locality preference)`,
    );
  }
}

export class UnresolvableHostError extends AgentError {
  constructor(readonly host: string) {
    super('AMBIT_ERR_AGENT_UNRESOLVABLE_HOST', `'${host}' is not a known service or workload name; use a cluster ip, pod ip or <svc>.<ns>.svc.<domain>`);
  }
}

export class WaypointUnavailableError extends AgentError {
  constructor(
    readonly waypoint: string,
    readonly known = 0,
  ) {
    super(
      'AMBIT_ERR_AGENT_WAYPOINT_UNAVAILABLE',
      known === 0
        ? `waypoint ${waypoint} has no ready endpoints; check that its pods run and are selected by its service`
        : `waypoint ${waypoint} has no ready endpoints (${known} known, none healthy); check the waypoint pods' readiness`,
    );
  }
}
