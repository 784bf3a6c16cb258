/**
 * `ambit status` cluster-wide: the control plane (reachable, ready, config
 * version, connected agents and waypoints, config errors and notes from its
 * /debug/status), every agent (node, ready, enrolled pods, the soonest
 * certificate expiry, xDS connected), every waypoint (Gateways of class
 * istio-waypoint, their pods' readiness when known, their xDS connections),
 * and a verdict: `problems` make the command exit non-zero, `warnings` do not.
 *
 * Pure aggregation over injected fetchers (StatusSources), so it is unit
 * tested without a cluster; status-sources.ts builds the sources for a lab
 * (HTTP from inside the node netns) and for Kubernetes (the API server's
 * pod/service proxy). Every remote answer is read defensively.
 */
import { toError } from '../common/errors.js';
import { summarizeDump } from './dump-summary.js';
import { heading, humanDuration, paint, table } from './format.js';
import { parsePromText, type PromSample } from './prom-text.js';

/** One GET; resolves for any HTTP status, rejects only when nothing answered. */
export type HttpGet = (path: string, accept?: string) => Promise<{ status: number; body: string }>;

export interface AgentTarget {
  readonly node: string;
  /** Where it was reached, for the table: a lab netns, a pod. */
  readonly where: string;
  /** The agent's pod (Kubernetes mode). */
  readonly pod?: { readonly namespace: string; readonly name: string; readonly ready: boolean; readonly phase: string };
  readonly readiness: HttpGet;
  readonly metrics: HttpGet;
  /** The admin endpoint (lab mode: it listens on 127.0.0.1 of the node). */
  readonly admin?: HttpGet;
  /** The agent takes its configuration over xDS (false: a cluster file); undefined: decide from what is known. */
  readonly usesXds?: boolean;
}

export interface WaypointTarget {
  readonly namespace: string;
  readonly name: string;
  readonly for: string;
  readonly source: string;
  /** Its pods (Kubernetes mode); undefined when there are none to look at (a lab). */
  readonly pods?: ReadonlyArray<{ readonly name: string; readonly ready: boolean; readonly phase: string }>;
}

export interface StatusSources {
  readonly mode: 'lab' | 'kubernetes';
  /** The lab name, or the API server. */
  readonly where: string;
  readonly controlPlane?: { readonly where: string; readonly get: HttpGet };
  readonly agents: readonly AgentTarget[];
  readonly waypoints: readonly WaypointTarget[];
}

export interface XdsPeer {
  readonly role: string;
  readonly pod: string;
  readonly namespace: string;
  readonly node: string;
  /** `ns/name` of the waypoint a proxy serves (node metadata WAYPOINT), when it says. */
  readonly waypoint?: string;
  readonly nacked: boolean;
}

export interface ControlPlaneReport {
  readonly where: string;
  readonly reachable: boolean;
  readonly error?: string;
  readonly ready?: boolean;
  readonly configVersion?: number | string;
  readonly served?: { workloads: number; services: number; authorizations: number };
  readonly connectedAgents?: number;
  readonly connectedWaypoints?: number;
  readonly configErrors: string[];
  readonly notes: string[];
  readonly rejections?: number;
}

export interface CertificateExpiry {
  readonly identity: string;
  readonly notAfter: string;
  readonly remainingMs: number;
}

export interface AgentReport {
  readonly node: string;
  readonly where: string;
  readonly reachable: boolean;
  readonly error?: string;
  readonly ready: boolean;
  readonly pending: string[];
  readonly podReady?: boolean;
  /** Pods whose in-pod proxy is up / all enrolled pods. */
  readonly enrolledUp?: number;
  readonly enrolled?: number;
  /** ns/name (state), when the admin dump was readable. */
  readonly pods?: string[];
  readonly certificates?: number;
  readonly soonestExpiry?: CertificateExpiry;
  readonly unavailableCertificates: string[];
  readonly xds: 'connected' | 'disconnected' | 'not used' | 'unknown';
}

export interface WaypointReport {
  readonly namespace: string;
  readonly name: string;
  readonly for: string;
  readonly source: string;
  readonly podsReady?: number;
  readonly pods?: number;
  /** Proxies of this waypoint connected to the control plane (undefined: the control plane was not reachable). */
  readonly xdsConnections?: number;
  readonly healthy: boolean;
}

