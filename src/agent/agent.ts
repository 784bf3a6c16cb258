/**
 * The node agent's composition root: the only place that constructs
 * collaborators. Everything it needs from the outside world (native binding,
 * clock, logger, metrics registry, certificate source, redirection rules) is
 * injected.
 *
 * Start-up: cluster view ─► CA + secret manager ─► HBONE pool and inbound
 * server ─► admin endpoints ─► enrollment ─► ready.
 *
 * Enrollment is ZDS in both modes, so the agent has one code path:
 * - with --zds-socket, the CNI node agent enrolls the pods;
 * - without it (lab mode), the agent runs the same CNI enroller in process
 *   over a private socket, fed with its node's ambient pods from the cluster
 *   view; it follows the view, so a pod leaving the mesh is unenrolled (rules
 *   removed first, then its listeners closed).
 * For each enrolled pod the InPodManager starts a proxy: 15008 (HBONE in),
 * 15001 (captured outbound), 15006 (plaintext in) and 127.0.0.1:15080
 * (SOCKS5 out), all inside the pod's netns with SO_REUSEPORT.
 */
import { fstatSync, mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gauge, type Registry } from 'prom-client';
import { systemClock, type Clock } from '../common/clock.js';
import { ConfigError, toError } from '../common/errors.js';
import { logControlFor, type Logger } from '../common/logger.js';
import { PodEnroller, type PodRules } from '../cni/enroller.js';
import { applyPodSysctls } from '../cni/netns-sysctl.js';
import { ZdsServer, type CniPodWithNetns } from '../cni/zds-server.js';
import { HbonePool } from '../hbone/pool.js';
import type { HboneServer } from '../hbone/server.js';
import type { CertificateSource } from '../identity/certificate-source.js';
import { LocalCa } from '../identity/local-ca.js';
import { SecretManager } from '../identity/secret-manager.js';
import type { NativeBinding } from '../native/binding.js';
import { connectFromNetns, listenInNetns } from '../native/sockets.js';
import { install as installRedirect, remove as removeRedirect } from '../redirect/installer.js';
import { ClusterState } from '../state/cluster-state.js';
import type { LocalWorkload } from '../state/local-config.js';
import { adminHandler, listenHttp, metricsHandler, readinessHandler } from './admin.js';
import { WorkloadCertificates } from './certs.js';
import { ClusterView, loadClusterFile, watchClusterFile, type ClusterFileWatch } from './cluster-view.js';
import type { AgentConfig, ControlPlaneSettings } from './config.js';
import { ControlPlaneClient } from './control-plane-client.js';
import type { LocalFacts } from '../state/from-workload-api.js';
import { DEFAULT_INBOUND_PLAINTEXT_PORT, DEFAULT_MAX_PENDING_PER_POD, DEFAULT_OUTBOUND_CAPTURE_PORT } from './config.js';
import { createInboundServer, handlePlaintextInbound, type InboundDeps } from './inbound.js';
import { AgentMetrics } from './agent-metrics.js';
import { InboundAuthz } from './inbound-authz.js';
import { InPodManager, type EnrolledPod, type PodProxy } from './inpod-manager.js';
import { handleCapturedOutbound, handleSocksConnection, PendingConnections, type OutboundDeps } from './outbound.js';
import { Telemetry } from './telemetry.js';
import { WaypointMetrics } from './waypoint-metrics.js';
import { AgentZdsClient } from './zds-client.js';

export { loadClusterFile } from './cluster-view.js';

export interface AgentWorld {
  native: NativeBinding;
  logger: Logger;
  registry: Registry;
  clock?: Clock;
  /** Defaults to the local CA in config.caDir. */
  certificateSource?: CertificateSource;
  /** Lab mode: installs and removes the capture rules in a pod netns (default: nftables, iptables fallback). */
  rules?: PodRules;
}

/** Lab mode: the CNI role in process, over a private ZDS socket. */
interface InProcessEnrollment {
  readonly dir: string;
  readonly server: ZdsServer;
  readonly enroller: PodEnroller;
}

/** The pods of `node` that belong in the mesh, as the CNI would enroll them. */
export function ambientPods(state: ClusterState, node: string): CniPodWithNetns[] {
  return state
    .localWorkloads(node)
    .filter((w): w is LocalWorkload & { netns: string } => w.tunnelProtocol !== 'NONE' && w.netns !== undefined)
    .map((w) => ({ uid: w.uid, name: w.name, namespace: w.namespace, serviceAccount: w.serviceAccount, netnsPath: w.netns }));
}

