/**
 * The merged benchmark report (bench/report.ts): pure functions from the
 * benchmarks' *-latest.json contents to tables (headers + rows, numbers kept
 * as numbers) and to Markdown. Ratios to the direct path and to the best peer
 * (the best measured non-Ambit contender of the same table: stunnel4, nghttpx
 * or nginx) are computed here, so the unit test can check them from fixture
 * JSONs without a lab. Published anchors (ztunnel, the Istio waypoint) are
 * reference rows, always marked "published, not measured here".
 */

/** A cell: a number (formatted on output), text, or null (nothing measured). */
export type Cell = number | string | null;

export interface Row {
  readonly cells: readonly Cell[];
  /** 'reference' rows are published figures, not measured here. */
  readonly kind: 'measured' | 'reference';
}

export interface Table {
  readonly id: string;
  readonly title: string;
  readonly source: string;
  readonly note?: string;
  readonly headers: readonly string[];
  readonly rows: readonly Row[];
}

export interface Headline {
  readonly what: string;
  readonly value: number | null;
  readonly unit: 'x' | 'ms' | '';
}

export interface MergedReport {
  readonly schema: 'ambit-bench-report/1';
  readonly generatedAt: string;
  readonly machine: string | null;
  readonly sources: Readonly<Record<string, { startedAt: string | null; quick: boolean | null } | null>>;
  readonly headline: readonly Headline[];
  readonly tables: readonly Table[];
}

/** The parsed *-latest.json files; each may be missing. Shapes are read defensively. */
export interface Inputs {
  readonly hbone?: unknown;
  readonly inpod?: unknown;
  readonly agent?: unknown;
  readonly controlPlane?: unknown;
  readonly l7?: unknown;
}

/** Published figures from the issue; never measured here. */
export const ANCHORS = {
  ztunnel: { vcpuPer1kRps: 0.06, mbPer1kRps: 12, p90AddedMsTwoHops: 0.17 },
  istioWaypoint: { vcpuPer1kRps: 0.25, mbPer1kRps: 60 },
} as const;

export const PUBLISHED = 'published, not measured here';

// ------------------------------------------------------------------ safe access

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);
const obj = (x: unknown): Obj => (isObj(x) ? x : {});
const arr = (x: unknown): Obj[] => (Array.isArray(x) ? x.filter(isObj) : []);
const numOr = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);
const str = (x: unknown): string | null => (typeof x === 'string' ? x : null);

/** a / b to 3 significant digits, or null when either is missing or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return Number((a / b).toPrecision(3));
}

function sumValues(x: unknown): number | null {
  const vs = Object.values(obj(x)).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  return vs.length === 0 ? null : Math.round(vs.reduce((s, v) => s + v, 0) * 10000) / 10000;
}

function perProc(x: unknown, digits = 3): string {
  const e = Object.entries(obj(x)).filter(([, v]) => typeof v === 'number');
  return e.length === 0 ? '-' : e.map(([k, v]) => `${k} ${(v as number).toFixed(digits)}`).join(', ');
}

/** The best peer value: max (higher is better) or min among the peers' values. */
function best(values: ReadonlyArray<number | null>, higherIsBetter: boolean): number | null {
  const vs = values.filter((v): v is number => v !== null);
  if (vs.length === 0) return null;
  return higherIsBetter ? Math.max(...vs) : Math.min(...vs);
}

// ------------------------------------------------------------------ path names

const INPOD_LABEL: Record<string, string> = {
  direct: 'direct (no proxy)',
  mesh: 'Ambit L4 mesh (agent → HBONE → agent)',
  inbound: 'Ambit plaintext inbound (agent node-b only)',
  stunnel: 'peer: stunnel4 (mTLS per connection)',
};
const INPOD_PEERS = new Set(['stunnel']);
const inpodOrder = ['direct', 'mesh', 'inbound', 'stunnel'];
const label = (p: string): string => INPOD_LABEL[p] ?? p;

