/**
 * Lab errors. Bad manifests and flags are ConfigError (exit 64); these are
 * the runtime failures of building or tearing down the namespaces.
 */
import { AmbitError } from '../common/errors.js';

export class LabError extends AmbitError {}

/** `lab up` for a name whose state already exists (or whose netns are still there). */
export class LabExistsError extends LabError {
  constructor(message: string) {
    super('AMBIT_ERR_LAB_EXISTS', message);
  }
}

/** `lab status/exec` for a lab, pod or node that is not up. */
export class LabNotFoundError extends LabError {
  constructor(message: string) {
    super('AMBIT_ERR_LAB_NOT_FOUND', message);
  }
}

/** An `ip`/`sysctl` invocation failed; the message carries its stderr. */
export class LabCommandError extends LabError {
  readonly argv: readonly string[];
  readonly exitCode: number | null;
  readonly stderr: string;

  constructor(argv: readonly string[], exitCode: number | null, stderr: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_LAB_COMMAND_FAILED', `'${argv.join(' ')}' failed (exit ${exitCode ?? 'signal'}): ${stderr.trim() || 'no output'}`, options);
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** An agent exited before it became ready, or did not become ready in time. */
export class LabAgentError extends LabError {
  readonly node: string;
  readonly logTail: string;

  constructor(node: string, message: string, logTail: string) {
    super('AMBIT_ERR_LAB_AGENT_FAILED', `${message}\n--- last lines of the agent log ---\n${logTail || '(empty)'}`);
    this.node = node;
    this.logTail = logTail;
  }
}

/** A waypoint process exited before it was ready, or did not become ready in time. */
export class LabWaypointError extends LabError {
  /** `<namespace>/<pod>` of the waypoint pod. */
  readonly pod: string;
  readonly logTail: string;

  constructor(pod: string, message: string, logTail: string) {
    super('AMBIT_ERR_LAB_WAYPOINT_FAILED', `${message}\n--- last lines of the waypoint log ---\n${logTail || '(empty)'}`);
    this.pod = pod;
    this.logTail = logTail;
  }
}

/** The host already routes one of the lab ranges somewhere real; the lab refuses to replace it. */
export class LabRouteConflictError extends LabError {
  constructor(message: string) {
    super('AMBIT_ERR_LAB_ROUTE_CONFLICT', message);
  }
}

/** Not running as root (network namespaces and /etc/netns need it). */
export class LabPrivilegeError extends LabError {
  constructor(message: string) {
    super('AMBIT_ERR_LAB_NOT_PRIVILEGED', message);
  }
}

/** `down` could not remove everything; the record is kept so running it again retries. */
export class LabTeardownError extends LabError {
  readonly errors: readonly Error[];

  constructor(message: string, errors: readonly Error[]) {
    super('AMBIT_ERR_LAB_TEARDOWN_INCOMPLETE', message, { cause: errors[0] });
    this.errors = errors;
  }
}