export interface ClusterStatus {
  readonly mode: 'lab' | 'kubernetes';
  readonly where: string;
  readonly healthy: boolean;
  readonly controlPlane?: ControlPlaneReport;
  readonly agents: AgentReport[];
  readonly waypoints: WaypointReport[];
  readonly configErrors: string[];
  readonly problems: string[];
  readonly warnings: string[];
}

/** Certificates closer to expiry than this are a warning. */
export const CERT_WARN_MS = 15 * 60_000;

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return undefined;
  }
}

/** An xDS connection from the control plane's dump (XdsConnectionInfo), as who it is. */
export function xdsPeerOf(c: unknown): XdsPeer {
  const o = obj(c);
  const parsed = obj(o.parsedNodeId);
  const meta = obj(o.metadata);
  let role = str(parsed.role);
  let pod = str(parsed.podName) || str(meta.NAME);
  let namespace = str(parsed.podNamespace) || str(meta.NAMESPACE);
  if (role === '' && str(o.nodeId).includes('~')) {
    const [r, , podNs] = str(o.nodeId).split('~');
    role = r ?? '';
    const dot = (podNs ?? '').indexOf('.');
    if (dot > 0) [pod, namespace] = [(podNs ?? '').slice(0, dot), (podNs ?? '').slice(dot + 1)];
  }
  const waypoint = str(meta.WAYPOINT);
  return { role, pod, namespace, node: str(meta.NODE_NAME), ...(waypoint ? { waypoint } : {}), nacked: arr(o.types).some((t) => obj(t).lastNack !== undefined) };
}

const isAgentPeer = (p: XdsPeer): boolean => p.role === 'ztunnel';

/** Does this xDS peer belong to waypoint ns/name? Its metadata WAYPOINT says so, or its pod is named <name> or <name>-... */
export function peerIsWaypoint(p: XdsPeer, ns: string, name: string): boolean {
  if (isAgentPeer(p)) return false;
  if (p.waypoint !== undefined) return p.waypoint === `${ns}/${name}`;
  return p.namespace === ns && (p.pod === name || p.pod.startsWith(`${name}-`));
}

async function controlPlaneReport(cp: NonNullable<StatusSources['controlPlane']>): Promise<{ report: ControlPlaneReport; peers?: XdsPeer[] }> {
  let status: Obj;
  try {
    const a = await cp.get('/debug/status', 'application/json');
    if (a.status !== 200) throw new Error(`/debug/status answered ${a.status}: ${a.body.trim().slice(0, 200)}`);
    const j = parseJson(a.body);
    if (j === undefined) throw new Error('/debug/status is not JSON');
    status = obj(j);
  } catch (e) {
    return { report: { where: cp.where, reachable: false, error: toError(e).message, configErrors: [], notes: [] } };
  }
  let ready: boolean | undefined;
  try {
    ready = (await cp.get('/ready')).status === 200;
  } catch {
    ready = undefined;
  }
  // Connections: in /debug/status when the server puts them there, else from /debug/config.
  let connections: unknown[] | undefined = Array.isArray(status.connections) ? status.connections : undefined;
  if (!connections) {
    try {
      const a = await cp.get('/debug/config', 'application/json');
      const j = a.status === 200 ? obj(parseJson(a.body)) : {};
      if (Array.isArray(j.connections)) connections = j.connections;
    } catch {
      // counted as unknown below
    }
  }
  const peers = connections?.map(xdsPeerOf);
  const served = obj(status.served);
  return {
    report: {
      where: cp.where,
      reachable: true,
      ...(ready !== undefined ? { ready } : {}),
      ...(status.version !== undefined ? { configVersion: typeof status.version === 'number' ? status.version : str(status.version) } : {}),
      served: { workloads: num(served.workloads), services: num(served.services), authorizations: num(served.authorizations) },
      ...(peers ? { connectedAgents: peers.filter(isAgentPeer).length, connectedWaypoints: peers.filter((p) => !isAgentPeer(p)).length } : {}),
      configErrors: arr(status.issues).map((i) => str(obj(i).text) || JSON.stringify(i)),
      notes: arr(status.notes).map(str),
      rejections: num(status.rejections),
    },
    ...(peers ? { peers } : {}),
  };
}

