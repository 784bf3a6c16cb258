/**
 * `ambit status`, in three modes:
 * - cluster-wide in a lab (`--lab <name>`) or on Kubernetes (`--kubernetes`,
 *   `--kubeconfig <file>`): the control plane, every agent, every waypoint
 *   and the config errors (cluster-status.ts over status-sources.ts); tables
 *   on a TTY, `-o json|yaml`, exit code 2 when something is unhealthy;
 * - otherwise one screen about the agent on this node: readiness (with
 *   what is pending), the workloads it serves and their state, certificates
 *   and their expiry, and connections per destination. Admin (15000) is
 *   required; metrics (15020) and readiness (15021) are shown when reachable.
 */
import { stringify } from 'yaml';
import { DEFAULT_ADMIN_PORT, DEFAULT_METRICS_PORT, DEFAULT_READINESS_PORT } from '../agent/config.js';
import { toError } from '../common/errors.js';
import type { KubeOps } from '../cni/kube-ops.js';
import { fetchEndpoint, fetchJson, fetchOk, formatEndpoint, parseAddress, type Endpoint } from './agent-client.js';
import { collectClusterStatus, renderClusterStatus, type ClusterStatus, type StatusSources } from './cluster-status.js';
import { boolFlag, enumFlag, stringFlag, type Command, type ParsedArgs } from './command.js';
import { certificatesTable, summarizeDump, workloadsTable, type DumpSummary } from './dump-summary.js';
import { kubeOpsFor } from './enroll-command.js';
import { heading, paint, processOutput, type Output } from './format.js';
import { AGENT_SELECTOR, kubeStatusSources, labStatusSources } from './status-sources.js';
import { parsePromText } from './prom-text.js';
import { summarizeTraffic, trafficTable, type TrafficRow } from './traffic-summary.js';

export interface StatusReport {
  node: string;
  admin: string;
  readiness: { ready: boolean; pending: string[] } | { error: string };
  workloads: DumpSummary['workloads'];
  certificates: DumpSummary['certificates'];
  traffic: TrafficRow[] | { error: string };
}

async function readiness(ep: Endpoint): Promise<StatusReport['readiness']> {
  try {
    const a = await fetchEndpoint(ep, '/healthz/ready', { accept: 'application/json' });
    if (a.status === 200) return { ready: true, pending: [] };
    try {
      const j = JSON.parse(a.body) as { pending?: unknown };
      if (Array.isArray(j.pending)) return { ready: false, pending: j.pending.map(String) };
    } catch {
      // an agent without JSON readiness: show its text as one task
    }
    return { ready: false, pending: [a.body.replace(/^not ready, pending:\s*/, '').trim()].filter((x) => x !== '') };
  } catch (e) {
    return { error: toError(e).message };
  }
}

async function traffic(ep: Endpoint): Promise<StatusReport['traffic']> {
  try {
    return summarizeTraffic(parsePromText(await fetchOk(ep, '/metrics')).samples);
  } catch (e) {
    return { error: toError(e).message };
  }
}

export async function collectStatus(admin: Endpoint, metrics: Endpoint, ready: Endpoint, now: number): Promise<StatusReport> {
  const dump = await fetchJson(admin, '/config_dump');
  const [r, t] = await Promise.all([readiness(ready), traffic(metrics)]);
  const s = summarizeDump(dump, now);
  return { node: s.node, admin: formatEndpoint(admin), readiness: r, workloads: s.workloads, certificates: s.certificates, traffic: t };
}

export function renderStatus(s: StatusReport, colour: boolean): string {
  const r = s.readiness;
  const state = 'error' in r ? paint(colour, 'yellow', `readiness unknown (${r.error})`) : r.ready ? paint(colour, 'green', 'ready') : paint(colour, 'red', 'not ready');
  const lines = [`${paint(colour, 'bold', 'agent')} on node ${s.node}: ${state}   (admin ${s.admin})\n`];
  if (!('error' in r) && !r.ready) for (const p of r.pending) lines.push(`  pending: ${p}\n`);
  const up = s.workloads.filter((w) => w.state === 'Up').length;
  lines.push(heading(colour, `Workloads (${up}/${s.workloads.filter((w) => w.state !== 'not in mesh').length} up)`), workloadsTable(s.workloads, colour));
  lines.push(heading(colour, 'Certificates'), certificatesTable(s.certificates, colour));
  lines.push(heading(colour, 'Connections'));
  lines.push('error' in s.traffic ? `${paint(colour, 'yellow', s.traffic.error)}\n` : trafficTable(s.traffic, colour));
  return lines.join('');
}

/** Exit code of a cluster-wide status that found problems (1 stays "the command failed"). */
export const STATUS_UNHEALTHY_EXIT = 2;

