/** Agent errors: stable codes, lowercase actionable messages. */
import { AmbitError } from '../common/errors.js';

export class AgentError extends AmbitError {}

export class UnknownSourceWorkloadError extends AgentError {
  constructor(readonly address: string) {
    super('AMBIT_ERR_AGENT_UNKNOWN_SOURCE', `no local workload has address ${address}; is the pod enrolled on this node?`);
  }
}

export class NoHealthyUpstreamError extends AgentError {
  constructor(readonly service: string) {
    super('AMBIT_ERR_AGENT_NO_HEALTHY_UPSTREAM', `service ${service} has no endpoint for this port; check the service selector and pod labels`);
  }
}

export class UnresolvableHostError extends AgentError {
  constructor(readonly host: string) {
    super('AMBIT_ERR_AGENT_UNRESOLVABLE_HOST', `'${host}' is not a known service or workload name; use a cluster ip, pod ip or <svc>.<ns>.svc.<domain>`);
  }
}

export class AgentStartError extends AgentError {
  constructor(what: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('AMBIT_ERR_AGENT_START', `agent could not start ${what}: ${why}`, { cause });
  }
}
