/**
 * The dashboard as part of `ambit control-plane` (the Kiali role): its
 * flags, and the start that never takes the control plane down. The
 * collector runs in the control plane process: the control plane's own
 * status and policies are read in process, the agents and waypoints over
 * their real /metrics, readiness and admin endpoints (sockets made inside
 * their node's netns). In the lab the scrape targets come from the lab's
 * cluster file (--lab-cluster), the agents' access logs from the folder
 * next to it. With --dashboard-netns the listening socket is created in
 * that netns, e.g. the host's, while the control plane itself runs in a lab
 * node's netns.
 *
 * A bind failure (port in use, netns gone) is logged and reported in
 * /debug/status (`dashboard`, plus a note); xDS and the CA keep serving.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import { AmbitError, ConfigError, toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { FlagSpec, ParsedArgs } from '../cli/command.js';
import type { ControlPlaneStatus } from '../control-plane/status.js';
import type { NativeBinding } from '../native/binding.js';
import { parseLocalClusterConfig } from '../state/local-config.js';
import { Collector, type AuthorizationView, type DashboardTargets } from './collector.js';
import { labTargets } from './lab-targets.js';
import { defaultFetch, type NetnsFetch } from './netns-http.js';
import { startDashboardServer, type DashboardServer } from './server.js';

export const DEFAULT_DASHBOARD_INTERVAL_MS = 2000;

/** Flags `ambit control-plane` takes for its dashboard (spread into the command's flags). */
export const DASHBOARD_FLAGS: Readonly<Record<string, FlagSpec>> = Object.freeze({
  'dashboard-listen': { type: 'string', help: 'serve the dashboard (service graph, health, events) on <ip>:<port>, e.g. 127.0.0.1:20001; off unless given' },
  'dashboard-netns': { type: 'string', help: 'create the dashboard\'s listening socket in this netns (e.g. /proc/<pid>/ns/net of a process in the host netns); needs the native addon' },
  'dashboard-interval': { type: 'string', help: 'dashboard scrape interval in ms', default: String(DEFAULT_DASHBOARD_INTERVAL_MS) },
  'dashboard-title': { type: 'string', help: 'dashboard page title', default: 'Ambit' },
  'dashboard-agent-logs': { type: 'string', help: 'folder of agent-<node>.log files tailed for the access-log list (default with --lab-cluster: its folder)' },
});

export interface ControlPlaneDashboardConfig {
  readonly address: string;
  readonly port: number;
  readonly netns?: string;
  readonly intervalMs: number;
  readonly title: string;
  readonly agentLogs?: string;
}

/** `<ipv4>:<port>` or `[<ipv6>]:<port>`; throws ConfigError. */
export function parseListenAddress(flag: string, value: string): { address: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const address = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || address === undefined || isIP(address) === 0 || !Number.isInteger(port) || port > 65535) {
    throw new ConfigError(`--${flag} must be <ip>:<port> (e.g. 127.0.0.1:20001, [::1]:20001, port 0 picks a free one), got '${value}'`);
  }
  return { address, port };
}

