/**
 * CNI node agent errors (the ZDS server side). Stable codes; messages are
 * lowercase and say what to check. The ZDS server reports most of them in
 * events and delivery results rather than throwing: one misbehaving agent
 * connection must not affect the others.
 */
import { AmbitError } from '../common/errors.js';

export class CniError extends AmbitError {}

/** A connecting agent did not send a valid ZdsHello{version=V1} in time; the connection is dropped. */
export class CniHelloError extends CniError {
  constructor(
    readonly connectionId: number,
    readonly reason: string,
  ) {
    super('AMBIT_ERR_CNI_HELLO', `zds agent connection ${connectionId} dropped: ${reason}; is the agent speaking zds v1?`);
  }
}

/** The agent did not acknowledge a message within the deadline; the connection is dropped. */
export class CniAckTimeoutError extends CniError {
  constructor(
    readonly connectionId: number,
    readonly request: string,
    readonly timeoutMs: number,
  ) {
    super('AMBIT_ERR_CNI_ACK_TIMEOUT', `zds agent connection ${connectionId} did not ack ${request} within ${timeoutMs} ms; the connection is dropped and the agent must reconnect`);
  }
}

/** The agent rejected a message (Ack with a non-empty error). Counted and reported; the connection stays. */
export class CniNackError extends CniError {
  constructor(
    readonly connectionId: number,
    readonly request: string,
    readonly agentError: string,
  ) {
    super('AMBIT_ERR_CNI_NACK', `zds agent connection ${connectionId} rejected ${request}: ${agentError}`);
  }
}

/** The agent sent something other than one Ack per message (unsolicited, undecodable, truncated or with fds). */
export class CniProtocolError extends CniError {
  constructor(
    readonly connectionId: number,
    readonly reason: string,
  ) {
    super('AMBIT_ERR_CNI_PROTOCOL', `zds agent connection ${connectionId} dropped: ${reason}; the agent must reconnect`);
  }
}

/** A pod's network namespace could not be opened (the pod may be gone). */
export class CniNetnsOpenError extends CniError {
  constructor(
    readonly uid: string,
    readonly netnsPath: string,
    options?: { cause?: unknown },
  ) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super('AMBIT_ERR_CNI_NETNS_OPEN', `cannot open the network namespace of pod '${uid}' at ${netnsPath}${why}; does the pod still exist?`, options);
  }
}

/** The ZDS server was used after close(), or listen() was called twice. */
export class CniServerClosedError extends CniError {
  constructor(what: string) {
    super('AMBIT_ERR_CNI_SERVER_CLOSED', `zds server ${what}; create a new ZdsServer`);
  }
}

/** The plugin could not be added to (or removed from) the node's CNI configuration. */
export class CniConfigInstallError extends CniError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_CNI_CONFIG_INSTALL', `cannot install ambit-cni into the CNI configuration: ${reason}`, options);
  }
}
