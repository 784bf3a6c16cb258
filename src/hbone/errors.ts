/**
 * HBONE errors. Stable codes; messages are lowercase and say what to check.
 * Expected failures (a refused CONNECT, a mismatched identity) are thrown or
 * returned as these types so callers can map them to response flags.
 */
import { AmbitError } from '../common/errors.js';

export class HboneError extends AmbitError {}

export class HboneConnectTimeoutError extends HboneError {
  constructor(readonly address: string, timeoutMs: number) {
    super('AMBIT_ERR_HBONE_CONNECT_TIMEOUT', `hbone connect to ${address} timed out after ${timeoutMs}ms; is a NetworkPolicy blocking port 15008?`);
  }
}

export class HboneConnectError extends HboneError {
  constructor(readonly address: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('AMBIT_ERR_HBONE_CONNECT_FAILED', `hbone connect to ${address} failed: ${why}; is the destination agent running and listening on 15008?`, { cause });
  }
}

export class HboneTlsError extends HboneError {
  constructor(readonly address: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('AMBIT_ERR_HBONE_TLS_HANDSHAKE', `hbone tls handshake with ${address} failed: ${why}; do both sides share the mesh root and trust domain?`, { cause });
  }
}

export class HboneIdentityMismatchError extends HboneError {
  constructor(readonly address: string, readonly presented: readonly string[], readonly expected: readonly string[]) {
    super(
      'AMBIT_ERR_HBONE_IDENTITY_MISMATCH',
      `hbone peer ${address} presented identity [${presented.join(', ') || 'none'}], expected one of [${expected.join(', ')}]; the destination is not the workload it claims to be`,
    );
  }
}

export class HboneAlpnError extends HboneError {
  constructor(readonly address: string, alpn: string | false | null) {
    super('AMBIT_ERR_HBONE_ALPN', `hbone peer ${address} negotiated alpn '${alpn || 'none'}' instead of 'h2'; is port 15008 an hbone endpoint?`);
  }
}

/** The server answered the CONNECT with something other than 200. */
export class HboneStatusError extends HboneError {
  constructor(readonly status: number, readonly authority: string) {
    const hint = status === 401 ? 'denied by authorization policy' : status === 503 ? 'the destination has no such target or could not connect to it' : status === 400 ? 'the request was malformed' : 'unexpected status';
    super('AMBIT_ERR_HBONE_STATUS', `hbone connect to ${authority} answered ${status}: ${hint}`);
  }
}

export class HboneStreamResetError extends HboneError {
  constructor(readonly authority: string, readonly rstCode: number) {
    super('AMBIT_ERR_HBONE_STREAM_RESET', `hbone stream to ${authority} was reset (http2 error code ${rstCode})`);
  }
}

export class HbonePingTimeoutError extends HboneError {
  constructor(readonly address: string, timeoutMs: number) {
    super('AMBIT_ERR_HBONE_PING_TIMEOUT', `hbone ping to ${address} got no answer within ${timeoutMs}ms; the connection was dropped`);
  }
}

export class HboneConnectionClosedError extends HboneError {
  /** `unsent`: the CONNECT never left this side, so trying another connection is safe. */
  constructor(readonly address: string, reason: string, readonly unsent = false) {
    super('AMBIT_ERR_HBONE_CONNECTION_CLOSED', `hbone connection to ${address} closed: ${reason}`);
  }
}

export class HbonePoolClosedError extends HboneError {
  constructor() {
    super('AMBIT_ERR_HBONE_POOL_CLOSED', 'hbone pool is closed; no new tunnels can be opened');
  }
}

/** A certificate on the connection (ours or the peer's) is past its notAfter: no new tunnel is opened (fail closed). */
export class HboneCertificateExpiredError extends HboneError {
  constructor(readonly address: string, whose: 'our' | 'the peer', validUntil: number) {
    super(
      'AMBIT_ERR_HBONE_CERT_EXPIRED',
      `hbone connect to ${address} refused: ${whose} certificate expired at ${new Date(validUntil).toISOString()}; is the ca reachable to renew it?`,
    );
  }
}
