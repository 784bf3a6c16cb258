/**
 * Inbound L4 authorization in the agent: decides each inbound connection
 * (HBONE with the peer certificate's identity, plaintext on 15006 with
 * none) against the policies in scope for the destination workload, and
 * re-evaluates open connections when the policies change, closing the ones
 * that are now denied ("connection closed due to policy change", as
 * ztunnel logs it). Dry-run policies are logged, never enforced.
 */
import { isIPv4 } from 'node:net';
import type { Logger } from '../common/logger.js';
import { authorize, type AuthzConnection, type AuthzDecision } from '../authz/evaluate.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { LocalWorkload } from '../state/local-config.js';
import { ipToBytes } from '../workload-api/ip.js';

export interface InboundAttributes {
  readonly srcIp: string;
  readonly dstIp: string;
  readonly dstPort: number;
  /** The peer's SPIFFE id (HBONE); undefined for plaintext. */
  readonly peerIdentity?: string;
}

interface Tracked {
  readonly uid: string;
  readonly attrs: InboundAttributes;
  readonly close: (reason: string) => void;
  readonly describe: string;
}

function bytes(ip: string): Uint8Array {
  const plain = ip.replace(/^::ffff:/, '');
  return ipToBytes(isIPv4(plain) ? plain : ip) ?? new Uint8Array(0);
}

export function toAuthzConnection(a: InboundAttributes): AuthzConnection {
  let srcIdentity: AuthzConnection['srcIdentity'];
  if (a.peerIdentity) {
    try {
      const id = parseSpiffeId(a.peerIdentity);
      srcIdentity = { trustDomain: id.trustDomain, namespace: id.namespace, serviceAccount: id.serviceAccount };
    } catch {
      srcIdentity = undefined;
    }
  }
  return { srcIp: bytes(a.srcIp), dstIp: bytes(a.dstIp), dstPort: a.dstPort, ...(srcIdentity ? { srcIdentity } : {}) };
}

export class InboundAuthz {
  readonly #state: () => ClusterState;
  readonly #log: Logger;
  readonly #open = new Set<Tracked>();

  constructor(state: () => ClusterState, logger: Logger) {
    this.#state = state;
    this.#log = logger.child({ component: 'authz' });
  }

  check(w: LocalWorkload, a: InboundAttributes): AuthzDecision {
    const policies = this.#state().policiesFor(w);
    if (policies.length === 0) return { allowed: true, reason: 'no policy applies', dryRun: [] };
    const d = authorize(policies, toAuthzConnection(a));
    for (const r of d.dryRun) {
      this.#log.info({ policy: r.policy, action: r.action, matched: r.matched, src: a.srcIp, peer: a.peerIdentity, dst: `${a.dstIp}:${a.dstPort}` }, `dry-run policy ${r.matched ? 'would apply' : 'did not match'}`);
    }
    if (!d.allowed) this.#log.info({ reason: d.reason, src: a.srcIp, peer: a.peerIdentity ?? '(plaintext)', dst: `${a.dstIp}:${a.dstPort}`, workload: `${w.namespace}/${w.name}` }, 'connection denied by policy');
    return d;
  }

  /** Registers an open, allowed connection; the returned function unregisters it. */
  track(w: LocalWorkload, attrs: InboundAttributes, close: (reason: string) => void): () => void {
    const t: Tracked = { uid: w.uid, attrs, close, describe: `${attrs.peerIdentity ?? attrs.srcIp} -> ${w.namespace}/${w.name}:${attrs.dstPort}` };
    this.#open.add(t);
    return () => this.#open.delete(t);
  }

  get openConnections(): number {
    return this.#open.size;
  }

  /** After a policy or workload change: closes the open connections that are now denied. */
  reevaluate(): number {
    const state = this.#state();
    let closed = 0;
    for (const t of [...this.#open]) {
      const w = state.workloadByUid(t.uid);
      if (!w) continue;
      const d = authorize(state.policiesFor(w), toAuthzConnection(t.attrs));
      if (d.allowed) continue;
      this.#open.delete(t);
      closed++;
      this.#log.warn({ connection: t.describe, reason: d.reason }, 'connection closed due to policy change');
      t.close(d.reason);
    }
    return closed;
  }
}
