/**
 * Waypoint end to end, gRPC and telemetry (issue must-shows 7 and 8), in a
 * lab with the control plane:
 * - a grpc-js client in a captured pod: grpc_response_status is labelled in
 *   istio_requests_total (0 and 14), and a unary call failing with
 *   UNAVAILABLE every other time is retried (VirtualService retryOn
 *   unavailable) so every call succeeds;
 * - the waypoint's metrics port (/stats/prometheus) counts
 *   istio_requests_total{reporter="waypoint"} with the right codes;
 * - an OTLP/HTTP receiver in the waypoint pod's netns (loopback only; the
 *   lab starts the waypoint with --otlp-endpoint) receives the waypoint's
 *   span whose parent span id is the one in the client's traceparent, and
 *   the backend sees a traceparent of the same trace whose parent is the
 *   waypoint's span.
 * Needs root.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startInPod } from '../helpers/pod-process.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import {
  curl, downWaypointLab, eventually, GRPC_CLIENT, hits, GRPC_PORT, HTTP_PORT, metricSum, NS, OTLP_RECEIVER, requests, scrapeWaypoint, startBackend, tally, upWaypointLab, VIP, waitServed, WAYPOINT, withWaypointLog, type WaypointLab,
} from '../helpers/waypoint-lab.js';

const name = `wpdt${randomBytes(2).toString('hex')}`;
let w: WaypointLab | undefined;
const fqdn = (svc: string): string => `${svc}.${NS}.svc.cluster.local`;
const OTLP_PORT = 4318;

const GRPC_VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-v1
  namespace: ${NS}
spec:
  hosts: [${fqdn('reviews-v1')}]
  http:
    - route:
        - destination:
            host: ${fqdn('reviews-v1')}
      retries:
        attempts: 2
        retryOn: unavailable
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-v2
  namespace: ${NS}
spec:
  hosts: [${fqdn('reviews-v2')}]
  http:
    - route:
        - destination:
            host: ${fqdn('reviews-v2')}
      retries:
        attempts: 0`;

interface GrpcResult { codes: Record<string, number>; versions: Record<string, number>; ms: number[]; details: string[] }

async function grpcCalls(target: string, count: number): Promise<GrpcResult> {
  const r = await (w as WaypointLab).lab.exec(`${NS}/client`, [process.execPath, GRPC_CLIENT, '--target', target, '--count', String(count)], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `grpc client failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as GrpcResult;
}

interface Span { traceId: string; spanId: string; parentSpanId: string; name: string; service: string; error?: string }

describe('waypoint lab: gRPC, metrics and traces', { ...requiresRoot(), ...requiresTool('curl', 'nft') }, () => {
  let receiver: ChildProcess | undefined;
  const spans: Span[] = [];
  let v1Count = '';

  before(async () => {
    if (process.getuid?.() !== 0) return;
    w = await upWaypointLab(name, { 'grpc.yaml': GRPC_VS }, { waypointArgs: ['--otlp-endpoint', `http://127.0.0.1:${OTLP_PORT}/v1/traces`] });
    // v1: every other gRPC call UNAVAILABLE; v2: HTTP always 500, gRPC always UNAVAILABLE.
    v1Count = join(w.dir, 'v1.count');
    await startBackend(w, 'reviews-v1', { countFile: v1Count, args: ['--grpc-unavailable-rate', '0.5'] });
    await startBackend(w, 'reviews-v2', { args: ['--status', '500', '--grpc-unavailable-rate', '1'] });
    receiver = await startInPod(w.lab, `${NS}/${WAYPOINT}`, [process.execPath, OTLP_RECEIVER, '--host', '127.0.0.1', '--port', String(OTLP_PORT)]);
    w.procs.add(receiver);
    let buf = '';
    receiver.stdout?.on('data', (b: Buffer) => {
      buf += b.toString('utf8');
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) if (l.startsWith('{')) spans.push(JSON.parse(l) as Span);
    });
    await withWaypointLog(w, () => waitServed(w as WaypointLab, `${NS}/client`, `http://${VIP['reviews-v1']}:${HTTP_PORT}/ready`, 30_000));
  });

  after(() => downWaypointLab(w, name));

  test('gRPC: UNAVAILABLE is retried so every unary call succeeds; grpc_response_status is labelled', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    const m0 = await scrapeWaypoint(w0);
    const h0 = hits(v1Count);
    const ok = await grpcCalls(`${VIP['reviews-v1']}:${GRPC_PORT}`, 20);
    const bad = await grpcCalls(`${VIP['reviews-v2']}:${GRPC_PORT}`, 4);
    const m1 = await scrapeWaypoint(w0);
    const h1 = hits(v1Count);
    const d = (labels: Record<string, string>): number => metricSum(m1, 'istio_requests_total', labels) - metricSum(m0, 'istio_requests_total', labels);
    const retries = metricSum(m1, 'ambit_waypoint_upstream_retries_total') - metricSum(m0, 'ambit_waypoint_upstream_retries_total');
    t.diagnostic(`retried service: ${JSON.stringify(ok.codes)} ${JSON.stringify(ok.versions)}; no-retry service: ${JSON.stringify(bad.codes)} ${bad.details.join(' | ')}; backend v1 gRPC hits ${h1.grpc - h0.grpc} (${h1.failed - h0.failed} UNAVAILABLE); retries counted ${retries}`);
    assert.deepEqual(ok.codes, { '0': 20 }, 'every call succeeds through the retries');
    assert.deepEqual(bad.codes, { '14': 4 }, 'without retries UNAVAILABLE reaches the client');
    assert.ok(h1.failed - h0.failed >= 9, 'the backend did fail about every other call');
    assert.equal(retries, h1.failed - h0.failed, 'one retry per UNAVAILABLE answer');
    assert.equal(d({ reporter: 'waypoint', request_protocol: 'grpc', destination_service: fqdn('reviews-v1'), grpc_response_status: '0' }), 20);
    assert.equal(d({ reporter: 'waypoint', request_protocol: 'grpc', destination_service: fqdn('reviews-v2'), grpc_response_status: '14' }), 4);
  });

  test('the metrics port counts istio_requests_total{reporter="waypoint"} with the right codes', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    const ready = await curl(w0, `${NS}/${WAYPOINT}`, ['-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', `http://127.0.0.1:15021/healthz/ready`], 10_000);
    const m0 = await scrapeWaypoint(w0);
    const a = await requests(w0, `${NS}/client`, `http://${VIP['reviews-v1']}:${HTTP_PORT}/ok`, 7);
    const b = await requests(w0, `${NS}/client`, `http://${VIP['reviews-v2']}:${HTTP_PORT}/boom`, 3, ['--http2-prior-knowledge']);
    const m1 = await scrapeWaypoint(w0);
    assert.deepEqual(tally([...a, ...b], (x) => String(x.status)), { '200': 7, '500': 3 });
    const d = (labels: Record<string, string>): number => metricSum(m1, 'istio_requests_total', labels) - metricSum(m0, 'istio_requests_total', labels);
    const got = {
      ok: d({ reporter: 'waypoint', response_code: '200', destination_service: fqdn('reviews-v1') }),
      err: d({ reporter: 'waypoint', response_code: '500', destination_service: fqdn('reviews-v2') }),
      allWaypoint: d({ reporter: 'waypoint' }),
    };
    const sample = m1.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('response_code="500"')) ?? '(none)';
    t.diagnostic(`/healthz/ready ${ready.stdout}; deltas ${JSON.stringify(got)}; e.g. ${sample}`);
    assert.equal(ready.stdout, '200', 'the status port reports ready');
    assert.deepEqual(got, { ok: 7, err: 3, allWaypoint: 10 });
    assert.match(sample, /source_workload="client"/);
    assert.match(sample, /destination_workload="reviews-v2"/);
    assert.match(sample, /source_principal="spiffe:\/\/cluster\.local\/ns\/shop\/sa\/client"/);
  });

  test('traces: the waypoint span parent is the client traceparent; the backend sees the waypoint span as parent', async (t) => {
    assertPrivileged(t);
    const w0 = w as WaypointLab;
    const traceId = randomBytes(16).toString('hex');
    const parent = randomBytes(8).toString('hex');
    const r = await curl(w0, `${NS}/client`, ['--max-time', '5', '-H', `traceparent: 00-${traceId}-${parent}-01`, `http://${VIP['reviews-v1']}:${HTTP_PORT}/traced`]);
    assert.equal(r.code, 0, r.stderr);
    const seen = (JSON.parse(r.stdout) as { headers: Record<string, string> }).headers.traceparent ?? '';
    await eventually('span exported to the OTLP receiver', 15_000, async () => spans.some((s) => s.traceId === traceId) || `${spans.length} spans so far${spans.find((s) => s.error)?.error ?? ''}`);
    const span = spans.find((s) => s.traceId === traceId) as Span;
    t.diagnostic(`client ${traceId}/${parent}; waypoint span ${JSON.stringify(span)}; backend traceparent ${seen}`);
    assert.equal(span.parentSpanId, parent, 'the waypoint span is a child of the client span');
    assert.notEqual(span.spanId, parent);
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(seen);
    assert.ok(m, `the backend got a traceparent: '${seen}'`);
    assert.equal(m[1], traceId, 'same trace');
    assert.equal(m[2], span.spanId, "the backend's parent is the waypoint span");
  });
});