const L7_LABEL: Record<string, string> = { direct: 'direct (no proxy)', 'mesh-l4': 'Ambit L4 mesh', waypoint: 'Ambit waypoint (L7)', nginx: 'peer: nginx (L7 reverse proxy)' };
const L7_PEERS = new Set(['nginx']);

// ------------------------------------------------------------------ tables

function inpodThroughput(inpod: Obj): Table | null {
  const tp = arr(inpod.throughput);
  if (tp.length === 0) return null;
  const streams = [...new Set(tp.map((s) => numOr(s.streams)).filter((n): n is number => n !== null))].sort((a, b) => a - b);
  const g = (path: string, n: number): number | null => numOr(tp.find((s) => s.path === path && s.streams === n)?.gbps);
  const paths = inpodOrder.filter((p) => tp.some((s) => s.path === p));
  const peers = paths.filter((p) => INPOD_PEERS.has(p));
  const rows: Row[] = paths.map((p) => ({
    kind: 'measured',
    cells: [
      label(p),
      ...streams.map((n) => g(p, n)),
      ...streams.map((n) => ratio(g(p, n), g('direct', n))),
      ...streams.map((n) => ratio(g(p, n), best(peers.map((q) => g(q, n)), true))),
    ],
  }));
  return {
    id: 'throughput',
    title: 'Throughput (iperf3, Gbit/s, receiver)',
    source: 'inpod',
    note: 'Pod to pod across the two lab nodes. × direct: share of the direct path; × best peer: against the best measured peer (stunnel4).',
    headers: ['path', ...streams.map((n) => `${n} stream${n > 1 ? 's' : ''}`), ...streams.map((n) => `× direct (${n})`), ...streams.map((n) => `× best peer (${n})`)],
    rows,
  };
}

function hboneMicro(hbone: Obj): Table | null {
  const tp = arr(hbone.throughput);
  if (tp.length === 0) return null;
  const key = (s: Obj): string => str(s.path) ?? str(s.kind) ?? '?';
  const streams = [...new Set(tp.map((s) => numOr(s.streams)).filter((n): n is number => n !== null))].sort((a, b) => a - b);
  const g = (path: string, n: number): number | null => numOr(tp.find((s) => key(s) === path && s.streams === n)?.medianGbps);
  const names: Record<string, string> = { direct: 'direct TCP (Node generator)', hbone: 'Ambit HBONE endpoint', peer: 'peer: nghttpx + tinyproxy (C)', iperf3: 'iperf3 direct (C, reference)' };
  const paths = ['direct', 'hbone', 'peer', 'iperf3'].filter((p) => tp.some((s) => key(s) === p));
  return {
    id: 'hbone',
    title: 'HBONE endpoint micro-benchmark (Gbit/s, median of rounds)',
    source: 'hbone',
    note: 'Same Node client and sink on every path; the peer is nghttpx (HTTP/2 CONNECT, mTLS) forwarding to tinyproxy.',
    headers: ['path', ...streams.map((n) => `${n} stream${n > 1 ? 's' : ''}`), ...streams.map((n) => `× direct (${n})`), ...streams.map((n) => `× best peer (${n})`)],
    rows: paths.map((p) => ({
      kind: 'measured',
      cells: [names[p] ?? p, ...streams.map((n) => g(p, n)), ...streams.map((n) => ratio(g(p, n), g('direct', n))), ...streams.map((n) => ratio(g(p, n), g('peer', n)))],
    })),
  };
}

