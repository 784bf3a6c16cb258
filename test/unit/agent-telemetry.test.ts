/** Istio TCP metrics and the one access-log line per connection, from the same record. */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Telemetry, type ConnectionRecord } from '../../src/agent/telemetry.js';
import type { LogLevel } from '../../src/common/logger.js';
import { parseLocalClusterConfig, type LocalService, type LocalWorkload } from '../../src/state/local-config.js';

const cluster = parseLocalClusterConfig({
  trustDomain: 'td.example',
  workloads: [
    { name: 'client-7d9f', namespace: 'shop', serviceAccount: 'client', node: 'n1', ip: '10.0.1.10', labels: { app: 'client', version: 'v1' } },
    {
      name: 'web-1',
      namespace: 'shop',
      serviceAccount: 'web',
      node: 'n1',
      ip: '10.0.1.11',
      labels: { app: 'web', 'service.istio.io/canonical-name': 'web-canonical', 'service.istio.io/canonical-revision': 'r7' },
    },
    { name: 'bare', namespace: 'misc', node: 'n1', ip: '10.0.1.12' },
  ],
  services: [{ name: 'web', namespace: 'shop', vips: ['10.96.0.10'], ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web' } }],
});
const [client, web, bare] = cluster.workloads as [LocalWorkload, LocalWorkload, LocalWorkload];
const webSvc = cluster.services[0] as LocalService;
const SRC_ID = 'spiffe://td.example/ns/shop/sa/client';
const DST_ID = 'spiffe://td.example/ns/shop/sa/web';

const outbound: ConnectionRecord = {
  direction: 'outbound',
  srcAddr: '10.0.1.10:43512',
  srcWorkload: client,
  srcIdentity: SRC_ID,
  dstAddr: '10.0.1.11:15008',
  dstHboneAddr: '10.0.1.11:8080',
  dstWorkload: web,
  dstService: webSvc,
  dstIdentity: DST_ID,
  mtls: true,
  clusterId: 'Kubernetes',
};

/** Plain TCP from an unknown client to a local pod. */
const inboundPlain: ConnectionRecord = {
  direction: 'inbound',
  srcAddr: '192.0.2.9:5000',
  dstAddr: '10.0.1.12:9000',
  dstWorkload: bare,
  mtls: false,
  clusterId: 'Kubernetes',
};

interface Rig {
  telemetry: Telemetry;
  registry: Registry;
  lines: () => Array<Record<string, unknown>>;
}

function rig(level: LogLevel = 'info'): Rig {
  const registry = new Registry();
  const raw: string[] = [];
  const logger = pino({ level, base: null }, { write: (s: string) => void raw.push(s) });
  return { telemetry: new Telemetry(registry, logger), registry, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

type Sample = { labels: Record<string, string | number>; value: number };

async function samples(registry: Registry, name: string): Promise<Sample[]> {
  const m = registry.getSingleMetric(name);
  assert.ok(m, `metric ${name} is registered`);
  const got = await m.get();
  return got.values.map((v) => ({ labels: v.labels as Record<string, string | number>, value: v.value }));
}

async function single(registry: Registry, name: string): Promise<Sample> {
  const s = await samples(registry, name);
  assert.equal(s.length, 1, `${name}: ${JSON.stringify(s)}`);
  return s[0] as Sample;
}

const ISTIO_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
].sort();

describe('Telemetry metrics', () => {
  test('an outbound mTLS connection is reported by the source with full Istio labels', async () => {
    const { telemetry, registry } = rig();
    telemetry.opened(outbound);
    const opened = await single(registry, 'istio_tcp_connections_opened_total');
    assert.equal(opened.value, 1);
    assert.deepEqual(Object.keys(opened.labels).sort(), ISTIO_LABELS);
    assert.deepEqual(opened.labels, {
      reporter: 'source',
      source_workload: 'client-7d9f',
      source_canonical_service: 'client',
      source_canonical_revision: 'v1',
      source_workload_namespace: 'shop',
      source_principal: SRC_ID,
      source_app: 'client',
      source_version: 'v1',
      source_cluster: 'Kubernetes',
      destination_service: 'web.shop.svc.cluster.local',
      destination_service_namespace: 'shop',
      destination_service_name: 'web',
      destination_workload: 'web-1',
      destination_canonical_service: 'web-canonical',
      destination_canonical_revision: 'r7',
      destination_workload_namespace: 'shop',
      destination_principal: DST_ID,
      destination_app: 'web',
      destination_version: 'unknown',
      destination_cluster: 'Kubernetes',
      request_protocol: 'tcp',
      response_flags: '-',
      connection_security_policy: 'mutual_tls',
    });
    assert.deepEqual(await single(registry, 'istio_tcp_sockets_open'), { labels: { reporter: 'source' }, value: 1 });
  });

  test('an inbound plain connection is reported by the destination with unknown for what is missing', async () => {
    const { telemetry, registry } = rig();
    telemetry.opened(inboundPlain);
    const { labels } = await single(registry, 'istio_tcp_connections_opened_total');
    assert.equal(labels.reporter, 'destination');
    assert.equal(labels.connection_security_policy, 'unknown');
    assert.equal(labels.request_protocol, 'tcp');
    assert.equal(labels.response_flags, '-');
    for (const k of [
      'source_workload',
      'source_canonical_service',
      'source_canonical_revision',
      'source_workload_namespace',
      'source_principal',
      'source_app',
      'source_version',
      'source_cluster',
      'destination_service',
      'destination_service_namespace',
      'destination_service_name',
      'destination_principal',
      'destination_app',
      'destination_version',
    ]) {
      assert.equal(labels[k], 'unknown', k);
    }
    // Without app/canonical labels, the canonical service is the workload name and the revision 'latest'.
    assert.equal(labels.destination_workload, 'bare');
    assert.equal(labels.destination_canonical_service, 'bare');
    assert.equal(labels.destination_canonical_revision, 'latest');
    assert.equal(labels.destination_workload_namespace, 'misc');
    assert.equal(labels.destination_cluster, 'Kubernetes');
  });

  test('closed() counts the connection and its bytes under the opened labels', async () => {
    const { telemetry, registry } = rig();
    telemetry.opened(outbound);
    telemetry.closed(outbound, { bytesSent: 1234, bytesRecv: 98765, durationMs: 42, responseFlags: '-' });
    const opened = await single(registry, 'istio_tcp_connections_opened_total');
    const closed = await single(registry, 'istio_tcp_connections_closed_total');
    const sent = await single(registry, 'istio_tcp_sent_bytes_total');
    const recv = await single(registry, 'istio_tcp_received_bytes_total');
    assert.equal(closed.value, 1);
    assert.equal(sent.value, 1234);
    assert.equal(recv.value, 98765);
    for (const s of [closed, sent, recv]) assert.deepEqual(s.labels, opened.labels);
    assert.deepEqual(await samples(registry, 'istio_tcp_connections_failed_total'), []);
    assert.deepEqual(await single(registry, 'istio_tcp_sockets_open'), { labels: { reporter: 'source' }, value: 0 });

    telemetry.opened(outbound);
    telemetry.closed(outbound, { bytesSent: 6, bytesRecv: 5, durationMs: 1, responseFlags: '-' });
    assert.equal((await single(registry, 'istio_tcp_connections_closed_total')).value, 2);
    assert.equal((await single(registry, 'istio_tcp_sent_bytes_total')).value, 1240);
    assert.equal((await single(registry, 'istio_tcp_received_bytes_total')).value, 98770);
  });

  test('a connection closed with a response flag also counts as failed, with the flag', async () => {
    const { telemetry, registry } = rig();
    telemetry.opened(outbound);
    telemetry.closed(outbound, { bytesSent: 10, bytesRecv: 0, durationMs: 3, responseFlags: 'UPSTREAM_CONNECTION_TERMINATION', error: 'reset' });
    const failed = await single(registry, 'istio_tcp_connections_failed_total');
    assert.equal(failed.value, 1);
    assert.equal(failed.labels.response_flags, 'UPSTREAM_CONNECTION_TERMINATION');
    assert.equal((await single(registry, 'istio_tcp_connections_closed_total')).value, 1);
  });

  test('failed() counts a connection that never opened, labelled with the flag', async () => {
    const { telemetry, registry } = rig();
    telemetry.failed(outbound, 'CONNECT', 'connect ECONNREFUSED');
    telemetry.failed(inboundPlain, 'DENY', 'not allowed');
    telemetry.failed(outbound, 'CONNECT', 'again');
    const failed = await samples(registry, 'istio_tcp_connections_failed_total');
    const byFlag = new Map(failed.map((s) => [`${s.labels.reporter}/${s.labels.response_flags}`, s.value]));
    assert.deepEqual(Object.fromEntries(byFlag), { 'source/CONNECT': 2, 'destination/DENY': 1 });
    for (const s of failed) assert.deepEqual(Object.keys(s.labels).sort(), ISTIO_LABELS);
    for (const name of ['istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total', 'istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total']) {
      assert.deepEqual(await samples(registry, name), [], name);
    }
  });

  test('the metrics are exposed in the Prometheus text format under their Istio names', async () => {
    const { telemetry, registry } = rig();
    telemetry.opened(outbound);
    telemetry.closed(outbound, { bytesSent: 1, bytesRecv: 2, durationMs: 3, responseFlags: '-' });
    const text = await registry.metrics();
    for (const name of ['istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total', 'istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total']) {
      assert.match(text, new RegExp(`^# TYPE ${name} counter$`, 'm'));
      assert.match(text, new RegExp(`^${name}\\{[^}]*reporter="source"[^}]*\\} \\d+$`, 'm'));
    }
  });
});

describe('Telemetry access log', () => {
  test('exactly one line per closed connection, with the connection fields', () => {
    const { telemetry, lines } = rig('info');
    telemetry.opened(outbound);
    assert.equal(lines().length, 0, 'opening logs nothing at info');
    telemetry.closed(outbound, { bytesSent: 1234, bytesRecv: 98765, durationMs: 1234.6, responseFlags: '-' });
    const out = lines();
    assert.equal(out.length, 1);
    const l = out[0] as Record<string, unknown>;
    assert.equal(l.msg, 'connection complete');
    assert.equal(l.level, 30);
    assert.equal(l.component, 'access');
    assert.equal(l['src.addr'], '10.0.1.10:43512');
    assert.equal(l['src.identity'], SRC_ID);
    assert.equal(l['src.workload'], 'client-7d9f');
    assert.equal(l['src.namespace'], 'shop');
    assert.equal(l['dst.addr'], '10.0.1.11:15008');
    assert.equal(l['dst.hbone_addr'], '10.0.1.11:8080');
    assert.equal(l['dst.service'], 'web.shop.svc.cluster.local');
    assert.equal(l['dst.workload'], 'web-1');
    assert.equal(l['dst.namespace'], 'shop');
    assert.equal(l['dst.identity'], DST_ID);
    assert.equal(l.direction, 'outbound');
    assert.equal(l.bytes_sent, 1234);
    assert.equal(l.bytes_recv, 98765);
    assert.equal(l.duration, '1235ms');
    assert.equal('error' in l, false);
  });

  test('one line per connection even at debug, where opening is logged too', () => {
    const { telemetry, lines } = rig('debug');
    telemetry.opened(outbound);
    telemetry.opened(inboundPlain);
    telemetry.closed(inboundPlain, { bytesSent: 1, bytesRecv: 2, durationMs: 0, responseFlags: '-' });
    telemetry.closed(outbound, { bytesSent: 3, bytesRecv: 4, durationMs: 5, responseFlags: '-' });
    const complete = lines().filter((l) => l.msg === 'connection complete');
    assert.equal(complete.length, 2);
    assert.deepEqual(
      complete.map((l) => [l.direction, l['src.addr'], l.bytes_sent, l.bytes_recv]),
      [
        ['inbound', '192.0.2.9:5000', 1, 2],
        ['outbound', '10.0.1.10:43512', 3, 4],
      ],
    );
    assert.equal(lines().filter((l) => l.msg === 'connection opened').length, 2);
    // Missing values are left out of the line, not logged as "undefined".
    const inbound = complete[0] as Record<string, unknown>;
    assert.equal('src.identity' in inbound, false);
    assert.equal('dst.hbone_addr' in inbound, false);
  });

  test('a connection that ends in an error logs one error-level line carrying the error', () => {
    const { telemetry, lines } = rig('info');
    telemetry.opened(outbound);
    telemetry.closed(outbound, { bytesSent: 10, bytesRecv: 0, durationMs: 7, responseFlags: 'UPSTREAM_CONNECTION_TERMINATION', error: 'b side was reset' });
    const out = lines();
    assert.equal(out.length, 1);
    assert.equal(out[0]?.msg, 'connection complete');
    assert.equal(out[0]?.level, 50);
    assert.equal(out[0]?.error, 'b side was reset');
    assert.equal(out[0]?.duration, '7ms');
  });

  test('failed() logs a warning and no completion line', () => {
    const { telemetry, lines } = rig('info');
    telemetry.failed(outbound, 'CONNECT', 'connect ECONNREFUSED 10.0.1.11:15008');
    const out = lines();
    assert.equal(out.length, 1);
    assert.equal(out[0]?.msg, 'connection failed');
    assert.equal(out[0]?.level, 40);
    assert.equal(out[0]?.error, 'connect ECONNREFUSED 10.0.1.11:15008');
    assert.equal(out[0]?.['dst.addr'], '10.0.1.11:15008');
  });
});
