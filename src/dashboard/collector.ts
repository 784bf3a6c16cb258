/**
 * The dashboard's data: every `intervalMs` it scrapes each agent (metrics,
 * readiness, config_dump), each waypoint (/stats/prometheus) and the control
 * plane (/debug/status, and /debug/config when the config version changed),
 * feeds the edges into the time series and keeps health and a short event
 * list (the agents' access-log lines plus changes it noticed: an edge that
 * starts being denied, an agent that turns unready, a new config version).
 * A component that does not answer is shown as down; nothing here throws
 * out of a round.
 */
import { open, stat } from 'node:fs/promises';
import { systemClock, type Clock, type Timer } from '../common/clock.js';
import { toError } from '../common/errors.js';
import { parsePromText, type PromSample } from '../cli/prom-text.js';
import { summarizeDump, type CertificateRow } from '../cli/dump-summary.js';
import { displayEdges, graphNodes, pairsFromSamples, workloadId, type GraphNodeInfo, type Inventory } from './edges.js';
import { EdgeHistory, type EdgeStats, type SeriesPoint } from './history.js';
import { fetchOk, type HttpTarget, type NetnsFetch } from './netns-http.js';
import { WorkloadHistory, type WorkloadSignals } from './workloads.js';

export interface AgentTarget {
  node: string;
  netns?: string;
  /** Where the agent listens, as seen from `netns` (127.0.0.1 in the lab: the admin port is loopback-only). */
  host: string;
  metricsPort: number;
  adminPort: number;
  readinessPort: number;
}

export interface WaypointTarget {
  namespace: string;
  name: string;
  netns?: string;
  host: string;
  port: number;
  path: string;
}

export interface DashboardTargets {
  agents: AgentTarget[];
  waypoints: WaypointTarget[];
  controlPlane?: HttpTarget;
  /** Agent log files to tail for access-log lines (pino JSON). */
  accessLogs?: Array<{ node: string; file: string }>;
  inventory: Inventory;
}

export interface AgentHealth {
  node: string;
  up: boolean;
  ready: boolean;
  pending: string[];
  workloads: number;
  workloadsUp: number;
  certificates: Array<Pick<CertificateRow, 'identity' | 'state' | 'notAfter'> & { remainingMs?: number }>;
  openConnections?: number;
  error?: string;
  lastOk?: number;
}

export interface WaypointHealth {
  namespace: string;
  name: string;
  up: boolean;
  requests: number;
  error?: string;
}

export interface PolicyInfo {
  namespace: string;
  name: string;
  action: string;
  scope: string;
  rules: number;
}

export interface ControlPlaneHealth {
  up: boolean;
  version?: number;
  served?: { workloads: number; services: number; authorizations: number };
  resources?: Record<string, number>;
  issues: string[];
  rejections?: number;
  policies: PolicyInfo[];
  error?: string;
}

export interface DashboardEvent {
  seq: number;
  t: number;
  kind: 'access' | 'deny' | 'edge' | 'health' | 'config';
  level: 'info' | 'warn' | 'error';
  text: string;
}

export interface GraphView {
  at: number;
  rounds: number;
  intervalMs: number;
  windowSeconds: number;
  nodes: Array<GraphNodeInfo & { health: 'ok' | 'idle' | 'denied' | 'error' }>;
  edges: EdgeStats[];
}

/** Per-workload golden signals (see workloads.ts). */
export interface WorkloadsView {
  at: number;
  intervalMs: number;
  windowSeconds: number;
  workloads: WorkloadSignals[];
}

export interface HealthView {
  at: number;
  agents: AgentHealth[];
  waypoints: WaypointHealth[];
  controlPlane: ControlPlaneHealth | undefined;
  /** servedBy: who runs this collector, e.g. ambit-control-plane/<pid>. */
  scrape: { how: string; lastRoundMs: number; servedBy?: string };
}

/** What the collector needs from the control plane: its /debug/status and the authorization policies of /debug/config. */
export interface ControlPlaneReader {
  status(): Promise<ControlPlaneStatusView>;
  authorizations(): Promise<AuthorizationView[]>;
}