function inpodLatency(inpod: Obj): Table | null {
  const lat = arr(inpod.latency).filter((s) => s.keepAlive === true);
  if (lat.length === 0) return null;
  const rates = [...new Set(lat.map((s) => numOr(s.rps)).filter((n): n is number => n !== null))].sort((a, b) => a - b);
  const find = (p: string, r: number): Obj | undefined => lat.find((s) => s.path === p && s.rps === r);
  const p90 = (p: string, r: number): number | null => numOr(find(p, r)?.p90Ms);
  const paths = inpodOrder.filter((p) => lat.some((s) => s.path === p));
  const peers = paths.filter((p) => INPOD_PEERS.has(p));
  const rows: Row[] = [];
  for (const r of rates) {
    for (const p of paths) {
      const s = find(p, r);
      if (!s) continue;
      const d = p90('direct', r);
      const v = p90(p, r);
      rows.push({
        kind: 'measured',
        cells: [label(p), r, numOr(s.achievedRps), numOr(s.p50Ms), v, numOr(s.p99Ms), v !== null && d !== null ? Math.round((v - d) * 1000) / 1000 : null, ratio(v, d), ratio(v, best(peers.map((q) => p90(q, r)), false))],
      });
    }
  }
  rows.push({ kind: 'reference', cells: [`ztunnel, two hops (${PUBLISHED})`, null, null, null, null, null, ANCHORS.ztunnel.p90AddedMsTwoHops, null, null] });
  return {
    id: 'latency',
    title: 'Latency, 1 KiB request/response, keep-alive, open loop (ms)',
    source: 'inpod',
    note: 'Fixed-rate schedule (no coordinated omission). + p90: p90 minus the direct path at the same rate.',
    headers: ['path', 'rate/s', 'done/s', 'p50', 'p90', 'p99', '+ p90 vs direct', 'p90 × direct', 'p90 × best peer'],
    rows,
  };
}

function saturationTable(inpod: Obj, l7: Obj): Table | null {
  const rows: Row[] = [];
  const sat = arr(inpod.saturation);
  const rps = (p: string): number | null => numOr(sat.find((s) => s.path === p)?.rps);
  const paths = inpodOrder.filter((p) => sat.some((s) => s.path === p));
  const peerBest = best(paths.filter((p) => INPOD_PEERS.has(p)).map(rps), true);
  for (const p of paths) rows.push({ kind: 'measured', cells: [label(p), 'HTTP/1.1 (L4 suite)', rps(p), ratio(rps(p), rps('direct')), ratio(rps(p), peerBest)] });
  const ls = arr(l7.saturation);
  for (const proto of [...new Set(ls.map((s) => str(s.protocol) ?? '?'))]) {
    const of = (p: string): number | null => numOr(ls.find((s) => s.path === p && s.protocol === proto)?.rps);
    const lp = ['direct', 'mesh-l4', 'waypoint', 'nginx'].filter((p) => ls.some((s) => s.path === p && s.protocol === proto));
    const lb = best(lp.filter((p) => L7_PEERS.has(p)).map(of), true);
    for (const p of lp) rows.push({ kind: 'measured', cells: [L7_LABEL[p] ?? p, `${proto} (L7 suite)`, of(p), ratio(of(p), of('direct')), ratio(of(p), lb)] });
  }
  if (rows.length === 0) return null;
  return {
    id: 'saturation',
    title: 'Saturation (h2load, requests/s)',
    source: 'inpod, l7',
    note: 'L4 suite: h2load --h1 -c 16 -m 1, GET, 1 KiB answer. L7 suite: its own h2load settings; compare within a suite.',
    headers: ['path', 'protocol', 'req/s', '× direct', '× best peer'],
    rows,
  };
}

function connectionsTable(inpod: Obj): Table | null {
  const cs = arr(inpod.connections);
  if (cs.length === 0) return null;
  const rate = (p: string): number | null => numOr(cs.find((s) => s.path === p)?.rate);
  const paths = inpodOrder.filter((p) => cs.some((s) => s.path === p));
  const peerBest = best(paths.filter((p) => INPOD_PEERS.has(p)).map(rate), true);
  return {
    id: 'connections',
    title: 'New connections per second (each request a new TCP connection)',
    source: 'inpod',
    note: 'Closed loop, 32 workers. CPU ms per connection for each proxy process.',
    headers: ['path', 'conn/s', 'p50 ms', 'p99 ms', 'CPU ms/conn', '× direct', '× best peer'],
    rows: paths.map((p) => {
      const s = cs.find((x) => x.path === p) ?? {};
      return { kind: 'measured', cells: [label(p), rate(p), numOr(s.p50Ms), numOr(s.p99Ms), perProc(s.cpuMsPerConnection), ratio(rate(p), rate('direct')), ratio(rate(p), peerBest)] };
    }),
  };
}

