/**
 * The node agent's composition root: the only place that constructs
 * collaborators. Everything it needs from the outside world (native binding,
 * clock, logger, metrics registry, certificate source) is injected.
 *
 * Start-up: cluster view ─► CA + secret manager ─► HBONE pool and inbound
 * server ─► admin endpoints ─► per local pod: certificate, 15008 (HBONE in)
 * and 127.0.0.1:15080 (SOCKS5 out) inside the pod's netns ─► ready.
 * A pod that fails to start is retried every 5 s; it never stops the agent.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { Server } from 'node:net';
import { Gauge, type Registry } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import { systemClock, type Clock } from '../common/clock.js';
import { ConfigError, toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { HbonePool } from '../hbone/pool.js';
import type { HboneServer } from '../hbone/server.js';
import type { CertificateSource } from '../identity/certificate-source.js';
import { LocalCa } from '../identity/local-ca.js';
import { SecretManager } from '../identity/secret-manager.js';
import type { NativeBinding } from '../native/binding.js';
import { connectFromNetns, listenInNetns } from '../native/sockets.js';
import { install as installRedirect } from '../redirect/installer.js';
import { ClusterState } from '../state/cluster-state.js';
import { parseLocalClusterConfig, type LocalWorkload } from '../state/local-config.js';
import { adminHandler, listenHttp, metricsHandler, readinessHandler } from './admin.js';
import { WorkloadCertificates } from './certs.js';
import type { AgentConfig } from './config.js';
import { createInboundServer, handlePlaintextInbound, type InboundDeps } from './inbound.js';
import { handleCapturedOutbound, handleSocksConnection, type OutboundDeps } from './outbound.js';
import { DEFAULT_INBOUND_PLAINTEXT_PORT, DEFAULT_OUTBOUND_CAPTURE_PORT } from './config.js';
import { Telemetry } from './telemetry.js';

export interface AgentWorld {
  native: NativeBinding;
  logger: Logger;
  registry: Registry;
  clock?: Clock;
  /** Defaults to the local CA in config.caDir. */
  certificateSource?: CertificateSource;
  /** Installs the capture rules in a pod netns (default: nftables, iptables fallback). */
  installRedirect?: (netns: string) => Promise<unknown>;
}

const WORKLOAD_RETRY_MS = 5_000;

