/**
 * Orchestration of the lab: `up` builds the namespaces from a plan, `down`
 * removes exactly what the state record lists, `status` and `exec` look a
 * lab up by name. Everything that touches the system goes through an
 * injectable command runner (ip/sysctl) and injectable directories, so the
 * command sequence is unit-testable without root.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { basename, join, resolve, sep } from 'node:path';
import { ConfigError } from '../common/errors.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { parseLocalClusterConfig, type LocalClusterConfig } from '../state/local-config.js';
import { agentArgv, defaultAgentCommand, defaultSpawnAgent, processAlive, processStartTime, stopProcess, waitForAgents, type AgentProcess, type SpawnAgent, type WatchedAgent } from './agents.js';
import { LabExistsError, LabNotFoundError, LabPrivilegeError, LabRouteConflictError, LabTeardownError } from './errors.js';
import { execRunner, Ip, type CommandRunner } from './ip.js';
import { loadManifests, type LabSpec } from './manifests.js';
import { DEFAULT_STATE_ROOT, labRecordDir, listLabNames, readLabState, StateStore, type HostRouteRecord, type LabState, type WaypointRecord } from './state.js';
import { BRIDGE_NAME, ETH0, GATEWAY_MAC, isLabNetns, planLab, POD_GATEWAY, POD_RESOLV_CONF, toClusterConfig, validateLabName, type LabPlan, type PlannedRoute } from './topology.js';
import { startWaypointProcesses, stopWaypointProcesses, waypointKey, waypointPods, type LabWaypointPod, type WaypointLaunchContext } from './waypoints.js';
import { defaultSpoolDir, WIRE_AUDIT_ENV, WIRE_TAP_RECORD, WIRE_TAP_SCRIPT } from './wire-tap.js';

export const DEFAULT_LAB_NAME = 'ambit';
/** Every netns whose name starts with this is swept by `lab down --all`. */
export const DEFAULT_NETNS_PREFIX = 'ambit-';
export const DEFAULT_ETC_NETNS = '/etc/netns';
export const DEFAULT_READY_TIMEOUT_MS = 20_000;
export const DEFAULT_STOP_GRACE_MS = 3_000;
export const CLUSTER_FILE = 'cluster.json';
/** How long `down` lets the wire tap drain its capture files before SIGKILL. */
const WIRE_TAP_STOP_GRACE_MS = 30_000;

/** Options shared by every lab operation. */
export interface LabEnvOptions {
  /** Registry of labs; default $AMBIT_LAB_STATE_ROOT or /run/ambit/lab. */
  stateRoot?: string;
  /** Runs `ip`/`sysctl`; tests inject a recorder. Default: execFile. */
  runner?: CommandRunner;
  /** Where `ip netns exec` finds per-netns /etc files; default /etc/netns. */
  etcNetnsDir?: string;
  logger?: Logger;
  /** SIGTERM-to-SIGKILL grace for agents on `down`; default 3000 ms. */
  stopGraceMs?: number;
}

export interface LabUpOptions extends LabEnvOptions {
  /** A YAML file or a directory of YAML files. One of `manifests` / `spec` is required. */
  manifests?: string;
  /** An already parsed spec (skips reading files). */
  spec?: LabSpec;
  /** Default 'ambit'. */
  name?: string;
  /** Where cluster.json, agent logs and ready files go; default the lab's record dir. */
  stateDir?: string;
  /** Start one agent per node (default true; the CLI's --no-mesh sets false). */
  mesh?: boolean;
  /** Replaces the process launch entirely (tests, or an agent that is not built yet). */
  spawnAgent?: SpawnAgent;
  /** Program and leading args that replace `<node> <repo>/bin/ambit.js`; `agent --node ...` is appended. */
  agentCommand?: readonly string[];
  /** How long to wait for every agent's ready file; default 20000 ms. */
  readyTimeoutMs?: number;
  /**
   * Run `ambit control-plane` on the manifests (in the first node's netns,
   * like an istiod on that node) and start the agents in remote mode: xDS and
   * certificates from it. Editing the manifest folder then changes the live
   * mesh. Default false: the agents read the lab's cluster file.
   *
   * Every pod labelled `gateway.networking.k8s.io/gateway-name: <gw>` then
   * runs `ambit waypoint run --name <gw>` in its netns (see waypoints.ts).
   */
  controlPlane?: boolean;
  /** Appended to every waypoint's argv (control-plane mode), e.g. ['--otlp-endpoint', url]; kept for `labApply`. */
  waypointArgs?: readonly string[];
  /** Appended to the control plane's argv, e.g. ['--max-cert-ttl-seconds', '60']; kept for `labStartControlPlane`. */
  controlPlaneArgs?: readonly string[];
  /** Appended to every agent's argv at `up`, e.g. ['--cert-ttl-seconds', '60'] (not kept for `labRestartAgent`). */
  agentArgs?: readonly string[];
  /**
   * Capture every frame on the lab's bridge and scan it for the payload
   * marker (wire-tap.ts); the report goes to this directory. Default
   * $AMBIT_WIRE_AUDIT_DIR when the real command runner is used; false: never.
   */
  wireAuditDir?: string | false;
}

/** Where the lab's control plane listens, on the first node's address. */
export const LAB_CONTROL_PLANE_PORT = 15012;
export const LAB_CONTROL_PLANE_MONITORING_PORT = 15014;
/** The pseudo-node name under which the control-plane process is recorded (so `down` stops it). */
export const CONTROL_PLANE_RECORD = 'control-plane';

export interface StoppedProcess {
  /** The agent's node, or the netns a stray process was found in. */
  readonly where: string;
  readonly pid: number;
  readonly result: 'not-running' | 'terminated' | 'killed';
}

export interface LabDownReport {
  readonly name: string;
  /** False when there was no record of the lab (nothing or only leftovers removed). */
  readonly found: boolean;
  readonly netns: readonly string[];
  readonly routes: readonly string[];
  readonly hostsDirs: readonly string[];
  readonly processes: readonly StoppedProcess[];
  /** The lab's wire tap, when it had one (kept apart from the lab's own processes). */
  readonly wireTap?: StoppedProcess;
}