function samples(text: string): PromSample[] {
  return parsePromText(text).samples;
}

async function agentReport(a: AgentTarget, peers: XdsPeer[] | undefined, now: number): Promise<AgentReport> {
  let reachable = true;
  let error: string | undefined;
  let ready = false;
  let pending: string[] = [];
  try {
    const r = await a.readiness('/healthz/ready', 'application/json');
    ready = r.status === 200;
    if (!ready) {
      const p = obj(parseJson(r.body)).pending;
      pending = Array.isArray(p) ? p.map(String) : [r.body.replace(/^not ready, pending:\s*/, '').trim()].filter((x) => x !== '');
    }
  } catch (e) {
    reachable = false;
    error = toError(e).message;
  }
  let enrolledUp: number | undefined;
  let enrolled: number | undefined;
  let soonest: CertificateExpiry | undefined;
  let certificates: number | undefined;
  const unavailable: string[] = [];
  if (reachable) {
    try {
      const m = await a.metrics('/metrics');
      if (m.status !== 200) throw new Error(`/metrics answered ${m.status}`);
      const ss = samples(m.body);
      const one = (name: string): number | undefined => ss.find((s) => s.name === name)?.value;
      const up = one('workload_manager_active_proxy_count');
      const pend = one('workload_manager_pending_proxy_count');
      if (up !== undefined) {
        enrolledUp = up;
        enrolled = up + (pend ?? 0);
      }
      const expiries = ss.filter((s) => s.name === 'ambit_certificate_expiry_timestamp_seconds');
      const states = ss.filter((s) => s.name === 'ambit_certificate_state' && s.value === 1);
      certificates = new Set([...expiries, ...states].map((s) => s.labels.identity ?? '')).size;
      for (const s of expiries) {
        const at = s.value * 1000;
        if (!soonest || at - now < soonest.remainingMs) soonest = { identity: s.labels.identity ?? '', notAfter: new Date(at).toISOString(), remainingMs: at - now };
      }
      for (const s of states) if (s.labels.state === 'Unavailable') unavailable.push(s.labels.identity ?? '');
    } catch (e) {
      error = `metrics: ${toError(e).message}`;
    }
  }
  let pods: string[] | undefined;
  let usesXds = a.usesXds;
  if (reachable && a.admin) {
    try {
      const d = await a.admin('/config_dump');
      if (d.status === 200) {
        const dump = parseJson(d.body);
        const s = summarizeDump(dump, now);
        pods = s.workloads.filter((w) => w.state !== 'not in mesh').map((w) => `${w.namespace}/${w.name} (${w.state})`);
        usesXds ??= obj(obj(obj(dump).config).controlPlane).xdsAddress !== undefined;
      }
    } catch {
      // the dump only adds detail
    }
  }
  let xds: AgentReport['xds'];
  if (usesXds === false) xds = 'not used';
  else if (!peers) xds = 'unknown';
  else xds = peers.some((p) => isAgentPeer(p) && (p.node === a.node || p.pod === `ztunnel-${a.node}` || (a.pod !== undefined && p.pod === a.pod.name))) ? 'connected' : 'disconnected';
  return {
    node: a.node,
    where: a.where,
    reachable,
    ...(error !== undefined ? { error } : {}),
    ready,
    pending,
    ...(a.pod ? { podReady: a.pod.ready } : {}),
    ...(enrolled !== undefined ? { enrolledUp, enrolled } : {}),
    ...(pods ? { pods } : {}),
    ...(certificates !== undefined ? { certificates } : {}),
    ...(soonest ? { soonestExpiry: soonest } : {}),
    unavailableCertificates: unavailable.sort(),
    xds,
  };
}