function idleTable(inpod: Obj): Table | null {
  const is = arr(inpod.idle);
  if (is.length === 0) return null;
  // A process whose RSS went down while 1,000 connections opened was garbage
  // collecting what an earlier scenario left: its delta says nothing about
  // the connections, so the path's total (and its ratio) is not reported.
  const total = (p: string): number | null => {
    const per = is.find((s) => s.path === p)?.rssMiBPer1kConnections;
    if (isObj(per) && Object.values(per).some((v) => typeof v === 'number' && v < 0)) return null;
    return sumValues(per);
  };
  const paths = inpodOrder.filter((p) => is.some((s) => s.path === p));
  const peerBest = best(paths.filter((p) => INPOD_PEERS.has(p)).map(total), false);
  return {
    id: 'idle',
    title: 'Memory per 1,000 idle tunnelled connections (RSS MiB)',
    source: 'inpod',
    note: 'RSS with the connections open minus before, per 1,000, summed over the path’s proxy processes. A path with a negative per-process delta (a garbage collection during the measurement) gets no total.',
    headers: ['path', 'connections open', 'MiB per 1,000 (all proxies)', 'per process', '× best peer'],
    rows: paths.map((p) => {
      const s = is.find((x) => x.path === p) ?? {};
      return { kind: 'measured', cells: [label(p), numOr(s.open), total(p), perProc(s.rssMiBPer1kConnections, 2), ratio(total(p), peerBest)] };
    }),
  };
}

function cpuTable(inpod: Obj, agent: Obj, l7: Obj): Table | null {
  const rows: Row[] = [];
  const lat = arr(inpod.latency).filter((s) => s.keepAlive === true && isObj(s.cpuSecondsPer1kRequests) && Object.keys(s.cpuSecondsPer1kRequests).length > 0);
  const peerAt = (r: number): number | null => best(lat.filter((s) => s.rps === r && INPOD_PEERS.has(String(s.path))).map((s) => sumValues(s.cpuSecondsPer1kRequests)), false);
  for (const s of lat) {
    const r = numOr(s.rps);
    const total = sumValues(s.cpuSecondsPer1kRequests);
    rows.push({ kind: 'measured', cells: [label(String(s.path)), `L4 keep-alive @${r ?? '?'}/s`, total, perProc(s.cpuSecondsPer1kRequests), ratio(total, r === null ? null : peerAt(r)), ratio(total, ANCHORS.ztunnel.vcpuPer1kRps * 2)] });
  }
  const sat = arr(inpod.saturation).filter((s) => isObj(s.cpuSecondsPer1kRequests) && Object.keys(s.cpuSecondsPer1kRequests).length > 0);
  const satPeer = best(sat.filter((s) => INPOD_PEERS.has(String(s.path))).map((s) => sumValues(s.cpuSecondsPer1kRequests)), false);
  for (const s of sat) {
    const total = sumValues(s.cpuSecondsPer1kRequests);
    rows.push({ kind: 'measured', cells: [label(String(s.path)), 'L4 saturation', total, perProc(s.cpuSecondsPer1kRequests), ratio(total, satPeer), ratio(total, ANCHORS.ztunnel.vcpuPer1kRps * 2)] });
  }
  const ka = obj(obj(agent.summary).keepAlive);
  if (isObj(ka.vcpuPer1000Rps)) {
    const total = sumValues(ka.vcpuPer1000Rps);
    rows.push({ kind: 'measured', cells: ['Ambit L4 mesh (agent benchmark)', `keep-alive @${numOr(ka.atRps) ?? '?'}/s`, total, perProc(ka.vcpuPer1000Rps), null, ratio(total, ANCHORS.ztunnel.vcpuPer1kRps * 2)] });
  }
  const l7rates = arr(l7.rates).filter((s) => isObj(s.vcpuPer1kRps) && Object.keys(s.vcpuPer1kRps).length > 0);
  for (const s of l7rates) {
    const nginxSame = l7rates.find((x) => x.path === 'nginx' && x.protocol === s.protocol && x.rps === s.rps);
    const total = sumValues(s.vcpuPer1kRps);
    rows.push({ kind: 'measured', cells: [L7_LABEL[String(s.path)] ?? String(s.path), `${String(s.protocol)} @${numOr(s.rps) ?? '?'}/s (L7 suite)`, total, perProc(s.vcpuPer1kRps), ratio(total, nginxSame ? sumValues(nginxSame.vcpuPer1kRps) : null), null] });
  }
  rows.push({ kind: 'reference', cells: [`ztunnel, per hop (${PUBLISHED})`, 'HTTP/1.1 keep-alive, 1 KB', ANCHORS.ztunnel.vcpuPer1kRps, `${ANCHORS.ztunnel.mbPer1kRps} MB per 1,000 rps`, null, null] });
  rows.push({ kind: 'reference', cells: [`Istio waypoint (${PUBLISHED})`, 'HTTP', ANCHORS.istioWaypoint.vcpuPer1kRps, `${ANCHORS.istioWaypoint.mbPer1kRps} MB per 1,000 rps`, null, null] });
  if (rows.length === 2) return null;
  return {
    id: 'cpu',
    title: 'CPU seconds per 1,000 requests (= vCPU per 1,000 rps), per proxy process',
    source: 'inpod, agent, l7',
    note: 'Total = sum over the path’s proxy processes. × 2 ztunnels: against the published ztunnel figure for the two hops of the L4 path (2 × 0.06).',
    headers: ['path', 'load', 'CPU s / 1,000 req (total)', 'per process', '× best peer', '× 2 ztunnels'],
    rows,
  };
}

