/**
 * `ambit status`: one screen about the agent on this node: readiness (with
 * what is pending), the workloads it serves and their state, certificates
 * and their expiry, and connections per destination. Admin (15000) is
 * required; metrics (15020) and readiness (15021) are shown when reachable.
 */
import { DEFAULT_ADMIN_PORT, DEFAULT_METRICS_PORT, DEFAULT_READINESS_PORT } from '../agent/config.js';
import { toError } from '../common/errors.js';
import { fetchEndpoint, fetchJson, fetchOk, formatEndpoint, parseAddress, type Endpoint } from './agent-client.js';
import { boolFlag, stringFlag, type Command, type ParsedArgs } from './command.js';
import { certificatesTable, summarizeDump, workloadsTable, type DumpSummary } from './dump-summary.js';
import { heading, paint, processOutput, type Output } from './format.js';
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

export async function runStatus(args: ParsedArgs, out: Output, now = Date.now()): Promise<number> {
  const admin = parseAddress(stringFlag(args, 'address', `127.0.0.1:${DEFAULT_ADMIN_PORT}`) as string, 'admin');
  const host = admin.host;
  const metrics = parseAddress(stringFlag(args, 'metrics-address', `${host.includes(':') ? `[${host}]` : host}:${DEFAULT_METRICS_PORT}`) as string, 'metrics');
  const ready = parseAddress(stringFlag(args, 'readiness-address', `${host.includes(':') ? `[${host}]` : host}:${DEFAULT_READINESS_PORT}`) as string, 'readiness');
  const report = await collectStatus(admin, metrics, ready, now);
  out.write(boolFlag(args, 'json') ? JSON.stringify(report, null, 2) + '\n' : renderStatus(report, out.colour));
  return 0;
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'show the agent on this node: readiness, workloads, certificates and connections',
  usage: '[--address host:port] [--json]',
  flags: {
    address: { type: 'string', help: 'agent admin endpoint', default: `127.0.0.1:${DEFAULT_ADMIN_PORT}` },
    'metrics-address': { type: 'string', help: 'agent metrics endpoint', default: `<admin host>:${DEFAULT_METRICS_PORT}` },
    'readiness-address': { type: 'string', help: 'agent readiness endpoint', default: `<admin host>:${DEFAULT_READINESS_PORT}` },
    json: { type: 'boolean', help: 'print the collected status as JSON' },
  },
  details: 'In the lab: ambit lab exec --node <node> -- ambit status',
  run: (args) => runStatus(args, processOutput()),
};