/** Collects everything the sources reach, concurrently; never throws for an unreachable component. */
export async function collectClusterStatus(src: StatusSources, now: number): Promise<ClusterStatus> {
  const cp = src.controlPlane ? await controlPlaneReport(src.controlPlane) : undefined;
  const peers = cp?.peers;
  const agents = await Promise.all(src.agents.map((a) => agentReport(a, peers, now)));
  agents.sort((a, b) => a.node.localeCompare(b.node));
  const problems: string[] = [];
  const warnings: string[] = [];
  const c = cp?.report;
  if (!src.controlPlane) warnings.push('no control plane: the agents read a cluster file');
  else if (c && !c.reachable) problems.push(`control plane at ${c.where} unreachable: ${c.error ?? ''}`);
  else if (c) {
    if (c.ready === false) problems.push('control plane not ready (no configuration translated yet)');
    for (const e of c.configErrors) problems.push(`config error: ${e}`);
    if ((c.rejections ?? 0) > 0) warnings.push(`agents rejected (NACKed) ${c.rejections ?? 0} resource(s) since the control plane started`);
    for (const p of peers ?? []) if (p.nacked) warnings.push(`xDS peer ${p.namespace}/${p.pod} rejected its last push`);
  }
  if (src.agents.length === 0) problems.push(src.mode === 'kubernetes' ? 'no agent pods found' : 'the lab runs no agents');
  for (const a of agents) {
    const who = `agent on ${a.node}`;
    if (!a.reachable) problems.push(`${who} unreachable: ${a.error ?? ''}`);
    else if (!a.ready) problems.push(`${who} not ready${a.pending.length > 0 ? `: ${a.pending.join('; ')}` : ''}`);
    if (a.podReady === false) problems.push(`${who}: ${a.where} is not Ready`);
    if (a.xds === 'disconnected') problems.push(`${who} has no xDS connection to the control plane`);
    for (const id of a.unavailableCertificates) problems.push(`${who}: certificate for ${id} unavailable`);
    if (a.soonestExpiry && a.soonestExpiry.remainingMs < 0) problems.push(`${who}: certificate for ${a.soonestExpiry.identity} expired at ${a.soonestExpiry.notAfter}`);
    else if (a.soonestExpiry && a.soonestExpiry.remainingMs < CERT_WARN_MS) warnings.push(`${who}: certificate for ${a.soonestExpiry.identity} expires in ${humanDuration(a.soonestExpiry.remainingMs)}`);
    if (a.reachable && a.error) warnings.push(`${who}: ${a.error}`);
  }
  const waypoints = src.waypoints
    .map((w): WaypointReport => {
      const xdsConnections = peers ? peers.filter((p) => peerIsWaypoint(p, w.namespace, w.name)).length : undefined;
      const podsReady = w.pods?.filter((p) => p.ready).length;
      const healthy = w.pods !== undefined ? (podsReady ?? 0) > 0 : xdsConnections === undefined || xdsConnections > 0;
      return { namespace: w.namespace, name: w.name, for: w.for, source: w.source, ...(w.pods ? { podsReady, pods: w.pods.length } : {}), ...(xdsConnections !== undefined ? { xdsConnections } : {}), healthy };
    })
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  for (const w of waypoints) {
    if (w.healthy) continue;
    problems.push(w.pods !== undefined ? `waypoint ${w.namespace}/${w.name}: no ready pod (${w.podsReady ?? 0}/${w.pods})` : `waypoint ${w.namespace}/${w.name}: no waypoint proxy is connected to the control plane`);
  }
  return {
    mode: src.mode,
    where: src.where,
    healthy: problems.length === 0,
    ...(c ? { controlPlane: c } : {}),
    agents,
    waypoints,
    configErrors: c?.configErrors ?? [],
    problems,
    warnings,
  };
}

function yesNo(colour: boolean, v: boolean | undefined, yes = 'yes', no = 'no'): string {
  return v === undefined ? '-' : v ? paint(colour, 'green', yes) : paint(colour, 'red', no);
}

function xdsCell(colour: boolean, x: AgentReport['xds']): string {
  return x === 'connected' ? paint(colour, 'green', x) : x === 'disconnected' ? paint(colour, 'red', x) : paint(colour, 'dim', x);
}

