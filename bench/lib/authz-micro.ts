/**
 * Micro-benchmark of the agent's per-connection authorization (issue 5,
 * "authorization evaluation with 1,000 policies in place, per connection"):
 * what `InboundAuthz.check()` does for every inbound connection on node-b:
 * `ClusterState.policiesFor(workload)` (a scan of every policy the agent
 * holds) and `authorize()` (src/authz/evaluate.ts) over the ones in scope.
 * The policies come from bench/lib/authz-policies.ts through the control
 * plane's translator. Runs in the driver process; no lab, no root.
 */
import { performance } from 'node:perf_hooks';
import { authorize } from '../../src/authz/evaluate.js';
import { toAuthzConnection, type InboundAttributes } from '../../src/agent/inbound-authz.js';
import { ClusterState } from '../../src/state/cluster-state.js';
import type { LocalWorkload } from '../../src/state/local-config.js';
import { policyYaml, translatePolicies, type PolicyMix } from './authz-policies.js';
import { percentile, round } from './stats.js';

const LAB_YAML = `apiVersion: v1
kind: Namespace
metadata: { name: mesh, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: mesh, labels: { app: server } }
spec: { nodeName: node-b, serviceAccountName: server }
status: { podIP: 10.30.1.2 }
`;

const SERVER_IP = '10.30.1.2';

/** The connections checked: who, from where, and what the answer must be. */
const CONNECTIONS: ReadonlyArray<{ id: string; what: string; attrs: InboundAttributes; allowedWith: boolean }> = [
  { id: 'allowed-mtls', what: 'mesh/sa/client over HBONE (allowed by the last ALLOW)', attrs: { srcIp: '10.30.0.2', dstIp: SERVER_IP, dstPort: 8080, peerIdentity: 'spiffe://cluster.local/ns/mesh/sa/client' }, allowedWith: true },
  { id: 'denied-mtls', what: 'intruder/sa/intruder over HBONE (no ALLOW matches)', attrs: { srcIp: '10.30.0.3', dstIp: SERVER_IP, dstPort: 8080, peerIdentity: 'spiffe://cluster.local/ns/intruder/sa/intruder' }, allowedWith: false },
  { id: 'denied-plaintext', what: 'plaintext from outside the mesh (no identity)', attrs: { srcIp: '10.30.0.4', dstIp: SERVER_IP, dstPort: 8080 }, allowedWith: false },
];

export interface AuthzMicroRow {
  readonly mix: PolicyMix | 'none';
  readonly policiesHeld: number;
  readonly policiesInScope: number;
  readonly connection: string;
  readonly allowed: boolean;
  readonly reason: string;
  /** Per check: policiesFor + toAuthzConnection + authorize, as InboundAuthz.check does. */
  readonly nsPerCheck: number;
  /** authorize() alone over the in-scope list (the connection already converted). */
  readonly nsPerAuthorize: number;
  /** Spread of nsPerCheck over the batches (p50, p99 of per-batch means). */
  readonly nsPerCheckP50: number;
  readonly nsPerCheckP99: number;
  readonly iterations: number;
}

function timeLoop(fn: () => boolean, ms: number): { ns: number; iterations: number; batches: number[] } {
  const batch = 500;
  let iterations = 0;
  let sink = 0;
  const batches: number[] = [];
  const until = performance.now() + ms;
  while (performance.now() < until) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) if (fn()) sink++;
    const dt = Number(process.hrtime.bigint() - t0);
    batches.push(dt / batch);
    iterations += batch;
  }
  if (sink < 0) throw new Error('unreachable');
  const total = batches.reduce((a, b) => a + b, 0);
  return { ns: total / batches.length, iterations, batches };
}

/** Runs every (mix, connection) pair for `msPerCase` (after a warm-up of a fifth of it). */
export function runAuthzMicro(msPerCase: number, count = 1000): { rows: AuthzMicroRow[]; notes: string[] } {
  const rows: AuthzMicroRow[] = [];
  const notes: string[] = [];
  const sets: Array<{ mix: PolicyMix | 'none'; yaml: string }> = [
    { mix: 'none', yaml: '' },
    { mix: 'spread', yaml: policyYaml('spread', count) },
    { mix: 'worst', yaml: policyYaml('worst', count) },
  ];
  for (const set of sets) {
    const t = translatePolicies(LAB_YAML, set.yaml);
    if (t.issues > 0) notes.push(`${set.mix}: the control plane reported ${t.issues} configuration issue(s)`);
    const server: LocalWorkload = {
      uid: 'Kubernetes//Pod/mesh/server',
      name: 'server',
      namespace: 'mesh',
      serviceAccount: 'server',
      node: 'node-b',
      ip: SERVER_IP,
      labels: { app: 'server' },
      authorizationPolicies: t.selectedBy.get('mesh/server') ?? [],
    };
    const state = new ClusterState({ trustDomain: 'cluster.local', clusterDomain: 'cluster.local', nodes: [], workloads: [server], services: [], policies: t.policies });
    const inScope = state.policiesFor(server);
    for (const c of CONNECTIONS) {
      const conn = toAuthzConnection(c.attrs);
      // What InboundAuthz.check runs per connection (minus its logging).
      const check = (): boolean => {
        const ps = state.policiesFor(server);
        if (ps.length === 0) return true;
        return authorize(ps, toAuthzConnection(c.attrs)).allowed;
      };
      const decision = authorize(inScope, conn);
      const expect = set.mix === 'none' ? true : c.allowedWith;
      if (check() !== expect) notes.push(`${set.mix}/${c.id}: expected ${expect ? 'allowed' : 'denied'}, got ${decision.reason}`);
      timeLoop(check, msPerCase / 5);
      const full = timeLoop(check, msPerCase);
      const bare = timeLoop(() => authorize(inScope, conn).allowed, msPerCase / 2);
      rows.push({
        mix: set.mix,
        policiesHeld: t.policies.length,
        policiesInScope: inScope.length,
        connection: c.id,
        allowed: check(),
        reason: inScope.length === 0 ? 'no policy applies' : decision.reason,
        nsPerCheck: round(full.ns, 0),
        nsPerAuthorize: round(bare.ns, 0),
        nsPerCheckP50: round(percentile(full.batches, 50), 0),
        nsPerCheckP99: round(percentile(full.batches, 99), 0),
        iterations: full.iterations,
      });
    }
  }
  return { rows, notes };
}

export const AUTHZ_CONNECTIONS = CONNECTIONS.map(({ id, what }) => ({ id, what }));
