/**
 * Child process of the control-plane benchmark: N agent-like xDS clients in
 * one process, each wired exactly as the agent's ControlPlaneClient wires
 * them (DeltaXdsClient with the ztunnel-style node → WorkloadStore, and on
 * every store change one microtask-coalesced rebuild of the ClusterState
 * that the data plane would use), but over plaintext xDS (no TLS, no SPIFFE
 * check of the control plane: the bench measures the control plane's push,
 * not the agent's TLS handshake).
 *
 * Control channel (bench/lib/control.ts): `start` connects every client,
 * `rss` runs the GC when the process has --expose-gc and returns the
 * process's memory and the first store's counts, `counts` returns every
 * store's counts. Events on stdout (one JSON line each, wall-clock ms):
 *   {"ev":"synced","agent":i,"t":...,"counts":{...}}       first full sync
 *   {"ev":"applied","agent":i,"t":...,"tView":...,"rev":"v3"} the watched
 *     workload was upserted (t: in the store; tView: ClusterState rebuilt)
 */
import * as grpc from '@grpc/grpc-js';
import { ClusterState } from '../../src/state/cluster-state.js';
import { clusterConfigFromWorkloadApi, type LocalFacts } from '../../src/state/from-workload-api.js';
import { WorkloadStore } from '../../src/workload-api/store.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../../src/workload-api/types.js';
import { DeltaXdsClient } from '../../src/xds/delta-client.js';
import { buildNode } from '../../src/xds/node.js';
import { configFromArgv, emit, serveCommands } from './control.js';

export interface AgentsConfig {
  /** host:port of the control plane's plaintext xDS. */
  readonly address: string;
  /** One entry per simulated agent. */
  readonly agents: readonly { readonly node: string; readonly ip: string }[];
  /** All nodes of the synthetic cluster (the agent's LocalFacts.nodes). */
  readonly nodes: readonly { readonly name: string; readonly ip: string }[];
  /** Workload uid whose canonical revision the driver changes. */
  readonly watchUid: string;
  /** Whether to rebuild the ClusterState on every change, as the agent does. */
  readonly rebuildView: boolean;
}

export interface AgentEvent {
  readonly ev: 'synced' | 'applied' | 'error';
  readonly agent: number;
  readonly t: number;
  readonly tView?: number;
  readonly rev?: string;
  readonly counts?: { workloads: number; services: number; policies: number };
  readonly message?: string;
}

function out(e: AgentEvent): void {
  process.stdout.write(`${JSON.stringify(e)}\n`);
}

const cfg = configFromArgv<AgentsConfig>();
const facts: LocalFacts = { trustDomain: 'cluster.local', clusterDomain: 'cluster.local', nodes: cfg.nodes, netnsByPod: new Map() };

interface Sim {
  readonly store: WorkloadStore;
  readonly client: DeltaXdsClient;
  state: ClusterState | undefined;
}

const sims: Sim[] = cfg.agents.map((a, i) => {
  const store = new WorkloadStore();
  const client = new DeltaXdsClient({
    address: cfg.address,
    credentials: grpc.credentials.createInsecure(),
    node: buildNode({ instanceIp: a.ip, podName: `ztunnel-${a.node}`, podNamespace: 'istio-system', nodeName: a.node, cluster: 'Kubernetes' }),
    metadata: () => ({ clusterid: 'Kubernetes' }),
    handlers: [
      { typeUrl: ADDRESS_TYPE_URL, apply: (u) => store.applyAddresses({ upserts: u.upserts.map((r) => ({ name: r.name, resource: r.body })), removals: u.removals }) },
      { typeUrl: AUTHORIZATION_TYPE_URL, apply: (u) => store.applyAuthorizations({ upserts: u.upserts.map((r) => ({ name: r.name, resource: r.body })), removals: u.removals }) },
    ],
  });
  const sim: Sim = { store, client, state: undefined };
  let pending = false;
  let watched: { t: number; rev: string } | undefined;
  store.on('change', (c) => {
    if (c.type === 'addresses' && c.upserted.includes(cfg.watchUid)) {
      watched = { t: Date.now(), rev: store.getWorkload(cfg.watchUid)?.canonicalRevision ?? '' };
    }
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      if (cfg.rebuildView) {
        try {
          sim.state = new ClusterState(clusterConfigFromWorkloadApi(store.snapshot(), facts));
        } catch (err) {
          out({ ev: 'error', agent: i, t: Date.now(), message: err instanceof Error ? err.message : String(err) });
        }
      }
      if (watched) {
        out({ ev: 'applied', agent: i, t: watched.t, tView: Date.now(), rev: watched.rev });
        watched = undefined;
      }
    });
  });
  client.on('synced', () => out({ ev: 'synced', agent: i, t: Date.now(), counts: store.counts }));
  client.on('nack-sent', (e: { message: string }) => out({ ev: 'error', agent: i, t: Date.now(), message: `nack: ${e.message}` }));
  return sim;
});

function gc(): boolean {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) return false;
  g();
  g();
  return true;
}

serveCommands(
  {
    start: () => {
      for (const s of sims) s.client.start();
      return { started: sims.length };
    },
    counts: () => sims.map((s) => s.store.counts),
    rss: () => {
      const gcRan = gc();
      const m = process.memoryUsage();
      return { gcRan, rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, counts: sims[0]?.store.counts };
    },
  },
  () => {
    void Promise.all(sims.map((s) => s.client.close())).finally(() => process.exit(0));
  },
);
emit({ ev: 'ready', pid: process.pid, identity: `agents x${sims.length}` });