function l7Latency(l7: Obj): Table | null {
  const rs = arr(l7.rates);
  if (rs.length === 0) return null;
  const rows: Row[] = [];
  for (const s of rs) {
    const same = (p: string): Obj | undefined => rs.find((x) => x.path === p && x.protocol === s.protocol && x.rps === s.rps);
    const v = numOr(s.p90);
    rows.push({
      kind: 'measured',
      cells: [L7_LABEL[String(s.path)] ?? String(s.path), str(s.protocol), numOr(s.rps), numOr(s.achievedRps), numOr(s.p50), v, numOr(s.p99), ratio(v, numOr(same('direct')?.p90)), ratio(v, numOr(same('nginx')?.p90))],
    });
  }
  const rss = obj(l7.rssMiB);
  if (Object.keys(rss).length > 0) rows.push({ kind: 'measured', cells: [`RSS MiB at the end: ${perProc(rss, 1)}`, null, null, null, null, null, null, null, null] });
  rows.push({ kind: 'reference', cells: [`Istio waypoint (${PUBLISHED}): ${ANCHORS.istioWaypoint.vcpuPer1kRps} vCPU and ${ANCHORS.istioWaypoint.mbPer1kRps} MB per 1,000 rps`, null, null, null, null, null, null, null, null] });
  return {
    id: 'l7',
    title: 'L7: waypoint vs direct vs L4 mesh vs nginx, latency (ms)',
    source: 'l7',
    headers: ['path', 'protocol', 'rate/s', 'done/s', 'p50', 'p90', 'p99', 'p90 × direct', 'p90 × nginx'],
    rows,
  };
}

function controlPlaneTable(cp: Obj): Table | null {
  const s = obj(cp.summary);
  if (Object.keys(s).length === 0) return null;
  const p = obj(cp.parameters);
  const mb = (x: unknown): number | null => (numOr(x) === null ? null : Math.round((numOr(x) as number) / 1e5) / 10);
  const cd = obj(s.changeDelayMs);
  const rss = obj(s.controlPlaneRss);
  return {
    id: 'control-plane',
    title: 'Control plane at scale',
    source: 'control-plane',
    note: `${numOr(p.pods) ?? '?'} pods, ${numOr(p.policies) ?? '?'} policies, ${numOr(p.agents) ?? '?'} xDS clients. The change delay includes 200 ms of debounce.`,
    headers: ['measure', 'value'],
    rows: [
      ['control plane start (ms)', numOr(s.controlPlaneStartupMs)],
      ['first full push to all agents (ms)', numOr(s.firstPushMs)],
      ['change propagation p50 (ms)', numOr(cd.p50)],
      ['change propagation p99 (ms)', numOr(cd.p99)],
      ['full state per agent (bytes)', numOr(s.fullStateBytesPerAgent)],
      ['one change per agent (bytes)', numOr(obj(s.changeBytesPerAgent).p50)],
      ['control plane RSS peak (MB)', mb(rss.peak)],
    ].map((cells) => ({ kind: 'measured' as const, cells: cells as Cell[] })),
  };
}

