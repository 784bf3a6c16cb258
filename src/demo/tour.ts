/**
 * `ambit demo --tour`: a scripted walk through the living mesh that prints
 * the proof of each step from the dashboard's data (the agents' own
 * metrics, readiness, config dumps and access logs), then tears down.
 * Steps: enroll, watch traffic with mTLS (metrics and a tcpdump of a
 * node's interfaces: only HBONE, no app bytes in clear), the waypoint's 90/10 reviews
 * split, a flaky canary's 503s retried by the waypoint, apply a deny policy
 * and see the edge go red, remove it and see it recover.
 * Exits 1 when a step's proof did not show up in time. The dashboard is
 * the control plane's (see living.ts); the tour reads its JSON API.
 */
import { APP_NAMESPACE, DENY_POLICY_FILE } from './app.js';
import { edgeLine, startLivingMesh, waitForEdge, type LivingMesh } from './living.js';

export interface TourOptions {
  name: string;
  rps?: number;
  dashboardPort?: number;
  dashboardAddress?: string;
  out: (line: string) => void;
  signal: AbortSignal;
  /** Called once the mesh and its dashboard are up, before the first step's proof (tests look at the mesh here). */
  onMesh?: (mesh: LivingMesh) => Promise<void> | void;
}

const TOUR_STEPS = 7;

function bold(s: string): string {
  return process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s;
}

async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

