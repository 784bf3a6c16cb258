/**
 * The service graph from scraped samples: one reporter per pair (no double
 * counting), expansion through service nodes (denials stay on the client's
 * edge), waypoint L7 numbers, histogram quantiles, and the per-edge time
 * series (baseline round, rates, counter resets, status).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PromSample } from '../../src/cli/prom-text.js';
import { displayEdges, graphNodes, histogramQuantile, pairsFromSamples, type Inventory } from '../../src/dashboard/edges.js';
import { EdgeHistory } from '../../src/dashboard/history.js';

const inv: Inventory = {
  workloads: [
    { namespace: 'demo', name: 'client', node: 'node-a', app: 'client' },
    { namespace: 'demo', name: 'server-v1', node: 'node-b', app: 'server', version: 'v1' },
    { namespace: 'demo', name: 'rogue', node: 'node-a' },
    { namespace: 'demo', name: 'waypoint', node: 'node-b', waypoint: true },
  ],
  services: [{ namespace: 'demo', name: 'server', hostname: 'server.demo.svc.cluster.local' }],
};

function tcp(name: string, value: number, l: Record<string, string>): PromSample {
  return {
    name: `istio_tcp_${name}`,
    value,
    labels: {
      reporter: 'source',
      source_workload: 'client',
      source_workload_namespace: 'demo',
      destination_workload: 'server-v1',
      destination_workload_namespace: 'demo',
      destination_service: 'server.demo.svc.cluster.local',
      response_flags: '-',
      connection_security_policy: 'mutual_tls',
      ...l,
    },
  };
}

function round(opened: number, extra: PromSample[] = []): PromSample[] {
  return [
    tcp('connections_opened_total', opened, {}),
    tcp('connections_closed_total', opened, {}),
    tcp('sent_bytes_total', opened * 100, {}),
    // The destination reports the same connections, without the service.
    tcp('connections_opened_total', opened, { reporter: 'destination', destination_service: 'unknown' }),
    tcp('connections_closed_total', opened, { reporter: 'destination', destination_service: 'unknown' }),
    tcp('sent_bytes_total', opened * 100, { reporter: 'destination', destination_service: 'unknown' }),
    ...extra,
  ];
}

test('one reporter per pair: the destination when it reported, the service from the source', () => {
  const pairs = pairsFromSamples(round(10), [], inv);
  assert.equal(pairs.length, 1);
  const p = pairs[0];
  assert.ok(p);
  assert.equal(p.counters.opened, 10, 'not 20: both reporters saw the same connections');
  assert.equal(p.service, 'server.demo.svc.cluster.local');
  assert.equal(p.counters.mtls, 10);
});

test('a pair only the source reported (destination outside the mesh) counts, labelled plaintext', () => {
  const pairs = pairsFromSamples([tcp('connections_opened_total', 3, { connection_security_policy: 'unknown' })], [], inv);
  assert.equal(pairs[0]?.counters.opened, 3);
  assert.equal(pairs[0]?.counters.plain, 3);
});

test('service expansion: client -> service carries denials, service -> workload does not', () => {
  const denied = [
    tcp('connections_failed_total', 4, { source_workload: 'rogue', response_flags: 'DENY' }),
    tcp('connections_failed_total', 4, { reporter: 'destination', source_workload: 'rogue', response_flags: 'DENY', destination_service: 'unknown' }),
  ];
  const edges = displayEdges(pairsFromSamples(round(10, denied), [], inv), inv);
  assert.deepEqual([...edges.keys()].sort(), ['svc:demo/server>wl:demo/server-v1', 'wl:demo/client>svc:demo/server', 'wl:demo/rogue>svc:demo/server']);
  assert.equal(edges.get('wl:demo/rogue>svc:demo/server')?.counters.denied, 4, 'counted once');
  assert.equal(edges.get('svc:demo/server>wl:demo/server-v1')?.counters.denied, 0);
  assert.equal(edges.get('svc:demo/server>wl:demo/server-v1')?.counters.opened, 10);
  const nodes = graphNodes(edges.values(), inv);
  assert.equal(nodes.find((n) => n.id === 'svc:demo/server')?.kind, 'service');
  assert.equal(nodes.find((n) => n.id === 'wl:demo/waypoint')?.kind, 'waypoint');
  assert.equal(nodes.find((n) => n.id === 'wl:demo/server-v1')?.node, 'node-b');
});

test('waypoint request metrics add rps, errors and latency buckets to the pair', () => {
  const l7 = (name: string, value: number, l: Record<string, string>): PromSample => ({
    name,
    value,
    labels: { reporter: 'waypoint', source_workload: 'client', source_workload_namespace: 'demo', destination_workload: 'server-v1', destination_workload_namespace: 'demo', destination_service: 'server.demo.svc.cluster.local', response_flags: '-', ...l },
  });
  const samples = [
    l7('istio_requests_total', 90, { response_code: '200' }),
    l7('istio_requests_total', 10, { response_code: '503', response_flags: 'UF' }),
    l7('istio_request_duration_milliseconds_bucket', 50, { le: '5' }),
    l7('istio_request_duration_milliseconds_bucket', 100, { le: '10' }),
    l7('istio_request_duration_milliseconds_bucket', 100, { le: '+Inf' }),
  ];
  const [p] = pairsFromSamples(round(5), samples, inv);
  assert.equal(p?.counters.requests, 100);
  assert.equal(p?.counters.requestErrors, 10);
  assert.equal(p?.counters.opened, 5);
  const e = displayEdges(pairsFromSamples(round(5), samples, inv), inv).get('wl:demo/client>svc:demo/server');
  assert.equal(e?.protocol, 'http');
});

test('histogramQuantile interpolates inside the bucket, like Prometheus', () => {
  assert.equal(histogramQuantile(0.5, { '10': 50, '20': 100, '+Inf': 100 }), 10);
  assert.equal(histogramQuantile(0.75, { '10': 50, '20': 100, '+Inf': 100 }), 15);
  assert.equal(histogramQuantile(0.99, { '10': 0, '+Inf': 10 }), 10, 'the +Inf bucket answers its lower bound');
  assert.equal(histogramQuantile(0.99, {}), undefined);
});

test('history: the first round is a baseline, then rates per second; a counter reset is a restart, not a negative rate', () => {
  const h = new EdgeHistory(10, 2);
  const push = (t: number, opened: number): void => h.push(t, displayEdges(pairsFromSamples(round(opened), [], inv), inv));
  push(0, 100);
  let s = h.stats().find((e) => e.id === 'wl:demo/client>svc:demo/server');
  assert.equal(s?.cps, 0, 'history before the dashboard is not a rate');
  assert.equal(s?.status, 'idle');
  push(1000, 104);
  push(2000, 108);
  s = h.stats().find((e) => e.id === 'wl:demo/client>svc:demo/server');
  assert.equal(s?.cps, 4);
  assert.equal(s?.bytesPerSec, 400);
  assert.equal(s?.mtls, 'full');
  assert.equal(s?.status, 'ok');
  push(3000, 3); // the agent restarted
  const pts = h.series('wl:demo/client>svc:demo/server');
  assert.equal(pts?.at(-1)?.cps, 3);
  assert.ok(pts?.every((p) => p.cps >= 0));
  assert.equal(h.series('nope'), undefined);
});

test('history: a new denied edge turns "denied" and back once the window passes without denials', () => {
  const h = new EdgeHistory(10, 2);
  const deny = (n: number): PromSample[] => [tcp('connections_failed_total', n, { reporter: 'destination', source_workload: 'rogue', response_flags: 'DENY', destination_service: 'unknown' })];
  h.push(0, displayEdges(pairsFromSamples(round(1), [], inv), inv));
  h.push(1000, displayEdges(pairsFromSamples(round(1, deny(2)), [], inv), inv));
  // No service label from the destination reporter alone: the edge goes to the workload.
  assert.equal(h.stats().find((e) => e.id === 'wl:demo/rogue>wl:demo/server-v1')?.status, 'denied');
  h.push(2000, displayEdges(pairsFromSamples(round(1, deny(2)), [], inv), inv));
  h.push(3000, displayEdges(pairsFromSamples(round(1, deny(2)), [], inv), inv));
  const e = h.stats().find((x) => x.id === 'wl:demo/rogue>wl:demo/server-v1');
  assert.equal(e?.status, 'idle');
  assert.equal(e?.deniedTotal, 2);
});
