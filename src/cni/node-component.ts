/**
 * The CNI node component (`ambit cni`): one per node, next to the agent.
 *
 * - Serves ZDS to the agent (ZdsServer: snapshot on (re)connect, add to the
 *   newest agent, del to all) and runs the PodEnroller with the real capture
 *   rules: ZDS add (acked once the agent listens in the pod) ─► rules.
 * - Answers the `ambit-cni` plugin on a unix socket (one JSON line each way,
 *   NodeRequest/NodeResponse in plugin.ts). ADD returns only when the pod is
 *   enrolled; if it cannot be (no agent, NACK, rules), the pod is unenrolled
 *   again and the ADD fails, so nothing stays half-captured.
 * - Follows the node's pods and namespace labels (PodSource): a label change
 *   enrolls or unenrolls; a pod without a known netns (running before the
 *   component) is found by scanning /proc (netns-discovery.ts).
 * - Remembers what it enrolled (node-state.ts). On start, pods that vanished
 *   while it was down get their rules removed; the others are kept enrolled
 *   (their rules were never removed: a restart opens no window of direct
 *   traffic) and reach the agent in the snapshot.
 */
import { existsSync, rmSync, chmodSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { NativeBinding } from '../native/binding.js';
import { install as installRedirect, remove as removeRedirect, status as redirectStatus } from '../redirect/installer.js';
import { PodEnroller, type PodRules } from './enroller.js';
import { discoverPodNetns, type DiscoveryOptions } from './netns-discovery.js';
import { applyPodSysctls } from './netns-sysctl.js';
import { readNodeState, writeNodeState } from './node-state.js';
import type { NodeRequest, NodeResponse } from './plugin.js';
import { isAmbient, type NodePod, type PodSource, type PodView } from './pod-source.js';
import { ZdsServer, type CniPodWithNetns } from './zds-server.js';

export const DEFAULT_CNI_SOCKET = '/var/run/ambit/cni.sock';
export const DEFAULT_ZDS_SOCKET = '/var/run/ambit/zds.sock';
export const DEFAULT_STATE_FILE = '/var/run/ambit/cni-state.json';

export interface NodeComponentOptions {
  readonly node: string;
  readonly zdsSocket: string;
  readonly pluginSocket: string;
  readonly stateFile: string;
  readonly source: PodSource;
  readonly logger: Logger;
  readonly binding?: NativeBinding;
  /** Default: the in-pod nftables/iptables rules plus the pod sysctls. */
  readonly rules?: PodRules;
  /** What CHECK verifies in a netns; resolves to problems (empty: fine). Default: redirect status matches. */
  readonly checkRules?: (netnsPath: string) => Promise<string[]>;
  /** The ZDS uid of a pod; must equal the workload uid in the agent's view. Default `<clusterId>//Pod/<ns>/<name>`. */
  readonly zdsUid?: (namespace: string, name: string) => string;
  readonly clusterId?: string;
  /** /proc scan for pods without a known netns; false turns it off. */
  readonly discovery?: DiscoveryOptions | false;
  /** How long a plugin ADD may wait for the enrollment. Default 25 s (the plugin waits 30 s). */
  readonly addTimeoutMs?: number;
  readonly retryMs?: number;
  /** How long ADD waits for a pod the watch has not shown yet. Default 3 s. */
  readonly podWaitMs?: number;
}

export interface NodeComponentPodStatus {
  readonly uid: string;
  readonly pod: string;
  readonly netns: string;
  readonly phase: 'pending' | 'enrolled';
  readonly lastError?: string;
}

export interface NodeComponentStatus {
  readonly node: string;
  readonly agentConnections: number;
  readonly agentReady: boolean;
  readonly pods: NodeComponentPodStatus[];
  /** Pods whose rules were removed at start because they vanished while the component was down. */
  readonly cleanedAtStart: string[];
}

const defaultRules = (log: Logger): PodRules => ({
  install: async (netns) => {
    await installRedirect(netns);
    const failed = await applyPodSysctls(netns);
    if (failed.length > 0) log.warn({ netns, failed }, 'pod sysctls not applied');
  },
  remove: (netns) => removeRedirect(netns),
});

const defaultCheck = async (netns: string): Promise<string[]> => {
  const s = await redirectStatus(netns);
  return s.matches ? [] : s.differences.length > 0 ? s.differences : ['capture rules are not installed'];
};

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

export class NodeComponent {
  readonly #o: NodeComponentOptions;
  readonly #log: Logger;
  readonly #rules: PodRules;
  readonly #zdsUid: (namespace: string, name: string) => string;
  /** zds uid → netns path (from ADD, discovery, the state file). */
  readonly #netns = new Map<string, string>();
  /** zds uid → the container id of the ADD that set its netns. */
  readonly #sandbox = new Map<string, string>();
  #desired = new Map<string, CniPodWithNetns>();
  #known = new Map<string, CniPodWithNetns>();
  #server!: ZdsServer;
  #enroller!: PodEnroller;
  #plugin: Server | undefined;
  #agentReady = false;
  #cleaned: string[] = [];
  #closed = false;

  private constructor(opts: NodeComponentOptions) {
    this.#o = opts;
    this.#log = opts.logger.child({ component: 'cni-node', node: opts.node });
    this.#rules = opts.rules ?? defaultRules(this.#log);
    const cluster = opts.clusterId ?? 'Kubernetes';
    this.#zdsUid = opts.zdsUid ?? ((ns, name) => `${cluster}//Pod/${ns}/${name}`);
  }

  static async start(opts: NodeComponentOptions): Promise<NodeComponent> {
    const c = new NodeComponent(opts);
    try {
      await c.#start();
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  async #start(): Promise<void> {
    const previous = readNodeState(this.#o.stateFile);
    for (const p of previous) if (existsSync(p.netnsPath)) this.#netns.set(p.uid, p.netnsPath);
    await this.#o.source.start();
    this.#discover();
    const desired = this.#computeDesired();
    // Pods enrolled before that are gone now (deleted while we were down, or no longer ambient): remove their rules.
    for (const p of previous) {
      const now = desired.get(p.uid);
      if (now && now.netnsPath === p.netnsPath) continue;
      if (existsSync(p.netnsPath)) {
        await this.#rules.remove(p.netnsPath).catch((e: unknown) => this.#log.warn({ uid: p.uid, err: toError(e).message }, 'removing stale rules failed'));
      }
      this.#cleaned.push(p.uid);
      this.#log.info({ uid: p.uid, netns: p.netnsPath }, 'removed the rules of a pod that vanished while the component was down');
    }
    this.#server = new ZdsServer({ ...(this.#o.binding ? { binding: this.#o.binding } : {}), pods: desired.values() });
    this.#server.on('error', (err: Error) => this.#log.warn({ err: err.message }, 'zds server error'));
    this.#server.on('ready', () => {
      this.#agentReady = true;
      this.#log.info('agent connected; snapshot acked');
    });
    this.#server.on('drop', () => {
      this.#agentReady = this.#server.connections().some((c) => c.state === 'ready');
    });
    this.#server.listen(this.#o.zdsSocket);
    this.#enroller = new PodEnroller({ server: this.#server, rules: this.#rules, logger: this.#o.logger, ...(this.#o.retryMs ? { retryMs: this.#o.retryMs } : {}) });
    this.#enroller.on('enrolled', () => this.#persist());
    this.#enroller.on('unenrolled', () => this.#persist());
    this.#o.source.on('change', () => void this.#reconcile());
    void this.#reconcile();
    await this.#listenPlugin();
  }

  /** The zds uid the agent knows this pod by. */
  zdsUid(namespace: string, name: string): string {
    return this.#zdsUid(namespace, name);
  }

  status(): NodeComponentStatus {
    const byUid = new Map([...this.#known.values()].map((p) => [p.uid, p]));
    return {
      node: this.#o.node,
      agentConnections: this.#server.stats().connections,
      agentReady: this.#agentReady,
      pods: this.#enroller.status().map((s) => {
        const p = byUid.get(s.uid);
        return { uid: s.uid, pod: p ? `${p.namespace}/${p.name}` : s.uid, netns: s.netns, phase: s.phase, ...(s.lastError ? { lastError: s.lastError } : {}) };
      }),
      cleanedAtStart: [...this.#cleaned],
    };
  }

  /** Resolves when the desired set is enrolled (or the timeout passes: false). */
  async waitSynced(timeoutMs: number): Promise<boolean> {
    const t0 = Date.now();
    while (Date.now() - t0 < timeoutMs) {
      if (this.#enroller.synced) return true;
      await sleep(25);
    }
    return this.#enroller.synced;
  }

  /**
   * Stops serving. Rules stay installed and the state file is kept, so a new
   * instance resumes without a window of direct traffic. `unenroll: true`
   * (uninstall) removes every pod's rules first.
   */
  async close(opts: { unenroll?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (opts.unenroll && this.#enroller) {
      await this.#enroller.unenrollAll();
      this.#persist();
    }
    this.#enroller?.close();
    await this.#o.source.stop().catch(() => undefined);
    await new Promise<void>((r) => (this.#plugin ? this.#plugin.close(() => r()) : r()));
    this.#server?.close();
  }

  #discover(): void {
    if (this.#o.discovery === false) return;
    const view = this.#o.source.current();
    const missing = [...view.pods.values()].filter((p) => isAmbient(p, view) && !this.#netns.has(this.#zdsUid(p.namespace, p.name)) && p.netnsPath === undefined);
    if (missing.length === 0) return;
    const found = discoverPodNetns(this.#o.discovery ?? {});
    for (const p of missing) {
      const netns = found.get(p.uid.toLowerCase());
      if (netns === undefined) continue;
      this.#netns.set(this.#zdsUid(p.namespace, p.name), netns);
      this.#log.info({ pod: `${p.namespace}/${p.name}`, netns }, 'found the netns of a running pod');
    }
  }

  /** The runtime's /proc/<pid>/ns/net is the host's /proc: in a container it is under the discovery procRoot (e.g. /host/proc). */
  #hostPath(netns: string): string {
    const root = this.#o.discovery === false ? undefined : this.#o.discovery?.procRoot;
    return root !== undefined && root !== '/proc' && netns.startsWith('/proc/') ? `${root}${netns.slice('/proc'.length)}` : netns;
  }

  #toCni(p: NodePod, netnsPath: string): CniPodWithNetns {
    return { uid: this.#zdsUid(p.namespace, p.name), name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount, netnsPath };
  }

  #computeDesired(view: PodView = this.#o.source.current()): Map<string, CniPodWithNetns> {
    const out = new Map<string, CniPodWithNetns>();
    for (const p of view.pods.values()) {
      if (!isAmbient(p, view)) continue;
      const uid = this.#zdsUid(p.namespace, p.name);
      const netns = this.#netns.get(uid) ?? p.netnsPath;
      if (netns !== undefined) out.set(uid, this.#toCni(p, netns));
    }
    return out;
  }

  async #reconcile(): Promise<void> {
    if (this.#closed) return;
    this.#discover();
    this.#desired = this.#computeDesired();
    for (const p of this.#desired.values()) this.#known.set(p.uid, p);
    this.#persist();
    await this.#enroller.setDesired(this.#desired.values());
  }

  /** Everything that may have rules now: what is desired plus what the enroller still holds. */
  #persist(): void {
    if (this.#closed) return;
    const held = new Map(this.#desired);
    for (const s of this.#enroller?.status() ?? []) {
      const p = this.#known.get(s.uid);
      if (p && !held.has(s.uid)) held.set(s.uid, { ...p, netnsPath: s.netns });
    }
    try {
      writeNodeState(this.#o.stateFile, held.values());
    } catch (e) {
      this.#log.warn({ err: toError(e).message, file: this.#o.stateFile }, 'cannot write the node state file');
    }
  }

  async #listenPlugin(): Promise<void> {
    rmSync(this.#o.pluginSocket, { force: true });
    const server = createServer((sock) => this.#onPluginConnection(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#o.pluginSocket, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(this.#o.pluginSocket, 0o600);
    server.on('error', (e) => this.#log.warn({ err: e.message }, 'plugin socket error'));
    this.#plugin = server;
  }

  #onPluginConnection(sock: Socket): void {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > 64 * 1024) {
        sock.destroy();
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      void this.#answer(line).then((r) => {
        if (!sock.destroyed) sock.end(JSON.stringify(r) + '\n');
      });
    });
  }

  async #answer(line: string): Promise<NodeResponse> {
    let req: NodeRequest;
    try {
      req = JSON.parse(line) as NodeRequest;
      if (typeof req !== 'object' || req === null || !['add', 'del', 'check', 'status'].includes(req.op)) throw new Error('unknown op');
    } catch (e) {
      return { ok: false, code: 'bad_request', msg: `bad request: ${toError(e).message}` };
    }
    try {
      switch (req.op) {
        case 'status':
          return this.#agentReady ? { ok: true, enrolled: false, status: this.status() } : { ok: false, code: 'not_ready', msg: 'no agent is connected over zds', status: this.status() };
        case 'add':
          return await this.#add(req);
        case 'del':
          return await this.#del(req);
        case 'check':
          return await this.#check(req);
      }
    } catch (e) {
      return { ok: false, code: 'enroll_failed', msg: toError(e).message };
    }
    return { ok: false, code: 'bad_request', msg: 'unknown op' };
  }

  async #findPod(namespace: string, name: string): Promise<{ pod: NodePod; view: PodView } | undefined> {
    const t0 = Date.now();
    for (;;) {
      const view = this.#o.source.current();
      const pod = view.pods.get(`${namespace}/${name}`);
      if (pod) return { pod, view };
      if (Date.now() - t0 >= (this.#o.podWaitMs ?? 3000)) return undefined;
      await sleep(50);
    }
  }

  async #add(req: NodeRequest): Promise<NodeResponse> {
    const found = await this.#findPod(req.podNamespace, req.podName);
    if (!found) return { ok: false, code: 'not_ready', msg: `pod ${req.podNamespace}/${req.podName} is not known to the node component yet (not in the pod watch of node ${this.#o.node})` };
    if (!isAmbient(found.pod, found.view)) return { ok: true, enrolled: false, detail: 'not in the ambient mesh' };
    if (!this.#agentReady) return { ok: false, code: 'not_ready', msg: 'no ambit agent is connected to the node component over zds' };
    const uid = this.#zdsUid(req.podNamespace, req.podName);
    this.#netns.set(uid, this.#hostPath(req.netns));
    this.#sandbox.set(uid, req.containerId);
    await this.#reconcile();
    const deadline = Date.now() + (this.#o.addTimeoutMs ?? 25_000);
    let last: string | undefined;
    for (;;) {
      const s = this.#enroller.status().find((x) => x.uid === uid);
      if (s?.phase === 'enrolled' && s.netns === this.#hostPath(req.netns)) {
        this.#log.info({ pod: `${req.podNamespace}/${req.podName}`, netns: req.netns }, 'cni add: pod enrolled');
        return { ok: true, enrolled: true };
      }
      last = s?.lastError ?? last;
      if (Date.now() >= deadline || (last !== undefined && !this.#agentReady)) break;
      await sleep(25);
    }
    // Not enrolled: undo, so nothing stays half-captured, and fail the ADD.
    if (this.#sandbox.get(uid) === req.containerId) {
      this.#netns.delete(uid);
      this.#sandbox.delete(uid);
      await this.#reconcile();
    }
    return { ok: false, code: this.#agentReady ? 'enroll_failed' : 'not_ready', msg: `pod ${req.podNamespace}/${req.podName} could not be enrolled: ${last ?? 'timed out'}` };
  }

  async #del(req: NodeRequest): Promise<NodeResponse> {
    const uid = this.#zdsUid(req.podNamespace, req.podName);
    const sandbox = this.#sandbox.get(uid);
    // A DEL for an older sandbox of the same pod must not unenroll the new one.
    if (sandbox !== undefined && req.containerId !== '' && sandbox !== req.containerId) return { ok: true, enrolled: true, detail: 'another sandbox of this pod is enrolled' };
    const had = this.#netns.delete(uid);
    this.#sandbox.delete(uid);
    // The pod stays in the watch until it is deleted; without a netns it is no longer desired.
    const view = this.#o.source.current();
    const pod = view.pods.get(`${req.podNamespace}/${req.podName}`);
    if (pod?.netnsPath !== undefined) {
      this.#log.warn({ uid }, 'cni del for a pod whose netns comes from its manifest; it stays enrolled');
    }
    await this.#reconcile();
    return { ok: true, enrolled: false, ...(had ? {} : { detail: 'was not enrolled' }) };
  }

  async #check(req: NodeRequest): Promise<NodeResponse> {
    const found = await this.#findPod(req.podNamespace, req.podName);
    if (!found) return { ok: false, code: 'check_failed', msg: `pod ${req.podNamespace}/${req.podName} is unknown` };
    if (!isAmbient(found.pod, found.view)) return { ok: true, enrolled: false };
    const uid = this.#zdsUid(req.podNamespace, req.podName);
    const s = this.#enroller.status().find((x) => x.uid === uid);
    if (s?.phase !== 'enrolled') return { ok: false, code: 'check_failed', msg: `pod ${req.podNamespace}/${req.podName} is not enrolled${s?.lastError ? `: ${s.lastError}` : ''}` };
    if (s.netns !== this.#hostPath(req.netns)) return { ok: false, code: 'check_failed', msg: `pod ${req.podNamespace}/${req.podName} is enrolled in ${s.netns}, not ${req.netns}` };
    if (!this.#agentReady) return { ok: false, code: 'check_failed', msg: 'no ambit agent is connected' };
    const problems = await (this.#o.checkRules ?? defaultCheck)(s.netns);
    if (problems.length > 0) return { ok: false, code: 'check_failed', msg: `capture rules of pod ${req.podNamespace}/${req.podName} differ: ${problems.slice(0, 3).join('; ')}` };
    return { ok: true, enrolled: true };
  }
}