export async function loadClusterFile(path: string): Promise<ClusterState> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read cluster file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`, { cause: err });
  }
  return new ClusterState(parseLocalClusterConfig(doc, path));
}

export class Agent {
  readonly #cfg: AgentConfig;
  readonly #w: Required<Omit<AgentWorld, 'certificateSource'>>;
  readonly #captured = new Set<string>();
  readonly #inboundDeps: InboundDeps;
  readonly #log: Logger;
  readonly #state: ClusterState;
  readonly #secrets: SecretManager;
  readonly #certs: WorkloadCertificates;
  readonly #pool: HbonePool;
  readonly #inbound: HboneServer;
  readonly #telemetry: Telemetry;
  readonly #pending = new Map<string, string>();
  readonly #listeners: Server[] = [];
  readonly #httpServers: Server[] = [];
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  #closed = false;
  #onQuit: () => void = () => undefined;

  private constructor(cfg: AgentConfig, state: ClusterState, world: AgentWorld, source: CertificateSource) {
    this.#cfg = cfg;
    this.#w = { clock: systemClock, installRedirect: (netns) => installRedirect(netns), ...world };
    this.#log = world.logger.child({ component: 'agent', node: cfg.node });
    this.#state = state;
    this.#secrets = new SecretManager({ source, clock: this.#w.clock, ttlSeconds: cfg.certTtlSeconds, logger: world.logger });
    this.#certs = new WorkloadCertificates(this.#secrets);
    this.#telemetry = new Telemetry(world.registry, world.logger);
    this.#pool = new HbonePool({
      logger: world.logger,
      registry: world.registry,
      clock: this.#w.clock,
      identityFor: (id) => this.#certs.ensure(id),
      dial: (dst, srcIp) => {
        const src = srcIp ? state.workloadByIp(srcIp) : undefined;
        if (!src?.netns) throw new Error(`no local pod network namespace for source ${srcIp ?? '(none)'}`);
        return connectFromNetns(world.native, { netns: src.netns, host: dst.host, port: dst.port, mark: cfg.packetMark }).setNoDelay(true);
      },
    });
    this.#inboundDeps = {
      state,
      node: cfg.node,
      certs: this.#certs,
      native: world.native,
      telemetry: this.#telemetry,
      logger: world.logger,
      registry: world.registry,
      packetMark: cfg.packetMark,
      splice: cfg.splice,
      captured: (w) => this.#captured.has(w.uid),
    };
    this.#inbound = createInboundServer(this.#inboundDeps);
    new Gauge({ name: 'istio_build', help: 'Istio component build info', labelNames: ['component', 'tag'], registers: [world.registry] }).set({ component: 'ztunnel', tag: 'ambit-0.1.0' }, 1);
  }

  /** Starts the agent; resolves once the admin endpoints are up (pods come up in the background). */
  static async start(cfg: AgentConfig, world: AgentWorld, preloaded?: ClusterState): Promise<Agent> {
    const state = preloaded ?? (await loadClusterFile(cfg.clusterFile));
    if (!state.config.nodes.some((n) => n.name === cfg.node) && !state.config.workloads.some((w) => w.node === cfg.node)) {
      throw new ConfigError(`node '${cfg.node}' is not in ${cfg.clusterFile}; known nodes: ${state.config.nodes.map((n) => n.name).join(', ') || '(none)'}`);
    }
    const source = world.certificateSource ?? (await LocalCa.openOrCreate(cfg.caDir, { trustDomain: state.config.trustDomain }));
    const agent = new Agent(cfg, state, world, source);
    await agent.#startAdmin();
    agent.#startWorkloads();
    return agent;
  }

  /** Called when /quitquitquit asks the process to stop. */
  onQuit(fn: () => void): void {
    this.#onQuit = fn;
  }

  get localWorkloads(): LocalWorkload[] {
    return this.#state.localWorkloads(this.#cfg.node).filter((w) => w.tunnelProtocol !== 'NONE');
  }

  async #startAdmin(): Promise<void> {
    const c = this.#cfg;
    const readiness = { pending: () => [...this.#pending.keys()] };
    this.#httpServers.push(await listenHttp(readinessHandler(readiness), c.readinessPort, '0.0.0.0'));
    this.#httpServers.push(await listenHttp(metricsHandler(this.#w.registry), c.metricsPort, '0.0.0.0'));
    this.#httpServers.push(
      await listenHttp(adminHandler({ registry: this.#w.registry, readiness, configDump: () => this.configDump(), quit: () => this.#onQuit() }), c.adminPort, '127.0.0.1'),
    );
  }

  #startWorkloads(): void {
    const workloads = this.localWorkloads;
    for (const w of workloads) this.#pending.set(`workload ${w.namespace}/${w.name}`, 'starting');
    for (const w of workloads) void this.#startWorkload(w);
    if (workloads.length === 0) void this.#markReady();
  }

  async #startWorkload(w: LocalWorkload): Promise<void> {
    const key = `workload ${w.namespace}/${w.name}`;
    const opened: Server[] = [];
    try {
      if (!w.netns) throw new ConfigError(`workload ${w.namespace}/${w.name} has no netns in the cluster file`);
      await this.#certs.ensure(this.#state.identityOf(w));
      // TCP_NODELAY everywhere, as ztunnel: Nagle plus delayed ACKs would stall small HEADERS/DATA writes.
      const hbone = await listenInNetns(this.#w.native, { netns: w.netns, address: '0.0.0.0', port: this.#cfg.inboundPort, reusePort: true, mark: this.#cfg.packetMark, server: { noDelay: true } });
      opened.push(hbone);
      this.#inbound.serve(hbone);
      const out: OutboundDeps = { state: this.#state, pool: this.#pool, native: this.#w.native, telemetry: this.#telemetry, logger: this.#w.logger, packetMark: this.#cfg.packetMark, splice: this.#cfg.splice };
      const listen = (address: string, port: number) => listenInNetns(this.#w.native, { netns: w.netns as string, address, port, reusePort: true, server: { allowHalfOpen: true, noDelay: true } });
      const socks = await listen('127.0.0.1', this.#cfg.socks5Port);
      opened.push(socks);
      socks.on('connection', (s) => handleSocksConnection(s, w, out));
      if (this.#cfg.capture) {
        // Listeners first, rules second: nothing is captured before something accepts it.
        const outbound = await listen('0.0.0.0', DEFAULT_OUTBOUND_CAPTURE_PORT);
        opened.push(outbound);
        outbound.on('connection', (s) => handleCapturedOutbound(s, w, out));
        const plaintext = await listen('0.0.0.0', DEFAULT_INBOUND_PLAINTEXT_PORT);
        opened.push(plaintext);
        plaintext.on('connection', (s) => handlePlaintextInbound(s, w, this.#inboundDeps));
        await this.#w.installRedirect(w.netns);
        this.#captured.add(w.uid);
      }
      if (this.#closed) {
        for (const s of opened) s.close();
        return;
      }
      this.#listeners.push(...opened);
      this.#pending.delete(key);
      this.#log.info({ workload: `${w.namespace}/${w.name}`, ip: w.ip, identity: this.#state.identityOf(w), captured: this.#captured.has(w.uid) }, 'workload proxy started');
      if (this.#pending.size === 0) await this.#markReady();
    } catch (e) {
      for (const s of opened) s.close();
      const err = toError(e);
      this.#pending.set(key, err.message);
      this.#log.error({ workload: `${w.namespace}/${w.name}`, err: err.message, code: (err as { code?: string }).code }, 'workload proxy failed to start; retrying in 5s');
      if (this.#closed) return;
      const t = setTimeout(() => {
        this.#retryTimers.delete(t);
        void this.#startWorkload(w);
      }, WORKLOAD_RETRY_MS);
      this.#retryTimers.add(t);
    }
  }

  async #markReady(): Promise<void> {
    this.#log.info({ workloads: this.localWorkloads.length }, 'agent ready');
    if (this.#cfg.readyFile) await writeFile(this.#cfg.readyFile, `${process.pid}\n`);
  }

  configDump(): unknown {
    return {
      node: this.#cfg.node,
      config: this.#cfg,
      workloads: this.#state.config.workloads,
      services: this.#state.config.services,
      certificates: this.#secrets.dump(),
      workloadState: Object.fromEntries(this.localWorkloads.map((w) => [w.uid, { info: { name: w.name, namespace: w.namespace, serviceAccount: w.serviceAccount }, state: this.#pending.has(`workload ${w.namespace}/${w.name}`) ? 'Pending' : 'Up' }])),
    };
  }

  /** Graceful: stop accepting, let tunnels finish until the drain deadline, then force-close. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#retryTimers) clearTimeout(t);
    for (const s of this.#listeners) s.close();
    this.#pool.close();
    const drained = this.#inbound.close();
    const deadline = new Promise<'deadline'>((r) => setTimeout(() => r('deadline'), this.#cfg.drainDeadlineMs).unref());
    if ((await Promise.race([drained.then(() => 'drained' as const), deadline])) === 'deadline') {
      this.#log.warn({ deadlineMs: this.#cfg.drainDeadlineMs }, 'drain deadline reached; closing remaining connections');
    }
    this.destroy();
  }

  /** Immediate: drop everything. */
  destroy(): void {
    this.#closed = true;
    for (const t of this.#retryTimers) clearTimeout(t);
    for (const s of this.#listeners) s.close();
    this.#inbound.destroy();
    this.#pool.destroy();
    this.#secrets.close();
    for (const s of this.#httpServers) {
      s.close();
      (s as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
    }
  }
}
