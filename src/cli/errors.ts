/**
 * Errors of the operator commands that talk to a running agent (status,
 * metrics, config-dump). The entry point prints the message and the code.
 */
import { AmbitError } from '../common/errors.js';

/** Nothing answers at the agent endpoint (refused, timed out, unreachable). */
export class AgentUnreachableError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_CLI_AGENT_UNREACHABLE', message, options);
  }
}

/** The agent answered, but not with what the command needs (status, body). */
export class AgentResponseError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_CLI_AGENT_RESPONSE', message, options);
  }
}