/** The dashboard settings from the flags; undefined without --dashboard-listen. Throws ConfigError on bad values. */
export function dashboardConfigFromArgs(args: ParsedArgs): ControlPlaneDashboardConfig | undefined {
  const str = (name: string): string | undefined => {
    const v = args.values[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new ConfigError(`--${name} takes a single value`);
    return v;
  };
  const listen = str('dashboard-listen');
  const others = ['dashboard-netns', 'dashboard-interval', 'dashboard-title', 'dashboard-agent-logs'].filter((f) => str(f) !== undefined);
  if (listen === undefined) {
    if (others.length > 0) throw new ConfigError(`--${others[0] as string} needs --dashboard-listen <ip>:<port>`);
    return undefined;
  }
  const { address, port } = parseListenAddress('dashboard-listen', listen);
  const netns = str('dashboard-netns');
  if (netns === '') throw new ConfigError('--dashboard-netns must be a netns path such as /proc/<pid>/ns/net');
  const rawInterval = str('dashboard-interval');
  const intervalMs = rawInterval === undefined ? DEFAULT_DASHBOARD_INTERVAL_MS : Number(rawInterval);
  if (!Number.isInteger(intervalMs) || intervalMs < 100 || intervalMs > 600_000) throw new ConfigError(`--dashboard-interval must be an integer number of ms from 100 to 600000, got '${rawInterval ?? ''}'`);
  const agentLogs = str('dashboard-agent-logs');
  return { address, port, intervalMs, title: str('dashboard-title') ?? 'Ambit', ...(netns !== undefined ? { netns } : {}), ...(agentLogs ? { agentLogs } : {}) };
}

/** What /debug/status says about the dashboard. */
export interface DashboardStatus {
  readonly state: 'serving' | 'failed' | 'stopped';
  /** Where it listens, as `ip:port` (the bound port when 0 was asked for). */
  readonly listen: string;
  /** The netns of the listening socket; absent: the control plane's own. */
  readonly netns?: string;
  readonly url?: string;
  readonly pid: number;
  readonly error?: { readonly code: string; readonly message: string };
}

/** The parts of the ControlPlane the dashboard reads in process. */
export interface DashboardHost {
  status(): ControlPlaneStatus;
  readonly translation: { readonly authorizations: ReadonlyMap<string, AuthorizationView> } | undefined;
}

export interface ControlPlaneDashboardWorld {
  readonly logger: Logger;
  /** The lab's cluster file (the control plane's --lab-cluster): agents and waypoints to scrape. */
  readonly labCluster?: string;
  /** Replaces the netns fetch (tests). */
  readonly fetch?: NetnsFetch;
  /** The native addon for the listening socket (tests). */
  readonly binding?: NativeBinding;
  readonly pid?: number;
}

export interface ControlPlaneDashboard {
  readonly status: DashboardStatus;
  /** The collector, when serving. */
  readonly collector: Collector | undefined;
  close(): Promise<void>;
}

/** The scrape targets: the lab's agents and waypoints from its cluster file; none outside the lab (control plane only). */
export function controlPlaneTargets(cfg: ControlPlaneDashboardConfig, labCluster: string | undefined): DashboardTargets {
  if (!labCluster) return { agents: [], waypoints: [], inventory: { workloads: [], services: [] } };
  const cluster = parseLocalClusterConfig(JSON.parse(readFileSync(labCluster, 'utf8')) as unknown, labCluster);
  return labTargets(cluster, { controlPlane: false, stateDir: cfg.agentLogs ?? dirname(labCluster) });
}

function hostPort(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/**
 * Starts the collector and the server. Never rejects: a failure is logged
 * and kept in `status` (state 'failed' with the error's code and message).
 */
export async function startControlPlaneDashboard(cfg: ControlPlaneDashboardConfig, host: DashboardHost, world: ControlPlaneDashboardWorld): Promise<ControlPlaneDashboard> {
  const log = world.logger.child({ component: 'dashboard' });
  const pid = world.pid ?? process.pid;
  const base = { listen: hostPort(cfg.address, cfg.port), pid, ...(cfg.netns !== undefined ? { netns: cfg.netns } : {}) };
  let collector: Collector | undefined;
  let server: DashboardServer | undefined;
  try {
    const f = world.fetch ? { fetch: world.fetch, how: 'injected' } : defaultFetch();
    collector = new Collector({
      targets: controlPlaneTargets(cfg, world.labCluster),
      fetch: f.fetch,
      fetchHow: f.how,
      intervalMs: cfg.intervalMs,
      servedBy: `ambit-control-plane/${pid}`,
      controlPlane: {
        status: () => Promise.resolve(host.status()),
        authorizations: () => Promise.resolve([...(host.translation?.authorizations.values() ?? [])]),
      },
    });
    server = await startDashboardServer({
      collector,
      address: cfg.address,
      port: cfg.port,
      title: cfg.title,
      logger: log,
      serverName: `ambit-control-plane/${pid}`,
      ...(cfg.netns !== undefined ? { netns: cfg.netns } : {}),
      ...(world.binding ? { binding: world.binding } : {}),
    });
    collector.start();
  } catch (err) {
    const e = toError(err);
    const code = err instanceof AmbitError ? err.code : 'AMBIT_ERR_DASHBOARD_BIND';
    log.error({ code, err: e.message, ...base }, 'dashboard not served; the control plane keeps serving xDS and the CA');
    return { status: { state: 'failed', ...base, error: { code, message: e.message } }, collector: undefined, close: async () => {} };
  }
  const s = server;
  const c = collector;
  let status: DashboardStatus = { state: 'serving', ...base, listen: hostPort(s.address, s.port), url: s.url };
  log.info({ url: s.url, ...(cfg.netns ? { netns: cfg.netns } : {}), fetch: c.health().scrape.how }, 'dashboard serving');
  return {
    get status() {
      return status;
    },
    collector: c,
    close: async () => {
      status = { ...status, state: 'stopped' };
      await c.stop();
      await s.close();
    },
  };
}

/** The control plane's status with the dashboard's (a failure also becomes a note, which `ambit control-plane status` prints). */
export function withDashboardStatus<S extends { readonly notes: readonly string[] }>(s: S, d: DashboardStatus): S & { dashboard: DashboardStatus } {
  const note = d.state === 'failed' && d.error ? [`dashboard not served: ${d.error.message} (${d.error.code})`] : [];
  return { ...s, notes: [...s.notes, ...note], dashboard: d };
}

/**
 * Makes `host.status()` (what /debug/status answers) include the dashboard.
 * The ControlPlane has no hook for extra status, so its status method is
 * wrapped on the instance.
 */
export function reportDashboardInStatus(host: { status(): ControlPlaneStatus }, dashboard: () => DashboardStatus): void {
  const original = host.status.bind(host);
  Object.defineProperty(host, 'status', { configurable: true, writable: true, value: () => withDashboardStatus(original(), dashboard()) });
}
