/**
 * The chained CNI plugin `ambit-cni` (CNI spec 1.1, also 0.3.x/0.4.0/1.0.0).
 * The container runtime runs it after the primary plugin with the network
 * config on stdin and CNI_* in the environment:
 *
 * - ADD:  asks the ambit node component (unix socket, one JSON line each way,
 *         see NodeRequest/NodeResponse) to enroll the pod, and returns only
 *         once the agent's listeners are up and the capture rules installed;
 *         then prints prevResult unchanged. Mesh not ready → error, so no
 *         ambient pod starts unprotected. Non-ambient pods (the component says
 *         so, or the namespace is in `excludeNamespaces`) pass through at once.
 * - DEL:  asks the component to unenroll; idempotent, a missing netns or an
 *         unreachable component is not an error (the pod is going away).
 * - CHECK: asks the component whether the pod is enrolled as it should be.
 * - VERSION / STATUS / GC: as the spec says.
 *
 * Errors are printed as {cniVersion, code, msg, details} with exit code 1.
 * This module imports only node builtins: the node component copies it
 * (with a node binary) to /opt/cni/bin, where nothing else of ambit exists.
 */
import { existsSync } from 'node:fs';
import { connect } from 'node:net';

export const SUPPORTED_CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const DEFAULT_NODE_SOCKET = '/var/run/ambit/cni.sock';
export const DEFAULT_ADD_TIMEOUT_MS = 30_000;
export const PLUGIN_TYPE = 'ambit-cni';

/** CNI spec error codes (well-known 1-11, 50-51 STATUS) and ours (100+). */
export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  ContainerUnknown: 3,
  InvalidEnv: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  /** The node component answered but enrolling failed (rules, agent NACK, timeout). */
  EnrollFailed: 100,
  /** CHECK found the pod not (or not correctly) enrolled. */
  CheckFailed: 101,
} as const;

export interface CniErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** The request the plugin sends to the node component (one JSON line). */
export interface NodeRequest {
  op: 'add' | 'del' | 'check' | 'status';
  containerId: string;
  netns: string;
  ifName: string;
  podNamespace: string;
  podName: string;
  podUid: string;
}

/** The node component's answer (one JSON line). */
export type NodeResponse = (
  | { ok: true; enrolled: boolean; detail?: string }
  | { ok: false; code: 'not_ready' | 'enroll_failed' | 'check_failed' | 'bad_request'; msg: string }
) & {
  /** op 'status' only: the node component's status (pods, agent connection), for `ambit cni status`. */
  status?: unknown;
};

export interface PluginConfig {
  cniVersion: string;
  name: string;
  type: string;
  prevResult?: Record<string, unknown>;
  nodeSocket: string;
  addTimeoutMs: number;
  excludeNamespaces: string[];
}

export interface PluginInput {
  env: Record<string, string | undefined>;
  stdin: string;
  /** Sends one request to the node component; default: the unix socket from the config. */
  call?: (socketPath: string, req: NodeRequest, timeoutMs: number) => Promise<NodeResponse>;
}

export interface PluginOutput {
  stdout: string;
  exitCode: number;
}

class PluginFailure extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details?: string,
  ) {
    super(msg);
  }
}

function fail(code: number, msg: string, details?: string): never {
  throw new PluginFailure(code, msg, details);
}

function parseConfig(stdin: string): PluginConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    fail(CniCode.DecodeFailure, 'cannot decode the network configuration on stdin', (e as Error).message);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(CniCode.DecodeFailure, 'the network configuration must be a JSON object');
  const o = raw as Record<string, unknown>;
  const str = (k: string, dflt?: string): string => {
    const v = o[k] ?? dflt;
    if (typeof v !== 'string' || v === '') fail(CniCode.InvalidConfig, `network configuration field '${k}' must be a non-empty string`);
    return v;
  };
  const prev = o.prevResult;
  if (prev !== undefined && (typeof prev !== 'object' || prev === null || Array.isArray(prev))) fail(CniCode.InvalidConfig, "'prevResult' must be an object");
  const timeout = o.addTimeoutMs ?? DEFAULT_ADD_TIMEOUT_MS;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0) fail(CniCode.InvalidConfig, "'addTimeoutMs' must be a positive number");
  const excl = o.excludeNamespaces ?? [];
  if (!Array.isArray(excl) || excl.some((x) => typeof x !== 'string')) fail(CniCode.InvalidConfig, "'excludeNamespaces' must be a list of strings");
  return {
    cniVersion: str('cniVersion', '0.3.1'),
    name: str('name', 'ambit'),
    type: str('type', PLUGIN_TYPE),
    ...(prev !== undefined ? { prevResult: prev as Record<string, unknown> } : {}),
    nodeSocket: str('nodeSocket', DEFAULT_NODE_SOCKET),
    addTimeoutMs: timeout,
    excludeNamespaces: excl as string[],
  };
}

