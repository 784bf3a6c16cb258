/**
 * ZDS errors (the node agent ↔ in-pod proxy protocol). Stable codes; messages
 * are lowercase and say what to check. The session reports them in
 * `protocol_error` actions; nothing in src/zds throws them on bad input.
 */
import { AmbitError } from '../common/errors.js';

export class ZdsError extends AmbitError {}

/** A datagram is not a valid message: truncated, malformed protobuf, too large, or no payload. */
export class ZdsDecodeError extends ZdsError {
  constructor(readonly reason: string) {
    super('AMBIT_ERR_ZDS_DECODE', `zds message rejected: ${reason}; is the node agent speaking zds v1?`);
  }
}

/** The fds attached to a message are wrong: not exactly one on add, any on another message, or not a netns. */
export class ZdsFdError extends ZdsError {
  constructor(readonly reason: string) {
    super('AMBIT_ERR_ZDS_FD', `zds message rejected: ${reason}; add must carry exactly one network namespace fd and nothing else may carry one`);
  }
}

/** A valid message arrived in the wrong state (before hello, keep after the snapshot, a second snapshot_sent). */
export class ZdsProtocolError extends ZdsError {
  constructor(readonly reason: string) {
    super('AMBIT_ERR_ZDS_PROTOCOL', `zds protocol violation: ${reason}; the session must be reconnected`);
  }
}

/** A message arrived after the session was closed. */
export class ZdsSessionClosedError extends ZdsError {
  constructor() {
    super('AMBIT_ERR_ZDS_SESSION_CLOSED', 'zds session is closed; open a new connection and session');
  }
}