function expiryCell(colour: boolean, e: CertificateExpiry | undefined): string {
  if (!e) return '-';
  const t = humanDuration(e.remainingMs);
  const cell = e.remainingMs < 0 ? paint(colour, 'red', t) : e.remainingMs < CERT_WARN_MS ? paint(colour, 'yellow', t) : t;
  return `${cell} (${e.identity.replace(/^spiffe:\/\/[^/]+\//, '')})`;
}

/** The tables `ambit status --lab/--kubernetes` prints on a terminal. */
export function renderClusterStatus(s: ClusterStatus, colour: boolean): string {
  const out: string[] = [];
  const verdict = s.healthy ? paint(colour, 'green', 'healthy') : paint(colour, 'red', `unhealthy (${s.problems.length} problem(s))`);
  out.push(`${paint(colour, 'bold', s.mode === 'lab' ? `lab ${s.where}` : `cluster ${s.where}`)}: ${verdict}\n`);
  out.push(heading(colour, 'Control plane'));
  const c = s.controlPlane;
  if (!c) out.push(`${paint(colour, 'dim', '(none: agents read a cluster file)')}\n`);
  else if (!c.reachable) out.push(`${c.where}: ${paint(colour, 'red', 'unreachable')} (${c.error ?? ''})\n`);
  else {
    out.push(
      table(
        ['ADDRESS', 'READY', 'CONFIG VERSION', 'AGENTS', 'WAYPOINTS', 'SERVED (W/S/A)', 'CONFIG ERRORS'],
        [
          [
            c.where,
            yesNo(colour, c.ready),
            str(c.configVersion) || '-',
            c.connectedAgents === undefined ? '-' : String(c.connectedAgents),
            c.connectedWaypoints === undefined ? '-' : String(c.connectedWaypoints),
            c.served ? `${c.served.workloads}/${c.served.services}/${c.served.authorizations}` : '-',
            c.configErrors.length === 0 ? '0' : paint(colour, 'red', String(c.configErrors.length)),
          ],
        ],
        colour,
      ),
    );
    for (const e of c.configErrors) out.push(`  ${paint(colour, 'red', 'error')} ${e}\n`);
    for (const n of c.notes) out.push(`  ${paint(colour, 'dim', 'note')}  ${n}\n`);
  }
  const ready = s.agents.filter((a) => a.ready).length;
  out.push(heading(colour, `Agents (${ready}/${s.agents.length} ready)`));
  out.push(
    table(
      ['NODE', 'READY', 'PODS UP', 'XDS', 'CERTS', 'SOONEST EXPIRY', 'WHERE'],
      s.agents.map((a) => [
        a.node,
        a.reachable ? yesNo(colour, a.ready && a.podReady !== false) : paint(colour, 'red', 'unreachable'),
        a.enrolled === undefined ? '-' : `${a.enrolledUp ?? 0}/${a.enrolled}`,
        xdsCell(colour, a.xds),
        a.certificates === undefined ? '-' : a.unavailableCertificates.length > 0 ? paint(colour, 'red', `${a.certificates} (${a.unavailableCertificates.length} unavailable)`) : String(a.certificates),
        expiryCell(colour, a.soonestExpiry),
        a.where,
      ]),
      colour,
    ),
  );
  out.push(heading(colour, `Waypoints (${s.waypoints.length})`));
  out.push(
    table(
      ['NAMESPACE', 'NAME', 'FOR', 'PODS READY', 'XDS', 'STATUS'],
      s.waypoints.map((w) => [w.namespace, w.name, w.for, w.pods === undefined ? '-' : `${w.podsReady ?? 0}/${w.pods}`, w.xdsConnections === undefined ? '-' : String(w.xdsConnections), yesNo(colour, w.healthy, 'ok', 'down')]),
      colour,
    ),
  );
  if (s.problems.length > 0) {
    out.push(heading(colour, `Problems (${s.problems.length})`));
    for (const p of s.problems) out.push(`  ${paint(colour, 'red', '✗')} ${p}\n`);
  }
  if (s.warnings.length > 0) {
    out.push(heading(colour, `Warnings (${s.warnings.length})`));
    for (const w of s.warnings) out.push(`  ${paint(colour, 'yellow', '!')} ${w}\n`);
  }
  return out.join('');
}