/** The /debug/status fields the dashboard shows. */
export interface ControlPlaneStatusView {
  version?: number;
  served?: ControlPlaneHealth['served'];
  resources?: Record<string, number>;
  issues?: ReadonlyArray<{ text?: string }>;
  rejections?: number;
}

/** One served authorization policy as /debug/config shows it. */
export interface AuthorizationView {
  name?: string;
  namespace?: string;
  action?: unknown;
  scope?: unknown;
  rules?: readonly unknown[];
}

/** The control plane read over HTTP (its monitoring port): what a dashboard outside the control plane does. */
export function httpControlPlaneReader(fetch: NetnsFetch, target: HttpTarget): ControlPlaneReader {
  return {
    status: async () => JSON.parse(await fetchOk(fetch, target, '/debug/status')) as ControlPlaneStatusView,
    authorizations: async () => {
      const cfg = JSON.parse(await fetchOk(fetch, target, '/debug/config')) as { authorizations?: Record<string, AuthorizationView> };
      return Object.values(cfg.authorizations ?? {});
    },
  };
}

export interface CollectorOptions {
  targets: DashboardTargets;
  fetch: NetnsFetch;
  /**
   * Reads the control plane without HTTP (the dashboard runs inside the
   * control plane process); takes precedence over targets.controlPlane.
   */
  controlPlane?: ControlPlaneReader;
  /** How `fetch` reaches the lab ('native' or 'curl'), shown in the health view. */
  fetchHow?: string;
  /** Who runs the collector (shown in the page header), e.g. ambit-control-plane/<pid>. */
  servedBy?: string;
  clock?: Clock;
  intervalMs?: number;
  maxPoints?: number;
  windowPoints?: number;
  maxEvents?: number;
}

const MAX_LOG_READ = 256 * 1024;

type Listener = () => void;

export class Collector {
  readonly #o: Required<Omit<CollectorOptions, 'fetchHow' | 'clock' | 'controlPlane' | 'servedBy'>> & { clock: Clock; fetchHow: string; servedBy: string | undefined };
  readonly #cpReader: ControlPlaneReader | undefined;
  readonly #history: EdgeHistory;
  readonly #workloads: WorkloadHistory;
  readonly #waypointIds: ReadonlySet<string>;
  /** Access-log lines and the changes noticed, in separate rings so a busy access log does not push the changes out. */
  readonly #events: DashboardEvent[] = [];
  readonly #access: DashboardEvent[] = [];
  #seq = 0;
  #agents: AgentHealth[] = [];
  #waypoints: WaypointHealth[] = [];
  #cp: ControlPlaneHealth | undefined;
  #cpVersion: number | undefined;
  #lastAt = 0;
  #lastRoundMs = 0;
  #timer: Timer | undefined;
  #stopped = true;
  #running: Promise<void> | undefined;
  readonly #logOffsets = new Map<string, { offset: number; partial: string }>();
  readonly #edgeStatus = new Map<string, EdgeStats['status']>();
  readonly #listeners = new Set<Listener>();
  /** Components seen up at least once (agent:<node>, waypoint:<ns>/<name>, control-plane). */
  readonly #seenUp = new Set<string>();