// ------------------------------------------------------------------ assembly

function machineLine(inputs: Inputs): string | null {
  for (const x of [inputs.inpod, inputs.hbone, inputs.agent, inputs.l7, inputs.controlPlane]) {
    const m = obj(obj(x).machine);
    if (Object.keys(m).length === 0) continue;
    const mem = numOr(m.totalMemBytes);
    const tools = Object.values(obj(m.tools)).filter((t): t is string => typeof t === 'string');
    const load = Array.isArray(m.loadavgStart) ? m.loadavgStart.filter((x): x is number => typeof x === 'number') : [];
    const shared = load.length > 0 ? `; 1-min load average ${load[0]?.toFixed(1)} at the start (shared machine)` : '';
    return `${numOr(m.nproc) ?? '?'} vCPU (${str(m.cpuModel) ?? '?'}), ${mem === null ? '?' : (mem / 2 ** 30).toFixed(1)} GiB RAM, Linux ${str(m.kernel) ?? '?'} ${str(m.arch) ?? ''}, Node ${str(m.node) ?? '?'}, OpenSSL ${str(m.openssl) ?? '?'}${tools.length > 0 ? `; ${tools.join('; ')}` : ''}${shared}`;
  }
  return null;
}

function sourceInfo(x: unknown): { startedAt: string | null; quick: boolean | null } | null {
  if (!isObj(x)) return null;
  const p = obj(x.parameters ?? x.params);
  return { startedAt: str(x.startedAt), quick: typeof p.quick === 'boolean' ? p.quick : null };
}

function cellOf(t: Table | null, rowLabel: string, header: string): number | null {
  if (!t) return null;
  const i = t.headers.indexOf(header);
  const row = t.rows.find((r) => r.kind === 'measured' && r.cells[0] === rowLabel);
  const v = i < 0 ? undefined : row?.cells[i];
  return typeof v === 'number' ? v : null;
}

export function buildReport(inputs: Inputs, generatedAt: Date): MergedReport {
  const inpod = obj(inputs.inpod);
  const l7 = obj(inputs.l7);
  const throughput = inpodThroughput(inpod);
  const latency = inpodLatency(inpod);
  const saturation = saturationTable(inpod, l7);
  const connections = connectionsTable(inpod);
  const idle = idleTable(inpod);
  const tables = [throughput, latency, saturation, connections, idle, cpuTable(inpod, obj(inputs.agent), l7), l7Latency(l7), hboneMicro(obj(inputs.hbone)), controlPlaneTable(obj(inputs.controlPlane))].filter((t): t is Table => t !== null);
  const mesh = label('mesh');
  const p90At1k = latency?.rows.find((r) => r.cells[0] === mesh && r.cells[1] === 1000);
  const headline: Headline[] = [
    { what: 'L4 mesh throughput, 1 stream, × direct', value: cellOf(throughput, mesh, '× direct (1)'), unit: 'x' },
    { what: 'L4 mesh throughput, 8 streams, × direct', value: cellOf(throughput, mesh, '× direct (8)'), unit: 'x' },
    { what: 'L4 mesh throughput, 8 streams, × best peer', value: cellOf(throughput, mesh, '× best peer (8)'), unit: 'x' },
    { what: 'L4 mesh added p90 at 1,000 rps vs direct (ztunnel published: +0.17 ms)', value: typeof p90At1k?.cells[6] === 'number' ? p90At1k.cells[6] : null, unit: 'ms' },
    { what: 'L4 mesh p90 at 1,000 rps × best peer', value: typeof p90At1k?.cells[8] === 'number' ? p90At1k.cells[8] : null, unit: 'x' },
    { what: 'L4 mesh saturation × direct', value: cellOf(saturation, mesh, '× direct'), unit: 'x' },
    { what: 'L4 mesh saturation × best peer', value: cellOf(saturation, mesh, '× best peer'), unit: 'x' },
    { what: 'L4 mesh new connections/s × best peer', value: cellOf(connections, mesh, '× best peer'), unit: 'x' },
    { what: 'L4 mesh idle memory per 1,000 connections × best peer', value: cellOf(idle, mesh, '× best peer'), unit: 'x' },
  ];
  return {
    schema: 'ambit-bench-report/1',
    generatedAt: generatedAt.toISOString(),
    machine: machineLine(inputs),
    sources: { hbone: sourceInfo(inputs.hbone), inpod: sourceInfo(inputs.inpod), agent: sourceInfo(inputs.agent), 'control-plane': sourceInfo(inputs.controlPlane), l7: sourceInfo(inputs.l7) },
    headline,
    tables,
  };
}

