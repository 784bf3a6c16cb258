/**
 * Human-readable views of an agent's /config_dump: the local workloads with
 * their in-pod state, the services, and the certificates with expiry. The
 * dump is read defensively (it is JSON from another process, maybe another
 * version): missing fields show as "-", never crash the command.
 */
import { heading, humanDuration, paint, table } from './format.js';

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {};
}

function arr(v: unknown): Obj[] {
  return Array.isArray(v) ? v.map(obj) : [];
}

function str(v: unknown, fallback = '-'): string {
  return typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : fallback;
}

export interface WorkloadRow {
  namespace: string;
  name: string;
  ip: string;
  node: string;
  identity: string;
  state: string;
}

export interface CertificateRow {
  identity: string;
  state: string;
  serial: string;
  notAfter: string;
  /** ms until expiry at `now`; undefined without a certificate. */
  remainingMs: number | undefined;
}

export interface DumpSummary {
  node: string;
  workloads: WorkloadRow[];
  services: Array<{ namespace: string; name: string; vips: string; ports: string }>;
  certificates: CertificateRow[];
}

/** The node's own workloads (the ones this agent serves), with their in-pod state. */
export function summarizeDump(dump: unknown, now: number): DumpSummary {
  const d = obj(dump);
  const node = str(d.node);
  const states = obj(d.workloadState);
  const enrolled = new Map(arr(obj(d.enrollment).pods).map((p) => [str(p.uid), p]));
  const workloads = arr(d.workloads)
    .filter((w) => str(w.node) === node)
    .map((w): WorkloadRow => {
      const uid = str(w.uid, `${str(w.namespace)}/${str(w.name)}`);
      const inMesh = w.tunnelProtocol !== 'NONE';
      const st = obj(states[uid]);
      const pod = enrolled.get(uid);
      const state = !inMesh ? 'not in mesh' : st.state !== undefined ? str(st.state) : pod ? str(pod.lastError, str(pod.phase)) : 'Pending';
      return { namespace: str(w.namespace), name: str(w.name), ip: str(w.ip), node: str(w.node), identity: `${str(w.namespace)}/${str(w.serviceAccount, 'default')}`, state };
    })
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  const services = arr(d.services)
    .map((s) => ({
      namespace: str(s.namespace),
      name: str(s.name),
      vips: Array.isArray(s.vips) ? s.vips.map((v) => str(v)).join(',') || '-' : '-',
      ports: arr(s.ports).map((p) => `${str(p.port)}->${str(p.targetPort)}`).join(',') || '-',
    }))
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  const certificates = arr(d.certificates)
    .map((c): CertificateRow => {
      const cert = obj(c.certificate);
      const notAfter = str(cert.notAfter);
      const t = Date.parse(notAfter);
      return { identity: str(c.identity), state: str(c.state), serial: str(cert.serialNumber), notAfter, remainingMs: Number.isNaN(t) ? undefined : t - now };
    })
    .sort((a, b) => a.identity.localeCompare(b.identity));
  return { node, workloads, services, certificates };
}

function stateCell(colour: boolean, s: string): string {
  if (s === 'Up' || s === 'Available' || s === 'enrolled') return paint(colour, 'green', s);
  if (s === 'not in mesh') return paint(colour, 'dim', s);
  if (s === 'Pending' || s === 'Initializing' || s === 'enrolling') return paint(colour, 'yellow', s);
  return paint(colour, 'red', s);
}

export function workloadsTable(rows: WorkloadRow[], colour: boolean): string {
  return table(
    ['NAMESPACE', 'NAME', 'IP', 'SERVICE ACCOUNT', 'STATE'],
    rows.map((w) => [w.namespace, w.name, w.ip, w.identity.split('/')[1] ?? '-', stateCell(colour, w.state)]),
    colour,
  );
}

export function certificatesTable(rows: CertificateRow[], colour: boolean): string {
  return table(
    ['IDENTITY', 'STATE', 'SERIAL', 'EXPIRES', 'REMAINING'],
    rows.map((c) => {
      const rem = c.remainingMs === undefined ? '-' : humanDuration(c.remainingMs);
      const remCell = c.remainingMs === undefined ? rem : c.remainingMs < 0 ? paint(colour, 'red', rem) : c.remainingMs < 15 * 60_000 ? paint(colour, 'yellow', rem) : rem;
      return [c.identity, stateCell(colour, c.state.startsWith('Unavailable') ? c.state : c.state), c.serial.length > 16 ? `${c.serial.slice(0, 16)}…` : c.serial, c.notAfter, remCell];
    }),
    colour,
  );
}

/** The whole config dump as tables (what `ambit config-dump` prints without --json). */
export function renderDump(dump: unknown, opts: { colour: boolean; now: number }): string {
  const s = summarizeDump(dump, opts.now);
  const c = opts.colour;
  const total = arr(obj(dump).workloads).length;
  return [
    `${paint(c, 'bold', 'node')} ${s.node}   workloads in cluster view: ${total}   services: ${s.services.length}\n`,
    heading(c, `Workloads on ${s.node}`),
    workloadsTable(s.workloads, c),
    heading(c, 'Services'),
    table(['NAMESPACE', 'NAME', 'VIPS', 'PORTS'], s.services.map((x) => [x.namespace, x.name, x.vips, x.ports]), c),
    heading(c, 'Certificates'),
    certificatesTable(s.certificates, c),
  ].join('');
}
