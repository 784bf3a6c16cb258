/**
 * Waypoint telemetry: a Prometheus scrape shows istio_requests_total with the
 * right codes and counts, one access-log line per request, trace context
 * propagated upstream (W3C and B3), spans exported over OTLP/HTTP to a
 * receiver written here with the caller's span as parent, and a plugin that
 * adds a header.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import type { WaypointPlugin } from '../../src/waypoint/plugin.js';
import { backend, closeBackends, httpGet, simpleConfig, startWaypoint } from '../fixtures/waypoint/harness.js';

interface OtlpSpan { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes: Array<{ key: string; value: Record<string, unknown> }> }

async function otlpReceiver(): Promise<{ url: string; spans: OtlpSpan[]; server: Server }> {
  const spans: OtlpSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces' && String(req.headers['content-type']).includes('json')) {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
        for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, spans, server };
}

describe('waypoint telemetry', () => {
  test('scrape shows istio_requests_total by code; one access-log line per request', async () => {
    const ok = await backend('ok');
    const nf = await backend('nf', { status: 404 });
    const lines: Array<Record<string, unknown>> = [];
    const sinkStream = new Writable({ write(chunk: Buffer, _e, cb) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
    const config = {
      clusters: [
        { name: 'ok', endpoints: [{ address: '127.0.0.1', port: ok.port, labels: { app: 'reviews', version: 'v1' }, workload: 'reviews-v1', namespace: 'default', principal: 'spiffe://cluster.local/ns/default/sa/reviews' }] },
        { name: 'nf', endpoints: [{ address: '127.0.0.1', port: nf.port }] },
      ],
      services: [{ hostname: 'reviews.default.svc.cluster.local', port: 9080, routes: [
        { name: 'missing', matches: [{ path: { prefix: '/missing' } }], backends: [{ cluster: 'nf' }] },
        { name: 'ok', backends: [{ cluster: 'ok' }] },
      ] }],
    };
    const h = await startWaypoint(config, { logger: pino({ level: 'info' }, sinkStream) });
    try {
      for (let i = 0; i < 7; i++) assert.equal((await httpGet(h.port, '/x', { method: 'POST', body: 'abcd' })).status, 200);
      for (let i = 0; i < 3; i++) assert.equal((await httpGet(h.port, '/missing')).status, 404);
      const text = await h.registry.metrics();
      const series = text.split('\n').filter((l) => l.startsWith('istio_requests_total{'));
      const ok200 = series.find((l) => l.includes('response_code="200"'));
      const nf404 = series.find((l) => l.includes('response_code="404"'));
      assert.ok(ok200?.endsWith(' 7'), ok200);
      assert.ok(nf404?.endsWith(' 3'), nf404);
      for (const want of ['reporter="waypoint"', 'destination_service="reviews.default.svc.cluster.local"', 'destination_service_name="reviews"', 'destination_service_namespace="default"',
        'destination_workload="reviews-v1"', 'destination_version="v1"', 'destination_principal="spiffe://cluster.local/ns/default/sa/reviews"', 'request_protocol="http"', 'response_flags="-"', 'source_principal="unknown"']) {
        assert.ok(ok200?.includes(want), `${want} in ${ok200}`);
      }
      assert.match(text, /istio_request_duration_milliseconds_bucket\{le="0.5",reporter="waypoint"/);
      assert.match(text, /istio_request_bytes_sum\{[^}]*response_code="200"[^}]*\} 28/);
      assert.match(text, /istio_response_bytes_count\{[^}]*response_code="404"[^}]*\} 3/);
      const access = lines.filter((l) => l.msg === 'request');
      assert.equal(access.length, 10);
      assert.equal(access[0]?.method, 'POST');
      assert.equal(access[0]?.response_code, 200);
      assert.equal(access[0]?.bytes_received, 4);
      assert.equal(access.at(-1)?.route, 'missing');
    } finally {
      await h.close();
      await closeBackends(ok, nf);
    }
  });

  test('traceparent is propagated (W3C and B3) and spans reach an OTLP/HTTP receiver with the parent id', async () => {
    const b = await backend('b');
    const rx = await otlpReceiver();
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [b.port] }]), { tracing: { otlpEndpoint: rx.url, scheduledDelayMs: 50 } });
    try {
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const parent = '00f067aa0ba902b7';
      assert.equal((await httpGet(h.port, '/traced', { headers: { traceparent: `00-${traceId}-${parent}-01` } })).status, 200);
      const up = b.seen.at(-1)?.headers ?? {};
      const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(up.traceparent));
      assert.ok(m, String(up.traceparent));
      assert.equal(m[1], traceId);
      assert.notEqual(m[2], parent, 'upstream sees the waypoint span as parent');
      assert.equal(up['x-b3-traceid'], traceId);
      assert.equal(up['x-b3-spanid'], m[2]);
      assert.equal(up['x-b3-parentspanid'], parent);
      assert.equal(up['x-b3-sampled'], '1');
      // B3 in, W3C out
      assert.equal((await httpGet(h.port, '/b3', { headers: { b3: `${traceId}-${parent}-1` } })).status, 200);
      assert.ok(String(b.seen.at(-1)?.headers.traceparent).startsWith(`00-${traceId}-`));
      await h.wp.flushTraces();
      const deadline = Date.now() + 3000;
      while (rx.spans.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(rx.spans.length, 2);
      const span = rx.spans[0] as OtlpSpan;
      assert.equal(span.traceId, traceId);
      assert.equal(span.parentSpanId, parent);
      assert.equal(span.spanId, m[2]);
      assert.equal(span.kind, 2, 'SERVER');
      const status = span.attributes.find((a) => a.key === 'http.response.status_code');
      assert.equal(Number(status?.value.intValue), 200);
    } finally {
      await h.close();
      rx.server.close();
      await closeBackends(b);
    }
  });

  test('a plugin adds a request header, a response header, and can answer locally', async () => {
    const b = await backend('b');
    const logged: string[] = [];
    const plugin: WaypointPlugin = {
      name: 'add-header',
      onRequestHeaders(req) {
        if (req.path === '/blocked') return { kind: 'respond', status: 418, body: 'teapot' };
        req.headers['x-mesh'] = 'ambit';
        return undefined;
      },
      onResponseHeaders(res) {
        res.headers['x-plugin'] = res.request.route;
      },
      onLog(r) {
        logged.push(r.labels.response_code);
      },
    };
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [b.port] }]), { plugins: [plugin] });
    try {
      const r = await httpGet(h.port, '/x');
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-plugin'], 'default');
      assert.equal(b.seen.at(-1)?.headers['x-mesh'], 'ambit');
      const t = await httpGet(h.port, '/blocked');
      assert.deepEqual([t.status, t.body], [418, 'teapot']);
      assert.deepEqual(logged, ['200', '418']);
    } finally {
      await h.close();
      await closeBackends(b);
    }
  });
});
