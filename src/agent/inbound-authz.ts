/**
 * Inbound L4 authorization in the agent: decides each inbound connection
 * (HBONE with the peer certificate's identity, plaintext on 15006 with
 * none) against the policies in scope for the destination workload, and
 * re-evaluates open connections when the policies change, closing the ones
 * that are now denied ("connection closed due to policy change", as
 * ztunnel logs it). Dry-run policies are logged, never enforced.
 *
 * Before the policies: a destination that requires a waypoint (state/
 * waypoint.ts waypointRequirement) accepts only peers holding one of the
 * waypoint's identities; plaintext and other peers are denied, counted and
 * logged. This is re-evaluated with the policies when the view changes, so
 * labelling a pod with a waypoint closes its open direct connections.
 */
import { isIPv4 } from 'node:net';
import type { Logger } from '../common/logger.js';
import { authorize, type AuthzConnection, type AuthzDecision } from '../authz/evaluate.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { LocalWorkload } from '../state/local-config.js';
import { waypointRequirement } from '../state/waypoint.js';
import { ipToBytes } from '../workload-api/ip.js';
import type { WaypointMetrics } from './waypoint-metrics.js';

export interface InboundAttributes {
  readonly srcIp: string;
  readonly dstIp: string;
  readonly dstPort: number;
  /** The peer's SPIFFE id (HBONE); undefined for plaintext. */
  readonly peerIdentity?: string;
  /** The CONNECT authority host (HBONE), when it differs from dstIp (e.g. a crafted service VIP). */
  readonly authorityHost?: string;
}

/** Why this connection is refused for bypassing a waypoint; undefined when it may proceed. */
export function waypointDenial(state: ClusterState, w: LocalWorkload, a: InboundAttributes): { reason: string; waypoint: string } | undefined {
  const req = waypointRequirement(state, w, a.authorityHost);
  if (!req) return undefined;
  if (a.peerIdentity !== undefined && req.waypoint.identities.has(a.peerIdentity)) return undefined;
  const what = req.because === 'workload' ? `${w.namespace}/${w.name}` : `service ${a.authorityHost ?? ''} of ${w.namespace}/${w.name}`;
  const peer = a.peerIdentity ?? `plaintext from ${a.srcIp}`;
  return { reason: `${what} requires waypoint ${req.waypoint.name}; ${peer} is not the waypoint`, waypoint: req.waypoint.name };
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
  readonly #metrics: WaypointMetrics | undefined;

  constructor(state: () => ClusterState, logger: Logger, metrics?: WaypointMetrics) {
    this.#state = state;
    this.#log = logger.child({ component: 'authz' });
    this.#metrics = metrics;
  }

  /** The waypoint part of check() alone: a denial when the peer bypasses a required waypoint. */
  checkWaypoint(w: LocalWorkload, a: InboundAttributes): AuthzDecision | undefined {
    const denied = waypointDenial(this.#state(), w, a);
    if (!denied) return undefined;
    this.#metrics?.refused('destination', a.peerIdentity === undefined ? 'plaintext' : 'not_from_waypoint', denied.waypoint);
    this.#log.info({ reason: denied.reason, src: a.srcIp, peer: a.peerIdentity ?? '(plaintext)', dst: `${a.dstIp}:${a.dstPort}`, workload: `${w.namespace}/${w.name}` }, 'connection denied: waypoint required');
    return { allowed: false, reason: denied.reason, dryRun: [] };
  }

  check(w: LocalWorkload, a: InboundAttributes): AuthzDecision {
    const viaWaypoint = this.checkWaypoint(w, a);
    if (viaWaypoint) return viaWaypoint;
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
      const denied = waypointDenial(state, w, t.attrs);
      const d = denied ? { allowed: false, reason: denied.reason } : authorize(state.policiesFor(w), toAuthzConnection(t.attrs));
      if (d.allowed) continue;
      this.#open.delete(t);
      closed++;
      this.#log.warn({ connection: t.describe, reason: d.reason }, 'connection closed due to policy change');
      t.close(d.reason);
    }
    return closed;
  }
}