  constructor(opts: CollectorOptions) {
    this.#o = {
      targets: opts.targets,
      fetch: opts.fetch,
      fetchHow: opts.fetchHow ?? 'native',
      servedBy: opts.servedBy,
      clock: opts.clock ?? systemClock,
      intervalMs: opts.intervalMs ?? 2000,
      maxPoints: opts.maxPoints ?? 150,
      windowPoints: opts.windowPoints ?? 5,
      maxEvents: opts.maxEvents ?? 300,
    };
    this.#history = new EdgeHistory(this.#o.maxPoints, this.#o.windowPoints);
    this.#workloads = new WorkloadHistory(this.#o.maxPoints, this.#o.windowPoints);
    this.#waypointIds = new Set(opts.targets.inventory.workloads.filter((w) => w.waypoint).map((w) => workloadId(w.namespace, w.name)));
    this.#cpReader = opts.controlPlane ?? (opts.targets.controlPlane ? httpControlPlaneReader(opts.fetch, opts.targets.controlPlane) : undefined);
  }

  get intervalMs(): number {
    return this.#o.intervalMs;
  }

  /** Called after every round (the SSE stream pushes then). Returns the unsubscribe function. */
  onRound(fn: Listener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Starts the periodic scrape (the first round runs at once). */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    const loop = (): void => {
      if (this.#stopped) return;
      this.#running = this.scrapeOnce().finally(() => {
        this.#running = undefined;
        if (!this.#stopped) this.#timer = this.#o.clock.setTimeout(loop, this.#o.intervalMs);
      });
    };
    // Skip the first interval's wait, so a fresh dashboard has a baseline at once.
    loop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    await this.#running;
  }

  /** One scrape round over every target. */
  async scrapeOnce(): Promise<void> {
    const t0 = this.#o.clock.now();
    const t = this.#o.targets;
    const [agentResults, waypointResults, cp] = await Promise.all([
      Promise.all(t.agents.map((a) => this.#scrapeAgent(a))),
      Promise.all(t.waypoints.map((w) => this.#scrapeWaypoint(w))),
      this.#cpReader ? this.#scrapeControlPlane(this.#cpReader) : Promise.resolve(undefined),
    ]);
    const at = this.#o.clock.now();
    this.#noteHealth(agentResults.map((r) => r.health), waypointResults.map((r) => r.health), cp, at);
    this.#agents = agentResults.map((r) => r.health);
    this.#waypoints = waypointResults.map((r) => r.health);
    this.#cp = cp;
    const pairs = pairsFromSamples(agentResults.flatMap((r) => r.samples), waypointResults.flatMap((r) => r.samples), t.inventory);
    this.#history.push(at, displayEdges(pairs, t.inventory));
    this.#workloads.push(at, pairs, this.#waypointIds);
    this.#noteEdges(at);
    await this.#tailLogs(at);
    this.#lastAt = at;
    this.#lastRoundMs = at - t0;
    for (const l of this.#listeners) {
      try {
        l();
      } catch {
        // a listener's failure (a closed SSE socket) is its own business
      }
    }
  }

  async #scrapeAgent(a: AgentTarget): Promise<{ health: AgentHealth; samples: PromSample[] }> {
    const f = this.#o.fetch;
    const base = { netns: a.netns, host: a.host };
    const prev = this.#agents.find((x) => x.node === a.node);
    const health: AgentHealth = { node: a.node, up: false, ready: false, pending: [], workloads: 0, workloadsUp: 0, certificates: [], ...(prev?.lastOk ? { lastOk: prev.lastOk } : {}) };
    let samples: PromSample[] = [];
    const errors: string[] = [];
    await Promise.all([
      fetchOk(f, { ...base, port: a.metricsPort }, '/metrics').then(
        (text) => {
          samples = parsePromText(text).samples;
          health.up = true;
          const open = samples.filter((s) => s.name === 'istio_tcp_sockets_open').reduce((n, s) => n + s.value, 0);
          health.openConnections = open;
        },
        (e: unknown) => errors.push(toError(e).message),
      ),
      f({ ...base, port: a.readinessPort }, '/healthz/ready', { accept: 'application/json' }).then(
        (r) => {
          health.ready = r.status === 200;
          try {
            const j = JSON.parse(r.body) as { pending?: unknown };
            if (Array.isArray(j.pending)) health.pending = j.pending.map(String);
          } catch {
            if (r.status !== 200) health.pending = [r.body.trim()];
          }
        },
        (e: unknown) => errors.push(toError(e).message),
      ),
      fetchOk(f, { ...base, port: a.adminPort }, '/config_dump').then(
        (text) => {
          const s = summarizeDump(JSON.parse(text) as unknown, this.#o.clock.now());
          const inMesh = s.workloads.filter((w) => w.state !== 'not in mesh');
          health.workloads = inMesh.length;
          health.workloadsUp = inMesh.filter((w) => w.state === 'Up').length;
          health.certificates = s.certificates.map((c) => ({ identity: c.identity, state: c.state, notAfter: c.notAfter, ...(c.remainingMs !== undefined ? { remainingMs: c.remainingMs } : {}) }));
        },
        (e: unknown) => errors.push(toError(e).message),
      ),
    ]);
    if (errors.length > 0) health.error = errors.join('; ');
    if (health.up) health.lastOk = this.#o.clock.now();
    return { health, samples };
  }

  async #scrapeWaypoint(w: WaypointTarget): Promise<{ health: WaypointHealth; samples: PromSample[] }> {
    try {
      const samples = parsePromText(await fetchOk(this.#o.fetch, { netns: w.netns, host: w.host, port: w.port }, w.path)).samples;
      const requests = samples.filter((s) => s.name === 'istio_requests_total').reduce((n, s) => n + s.value, 0);
      return { health: { namespace: w.namespace, name: w.name, up: true, requests }, samples };
    } catch (e) {
      return { health: { namespace: w.namespace, name: w.name, up: false, requests: 0, error: toError(e).message }, samples: [] };
    }
  }

  async #scrapeControlPlane(reader: ControlPlaneReader): Promise<ControlPlaneHealth> {
    try {
      const st = await reader.status();
      let policies = this.#cp?.policies ?? [];
      if (st.version !== this.#cpVersion || !this.#cp?.up) {
        policies = await reader.authorizations().then(policyRows, () => policies);
        this.#cpVersion = st.version;
      }
      return {
        up: true,
        ...(st.version !== undefined ? { version: st.version } : {}),
        ...(st.served ? { served: st.served } : {}),
        ...(st.resources ? { resources: st.resources } : {}),
        issues: (st.issues ?? []).map((i) => String(i.text ?? '')),
        ...(st.rejections !== undefined ? { rejections: st.rejections } : {}),
        policies,
      };
    } catch (e) {
      return { up: false, issues: [], policies: this.#cp?.policies ?? [], error: toError(e).message };
    }
  }

  #event(t: number, kind: DashboardEvent['kind'], level: DashboardEvent['level'], text: string): void {
    const ring = kind === 'access' ? this.#access : this.#events;
    ring.push({ seq: ++this.#seq, t, kind, level, text });
    if (ring.length > this.#o.maxEvents) ring.splice(0, ring.length - this.#o.maxEvents);
  }

  /**
   * Health changes as events. A component never seen up yet produces no
   * "down" event: a dashboard that starts with the control plane, before the
   * agents and waypoints exist, would otherwise open with a list of alarms.
   */
  #noteHealth(agents: AgentHealth[], waypoints: WaypointHealth[], cp: ControlPlaneHealth | undefined, at: number): void {
    const first = this.#history.rounds === 0;
    for (const a of agents) {
      const key = `agent:${a.node}`;
      const before = this.#agents.find((x) => x.node === a.node);
      const was = before ? (before.up ? (before.ready ? 'ready' : 'not ready') : 'down') : undefined;
      const is = a.up ? (a.ready ? 'ready' : 'not ready') : 'down';
      const seen = this.#seenUp.has(key);
      if (a.up) this.#seenUp.add(key);
      if (!seen && is === 'down') continue;
      if (was !== is && !(first && is === 'ready')) this.#event(at, 'health', is === 'ready' ? 'info' : 'warn', `agent on ${a.node} is ${is}${a.error && is === 'down' ? `: ${a.error}` : ''}`);
    }
    for (const w of waypoints) {
      const key = `waypoint:${w.namespace}/${w.name}`;
      const before = this.#waypoints.find((x) => x.namespace === w.namespace && x.name === w.name);
      const seen = this.#seenUp.has(key);
      if (w.up) this.#seenUp.add(key);
      if (!seen && !w.up) continue;
      if (before?.up !== w.up && !(first && w.up)) this.#event(at, 'health', w.up ? 'info' : 'warn', `waypoint ${w.namespace}/${w.name} is ${w.up ? 'up' : 'down'}`);
    }
    if (cp) {
      const seen = this.#seenUp.has('control-plane');
      if (cp.up) this.#seenUp.add('control-plane');
      if (this.#cp?.up !== cp.up && !(first && cp.up) && (seen || cp.up)) this.#event(at, 'health', cp.up ? 'info' : 'warn', `control plane is ${cp.up ? 'up' : `down: ${cp.error ?? ''}`}`);
      if (cp.up && this.#cp?.up && cp.version !== this.#cp.version) {
        this.#event(at, 'config', 'info', `configuration version ${cp.version ?? '?'}: ${cp.served?.authorizations ?? 0} authorization polic${cp.served?.authorizations === 1 ? 'y' : 'ies'}, ${cp.served?.workloads ?? 0} workloads`);
      }
      if (cp.up && this.#cp?.up) for (const text of policyChanges(this.#cp.policies, cp.policies)) this.#event(at, 'config', 'info', text);
    }
  }

  #noteEdges(at: number): void {
    for (const e of this.#history.stats()) {
      const before = this.#edgeStatus.get(e.id);
      this.#edgeStatus.set(e.id, e.status);
      if (this.#history.rounds <= 1 || before === e.status) continue;
      const what = `${label(e.source)} -> ${label(e.target)}`;
      if (e.status === 'denied') this.#event(at, 'deny', 'error', `${what}: connections denied by policy (${e.deniedPerSec.toFixed(1)}/s)`);
      else if (before === 'denied') this.#event(at, 'deny', 'info', `${what}: no longer denied`);
      else if (before === undefined) this.#event(at, 'edge', 'info', `new traffic: ${what}`);
      else if (e.status === 'error') this.#event(at, 'edge', 'warn', `${what}: failing (${e.failedPerSec.toFixed(1)} failed/s)`);
    }
  }

  async #tailLogs(at: number): Promise<void> {
    for (const { node, file } of this.#o.targets.accessLogs ?? []) {
      try {
        const size = (await stat(file)).size;
        let st = this.#logOffsets.get(file);
        // The first look starts at the end: history before the dashboard is in the metrics.
        if (!st || size < st.offset) {
          st = { offset: size, partial: '' };
          this.#logOffsets.set(file, st);
          continue;
        }
        if (size === st.offset) continue;
        const from = Math.max(st.offset, size - MAX_LOG_READ);
        const fh = await open(file, 'r');
        let text: string;
        try {
          const buf = Buffer.alloc(size - from);
          await fh.read(buf, 0, buf.length, from);
          text = (from > st.offset ? '' : st.partial) + buf.toString('utf8');
        } finally {
          await fh.close();
        }
        const lines = text.split('\n');
        st.partial = lines.pop() ?? '';
        st.offset = size;
        for (const l of lines) {
          const ev = accessEvent(node, l);
          if (ev) this.#event(at, 'access', ev.level, ev.text);
        }
      } catch {
        // no log file (yet): nothing to tail
      }
    }
  }

  graph(): GraphView {
    const edges = this.#history.stats();
    const health = new Map<string, 'ok' | 'idle' | 'denied' | 'error'>();
    const rank = { idle: 0, ok: 1, error: 2, denied: 3 } as const;
    for (const e of edges) {
      for (const id of [e.source, e.target]) {
        // A denied edge marks its client (the one refused), not the workload that enforced the policy.
        const s = e.status === 'denied' ? (id === e.source ? 'denied' : 'ok') : e.status;
        const cur = health.get(id) ?? 'idle';
        if (rank[s] > rank[cur]) health.set(id, s);
      }
    }
    return {
      at: this.#lastAt,
      rounds: this.#history.rounds,
      intervalMs: this.#o.intervalMs,
      windowSeconds: (this.#o.windowPoints * this.#o.intervalMs) / 1000,
      nodes: graphNodes(this.#history.observations(), this.#o.targets.inventory).map((n) => ({ ...n, health: health.get(n.id) ?? 'idle' })),
      edges,
    };
  }

  /** Golden signals of every workload and waypoint, with the newest `points` sparkline points each. */
  workloads(points?: number): WorkloadsView {
    return {
      at: this.#lastAt,
      intervalMs: this.#o.intervalMs,
      windowSeconds: (this.#o.windowPoints * this.#o.intervalMs) / 1000,
      workloads: this.#workloads.view(graphNodes(this.#history.observations(), this.#o.targets.inventory), points),
    };
  }

  get maxPoints(): number {
    return this.#o.maxPoints;
  }

  series(edgeId: string): SeriesPoint[] | undefined {
    return this.#history.series(edgeId);
  }

  health(): HealthView {
    return { at: this.#lastAt, agents: this.#agents, waypoints: this.#waypoints, controlPlane: this.#cp, scrape: { how: this.#o.fetchHow, lastRoundMs: this.#lastRoundMs, ...(this.#o.servedBy ? { servedBy: this.#o.servedBy } : {}) } };
  }

  /** Events after `since` (a seq), oldest first, at most `limit` (the newest ones). */
  events(since = 0, limit = 100): DashboardEvent[] {
    const out = [...this.#events, ...this.#access].filter((e) => e.seq > since).sort((a, b) => a.seq - b.seq);
    return out.slice(Math.max(0, out.length - limit));
  }
}

/** The policy table rows, sorted by namespace/name. */
export function policyRows(authorizations: readonly AuthorizationView[]): PolicyInfo[] {
  return authorizations
    .map((a) => ({ namespace: a.namespace ?? '', name: a.name ?? '', action: String(a.action ?? 'ALLOW'), scope: String(a.scope ?? ''), rules: Array.isArray(a.rules) ? a.rules.length : 0 }))
    .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}

/** "policy <ns>/<name> (<action>) is served" / "... is no longer served" for what differs between two policy lists. */
export function policyChanges(before: readonly PolicyInfo[], after: readonly PolicyInfo[]): string[] {
  const key = (p: PolicyInfo): string => `${p.namespace}/${p.name}`;
  const was = new Map(before.map((p) => [key(p), p]));
  const is = new Map(after.map((p) => [key(p), p]));
  const out: string[] = [];
  for (const [k, p] of is) if (!was.has(k)) out.push(`policy ${k} (${p.action}) is served`);
  for (const [k, p] of was) if (!is.has(k)) out.push(`policy ${k} (${p.action}) is no longer served`);
  return out;
}

function label(id: string): string {
  return id.replace(/^(wl|svc|ext):/, '');
}

/** One event for an access-log line of an agent (pino JSON, component "access"), or undefined for other lines. */
export function accessEvent(node: string, line: string): { level: DashboardEvent['level']; text: string } | undefined {
  if (!line.includes('"component":"access"')) return undefined;
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const msg = String(j.msg ?? '');
  if (msg !== 'connection complete' && msg !== 'connection failed') return undefined;
  // Both agents log every connection; one line per connection is enough (the destination's), failures from either side.
  if (msg === 'connection complete' && j.direction === 'outbound' && j.response_flags === undefined && j.error === undefined) return undefined;
  const s = (k: string): string | undefined => (typeof j[k] === 'string' || typeof j[k] === 'number' ? String(j[k]) : undefined);
  const src = s('src.workload') ? `${s('src.namespace') ?? ''}/${s('src.workload')}` : (s('src.addr') ?? '?');
  const dst = s('dst.workload') ? `${s('dst.namespace') ?? ''}/${s('dst.workload')}` : (s('dst.service') ?? s('dst.addr') ?? '?');
  const flags = s('response_flags');
  const dir = s('direction') ?? '';
  const tail = msg === 'connection failed' ? `${flags ?? 'failed'}: ${s('error') ?? ''}` : `${s('bytes_sent') ?? 0} B sent, ${s('bytes_recv') ?? 0} B received, ${s('duration') ?? ''}${flags ? ` ${flags}` : ''}`;
  const level: DashboardEvent['level'] = flags === 'DENY' ? 'error' : msg === 'connection failed' || s('error') ? 'warn' : 'info';
  return { level, text: `${node} ${dir} ${src} -> ${dst}: ${tail.trim()}` };
}