// ------------------------------------------------------------------ Markdown

export function formatCell(c: Cell): string {
  if (c === null) return '–';
  if (typeof c === 'string') return c.replaceAll('|', '\\|');
  if (Number.isInteger(c)) return String(c);
  const a = Math.abs(c);
  // 3 significant digits below 100 (0.0512, 0.848, 2.09, 55.4), whole numbers above.
  return a >= 100 ? c.toFixed(0) : String(Number(c.toPrecision(3)));
}

export function tableMarkdown(t: Table): string {
  const lines = [`### ${t.title}`, ''];
  if (t.note) lines.push(`${t.note} (source: ${t.source})`, '');
  lines.push(`| ${t.headers.join(' | ')} |`, `|${t.headers.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`);
  for (const r of t.rows) {
    const cells = r.cells.map(formatCell);
    if (r.kind === 'reference') cells[0] = `*${cells[0] ?? ''}*`;
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

export function headlineMarkdown(h: readonly Headline[]): string {
  const rows = h.filter((x) => x.value !== null).map((x) => `| ${x.what} | ${x.unit === 'ms' && (x.value as number) >= 0 ? '+' : ''}${formatCell(x.value)}${x.unit === 'x' ? '×' : x.unit === 'ms' ? ' ms' : ''} |`);
  return rows.length === 0 ? '' : ['| headline | value |', '| --- | ---: |', ...rows].join('\n');
}

/** The Markdown body (no top-level heading), shared by the dated report and the README section. */
export function reportMarkdown(r: MergedReport, opts: { headingLevel?: 2 | 3 } = {}): string {
  const h = opts.headingLevel === 2 ? '##' : '###';
  const out: string[] = [];
  out.push(`Machine: ${r.machine ?? 'unknown'}. Generated ${r.generatedAt} from ${Object.entries(r.sources).filter(([, v]) => v !== null).map(([k, v]) => `${k} (${v?.startedAt ?? '?'}${v?.quick ? ', quick' : ''})`).join(', ') || 'no results'}.`);
  out.push('', `Rows in *italics* are ${PUBLISHED}: ztunnel ≈ ${ANCHORS.ztunnel.vcpuPer1kRps} vCPU and ${ANCHORS.ztunnel.mbPer1kRps} MB per 1,000 rps, ≈ +${ANCHORS.ztunnel.p90AddedMsTwoHops} ms p90 for two hops; Istio waypoint ≈ ${ANCHORS.istioWaypoint.vcpuPer1kRps} vCPU and ${ANCHORS.istioWaypoint.mbPer1kRps} MB per 1,000 rps.`);
  const hl = headlineMarkdown(r.headline);
  if (hl !== '') out.push('', `${h} Headline`, '', hl);
  for (const t of r.tables) out.push('', tableMarkdown(t).replace(/^### /, `${h} `));
  return `${out.join('\n')}\n`;
}