export async function runTour(o: TourOptions): Promise<number> {
  const { out, signal } = o;
  const results: Array<{ step: string; ok: boolean }> = [];
  const step = (n: number, title: string): void => {
    out('');
    out(bold(`Tour ${n}/${TOUR_STEPS}: ${title}`));
  };
  const check = (name: string, ok: boolean, proof: string): void => {
    results.push({ step: name, ok });
    out(`  ${ok ? 'proof' : 'MISSING'}: ${proof}`);
  };

  step(1, 'enroll: build the lab, start the control plane, the agents and the app in an ambient namespace');
  let mesh: LivingMesh;
  try {
    mesh = await startLivingMesh({ name: o.name, rps: o.rps ?? 5, deny: false, intervalMs: 1000, out: (l) => out(`  ${l}`), signal, ...(o.dashboardPort !== undefined ? { dashboardPort: o.dashboardPort } : {}), ...(o.dashboardAddress ? { dashboardAddress: o.dashboardAddress } : {}) });
  } catch (err) {
    if (signal.aborted) return 130;
    throw err;
  }
  const c = mesh.dashboard;
  try {
    await o.onMesh?.(mesh);
    await sleep(1500, signal);
    const h = await c.health();
    const enrolled = h.agents.map((a) => `${a.node}: ${a.ready ? 'ready' : 'NOT ready'}, ${a.workloadsUp}/${a.workloads} pods up, ${a.certificates.filter((x) => x.state === 'Available').length} certificates`);
    check('enroll', h.agents.length > 0 && h.agents.every((a) => a.ready && a.workloads > 0 && a.workloadsUp === a.workloads), `agents' /healthz/ready and /config_dump: ${enrolled.join('; ')}`);

    step(2, 'watch traffic: every hop is an HBONE tunnel between the node agents, with mutual TLS');
    const hop = await waitForEdge(mesh, (e) => e.source === `wl:${APP_NAMESPACE}/productpage` && e.target === `svc:${APP_NAMESPACE}/reviews` && e.cps > 0, 15_000, signal);
    const g2 = await c.graph();
    for (const e of g2.edges.filter((x) => x.status !== 'idle' && !x.source.startsWith('svc:'))) out(`    ${edgeLine(e)}`);
    const meshed = g2.edges.filter((x) => x.status !== 'idle' && x.source.startsWith('wl:'));
    check('traffic', hop !== undefined, hop ? `productpage -> reviews at ${hop.cps.toFixed(1)} conn/s (istio_tcp_connections_opened_total rate)` : 'no traffic on productpage -> reviews within 15 s');
    const m = await mesh.lab.exec({ node: 'node-b' }, ['curl', '-sS', '--max-time', '3', 'http://127.0.0.1:15020/metrics'], { timeoutMs: 5_000 });
    const line = m.stdout.split('\n').find((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="destination"') && l.includes('destination_workload="productpage"'));
    check('mtls', meshed.length > 0 && meshed.every((e) => e.mtls === 'full') && line?.includes('connection_security_policy="mutual_tls"') === true, `node-b /metrics: ${line ? line.replace(/\{.*(source_principal="[^"]*").*(connection_security_policy="[^"]*").*\}/, '{$1,...,$2}') : 'no productpage line'}`);

    // On the wire: 3 s of every TCP packet node-b's interfaces carry (its pods' veths included).
    const cap = await mesh.lab.exec({ node: 'node-b' }, ['timeout', '3', 'tcpdump', '-i', 'any', '-nn', '-l', '-A', '-s', '512', 'tcp'], { timeoutMs: 10_000 });
    const headers = cap.stdout.split('\n').filter((l) => / IP6? \S+ > \S+: /.test(l));
    const ports = new Map<string, number>();
    for (const l of headers) {
      const m2 = / IP6? \S+\.(\d+) > \S+\.(\d+): /.exec(l);
      if (!m2) continue;
      // The lower port of the pair is the service side (15008 for HBONE; 15020/15021/15000 are the dashboard's scrapes).
      const port = m2[1] === '15008' || m2[2] === '15008' ? '15008' : String(Math.min(Number(m2[1]), Number(m2[2])));
      ports.set(port, (ports.get(port) ?? 0) + 1);
    }
    // The app's JSON answers ({"service":...}) and request lines never cross a node in clear.
    const clear = /"service":"|GET \/(reviews|productpage)|rating\?/.test(cap.stdout);
    const appPorts = [...ports.keys()].filter((p) => ['8080', '9080', '9070'].includes(p));
    check('wire', headers.length > 0 && (ports.get('15008') ?? 0) > 0 && appPorts.length === 0 && !clear, `tcpdump on node-b, 3 s: ${headers.length} packets, by port ${[...ports].map(([p, n]) => `${p}: ${n}`).join(', ') || 'none'}; application bytes in clear: ${clear ? 'FOUND' : 'none'}`);

    step(3, 'the waypoint splits the reviews service 90/10 over reviews-v1 (node-a) and reviews-v2 (node-b) (HTTPRoute reviews-split)');
    // The waypoint's istio_requests_total{reporter="waypoint"} per destination workload.
    const counts = async (): Promise<{ v1: number; v2: number }> => {
      const edges = (await c.graph().catch(() => undefined))?.edges ?? [];
      const v = (w: string): number => edges.find((e) => e.source === `svc:${APP_NAMESPACE}/reviews` && e.target === `wl:${APP_NAMESPACE}/${w}`)?.requestsTotal ?? 0;
      return { v1: v('reviews-v1'), v2: v('reviews-v2') };
    };
    const splitDeadline = Date.now() + 25_000;
    let split = await counts();
    while (Date.now() < splitDeadline && !(split.v1 + split.v2 >= 30 && split.v2 > 0) && !signal.aborted) {
      await sleep(500, signal);
      split = await counts();
    }
    const { v1, v2 } = split;
    const pct = (x: number): number => (v1 + v2 > 0 ? Math.round((100 * x) / (v1 + v2)) : 0);
    check('split', v2 > 0 && v1 > 2 * v2, `waypoint requests so far: reviews-v1 ${v1}, reviews-v2 ${v2} (${pct(v1)}/${pct(v2)}, configured 90/10); reviews-v2 also calls ratings over TCP`);

    step(4, 'a retried failure: reviews-v2 answers 503 to every 5th request; the HTTPRoute retries 503, so callers see none');
    const scrape = async (): Promise<string> => (await mesh.lab.exec(`${APP_NAMESPACE}/waypoint`, ['curl', '-sS', '--max-time', '3', 'http://127.0.0.1:15020/stats/prometheus'], { timeoutMs: 5_000 })).stdout;
    const sum = (text: string, name: string, match: (line: string) => boolean): number =>
      text.split('\n').filter((l) => l.startsWith(`${name}{`) && match(l)).reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    let retries = 0;
    let served503 = 0;
    let served = 0;
    let grpcOk = 0;
    const retryDeadline = Date.now() + 25_000;
    while (Date.now() < retryDeadline) {
      const text = await scrape();
      retries = sum(text, 'ambit_waypoint_upstream_retries_total', () => true);
      const reviews = (l: string): boolean => l.includes('reporter="waypoint"') && l.includes(`destination_service="reviews.${APP_NAMESPACE}.svc.cluster.local"`);
      served503 = sum(text, 'istio_requests_total', (l) => reviews(l) && l.includes('response_code="503"'));
      served = sum(text, 'istio_requests_total', reviews);
      grpcOk = sum(text, 'istio_requests_total', (l) => l.includes('reporter="waypoint"') && l.includes(`destination_service="details.${APP_NAMESPACE}.svc.cluster.local"`) && l.includes('grpc_response_status="0"'));
      if ((retries > 0 && grpcOk > 0) || signal.aborted) break;
      await sleep(1000, signal);
    }
    check('retry', retries > 0 && served503 === 0, `waypoint /stats/prometheus: ambit_waypoint_upstream_retries_total ${retries}; reviews answered ${served} requests to its callers, ${served503} of them 503`);
    check('grpc', grpcOk > 0, `waypoint /stats/prometheus: productpage -> details over gRPC, ${grpcOk} calls with grpc_response_status="0"`);

    step(5, `apply a deny policy: ${APP_NAMESPACE}/deny-rogue (DENY from sa/rogue to app=productpage), written to ${DENY_POLICY_FILE} in the watched folder`);
    const rogue = (): string => `wl:${APP_NAMESPACE}/rogue`;
    const ok0 = await waitForEdge(mesh, (e) => e.source === rogue() && e.status === 'ok', 10_000, signal);
    out(`    before: ${ok0 ? edgeLine(ok0) : 'rogue has no traffic yet'}`);
    const t0 = Date.now();
    await mesh.applyDeny();
    const red = await waitForEdge(mesh, (e) => e.source === rogue() && e.status === 'denied', 15_000, signal);
    out(`    after:  ${red ? edgeLine(red) : 'the edge did not turn red'}`);
    const events = await c.events(0, 300);
    const policyEvent = events.filter((e) => e.kind === 'config' && e.text.includes('deny-rogue')).at(-1);
    if (policyEvent) out(`    control plane: ${policyEvent.text}`);
    const denyEvent = events.filter((e) => e.kind === 'access' && e.text.includes('DENY')).at(-1);
    if (denyEvent) out(`    access log: ${denyEvent.text}`);
    out(`    rogue's own view: ${JSON.stringify(mesh.load.get('rogue') ?? {})}`);
    check('deny', red !== undefined, red ? `the edge went red ${((Date.now() - t0) / 1000).toFixed(1)} s after the file was written (istio_tcp_connections_failed_total{response_flags="DENY"})` : 'no DENY within 15 s');

    step(6, 'remove the policy: the edge recovers');
    const t1 = Date.now();
    await mesh.removeDeny();
    const green = await waitForEdge(mesh, (e) => e.source === rogue() && e.status === 'ok' && e.deniedPerSec === 0, 20_000, signal);
    out(`    now:    ${green ? edgeLine(green) : 'still denied'}`);
    check('undeny', green !== undefined, green ? `denials stopped; the edge is green again ${((Date.now() - t1) / 1000).toFixed(1)} s after the file was removed` : 'still denied after 20 s');

    step(7, 'tear down');
  } finally {
    await mesh.stop();
  }
  out('  the app, the agents, the control plane (and the dashboard it served) and the lab are gone');
  out('');
  const failed = results.filter((r) => !r.ok);
  out(bold(failed.length === 0 ? `Tour complete: ${results.length} proofs shown.` : `Tour finished with ${failed.length} missing proof(s): ${failed.map((f) => f.step).join(', ')}`));
  return signal.aborted ? 130 : failed.length === 0 ? 0 : 1;
}
