/**
 * The lab's record of what it created, in `<stateRoot>/<lab>/state.json`.
 * `up` writes each resource into the record *before* creating it, so `down`
 * can remove exactly what exists even after `up` crashed halfway. The set
 * of lab directories under the state root is also the registry of running
 * labs (used to share the host blackhole routes between labs).
 */
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const DEFAULT_STATE_ROOT = '/run/ambit/lab';
export const STATE_FILE = 'state.json';

export interface HostRouteRecord {
  readonly dst: string;
  readonly type: 'blackhole';
  /**
   * False when the route was already there and no lab had recorded it (an
   * administrator's own blackhole): `down` never removes those.
   */
  readonly owned: boolean;
}

export interface AgentRecord {
  readonly node: string;
  readonly pid: number;
  /** /proc/<pid>/stat start time, so `down` never signals a recycled pid. */
  readonly startTime?: string;
  readonly logFile: string;
  readonly readyFile: string;
}

/** A waypoint process (`ambit waypoint run`) in a waypoint pod's netns. */
export interface WaypointRecord {
  readonly namespace: string;
  readonly pod: string;
  readonly gateway: string;
  readonly node: string;
  readonly pid: number;
  readonly startTime?: string;
  readonly logFile: string;
  readonly readyFile: string;
}

/** Where the lab's control plane serves, so later operations (apply) can start waypoints. */
export interface ControlPlaneRecord {
  /** host:port of xDS and the CA. */
  readonly address: string;
  readonly rootCert: string;
  /** Argv appended to every waypoint (LabUpOptions.waypointArgs). */
  readonly waypointArgs?: readonly string[];
  /** Program and leading args used for the lab's processes (LabUpOptions.agentCommand). */
  readonly command?: readonly string[];
}

/** The lab's wire tap (`ambit lab wire-tap` in the bridge netns, see wire-tap.ts); stopped by `down`. */
export interface WireTapRecord {
  readonly pid: number;
  readonly startTime?: string;
  /** Directory that receives the tap's `<lab>-<pid>.json` report. */
  readonly outDir: string;
  readonly logFile: string;
  readonly readyFile: string;
  /** tcpdump's rotating capture files (the tap empties and removes it; `down` removes a leftover). */
  readonly spoolDir?: string;
}

export interface NodeRecord {
  readonly name: string;
  readonly netns: string;
  readonly ip: string;
  readonly podCidr: string;
}

export interface PodRecord {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  readonly ip: string;
  readonly netns: string;
}

export type LabPhase = 'creating' | 'up' | 'failed' | 'tearing-down';

export interface LabState {
  version: 1;
  name: string;
  phase: LabPhase;
  createdAt: string;
  /** Pid of the `lab up` process (diagnostics only). */
  creatorPid: number;
  /** Where cluster.json, agent logs and ready files live. */
  stateDir: string;
  /** True when stateDir is the record directory itself, so `down` deletes it. */
  ownsStateDir: boolean;
  mesh: boolean;
  ranges?: { pod: string; service: string; node: string };
  netns: string[];
  hostRoutes: HostRouteRecord[];
  hostsDirs: string[];
  agents: AgentRecord[];
  /** Waypoint processes (control-plane mode only); stopped before the agents on `down`. */
  waypoints: WaypointRecord[];
  controlPlane?: ControlPlaneRecord;
  /** Present while a wire tap runs (AMBIT_WIRE_AUDIT_DIR). */
  wireTap?: WireTapRecord;
  nodes: NodeRecord[];
  pods: PodRecord[];
  clusterFile?: string;
}

export function labRecordDir(root: string, name: string): string {
  return join(root, name);
}

/** Reads a lab's state; undefined when there is none or it is unreadable. */
export function readLabState(root: string, name: string): LabState | undefined {
  let text: string;
  try {
    text = readFileSync(join(labRecordDir(root, name), STATE_FILE), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const s = JSON.parse(text) as Partial<LabState>;
    if (s.version !== 1 || typeof s.name !== 'string') return undefined;
    // Tolerate records written by a crashed `up` that stopped between fields.
    return {
      netns: [],
      hostRoutes: [],
      hostsDirs: [],
      agents: [],
      waypoints: [],
      nodes: [],
      pods: [],
      ...s,
    } as LabState;
  } catch {
    return undefined;
  }
}

/** Names of the lab directories under the state root (each is, or was, a lab). */
export function listLabNames(root: string): string[] {
  try {
    return readdirSync(root, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

/** An open lab record: every `update` is flushed atomically (write + rename). */
export class StateStore {
  readonly dir: string;
  readonly file: string;

  constructor(
    readonly root: string,
    readonly state: LabState,
  ) {
    this.dir = labRecordDir(root, state.name);
    this.file = join(this.dir, STATE_FILE);
  }

  static create(root: string, state: LabState): StateStore {
    const store = new StateStore(root, state);
    mkdirSync(store.dir, { recursive: true, mode: 0o755 });
    store.flush();
    return store;
  }

  update(fn: (s: LabState) => void): void {
    fn(this.state);
    this.flush();
  }

  flush(): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.state, null, 2) + '\n', { mode: 0o644 });
    renameSync(tmp, this.file);
  }

  /** Deletes the record (and the state dir when it lives inside it). */
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