/** A pod as `<namespace>/<pod>` or `<pod>` (namespace default), or an object form. */
export type LabTarget = string | { readonly pod: string; readonly namespace?: string } | { readonly node: string };

export interface ExecOptions {
  /** Written to the command's stdin, which is then closed. */
  input?: string | Buffer;
  /** Kill the command (SIGKILL) after this long. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface ExecResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface LabHandle {
  readonly name: string;
  readonly stateDir: string;
  readonly cluster: LocalClusterConfig;
  podNetns(namespace: string, pod: string): string;
  nodeNetns(node: string): string;
  /** Runs argv inside the target's netns (`ip netns exec`) and collects its output. */
  exec(target: LabTarget, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts argv inside the target's netns; the caller owns the process. */
  spawn(target: LabTarget, argv: readonly string[], opts?: SpawnOptions): ChildProcess;
  down(): Promise<LabDownReport>;
}

export interface LabStatus {
  readonly name: string;
  readonly phase: string;
  readonly createdAt: string;
  readonly stateDir: string;
  readonly clusterFile?: string;
  readonly ranges?: { pod: string; service: string; node: string };
  readonly nodes: ReadonlyArray<{ name: string; ip: string; podCidr: string; netns: string; netnsExists: boolean; agent?: { pid: number; alive: boolean; logFile: string } }>;
  readonly pods: ReadonlyArray<{ uid: string; node: string; ip: string; netns: string; netnsExists: boolean }>;
  readonly waypoints: ReadonlyArray<{ namespace: string; pod: string; gateway: string; pid: number; alive: boolean; logFile: string }>;
}

interface Env {
  readonly root: string;
  readonly ip: Ip;
  readonly etcNetns: string;
  readonly log: Logger;
  readonly graceMs: number;
}

function env(opts: LabEnvOptions): Env {
  // Only the real runner needs root; injected runners are for tests.
  if (!opts.runner && process.getuid?.() !== 0) {
    throw new LabPrivilegeError('the lab needs root (network namespaces, routes, /etc/netns); run it with sudo or as root');
  }
  return {
    root: resolve(opts.stateRoot ?? process.env.AMBIT_LAB_STATE_ROOT ?? DEFAULT_STATE_ROOT),
    ip: new Ip(opts.runner ?? execRunner),
    etcNetns: opts.etcNetnsDir ?? DEFAULT_ETC_NETNS,
    log: opts.logger ?? silentLogger(),
    graceMs: opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS,
  };
}

function routeArgs(r: PlannedRoute): string[] {
  return [r.dst, ...(r.via ? ['via', r.via] : []), 'dev', r.dev, ...(r.scope ? ['scope', r.scope] : []), ...(r.src ? ['src', r.src] : [])];
}

/** True when `child` is strictly inside `dir` (guards every recursive delete). */
function isInside(dir: string, child: string): boolean {
  const d = resolve(dir) + sep;
  return resolve(child).startsWith(d) && resolve(child) !== resolve(dir);
}

/** Other labs' records of the host route `dst`. */
function otherLabsRoutes(root: string, self: string, dst: string): HostRouteRecord[] {
  return listLabNames(root)
    .filter((n) => n !== self)
    .flatMap((n) => readLabState(root, n)?.hostRoutes.filter((r) => r.dst === dst) ?? []);
}

// ---------------------------------------------------------------- up

async function preflight(e: Env, plan: LabPlan): Promise<void> {
  if (readLabState(e.root, plan.name)) {
    throw new LabExistsError(`lab '${plan.name}' is already up (record in ${labRecordDir(e.root, plan.name)}); run 'ambit lab down --name ${plan.name}' first`);
  }
  const planned = new Set([plan.bridgeNetns, ...plan.nodes.map((n) => n.netns), ...plan.pods.map((p) => p.netns)]);
  const clash = (await e.ip.netnsList()).filter((n) => planned.has(n) || isLabNetns(plan.name, n));
  if (clash.length > 0) {
    throw new LabExistsError(`network namespaces of lab '${plan.name}' already exist (${clash.join(', ')}), probably from a crashed run; run 'ambit lab down --all'`);
  }
  for (const cidr of plan.hostBlackholes) {
    const real = (await e.ip.hostRoutesExact(cidr)).filter((r) => r.type !== 'blackhole');
    if (real.length > 0) {
      throw new LabRouteConflictError(`the host already routes ${cidr}${real[0]?.dev ? ` via ${real[0].dev}` : ''}; the lab will not replace it. Pick other ranges with a LabConfig (spec.podCIDR, spec.serviceCIDR, spec.nodeCIDR)`);
    }
    const inside = await e.ip.hostRoutesInside(cidr);
    if (inside.length > 0) {
      e.log.warn({ cidr, routes: inside }, 'host routes inside a lab range take precedence over its blackhole route; lab addresses may be reachable from the host');
    }
  }
}

async function addNetns(e: Env, store: StateStore, netns: string): Promise<void> {
  // Recorded first: if `ip netns add` half-succeeds or we crash, `down` still removes it.
  store.update((s) => s.netns.push(netns));
  await e.ip.netnsAdd(netns);
  await e.ip.in(netns, 'link', 'set', 'lo', 'up');
}

async function build(e: Env, store: StateStore, plan: LabPlan, wireAuditDir?: string): Promise<void> {
  const { ip } = e;
  // 1. Host safety first: from here on, nothing addressed to the lab leaves the machine.
  for (const dst of plan.hostBlackholes) {
    const existed = (await ip.hostRoutesExact(dst)).some((r) => r.type === 'blackhole');
    // An existing blackhole is lab-managed only if a running lab owns it; otherwise it is the administrator's.
    const owned = !existed || otherLabsRoutes(e.root, plan.name, dst).some((r) => r.owned);
    store.update((s) => s.hostRoutes.push({ dst, type: 'blackhole', owned }));
    await ip.host('route', 'replace', 'blackhole', dst);
  }

  // 2. The underlay: one bridge that every node's eth0 plugs into.
  const br = plan.bridgeNetns;
  await addNetns(e, store, br);
  await ip.in(br, 'link', 'add', BRIDGE_NAME, 'type', 'bridge');
  await ip.in(br, 'link', 'set', BRIDGE_NAME, 'up');
  // The wire tap listens before any node is plugged in, so it sees every inter-node frame.
  if (wireAuditDir) await startWireTap(e, store, br, wireAuditDir);

  // 3. Nodes. Veths are created directly inside the target namespaces, so
  //    no lab interface ever exists in the host netns, even for a moment.
  for (const node of plan.nodes) {
    await addNetns(e, store, node.netns);
    await ip.host('link', 'add', ETH0, 'netns', node.netns, 'type', 'veth', 'peer', 'name', node.bridgePort, 'netns', br);
    await ip.in(br, 'link', 'set', node.bridgePort, 'master', BRIDGE_NAME);
    await ip.in(br, 'link', 'set', node.bridgePort, 'up');
    await ip.in(node.netns, 'addr', 'add', `${node.ip}/${node.prefix}`, 'dev', ETH0);
    await ip.in(node.netns, 'link', 'set', ETH0, 'up');
    await ip.sysctl(node.netns, 'net.ipv4.ip_forward', '1');
  }

  // 4. Pods: eth0 with podIP/32 and a link-local gateway whose MAC is pinned
  //    to the node side of the veth, so no ARP or per-pod node address is needed.
  const nodeNetns = new Map(plan.nodes.map((n) => [n.name, n.netns]));
  for (const pod of plan.pods) {
    const nodeNs = nodeNetns.get(pod.node) as string;
    await addNetns(e, store, pod.netns);
    await ip.host('link', 'add', ETH0, 'netns', pod.netns, 'type', 'veth', 'peer', 'name', pod.nodeVeth, 'netns', nodeNs, 'address', GATEWAY_MAC);
    await ip.in(nodeNs, 'link', 'set', pod.nodeVeth, 'up');
    await ip.in(pod.netns, 'addr', 'add', `${pod.ip}/32`, 'dev', ETH0);
    await ip.in(pod.netns, 'link', 'set', ETH0, 'up');
    await ip.in(pod.netns, 'route', 'add', POD_GATEWAY, 'dev', ETH0, 'scope', 'link');
    await ip.in(pod.netns, 'neigh', 'replace', POD_GATEWAY, 'lladdr', GATEWAY_MAC, 'dev', ETH0, 'nud', 'permanent');
    await ip.in(pod.netns, 'route', 'add', 'default', 'via', POD_GATEWAY, 'dev', ETH0);
    // `ip netns exec` bind-mounts /etc/netns/<netns>/* over /etc: the pod's own hosts file.
    const dir = join(e.etcNetns, pod.netns);
    store.update((s) => s.hostsDirs.push(dir));
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    writeFileSync(join(dir, 'hosts'), pod.hosts, { mode: 0o644 });
    // `ip netns exec` can only bind over an /etc/resolv.conf that exists; otherwise it warns on every exec.
    if (existsSync('/etc/resolv.conf')) writeFileSync(join(dir, 'resolv.conf'), POD_RESOLV_CONF, { mode: 0o644 });
  }

  // 5. Node routing: local pods on their veths, remote pod CIDRs via their node.
  for (const node of plan.nodes) {
    for (const r of node.routes) await ip.in(node.netns, 'route', 'add', ...routeArgs(r));
  }
}

/** Where the wire tap of a lab up with these options reports; undefined = no tap. */
function wireAuditDirFor(opts: LabUpOptions): string | undefined {
  if (opts.wireAuditDir === false) return undefined;
  if (opts.wireAuditDir) return resolve(opts.wireAuditDir);
  // Injected runners are recorders (unit tests): nothing real to capture.
  const fromEnv = opts.runner ? undefined : process.env[WIRE_AUDIT_ENV];
  return fromEnv ? resolve(fromEnv) : undefined;
}

/** Starts the wire tap (wire-tap.ts as a script, = `ambit lab wire-tap`) in the bridge netns, detached like an agent, and waits until tcpdump listens. */
async function startWireTap(e: Env, store: StateStore, bridgeNetns: string, outDir: string): Promise<void> {
  mkdirSync(outDir, { recursive: true, mode: 0o755 });
  const name = store.state.name;
  const readyFile = join(store.dir, 'wire-tap.ready');
  const logFile = join(outDir, `${name}.tap.log`);
  rmSync(readyFile, { force: true });
  const spoolDir = defaultSpoolDir(name);
  const argv = [process.execPath, WIRE_TAP_SCRIPT, '--name', name, '--out', outDir, '--spool', spoolDir, '--ready-file', readyFile, '--netns', bridgeNetns];
  let proc: AgentProcess;
  try {
    proc = await defaultSpawnAgent({ node: WIRE_TAP_RECORD, netns: bridgeNetns, argv, logFile, readyFile });
  } catch (err) {
    rmSync(spoolDir, { recursive: true, force: true });
    throw err;
  }
  const startTime = processStartTime(proc.pid);
  store.update((s) => (s.wireTap = { pid: proc.pid, ...(startTime ? { startTime } : {}), outDir, logFile, readyFile, spoolDir }));
  await waitForAgents([{ node: WIRE_TAP_RECORD, proc, readyFile, logFile, what: `the wire tap of lab ${name}` }], DEFAULT_READY_TIMEOUT_MS);
  e.log.info({ lab: name, pid: proc.pid, outDir }, 'wire tap listening on the lab bridge');
}

interface LabControlPlane {
  readonly address: string;
  readonly rootCert: string;
  readonly tokenFile: (node: string) => string;
}

/**
 * Starts `ambit control-plane` in the first node's netns, with a token per
 * node for the CA, on the user's manifests (a single file is copied into the
 * lab's state dir, since the control plane watches a folder).
 */
async function startControlPlane(e: Env, store: StateStore, plan: LabPlan, clusterFile: string, opts: LabUpOptions): Promise<LabControlPlane> {
  const stateDir = store.state.stateDir;
  const caDir = join(stateDir, 'ca');
  mkdirSync(caDir, { recursive: true, mode: 0o700 });
  const host = plan.nodes[0];
  if (!host) throw new ConfigError('the lab has no node to run the control plane on');
  let manifestsDir: string;
  if (opts.manifests && statSync(opts.manifests).isDirectory()) manifestsDir = resolve(opts.manifests);
  else {
    manifestsDir = join(stateDir, 'manifests');
    mkdirSync(manifestsDir, { recursive: true });
    if (opts.manifests) copyFileSync(opts.manifests, join(manifestsDir, basename(opts.manifests)));
  }
  const tokens = plan.nodes.map((n) => ({ node: n.name, token: randomBytes(24).toString('hex'), file: join(stateDir, `agent-token-${n.name}`) }));
  for (const t of tokens) writeFileSync(t.file, `${t.token}\n`, { mode: 0o600 });
  const tokenFile = join(stateDir, 'node-tokens');
  writeFileSync(tokenFile, tokens.map((t) => `${t.token} ${t.node}`).join('\n') + '\n', { mode: 0o600 });
  const readyFile = join(stateDir, 'control-plane.ready');
  const logFile = join(stateDir, 'control-plane.log');
  rmSync(readyFile, { force: true });
  const command = opts.agentCommand ?? defaultAgentCommand();
  const argv = [
    ...command,
    'control-plane',
    '--manifests', manifestsDir,
    '--lab-cluster', clusterFile,
    '--node-tokens', tokenFile,
    '--ca-dir', caDir,
    '--address', host.ip,
    '--port', String(LAB_CONTROL_PLANE_PORT),
    '--monitoring-port', String(LAB_CONTROL_PLANE_MONITORING_PORT),
    '--ready-file', readyFile,
    ...(opts.controlPlaneArgs ?? []),
  ];
  const launch: ControlPlaneLaunch = { netns: host.netns, argv, logFile, readyFile };
  writeFileSync(join(stateDir, CONTROL_PLANE_LAUNCH_FILE), JSON.stringify(launch, null, 2) + '\n', { mode: 0o644 });
  const proc = await launchControlPlane(store, launch, opts.spawnAgent, opts.readyTimeoutMs);
  e.log.info({ pid: proc.pid, address: `${host.ip}:${LAB_CONTROL_PLANE_PORT}`, manifests: manifestsDir }, 'control plane started');
  const address = `${host.ip}:${LAB_CONTROL_PLANE_PORT}`;
  const rootCert = join(caDir, 'root-cert.pem');
  store.update((s) => (s.controlPlane = { address, rootCert, ...(opts.waypointArgs ? { waypointArgs: [...opts.waypointArgs] } : {}), ...(opts.agentCommand ? { command: [...opts.agentCommand] } : {}) }));
  return { address, rootCert, tokenFile: (node) => nodeTokenFile(stateDir, node) };
}

function nodeTokenFile(stateDir: string, node: string): string {
  return join(stateDir, `agent-token-${node}`);
}

/** The launch context of a lab's waypoints; undefined unless the lab runs a control plane and agents. */
function waypointContext(state: LabState): WaypointLaunchContext | undefined {
  const cp = state.controlPlane;
  if (!cp || !state.mesh) return undefined;
  return { xdsAddress: cp.address, rootCert: cp.rootCert, tokenFile: (node) => nodeTokenFile(state.stateDir, node), stateDir: state.stateDir, ...(cp.waypointArgs ? { extraArgs: cp.waypointArgs } : {}) };
}

async function startLabWaypoints(e: Env, store: StateStore, pods: readonly LabWaypointPod[], opts: { spawnAgent?: SpawnAgent; readyTimeoutMs?: number }): Promise<WaypointRecord[]> {
  const ctx = waypointContext(store.state);
  if (!ctx || pods.length === 0) return [];
  return startWaypointProcesses(store, pods, ctx, {
    command: store.state.controlPlane?.command ?? defaultAgentCommand(),
    ...(opts.spawnAgent ? { spawn: opts.spawnAgent } : {}),
    readyTimeoutMs: opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS,
    logger: e.log,
  });
}

const CONTROL_PLANE_LAUNCH_FILE = 'control-plane.launch.json';

interface ControlPlaneLaunch {
  readonly netns: string;
  readonly argv: readonly string[];
  readonly logFile: string;
  readonly readyFile: string;
}

async function launchControlPlane(store: StateStore, l: ControlPlaneLaunch, spawnAgent: SpawnAgent | undefined, readyTimeoutMs: number | undefined): Promise<{ pid: number }> {
  rmSync(l.readyFile, { force: true });
  const proc = await (spawnAgent ?? defaultSpawnAgent)({ node: CONTROL_PLANE_RECORD, netns: l.netns, argv: [...l.argv], logFile: l.logFile, readyFile: l.readyFile });
  const startTime = processStartTime(proc.pid);
  store.update((s) => s.agents.push({ node: CONTROL_PLANE_RECORD, pid: proc.pid, ...(startTime ? { startTime } : {}), logFile: l.logFile, readyFile: l.readyFile }));
  await waitForAgents([{ node: CONTROL_PLANE_RECORD, proc, readyFile: l.readyFile, logFile: l.logFile }], readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
  return proc;
}

/**
 * Stops a lab's control plane (SIGKILL when `kill`, else SIGTERM), e.g. to
 * show that agents keep serving on their last-known-good state.
 */
export async function labStopControlPlane(name: string, opts: LabEnvOptions & { kill?: boolean } = {}): Promise<void> {
  const e = env(opts);
  const state = requireState(e.root, name);
  const store = new StateStore(e.root, state);
  for (const rec of state.agents.filter((a) => a.node === CONTROL_PLANE_RECORD)) {
    await stopProcess(rec.pid, rec.startTime, opts.kill ? 0 : (opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS));
    store.update((s) => (s.agents = s.agents.filter((a) => a.pid !== rec.pid)));
  }
}

/** Starts the lab's control plane again with the arguments of `lab up --control-plane`. */
export async function labStartControlPlane(name: string, opts: LabEnvOptions & { readyTimeoutMs?: number } = {}): Promise<{ pid: number }> {
  const e = env(opts);
  const state = requireState(e.root, name);
  const file = join(state.stateDir, CONTROL_PLANE_LAUNCH_FILE);
  if (!existsSync(file)) throw new LabNotFoundError(`lab '${name}' was not started with a control plane`);
  const launch = JSON.parse(readFileSync(file, 'utf8')) as ControlPlaneLaunch;
  return launchControlPlane(new StateStore(e.root, state), launch, undefined, opts.readyTimeoutMs);
}

async function startAgents(e: Env, store: StateStore, plan: LabPlan, clusterFile: string, opts: LabUpOptions, cp?: LabControlPlane): Promise<void> {
  const stateDir = store.state.stateDir;
  const caDir = join(stateDir, 'ca');
  mkdirSync(caDir, { recursive: true, mode: 0o700 });
  const command = opts.agentCommand ?? defaultAgentCommand();
  const launch = opts.spawnAgent ?? defaultSpawnAgent;
  const watched: WatchedAgent[] = [];
  for (const node of plan.nodes) {
    const readyFile = join(stateDir, `agent-${node.name}.ready`);
    const logFile = join(stateDir, `agent-${node.name}.log`);
    rmSync(readyFile, { force: true }); // a stale one from an earlier run would fake readiness
    const remote = cp ? ['--xds-address', cp.address, '--token-file', cp.tokenFile(node.name), '--root-cert', cp.rootCert] : [];
    const argv = [...agentArgv(command, { node: node.name, clusterFile, caDir, readyFile }), ...remote, ...(opts.agentArgs ?? [])];
    const proc = await launch({ node: node.name, netns: node.netns, argv, logFile, readyFile });
    const startTime = processStartTime(proc.pid);
    store.update((s) => s.agents.push({ node: node.name, pid: proc.pid, ...(startTime ? { startTime } : {}), logFile, readyFile }));
    e.log.info({ node: node.name, pid: proc.pid, logFile }, 'agent started');
    watched.push({ node: node.name, proc, readyFile, logFile });
  }
  await waitForAgents(watched, opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
}

/** Builds a lab from manifests; on any failure it tears down what it built and rethrows. */
export async function labUp(opts: LabUpOptions): Promise<LabHandle> {
  // Configuration errors first (exit 64 even without root), then privileges.
  const name = validateLabName(opts.name ?? DEFAULT_LAB_NAME);
  let spec = opts.spec;
  if (!spec) {
    if (!opts.manifests) throw new ConfigError('lab up needs manifests (a YAML file or a directory of YAML files)');
    spec = await loadManifests(opts.manifests);
  }
  const plan = planLab(name, spec);
  // Validate with the agents' own parser: a lab that agents cannot read is a lab bug.
  const cluster = parseLocalClusterConfig(JSON.parse(JSON.stringify(toClusterConfig(plan))) as unknown, 'lab cluster config');
  const e = env(opts);
  for (const w of spec.warnings) e.log.warn(w);
  await preflight(e, plan);

  const recordDir = labRecordDir(e.root, name);
  const stateDir = opts.stateDir ? resolve(opts.stateDir) : recordDir;
  const mesh = opts.mesh !== false;
  const store = StateStore.create(e.root, {
    version: 1,
    name,
    phase: 'creating',
    createdAt: new Date().toISOString(),
    creatorPid: process.pid,
    stateDir,
    ownsStateDir: stateDir === recordDir,
    mesh,
    ranges: plan.ranges,
    netns: [],
    hostRoutes: [],
    hostsDirs: [],
    agents: [],
    waypoints: [],
    nodes: plan.nodes.map((n) => ({ name: n.name, netns: n.netns, ip: n.ip, podCidr: n.podCidr })),
    pods: plan.pods.map((p) => ({ uid: p.uid, namespace: p.namespace, name: p.name, node: p.node, ip: p.ip, netns: p.netns })),
  });
  try {
    e.log.info({ lab: name, nodes: plan.nodes.length, pods: plan.pods.length }, 'creating lab');
    await build(e, store, plan, wireAuditDirFor(opts));
    mkdirSync(stateDir, { recursive: true, mode: 0o755 });
    const clusterFile = join(stateDir, CLUSTER_FILE);
    writeFileSync(clusterFile, JSON.stringify(cluster, null, 2) + '\n', { mode: 0o644 });
    store.update((s) => (s.clusterFile = clusterFile));
    if (mesh) await startAgents(e, store, plan, clusterFile, opts, opts.controlPlane ? await startControlPlane(e, store, plan, clusterFile, opts) : undefined);
    const wps = waypointPods(plan.pods);
    if (wps.length > 0 && !(mesh && opts.controlPlane)) {
      e.log.warn({ pods: wps.map((w) => `${w.namespace}/${w.pod}`) }, 'waypoint pods need the control plane (xDS, certificates); they run no waypoint without --control-plane');
    }
    await startLabWaypoints(e, store, wps, opts);
    store.update((s) => (s.phase = 'up'));
    e.log.info({ lab: name, stateDir }, 'lab is up');
  } catch (err) {
    e.log.info({ lab: name, reason: (err as Error).message }, 'lab up failed; tearing down what it built');
    try {
      store.update((s) => (s.phase = 'failed'));
      await downWith(e, name);
    } catch (cleanupErr) {
      e.log.error({ lab: name, err: cleanupErr }, `cleanup after the failure failed too; run 'ambit lab down --name ${name}'`);
    }
    throw err;
  }
  return makeHandle(name, opts, readLabState(e.root, name) as LabState, cluster);
}

// ---------------------------------------------------------------- down

/** Removes /etc/netns/<name> dirs, only ever inside the configured directory. */
function removeHostsDir(e: Env, dir: string): boolean {
  if (!isInside(e.etcNetns, dir) || !existsSync(dir)) return false;
  rmSync(dir, { recursive: true, force: true });
  return true;
}

/**
 * Stops every process still inside a netns (a server started with `lab exec`,
 * an agent whose pid was never recorded): deleting the name alone would leave
 * the namespace alive, and the process with it, for as long as it runs.
 */
async function stopNetnsProcesses(e: Env, netns: string): Promise<StoppedProcess[]> {
  const r = await e.ip.host('netns', 'pids', netns).catch(() => undefined);
  const pids = (r?.stdout ?? '')
    .split('\n')
    .map(Number)
    .filter((p) => Number.isInteger(p) && p > 0 && p !== process.pid);
  return Promise.all(pids.map(async (pid) => ({ where: netns, pid, result: await stopProcess(pid, processStartTime(pid), e.graceMs) })));
}

async function removeNetns(e: Env, netns: string, errors: Error[], processes: StoppedProcess[]): Promise<boolean> {
  try {
    processes.push(...(await stopNetnsProcesses(e, netns)));
    return await e.ip.netnsDel(netns);
  } catch (err) {
    errors.push(err as Error);
    return false;
  }
}

async function downWith(e: Env, name: string): Promise<LabDownReport> {
  const state = readLabState(e.root, name);
  const errors: Error[] = [];
  const removedNetns: string[] = [];
  const removedRoutes: string[] = [];
  const removedDirs: string[] = [];
  const processes: StoppedProcess[] = [];
  let wireTap: StoppedProcess | undefined;
  if (state) {
    const store = new StateStore(e.root, state);
    store.update((s) => (s.phase = 'tearing-down'));
    // Processes first: a netns stays alive while a process is inside it. Waypoints before the agents and the control plane they use.
    processes.push(...(await stopWaypointProcesses(store, state.waypoints ?? [], e.graceMs)));
    const results = await Promise.all(state.agents.map(async (a) => ({ where: a.node, pid: a.pid, result: await stopProcess(a.pid, a.startTime, e.graceMs) })));
    processes.push(...results);
    // The wire tap last, so it saw everything the processes sent; it writes its report on SIGTERM.
    // It drains its spool before it exits, so it gets time for a backlog (a heavy transfer just ended).
    const tap = state.wireTap;
    if (tap) {
      wireTap = { where: WIRE_TAP_RECORD, pid: tap.pid, result: await stopProcess(tap.pid, tap.startTime, Math.max(e.graceMs, WIRE_TAP_STOP_GRACE_MS)) };
      if (tap.spoolDir && basename(tap.spoolDir).startsWith('ambit-wire-')) rmSync(tap.spoolDir, { recursive: true, force: true });
    }
    for (const netns of [...state.netns].reverse()) {
      if (await removeNetns(e, netns, errors, processes)) removedNetns.push(netns);
    }
    for (const dir of state.hostsDirs) if (removeHostsDir(e, dir)) removedDirs.push(dir);
  }
  // Anything shaped like this lab but not (or no longer) recorded, e.g. the record was lost.
  const netnsNow = await e.ip.netnsList().catch((err: Error) => {
    errors.push(err);
    return [] as string[];
  });
  for (const netns of netnsNow.filter((n) => isLabNetns(name, n))) {
    if (await removeNetns(e, netns, errors, processes)) removedNetns.push(netns);
  }
  for (const d of listDirs(e.etcNetns).filter((n) => isLabNetns(name, n))) {
    if (removeHostsDir(e, join(e.etcNetns, d))) removedDirs.push(join(e.etcNetns, d));
  }
  if (state) {
    // Shared blackholes go only with the last lab that uses them.
    for (const r of state.hostRoutes) {
      if (!r.owned || otherLabsRoutes(e.root, name, r.dst).length > 0) continue;
      try {
        const current = await e.ip.hostRoutesExact(r.dst);
        if (current.some((c) => c.type === 'blackhole')) {
          await e.ip.host('route', 'del', 'blackhole', r.dst);
          removedRoutes.push(r.dst);
        }
      } catch (err) {
        errors.push(err as Error);
      }
    }
    if (!state.ownsStateDir) for (const a of state.agents) rmSync(a.readyFile, { force: true });
  }
  if (errors.length > 0) {
    // Keep the record so a second `down` can retry what is left.
    throw new LabTeardownError(`lab '${name}' was not fully removed: ${errors.map((x) => x.message).join('; ')}; run 'ambit lab down --name ${name}' again`, errors);
  }
  rmSync(labRecordDir(e.root, name), { recursive: true, force: true });
  e.log.info({ lab: name, netns: removedNetns.length, routes: removedRoutes }, state ? 'lab removed' : 'no record of the lab');
  return { name, found: state !== undefined, netns: removedNetns, routes: removedRoutes, hostsDirs: removedDirs, processes, ...(wireTap ? { wireTap } : {}) };
}

function listDirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch {
    return [];
  }
}

/** Removes a lab: its agents, netns, hosts dirs, routes (when no other lab needs them) and record. Idempotent. */
export async function labDown(name: string = DEFAULT_LAB_NAME, opts: LabEnvOptions = {}): Promise<LabDownReport> {
  const valid = validateLabName(name);
  return downWith(env(opts), valid);
}

/**
 * Removes every recorded lab, then any netns (and /etc/netns dir) named like
 * a recorded lab's or starting with `ambit-` (`leftoverPrefixes`): the sweep
 * run before integration tests to clear what crashed runs left behind.
 */
export async function labDownAll(opts: LabEnvOptions & { leftoverPrefixes?: readonly string[] } = {}): Promise<LabDownReport[]> {
  const e = env(opts);
  // Tests pass [] to sweep only what their own (temporary) state root records.
  const prefixes = opts.leftoverPrefixes ?? [DEFAULT_NETNS_PREFIX];
  const names = listLabNames(e.root);
  const reports: LabDownReport[] = [];
  const errors: Error[] = [];
  for (const name of names) {
    try {
      reports.push(await downWith(e, name));
    } catch (err) {
      errors.push(err as Error);
    }
  }
  const matches = (n: string): boolean => prefixes.some((p) => n.startsWith(p)) || names.some((lab) => isLabNetns(lab, n));
  const swept: string[] = [];
  const sweptDirs: string[] = [];
  const killed: StoppedProcess[] = [];
  for (const netns of (await e.ip.netnsList()).filter(matches)) {
    if (await removeNetns(e, netns, errors, killed)) swept.push(netns);
  }
  for (const d of listDirs(e.etcNetns).filter(matches)) {
    if (removeHostsDir(e, join(e.etcNetns, d))) sweptDirs.push(join(e.etcNetns, d));
  }
  if (swept.length > 0 || sweptDirs.length > 0 || killed.length > 0) {
    reports.push({ name: '(leftovers)', found: false, netns: swept, routes: [], hostsDirs: sweptDirs, processes: killed });
  }
  if (errors.length > 0) {
    throw new LabTeardownError(`some labs were not fully removed: ${errors.map((x) => x.message).join('; ')}`, errors);
  }
  return reports;
}

// ---------------------------------------------------------------- lookup, status, exec

function requireState(root: string, name: string): LabState {
  const state = readLabState(root, validateLabName(name));
  if (!state) {
    const others = listLabNames(root);
    throw new LabNotFoundError(`lab '${name}' is not up${others.length > 0 ? ` (labs: ${others.join(', ')})` : ''}; start it with 'ambit lab up <manifests> --name ${name}'`);
  }
  return state;
}

/** Resolves a pod/node target to its netns name. */
export function resolveTarget(state: LabState, target: LabTarget): string {
  if (typeof target === 'object' && 'node' in target) {
    const node = state.nodes.find((n) => n.name === target.node);
    if (!node) throw new LabNotFoundError(`lab '${state.name}' has no node '${target.node}' (nodes: ${state.nodes.map((n) => n.name).join(', ')})`);
    return node.netns;
  }
  let namespace: string;
  let pod: string;
  if (typeof target === 'string') {
    const slash = target.indexOf('/');
    [namespace, pod] = slash >= 0 ? [target.slice(0, slash), target.slice(slash + 1)] : ['default', target];
  } else {
    [namespace, pod] = [target.namespace ?? 'default', target.pod];
  }
  const found = state.pods.find((p) => p.namespace === namespace && p.name === pod);
  if (!found) throw new LabNotFoundError(`lab '${state.name}' has no pod ${namespace}/${pod} (pods: ${state.pods.map((p) => p.uid).join(', ')})`);
  return found.netns;
}

/** `ip netns exec <netns> argv...` as an argv (no shell). */
export function netnsExecArgv(netns: string, argv: readonly string[]): string[] {
  if (argv.length === 0) throw new ConfigError('no command given to run');
  return ['ip', 'netns', 'exec', netns, ...argv];
}

function spawnIn(netns: string, argv: readonly string[], opts: SpawnOptions = {}): ChildProcess {
  const [cmd, ...args] = netnsExecArgv(netns, argv);
  return spawn(cmd as string, args, opts);
}

function execIn(netns: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawnIn(netns, argv, { stdio: ['pipe', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.once('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolvePromise({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin?.on('error', () => {}); // the command may exit without reading its input
    child.stdin?.end(opts.input);
  });
}

function makeHandle(name: string, opts: LabEnvOptions, state: LabState, cluster: LocalClusterConfig): LabHandle {
  return {
    name,
    stateDir: state.stateDir,
    cluster,
    podNetns: (namespace, pod) => resolveTarget(state, { namespace, pod }),
    nodeNetns: (node) => resolveTarget(state, { node }),
    exec: (target, argv, execOpts) => execIn(resolveTarget(state, target), argv, execOpts),
    spawn: (target, argv, spawnOpts) => spawnIn(resolveTarget(state, target), argv, spawnOpts),
    down: () => labDown(name, opts),
  };
}

export interface LabApplyResult {
  readonly clusterFile: string;
  /** Pods whose mesh membership changed: uid -> 'joined' | 'left'. */
  readonly membership: Readonly<Record<string, 'joined' | 'left'>>;
  /** Waypoint processes started / stopped because a pod gained, lost or changed its gateway-name label (`<ns>/<pod>=<gateway>`). */
  readonly waypoints: { readonly started: readonly string[]; readonly stopped: readonly string[] };
}

/**
 * Applies edited manifests to a running lab: labels (mesh membership),
 * services and selectors. The agents follow their cluster file, so a pod
 * that leaves the ambient namespace is unenrolled within a second. The pod
 * set itself (names, nodes, addresses) must stay the same: network
 * namespaces are made by `lab up`, and changing them needs down and up.
 * With a control plane (which watches the manifest folder itself), a pod
 * that gains the label `gateway.networking.k8s.io/gateway-name` starts
 * running a waypoint and one that loses it stops.
 */
export async function labApply(name: string, source: { manifests?: string; spec?: LabSpec }, opts: LabEnvOptions & { spawnAgent?: SpawnAgent; readyTimeoutMs?: number } = {}): Promise<LabApplyResult> {
  validateLabName(name);
  const spec = source.spec ?? (source.manifests ? await loadManifests(source.manifests) : undefined);
  if (!spec) throw new ConfigError('lab apply needs manifests (a YAML file or a directory of YAML files)');
  const e = env(opts);
  const state = requireState(e.root, name);
  if (!state.clusterFile) throw new LabNotFoundError(`lab '${name}' is not fully up (phase ${state.phase})`);
  const plan = planLab(name, spec);
  const key = (p: { uid: string; node: string; ip: string; netns: string }): string => `${p.uid}@${p.node}/${p.ip}/${p.netns}`;
  const before = new Set(state.pods.map(key));
  const after = new Set(plan.pods.map(key));
  const added = [...after].filter((k) => !before.has(k));
  const removed = [...before].filter((k) => !after.has(k));
  if (added.length > 0 || removed.length > 0) {
    throw new ConfigError(`lab apply can change labels and services, not the pod set; run 'ambit lab down --name ${name}' and 'lab up' to ${[...added.map((k) => `add ${k.split('@')[0] ?? k}`), ...removed.map((k) => `remove ${k.split('@')[0] ?? k}`)].join(', ')}`);
  }
  const cluster = parseLocalClusterConfig(JSON.parse(JSON.stringify(toClusterConfig(plan))) as unknown, 'lab cluster config');
  const previous = parseLocalClusterConfig(JSON.parse(readFileSync(state.clusterFile, 'utf8')) as unknown, state.clusterFile);
  const membership: Record<string, 'joined' | 'left'> = {};
  for (const w of cluster.workloads) {
    const old = previous.workloads.find((x) => x.uid === w.uid);
    const was = old?.tunnelProtocol !== 'NONE';
    const is = w.tunnelProtocol !== 'NONE';
    if (old && was !== is) membership[w.uid] = is ? 'joined' : 'left';
  }
  // Write and rename, so an agent never reads a half-written file.
  const tmp = `${state.clusterFile}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(cluster, null, 2) + '\n', { mode: 0o644 });
  renameSync(tmp, state.clusterFile);
  // Waypoint pods: a pod that gained (or changed) the gateway-name label gets a waypoint process, one that lost it loses it.
  const store = new StateStore(e.root, state);
  const wanted = waypointContext(state) ? waypointPods(plan.pods) : [];
  const wantedKeys = new Set(wanted.map(waypointKey));
  const running = state.waypoints ?? [];
  const runningKeys = new Set(running.map((r) => waypointKey(r)));
  const stale = running.filter((r) => !wantedKeys.has(waypointKey(r)));
  await stopWaypointProcesses(store, stale, e.graceMs);
  const fresh = wanted.filter((w) => !runningKeys.has(waypointKey(w)));
  await startLabWaypoints(e, store, fresh, opts);
  const waypoints = { started: fresh.map(waypointKey), stopped: stale.map((r) => waypointKey(r)) };
  e.log.info({ lab: name, membership, waypoints }, 'lab manifests applied');
  return { clusterFile: state.clusterFile, membership, waypoints };
}

export interface AgentRestart {
  readonly node: string;
  readonly oldPid: number;
  readonly newPid: number;
  /** Resolves when the old agent has drained and exited (SIGKILL after `drainTimeoutMs`). */
  readonly oldExited: Promise<'terminated' | 'killed' | 'not-running'>;
}

/**
 * Restarts a node's agent the way a DaemonSet rollout with surge does: the
 * new agent starts next to the old one (SO_REUSEPORT listeners in every pod)
 * and becomes ready; only then is the old one sent SIGTERM, after which it
 * stops accepting and drains its open connections.
 */
export async function labRestartAgent(name: string, node: string, opts: LabEnvOptions & { readyTimeoutMs?: number; drainTimeoutMs?: number; spawnAgent?: SpawnAgent; extraArgs?: readonly string[] } = {}): Promise<AgentRestart> {
  const e = env(opts);
  const state = requireState(e.root, name);
  const old = state.agents.find((a) => a.node === node);
  const nodeRec = state.nodes.find((n) => n.name === node);
  if (!old || !nodeRec || !state.clusterFile) throw new LabNotFoundError(`lab '${name}' has no running agent for node '${node}'`);
  const stateDir = state.stateDir;
  const readyFile = join(stateDir, `agent-${node}-${Date.now()}.ready`);
  // Both agents run in the node's netns during the overlap: the new one needs its own admin ports (extraArgs).
  const argv = [...agentArgv(defaultAgentCommand(), { node, clusterFile: state.clusterFile, caDir: join(stateDir, 'ca'), readyFile }), ...(opts.extraArgs ?? [])];
  const proc = await (opts.spawnAgent ?? defaultSpawnAgent)({ node, netns: nodeRec.netns, argv, logFile: old.logFile, readyFile });
  const store = new StateStore(e.root, state);
  const startTime = processStartTime(proc.pid);
  store.update((s) => s.agents.push({ node, pid: proc.pid, ...(startTime ? { startTime } : {}), logFile: old.logFile, readyFile }));
  await waitForAgents([{ node, proc, readyFile, logFile: old.logFile }], opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
  e.log.info({ lab: name, node, oldPid: old.pid, newPid: proc.pid }, 'new agent ready; stopping the old one');
  const oldExited = stopProcess(old.pid, old.startTime, opts.drainTimeoutMs ?? 30_000).then((how) => {
    store.update((s) => (s.agents = s.agents.filter((a) => a.pid !== old.pid)));
    return how;
  });
  return { node, oldPid: old.pid, newPid: proc.pid, oldExited };
}

/** A handle on a lab that is already up (e.g. started by `ambit lab up`). */
export function openLab(name: string = DEFAULT_LAB_NAME, opts: LabEnvOptions = {}): LabHandle {
  validateLabName(name);
  const e = env(opts);
  const state = requireState(e.root, name);
  if (!state.clusterFile) throw new LabNotFoundError(`lab '${name}' is not fully up (phase ${state.phase})`);
  const cluster = parseLocalClusterConfig(JSON.parse(readFileSync(state.clusterFile, 'utf8')) as unknown, state.clusterFile);
  return makeHandle(name, opts, state, cluster);
}

/** Runs argv in a pod's or node's netns of a running lab, with the given stdio. Resolves to the exit code (128+n for signal n). */
export async function labExec(name: string, target: LabTarget, argv: readonly string[], opts: LabEnvOptions & { stdio?: SpawnOptions['stdio'] } = {}): Promise<number> {
  validateLabName(name);
  const e = env(opts);
  const netns = resolveTarget(requireState(e.root, name), target);
  return await new Promise((resolvePromise, reject) => {
    const child = spawnIn(netns, argv, { stdio: opts.stdio ?? 'inherit' });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const signo = signal ? ((osConstants.signals as Record<string, number>)[signal] ?? 0) : 0;
      resolvePromise(code ?? 128 + signo);
    });
  });
}

export async function labStatus(name: string = DEFAULT_LAB_NAME, opts: LabEnvOptions = {}): Promise<LabStatus> {
  validateLabName(name);
  const e = env(opts);
  const state = requireState(e.root, name);
  const existing = new Set(await e.ip.netnsList());
  return {
    name: state.name,
    phase: state.phase,
    createdAt: state.createdAt,
    stateDir: state.stateDir,
    ...(state.clusterFile ? { clusterFile: state.clusterFile } : {}),
    ...(state.ranges ? { ranges: state.ranges } : {}),
    nodes: state.nodes.map((n) => {
      const a = state.agents.find((x) => x.node === n.name);
      return {
        ...n,
        netnsExists: existing.has(n.netns),
        ...(a ? { agent: { pid: a.pid, alive: processAlive(a.pid, a.startTime), logFile: a.logFile } } : {}),
      };
    }),
    pods: state.pods.map((p) => ({ uid: p.uid, node: p.node, ip: p.ip, netns: p.netns, netnsExists: existing.has(p.netns) })),
    waypoints: (state.waypoints ?? []).map((w) => ({ namespace: w.namespace, pod: w.pod, gateway: w.gateway, pid: w.pid, alive: processAlive(w.pid, w.startTime), logFile: w.logFile })),
  };
}

/** Names of the labs with a record under the state root. */
export function labList(opts: Pick<LabEnvOptions, 'stateRoot'> = {}): string[] {
  return listLabNames(resolve(opts.stateRoot ?? process.env.AMBIT_LAB_STATE_ROOT ?? DEFAULT_STATE_ROOT));
}
