/**
 * gRPC server TLS credentials whose certificate can be replaced while the
 * server runs: the control plane re-issues its serving certificate when the
 * mesh root changes (root rotation) without dropping agents' connections.
 * New handshakes get the new certificate; established connections keep theirs.
 *
 * grpc-js servers watch their credentials (server-credentials.ts watchers call
 * setSecureContext on the listening http2 server), which is what
 * updateSecureContextOptions drives.
 */
import * as grpc from '@grpc/grpc-js';

export interface ServingIdentity {
  /** Leaf first, then any intermediate or cross-certificates, concatenated PEM. */
  readonly certChainPem: string;
  readonly privateKeyPem: string;
}

export class RotatableServerCredentials extends grpc.ServerCredentials {
  constructor(initial: ServingIdentity) {
    super({ requestCert: false }, contextOf(initial));
  }

  /** Serves `next` to new handshakes from now on. */
  update(next: ServingIdentity): void {
    this.updateSecureContextOptions(contextOf(next));
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

function contextOf(id: ServingIdentity): { cert: Buffer; key: Buffer } {
  return { cert: Buffer.from(id.certChainPem), key: Buffer.from(id.privateKeyPem) };
}