/** K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;... → map (ignores malformed pairs, as libcni's LoadArgs with IgnoreUnknown). */
export function parseCniArgs(s: string | undefined): Map<string, string> {
  const m = new Map<string, string>();
  for (const pair of (s ?? '').split(';')) {
    const i = pair.indexOf('=');
    if (i > 0) m.set(pair.slice(0, i), pair.slice(i + 1));
  }
  return m;
}

function requireEnv(env: PluginInput['env'], name: string): string {
  const v = env[name];
  if (v === undefined || v === '') fail(CniCode.InvalidEnv, `environment variable ${name} is required`);
  return v;
}

/** The default transport: one JSON line to the unix socket, one JSON line back. */
export function callNodeComponent(socketPath: string, req: NodeRequest, timeoutMs: number): Promise<NodeResponse> {
  return new Promise<NodeResponse>((resolve, reject) => {
    const sock = connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from the ambit node component within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as NodeResponse);
      } catch (e) {
        reject(new Error(`bad answer from the ambit node component: ${(e as Error).message}`));
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      reject(new Error('the ambit node component closed the connection without an answer'));
    });
  });
}

/** What ADD/CHECK print: prevResult with the config's cniVersion (an empty result when there is none). */
function passthrough(cfg: PluginConfig): string {
  const prev = cfg.prevResult ?? { interfaces: [], ips: [], dns: {} };
  return JSON.stringify({ ...prev, cniVersion: cfg.cniVersion });
}

async function ask(input: PluginInput, cfg: PluginConfig, req: NodeRequest, timeoutMs: number): Promise<NodeResponse> {
  const call = input.call ?? callNodeComponent;
  try {
    return await call(cfg.nodeSocket, req, timeoutMs);
  } catch (e) {
    fail(CniCode.TryAgainLater, `the ambit mesh is not ready on this node: cannot reach the node component at ${cfg.nodeSocket}`, (e as Error).message);
  }
}