/** How the cluster-wide status reaches the cluster; tests inject their own. */
export type SourcesFor = (args: ParsedArgs) => Promise<StatusSources>;

export const defaultSourcesFor: SourcesFor = async (args) => {
  const lab = stringFlag(args, 'lab');
  if (lab !== undefined) return labStatusSources(lab);
  const ops: KubeOps = kubeOpsFor(args);
  return kubeStatusSources(ops, {
    namespace: stringFlag(args, 'istio-namespace', 'istio-system') as string,
    agentSelector: stringFlag(args, 'agent-selector', AGENT_SELECTOR) as string,
    where: stringFlag(args, 'kubeconfig') ?? process.env.KUBECONFIG ?? 'kubernetes',
  });
};

function clusterWide(args: ParsedArgs): boolean {
  return stringFlag(args, 'lab') !== undefined || boolFlag(args, 'kubernetes') || stringFlag(args, 'kubeconfig') !== undefined;
}

/** Writes the cluster-wide status; 0 when healthy, STATUS_UNHEALTHY_EXIT otherwise. */
export function emitClusterStatus(s: ClusterStatus, format: 'table' | 'json' | 'yaml', out: Output): number {
  out.write(format === 'json' ? JSON.stringify(s, null, 2) + '\n' : format === 'yaml' ? stringify(s) : renderClusterStatus(s, out.colour));
  return s.healthy ? 0 : STATUS_UNHEALTHY_EXIT;
}

export async function runStatus(args: ParsedArgs, out: Output, now = Date.now(), sourcesFor: SourcesFor = defaultSourcesFor): Promise<number> {
  if (clusterWide(args)) {
    const format = boolFlag(args, 'json') ? 'json' : enumFlag(args, 'output', ['table', 'json', 'yaml'] as const, 'table');
    return emitClusterStatus(await collectClusterStatus(await sourcesFor(args), now), format, out);
  }
  const admin = parseAddress(stringFlag(args, 'address', `127.0.0.1:${DEFAULT_ADMIN_PORT}`) as string, 'admin');
  const host = admin.host;
  const metrics = parseAddress(stringFlag(args, 'metrics-address', `${host.includes(':') ? `[${host}]` : host}:${DEFAULT_METRICS_PORT}`) as string, 'metrics');
  const ready = parseAddress(stringFlag(args, 'readiness-address', `${host.includes(':') ? `[${host}]` : host}:${DEFAULT_READINESS_PORT}`) as string, 'readiness');
  const report = await collectStatus(admin, metrics, ready, now);
  const format = boolFlag(args, 'json') ? 'json' : enumFlag(args, 'output', ['table', 'json', 'yaml'] as const, 'table');
  out.write(format === 'json' ? JSON.stringify(report, null, 2) + '\n' : format === 'yaml' ? stringify(report) : renderStatus(report, out.colour));
  return 0;
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'show the mesh (--lab <name> or --kubernetes: control plane, agents, waypoints, config errors) or the agent on this node',
  usage: '[--lab <name> | --kubernetes [--kubeconfig <file>] | --address host:port] [-o table|json|yaml]',
  flags: {
    lab: { type: 'string', help: 'cluster-wide status of this lab (needs root: it reaches the agents inside their node netns)' },
    kubernetes: { type: 'boolean', help: 'cluster-wide status through the Kubernetes API ($KUBECONFIG, ~/.kube/config or in-cluster)' },
    kubeconfig: { type: 'string', help: 'kubeconfig file (implies --kubernetes)' },
    'istio-namespace': { type: 'string', help: 'Kubernetes: namespace of the control plane and the agent DaemonSet', default: 'istio-system' },
    'agent-selector': { type: 'string', help: 'Kubernetes: label selector of the agent pods', default: AGENT_SELECTOR },
    address: { type: 'string', help: 'one agent: its admin endpoint', default: `127.0.0.1:${DEFAULT_ADMIN_PORT}` },
    'metrics-address': { type: 'string', help: 'one agent: its metrics endpoint', default: `<admin host>:${DEFAULT_METRICS_PORT}` },
    'readiness-address': { type: 'string', help: 'one agent: its readiness endpoint', default: `<admin host>:${DEFAULT_READINESS_PORT}` },
    output: { type: 'string', short: 'o', help: 'table, json or yaml', default: 'table' },
    json: { type: 'boolean', help: 'same as -o json' },
  },
  details: [
    'Cluster-wide (--lab, --kubernetes): exit code 0 when healthy, 2 when something is unhealthy (control plane',
    'unreachable or not ready, config errors, an agent unreachable/not ready/without xDS, an unavailable or expired',
    'certificate, a waypoint with no ready pod), 1 when the status could not be collected at all.',
    'One agent (default): in the lab, ambit lab exec --node <node> -- ambit status',
  ].join('\n'),
  run: (args) => runStatus(args, processOutput()),
};