export class Agent {
  readonly #cfg: AgentConfig;
  readonly #w: Required<Omit<AgentWorld, 'certificateSource'>>;
  readonly #inboundDeps: InboundDeps;
  readonly #outboundDeps: OutboundDeps;
  readonly #log: Logger;
  readonly #view: ClusterView;
  readonly #secrets: SecretManager;
  readonly #certs: WorkloadCertificates;
  readonly #pool: HbonePool;
  readonly #inbound: HboneServer;
  readonly #telemetry: Telemetry;
  readonly #authz: InboundAuthz;
  readonly #metrics: AgentMetrics;
  readonly #manager: InPodManager;
  #zds: AgentZdsClient | undefined;
  readonly #httpServers: Server[] = [];
  #enrollment: InProcessEnrollment | undefined;
  #controlPlane: ControlPlaneClient | undefined;
  readonly #rulesInstalled = new Set<string>();
  #fileWatch: ClusterFileWatch | undefined;
  #ready = false;
  #closed = false;
  #destroyed = false;
  /** Connections accepted on the pods' listeners and not yet closed (some are not "opened" yet). */
  #accepted = 0;
  #onQuit: () => void = () => undefined;

  private constructor(cfg: AgentConfig, view: ClusterView, world: AgentWorld, source: CertificateSource) {
    this.#cfg = cfg;
    this.#w = {
      clock: systemClock,
      rules: {
        install: async (netns) => {
          await installRedirect(netns);
          const failed = await applyPodSysctls(netns);
          if (failed.length > 0) world.logger.warn({ netns, failed }, 'pod sysctls not applied; an agent restart may reset a few queued connections');
        },
        remove: (netns) => removeRedirect(netns),
      },
      ...world,
    };
    this.#log = world.logger.child({ component: 'agent', node: cfg.node });
    this.#view = view;
    this.#secrets = new SecretManager({ source, clock: this.#w.clock, ttlSeconds: cfg.certTtlSeconds, logger: world.logger });
    this.#certs = new WorkloadCertificates(this.#secrets);
    this.#telemetry = new Telemetry(world.registry, world.logger, { clock: this.#w.clock });
    const waypointMetrics = new WaypointMetrics(world.registry);
    this.#authz = new InboundAuthz(() => view.current, world.logger, waypointMetrics);
    this.#metrics = new AgentMetrics(world.registry, { pods: () => this.#manager.dump(), certificates: () => this.#secrets.dump() });
    this.#manager = new InPodManager({
      startProxy: (pod) => this.#startProxy(pod),
      resolve: (uid) => view.current.workloadByUid(uid),
      netnsKey: (fd) => {
        const st = fstatSync(fd);
        return `${st.dev}:${st.ino}`;
      },
      closeFd: (fd) => world.native.closeFd(fd),
      logger: world.logger,
    });
    const netnsOf = (w: LocalWorkload) => this.#manager.netnsOf(w.uid);
    this.#pool = new HbonePool({
      logger: world.logger,
      registry: world.registry,
      clock: this.#w.clock,
      identityFor: (id) => this.#certs.ensure(id),
      dial: (dst, srcIp) => {
        const src = srcIp ? view.current.workloadByIp(srcIp) : undefined;
        const netns = src ? netnsOf(src) : undefined;
        if (netns === undefined) throw new Error(`no enrolled pod on this node has the source address ${srcIp ?? '(none)'}`);
        return connectFromNetns(world.native, { netns, host: dst.host, port: dst.port, mark: cfg.packetMark }).setNoDelay(true);
      },
    });
    // One cap per pod and direction (outbound 15001/15080, inbound plaintext 15006).
    const pending = new PendingConnections({ maxPerPod: cfg.maxPendingPerPod ?? DEFAULT_MAX_PENDING_PER_POD, registry: world.registry });
    this.#inboundDeps = {
      get state() {
        return view.current;
      },
      node: cfg.node,
      certs: this.#certs,
      native: world.native,
      telemetry: this.#telemetry,
      logger: world.logger,
      registry: world.registry,
      packetMark: cfg.packetMark,
      splice: cfg.splice,
      // Spoofing the client address needs the pod's 0x111 reply routing: in lab mode only once the
      // enroller installed the rules (after the add is acked); with a CNI, rules come first.
      captured: (w) => cfg.capture && (this.#enrollment === undefined || this.#rulesInstalled.has(w.uid)),
      netnsOf,
      authz: this.#authz,
      pending,
    };
    this.#outboundDeps = {
      get state() {
        return view.current;
      },
      pool: this.#pool,
      native: world.native,
      telemetry: this.#telemetry,
      logger: world.logger,
      packetMark: cfg.packetMark,
      splice: cfg.splice,
      netnsOf,
      waypointMetrics,
      pending,
    };
    this.#inbound = createInboundServer(this.#inboundDeps);
    // A policy or workload change re-decides the open inbound connections.
    view.on('change', () => this.#authz.reevaluate());
    new Gauge({ name: 'istio_build', help: 'Istio component build info', labelNames: ['component', 'tag'], registers: [world.registry] }).set({ component: 'ztunnel', tag: 'ambit-0.1.0' }, 1);
  }

  /** Starts the agent; resolves once the admin endpoints are up (pods are enrolled in the background). */
  static async start(cfg: AgentConfig, world: AgentWorld, preloaded?: ClusterState): Promise<Agent> {
    const local = preloaded ?? (cfg.clusterFile ? await loadClusterFile(cfg.clusterFile) : undefined);
    if (cfg.controlPlane) return Agent.#startRemote(cfg, cfg.controlPlane, world, local);
    if (!local) throw new ConfigError('the agent needs --cluster <file> (local mode) or --xds-address (remote mode)');
    if (!local.config.nodes.some((n) => n.name === cfg.node) && !local.config.workloads.some((w) => w.node === cfg.node)) {
      throw new ConfigError(`node '${cfg.node}' is not in ${cfg.clusterFile}; known nodes: ${local.config.nodes.map((n) => n.name).join(', ') || '(none)'}`);
    }
    const source = world.certificateSource ?? (await LocalCa.openOrCreate(cfg.caDir, { trustDomain: local.config.trustDomain }));
    const agent = new Agent(cfg, new ClusterView(local), world, source);
    await agent.#startAdmin();
    agent.#startEnrollment();
    if (cfg.clusterFile) agent.#fileWatch = watchClusterFile(cfg.clusterFile, agent.#view, { logger: world.logger });
    return agent;
  }

  /**
   * Remote mode: the view starts empty and fills from xDS; the cluster file,
   * when given (the lab), only tells which netns each pod has (the CNI's
   * knowledge, never on the wire) and the nodes.
   */
  static async #startRemote(cfg: AgentConfig, cp: ControlPlaneSettings, world: AgentWorld, local: ClusterState | undefined): Promise<Agent> {
    const trustDomain = local?.config.trustDomain ?? cfg.trustDomain;
    const nodes = local?.config.nodes ?? [];
    const facts: LocalFacts = {
      trustDomain,
      clusterDomain: local?.config.clusterDomain ?? 'cluster.local',
      nodes,
      netnsByPod: new Map((local?.config.workloads ?? []).filter((w) => w.netns !== undefined).map((w) => [`${w.namespace}/${w.name}`, w.netns as string])),
    };
    const view = new ClusterView(new ClusterState({ trustDomain, clusterDomain: facts.clusterDomain, nodes, workloads: [], services: [] }));
    const client = new ControlPlaneClient({
      xdsAddress: cp.xdsAddress,
      caAddress: cp.caAddress,
      rootCertFile: cp.rootCertFile,
      tokenFile: cp.tokenFile,
      controlPlaneIdentity: cp.identity,
      clusterId: cp.clusterId,
      node: cfg.node,
      nodeIp: nodes.find((n) => n.name === cfg.node)?.ip ?? '0.0.0.0',
      facts,
      view,
      logger: world.logger,
      registry: world.registry,
      ...(world.clock ? { clock: world.clock } : {}),
    });
    const agent = new Agent(cfg, view, world, world.certificateSource ?? client.ca);
    agent.#controlPlane = client;
    client.xds.on('synced', () => void agent.#markReady());
    await agent.#startAdmin();
    client.start();
    agent.#startEnrollment();
    return agent;
  }

  /** Called when /quitquitquit asks the process to stop. */
  onQuit(fn: () => void): void {
    this.#onQuit = fn;
  }

  /** The pods this agent should serve according to its cluster view. */
  get localWorkloads(): LocalWorkload[] {
    return this.#view.current.localWorkloads(this.#cfg.node).filter((w) => w.tunnelProtocol !== 'NONE');
  }

  #pending(): string[] {
    if (this.#ready) return [];
    if (this.#controlPlane && !this.#controlPlane.synced) return [`waiting for the first xds sync from ${this.#cfg.controlPlane?.xdsAddress ?? ''}`];
    if (!this.#enrollment) return [`waiting for the zds snapshot from ${this.#cfg.zdsSocket ?? '(none)'}`];
    const pods = this.#enrollment.enroller.status();
    const waiting = ambientPods(this.#view.current, this.#cfg.node).filter((p) => !pods.some((s) => s.uid === p.uid && s.phase === 'enrolled'));
    return waiting.map((p) => `pod ${p.uid}: ${pods.find((s) => s.uid === p.uid)?.lastError ?? 'enrolling'}`);
  }

  async #startAdmin(): Promise<void> {
    const c = this.#cfg;
    const readiness = { pending: () => this.#pending() };
    this.#httpServers.push(await listenHttp(readinessHandler(readiness), c.readinessPort, '0.0.0.0'));
    this.#httpServers.push(await listenHttp(metricsHandler(this.#w.registry), c.metricsPort, '0.0.0.0'));
    this.#httpServers.push(
      await listenHttp(adminHandler({ registry: this.#w.registry, readiness, configDump: () => this.configDump(), quit: () => this.#onQuit(), logging: logControlFor(this.#w.logger) }), c.adminPort, '127.0.0.1'),
    );
  }

  #startEnrollment(): void {
    const connect = (path: string): AgentZdsClient => {
      const client = new AgentZdsClient({ path, native: this.#w.native, manager: this.#manager, logger: this.#w.logger, registry: this.#w.registry });
      this.#zds = client;
      return client;
    };
    if (this.#cfg.zdsSocket) {
      const client = connect(this.#cfg.zdsSocket);
      client.once('snapshot', () => void this.#markReady());
      client.start();
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'ambit-zds-'));
    const server = new ZdsServer({ binding: this.#w.native }).listen(join(dir, 'zds.sock'));
    server.on('error', (err: Error) => this.#log.warn({ err: err.message }, 'in-process zds server error'));
    const enroller = new PodEnroller({ server, logger: this.#w.logger, ...(this.#cfg.capture ? { rules: this.#w.rules } : {}) });
    this.#enrollment = { dir, server, enroller };
    enroller.on('synced', () => void this.#markReady());
    enroller.on('enrolled', (uid) => this.#rulesInstalled.add(uid));
    enroller.on('unenrolled', (uid) => this.#rulesInstalled.delete(uid));
    connect(join(dir, 'zds.sock')).start();
    const follow = (state: ClusterState) => void enroller.setDesired(ambientPods(state, this.#cfg.node));
    follow(this.#view.current);
    this.#view.on('change', follow);
  }

  async #startProxy(pod: EnrolledPod): Promise<PodProxy> {
    const w = pod.workload;
    const current = (): LocalWorkload => this.#view.current.workloadByUid(w.uid) ?? w;
    const opened: Server[] = [];
    try {
      await this.#certs.ensure(this.#view.current.identityOf(w));
      // TCP_NODELAY everywhere, as ztunnel: Nagle plus delayed ACKs would stall small HEADERS/DATA writes.
      const hbone = await listenInNetns(this.#w.native, { netns: pod.netnsFd, address: '0.0.0.0', port: this.#cfg.inboundPort, reusePort: true, mark: this.#cfg.packetMark, server: { noDelay: true } });
      opened.push(hbone);
      this.#inbound.serve(hbone);
      const listen = async (address: string, port: number, onConnection: (s: Socket) => void): Promise<void> => {
        const server = await listenInNetns(this.#w.native, { netns: pod.netnsFd, address, port, reusePort: true, server: { allowHalfOpen: true, noDelay: true } });
        opened.push(server);
        server.on('connection', (sock: Socket) => {
          this.#accepted++;
          sock.once('close', () => this.#accepted--);
          onConnection(sock);
        });
      };
      await listen('127.0.0.1', this.#cfg.socks5Port, (s) => handleSocksConnection(s, current(), this.#outboundDeps));
      await listen('0.0.0.0', DEFAULT_OUTBOUND_CAPTURE_PORT, (s) => handleCapturedOutbound(s, current(), this.#outboundDeps));
      await listen('0.0.0.0', DEFAULT_INBOUND_PLAINTEXT_PORT, (s) => handlePlaintextInbound(s, current(), this.#inboundDeps));
      this.#log.info({ workload: `${w.namespace}/${w.name}`, ip: w.ip, identity: this.#view.current.identityOf(w).toString(), captured: this.#cfg.capture }, 'workload proxy started');
      this.#metrics.proxiesStarted.inc();
      return {
        close: () => {
          this.#metrics.proxiesStopped.inc();
          for (const s of opened) s.close();
          this.#log.info({ workload: `${w.namespace}/${w.name}`, ip: w.ip }, 'workload proxy stopped');
        },
      };
    } catch (e) {
      for (const s of opened) s.close();
      const err = toError(e);
      this.#log.error({ workload: `${w.namespace}/${w.name}`, err: err.message, code: (err as { code?: string }).code }, 'workload proxy failed to start');
      throw err;
    }
  }

  async #markReady(): Promise<void> {
    if (this.#ready || this.#closed) return;
    // Remote mode: not before the first xDS sync, or "no pods" would look like "all pods enrolled".
    if (this.#controlPlane && !this.#controlPlane.synced) return;
    if (this.#enrollment && !this.#enrollment.enroller.synced) return;
    this.#ready = true;
    this.#log.info({ workloads: this.#manager.uids().length }, 'agent ready');
    if (this.#cfg.readyFile) await writeFile(this.#cfg.readyFile, `${process.pid}\n`);
  }

  configDump(): unknown {
    const state = this.#view.current;
    const pods = new Map(this.#manager.dump().map((p) => [p.uid, p]));
    return {
      node: this.#cfg.node,
      config: this.#cfg,
      workloads: state.config.workloads,
      services: state.config.services,
      certificates: this.#secrets.dump(),
      enrollment: this.#enrollment ? { mode: 'in-process', pods: this.#enrollment.enroller.status() } : { mode: 'zds', socket: this.#cfg.zdsSocket },
      workloadState: Object.fromEntries(
        this.localWorkloads.map((w) => [w.uid, { info: { name: w.name, namespace: w.namespace, serviceAccount: w.serviceAccount }, state: pods.get(w.uid)?.state === 'up' ? 'Up' : 'Pending' }]),
      ),
    };
  }

  #stopEnrollment(): void {
    this.#fileWatch?.close();
    void this.#controlPlane?.close();
    this.#zds?.close();
    if (this.#enrollment) {
      this.#enrollment.enroller.close();
      this.#enrollment.server.close();
      rmSync(this.#enrollment.dir, { recursive: true, force: true });
      this.#enrollment = undefined;
    }
    // Listeners close; the pods' rules stay, so a restarted agent takes over without a window of direct traffic.
    this.#manager.close();
  }

  /** Graceful: stop accepting, let tunnels finish until the drain deadline, then force-close. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopEnrollment();
    // The pool stays open while draining: a connection accepted just before the listeners closed
    // still needs its tunnel (closing the pool here reset it).
    this.#log.info({ active: this.#telemetry.active, accepted: this.#accepted }, 'draining: listeners closed, waiting for open connections');
    const drained = Promise.all([this.#inbound.close(), this.#connectionsDone()]);
    const deadline = new Promise<'deadline'>((r) => setTimeout(() => r('deadline'), this.#cfg.drainDeadlineMs).unref());
    if ((await Promise.race([drained.then(() => 'drained' as const), deadline])) === 'deadline') {
      this.#log.warn({ deadlineMs: this.#cfg.drainDeadlineMs }, 'drain deadline reached; closing remaining connections');
    }
    this.destroy();
  }

  /** Resolves when every relayed connection (inbound, outbound, passthrough) has closed. */
  async #connectionsDone(): Promise<void> {
    while ((this.#telemetry.active > 0 || this.#accepted > 0) && !this.#destroyed) await new Promise((r) => setTimeout(r, 100));
  }

  /** Immediate: drop everything. */
  destroy(): void {
    this.#closed = true;
    this.#destroyed = true;
    this.#stopEnrollment();
    this.#inbound.destroy();
    this.#pool.destroy();
    this.#telemetry.close();
    this.#secrets.close();
    for (const s of this.#httpServers) {
      s.close();
      (s as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
    }
  }
}