async function dispatch(input: PluginInput, cmd: string): Promise<string> {
  if (cmd === 'VERSION') {
    // VERSION may come with or without a config; only cniVersion matters.
    let v = '1.1.0';
    try {
      const c = JSON.parse(input.stdin || '{}') as { cniVersion?: unknown };
      if (typeof c.cniVersion === 'string') v = c.cniVersion;
    } catch {
      // no usable config: answer with our newest version
    }
    return JSON.stringify({ cniVersion: v, supportedVersions: SUPPORTED_CNI_VERSIONS });
  }
  const cfg = parseConfig(input.stdin);
  if (!(SUPPORTED_CNI_VERSIONS as readonly string[]).includes(cfg.cniVersion)) {
    fail(CniCode.IncompatibleVersion, `cniVersion ${cfg.cniVersion} is not supported`, `supported: ${SUPPORTED_CNI_VERSIONS.join(', ')}`);
  }
  if (cmd === 'GC') return '';
  if (cmd === 'STATUS') {
    const r = await ask(input, cfg, { op: 'status', containerId: '', netns: '', ifName: '', podNamespace: '', podName: '', podUid: '' }, 5_000).catch((e: unknown) => {
      if (e instanceof PluginFailure) fail(CniCode.PluginNotAvailable, e.message, e.details);
      throw e;
    });
    if (!r.ok) fail(CniCode.PluginNotAvailable, r.msg);
    return '';
  }
  if (cmd !== 'ADD' && cmd !== 'DEL' && cmd !== 'CHECK') fail(CniCode.InvalidEnv, `unknown CNI_COMMAND '${cmd}'`, 'expected ADD, DEL, CHECK, VERSION, STATUS or GC');
  const containerId = requireEnv(input.env, 'CNI_CONTAINERID');
  requireEnv(input.env, 'CNI_IFNAME');
  const netns = input.env.CNI_NETNS ?? '';
  const args = parseCniArgs(input.env.CNI_ARGS);
  const podNamespace = args.get('K8S_POD_NAMESPACE') ?? '';
  const podName = args.get('K8S_POD_NAME') ?? '';
  const podUid = args.get('K8S_POD_UID') ?? '';
  const req: NodeRequest = { op: 'del', containerId, netns, ifName: input.env.CNI_IFNAME ?? '', podNamespace, podName, podUid };

  if (cmd === 'DEL') {
    // DEL must succeed when things are already gone, and must never block pod deletion.
    if (podName === '') return '';
    const r = await (input.call ?? callNodeComponent)(cfg.nodeSocket, req, 10_000).catch(() => undefined);
    if (r && !r.ok && r.code !== 'not_ready') fail(CniCode.EnrollFailed, r.msg);
    return '';
  }

  if (cfg.prevResult === undefined && cmd === 'CHECK') fail(CniCode.InvalidConfig, 'CHECK needs prevResult: ambit-cni is a chained plugin');
  // Not a Kubernetes pod (no K8S_* args) or an excluded namespace: nothing to do.
  if (podName === '' || podNamespace === '') return cmd === 'ADD' ? passthrough(cfg) : '';
  if (cfg.excludeNamespaces.includes(podNamespace)) return cmd === 'ADD' ? passthrough(cfg) : '';
  if (netns === '') fail(CniCode.InvalidEnv, 'environment variable CNI_NETNS is required');
  if (!existsSync(netns)) fail(CniCode.ContainerUnknown, `the network namespace ${netns} does not exist`, `pod ${podNamespace}/${podName}`);

  const r = await ask(input, cfg, { ...req, op: cmd === 'ADD' ? 'add' : 'check' }, cfg.addTimeoutMs);
  if (!r.ok) {
    if (r.code === 'not_ready') fail(CniCode.TryAgainLater, `the ambit mesh is not ready: ${r.msg}`, `pod ${podNamespace}/${podName} was not started unprotected`);
    if (r.code === 'bad_request') fail(CniCode.InvalidConfig, r.msg);
    fail(cmd === 'ADD' ? CniCode.EnrollFailed : CniCode.CheckFailed, r.msg, `pod ${podNamespace}/${podName}`);
  }
  return cmd === 'ADD' ? passthrough(cfg) : '';
}

/** Runs one CNI invocation. Never throws: failures become CNI error JSON and exit code 1. */
export async function runPlugin(input: PluginInput): Promise<PluginOutput> {
  const cmd = input.env.CNI_COMMAND ?? '';
  let version = '1.1.0';
  try {
    const c = JSON.parse(input.stdin) as { cniVersion?: unknown };
    if (typeof c.cniVersion === 'string') version = c.cniVersion;
  } catch {
    // reported by dispatch
  }
  try {
    if (cmd === '') fail(CniCode.InvalidEnv, 'environment variable CNI_COMMAND is required');
    const out = await dispatch(input, cmd);
    return { stdout: out === '' ? '' : out + '\n', exitCode: 0 };
  } catch (e) {
    const err: CniErrorResult =
      e instanceof PluginFailure
        ? { cniVersion: version, code: e.code, msg: e.message, ...(e.details !== undefined ? { details: e.details } : {}) }
        : { cniVersion: version, code: CniCode.IoFailure, msg: 'unexpected failure in ambit-cni', details: e instanceof Error ? e.message : String(e) };
    return { stdout: JSON.stringify(err) + '\n', exitCode: 1 };
  }
}

/** The executable's main: reads stdin, runs, writes stdout, sets the exit code. */
export async function pluginMain(): Promise<void> {
  const chunks: Buffer[] = [];
  if (process.env.CNI_COMMAND !== 'VERSION' || !process.stdin.isTTY) {
    for await (const c of process.stdin) chunks.push(c as Buffer);
  }
  const out = await runPlugin({ env: process.env, stdin: Buffer.concat(chunks).toString('utf8') });
  process.stdout.write(out.stdout);
  process.exitCode = out.exitCode;
}
