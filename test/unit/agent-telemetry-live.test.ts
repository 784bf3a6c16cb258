/**
 * Telemetry beyond one line per close: byte counters that move while a
 * connection is open (fake clock), series that expire (fake clock), and the
 * served text parsed back by a parser written here, independent of the CLI's,
 * after known traffic over real loopback sockets.
 */
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { ISTIO_TCP_LABELS, Telemetry, socketBytes, type ConnectionRecord, type LiveBytes } from '../../src/agent/telemetry.js';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { openMetricsText } from '../../src/common/metrics.js';
import { parseLocalClusterConfig, type LocalService, type LocalWorkload } from '../../src/state/local-config.js';

const cluster = parseLocalClusterConfig({
  trustDomain: 'cluster.local',
  workloads: [
    { name: 'client', namespace: 'demo', serviceAccount: 'client', node: 'n1', ip: '10.0.0.1', labels: { app: 'client', version: 'v2' } },
    { name: 'server', namespace: 'demo', serviceAccount: 'echo', node: 'n2', ip: '10.0.0.2', labels: { app: 'echo' } },
    { name: 'gone', namespace: 'old', serviceAccount: 'x', node: 'n2', ip: '10.0.0.3', labels: { app: 'gone' } },
  ],
  services: [{ name: 'echo', namespace: 'demo', vips: ['10.96.0.20'], ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'echo' } }],
});
const [client, server, gone] = cluster.workloads as [LocalWorkload, LocalWorkload, LocalWorkload];
const echo = cluster.services[0] as LocalService;

function rec(dst: LocalWorkload, svc?: LocalService): ConnectionRecord {
  return {
    direction: 'outbound',
    srcAddr: '10.0.0.1:40000',
    srcWorkload: client,
    srcIdentity: 'spiffe://cluster.local/ns/demo/sa/client',
    dstAddr: `${dst.ip}:15008`,
    dstHboneAddr: `${dst.ip}:8080`,
    dstWorkload: dst,
    ...(svc ? { dstService: svc } : {}),
    dstIdentity: `spiffe://cluster.local/ns/${dst.namespace}/sa/${dst.serviceAccount}`,
    mtls: true,
    clusterId: 'Kubernetes',
  };
}

// ---- an independent Prometheus text parser (test-local on purpose) ----
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line === '# EOF') continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1] as string, type[2] as string);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    const re = /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
    let consumed = 0;
    for (let lm = re.exec(body); lm; lm = re.exec(body)) {
      labels[lm[1] as string] = (lm[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      consumed = re.lastIndex;
    }
    assert.equal(consumed, body.length, `labels did not parse fully: ${body}`);
    const value = Number(m[3]);
    assert.ok(!Number.isNaN(value), `bad value in ${line}`);
    samples.push({ name: m[1] as string, labels, value });
  }
  return { samples, types };
}

function find(samples: Sample[], name: string, where: Record<string, string>): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v));
}

function rig(opts: { flushIntervalMs?: number; seriesTtlMs?: number } = {}): { t: Telemetry; registry: Registry; clock: FakeClock } {
  const registry = new Registry();
  const clock = new FakeClock(1_000_000);
  return { t: new Telemetry(registry, silentLogger(), { clock, ...opts }), registry, clock };
}

async function value(registry: Registry, name: string, where: Record<string, string> = {}): Promise<number | undefined> {
  const got = find(parseExposition(await registry.metrics()).samples, name, where);
  assert.ok(got.length <= 1, `${name}: ${got.length} series`);
  return got[0]?.value;
}

describe('live byte counters', () => {
  test('bytes of an open connection are counted at every flush interval, and settled exactly at close', async () => {
    const { t, registry, clock } = rig({ flushIntervalMs: 5000 });
    let now = { sent: 0, recv: 0 };
    const conn = t.opened(rec(server, echo), () => now);
    assert.equal(await value(registry, 'istio_tcp_sent_bytes_total'), 0, 'the byte series exist from the open');
    now = { sent: 1000, recv: 10 };
    clock.advance(4999);
    assert.equal(await value(registry, 'istio_tcp_sent_bytes_total'), 0, 'not before the interval');
    clock.advance(1);
    assert.equal(await value(registry, 'istio_tcp_sent_bytes_total'), 1000);
    assert.equal(await value(registry, 'istio_tcp_received_bytes_total'), 10);
    now = { sent: 250_000, recv: 20 };
    clock.advance(5000);
    assert.equal(await value(registry, 'istio_tcp_sent_bytes_total'), 250_000);
    assert.equal(await value(registry, 'istio_tcp_received_bytes_total'), 20);
    // the relay's totals at close are the truth: only the remainder is added
    t.closed(rec(server, echo), { bytesSent: 300_000, bytesRecv: 25, durationMs: 12_000, responseFlags: '-' }, conn);
    assert.equal(await value(registry, 'istio_tcp_sent_bytes_total'), 300_000);
    assert.equal(await value(registry, 'istio_tcp_received_bytes_total'), 25);
    assert.equal(await value(registry, 'istio_tcp_connections_closed_total'), 1);
    // no more polling of a closed connection
    now = { sent: 9_999_999, recv: 9_999_999 };
    clock.advance(20_000);
    assert.equal(await value(registry, 'istio_tcp_sent_bytes_total'), 300_000);
  });

  test('a live source that over-reports never makes a counter go down, and one that throws is skipped', async () => {
    const { t, registry, clock } = rig({ flushIntervalMs: 1000 });
    let live: LiveBytes = () => ({ sent: 500, recv: 0 });
    const conn = t.opened(rec(server), () => live());
    clock.advance(1000);
    assert.equal(await value(registry, 'istio_tcp_sent_bytes_total'), 500);
    live = () => {
      throw new Error('socket gone');
    };
    clock.advance(1000);
    t.closed(rec(server), { bytesSent: 400, bytesRecv: 0, durationMs: 2000, responseFlags: '-' }, conn);
    assert.equal(await value(registry, 'istio_tcp_sent_bytes_total'), 500);
  });

  test('closed() without the handle still settles a connection opened with the same record (older callers)', async () => {
    const { t, registry, clock } = rig({ flushIntervalMs: 1000, seriesTtlMs: 10_000 });
    const r = rec(server);
    t.opened(r);
    t.closed(r, { bytesSent: 7, bytesRecv: 8, durationMs: 1, responseFlags: '-' });
    assert.equal(await value(registry, 'istio_tcp_sent_bytes_total'), 7);
    assert.equal(t.active, 0);
    clock.advance(11_000);
    assert.equal(t.seriesCount, 0, 'the series was released, so it could expire');
  });
});

describe('series expiry', () => {
  test('series with no open connection expire after the TTL; open ones and recently touched ones stay', async () => {
    const { t, registry, clock } = rig({ flushIntervalMs: 1000, seriesTtlMs: 60_000 });
    const toGone = rec(gone);
    const c1 = t.opened(toGone);
    t.closed(toGone, { bytesSent: 1, bytesRecv: 1, durationMs: 1, responseFlags: '-' }, c1);
    t.failed(toGone, 'CONNECT', 'refused');
    const long = t.opened(rec(server, echo), () => ({ sent: 0, recv: 0 }));
    clock.advance(30_000);
    const again = rec(server);
    t.closed(again, { bytesSent: 5, bytesRecv: 5, durationMs: 1, responseFlags: '-' }, t.opened(again));
    clock.advance(31_000);
    let s = parseExposition(await registry.metrics()).samples;
    assert.deepEqual(find(s, 'istio_tcp_connections_opened_total', { destination_workload: 'gone' }), [], 'the deleted workload series expired');
    assert.deepEqual(find(s, 'istio_tcp_connections_failed_total', { destination_workload: 'gone' }), [], 'its failed series too');
    assert.equal(find(s, 'istio_tcp_connections_opened_total', { destination_service: 'echo.demo.svc.cluster.local' }).length, 1, 'a series with an open connection stays');
    assert.equal(find(s, 'istio_tcp_connections_opened_total', { destination_workload: 'server', destination_service: 'unknown' }).length, 1, 'touched 31 s ago: stays');
    clock.advance(30_000);
    s = parseExposition(await registry.metrics()).samples;
    assert.deepEqual(find(s, 'istio_tcp_connections_opened_total', { destination_service: 'unknown' }), []);
    assert.equal(find(s, 'istio_tcp_sent_bytes_total', { destination_service: 'echo.demo.svc.cluster.local' }).length, 1);
    t.closed(rec(server, echo), { bytesSent: 0, bytesRecv: 0, durationMs: 1, responseFlags: '-' }, long);
    clock.advance(61_000);
    assert.equal(t.seriesCount, 0);
    assert.deepEqual(find(parseExposition(await registry.metrics()).samples, 'istio_tcp_connections_opened_total', {}), []);
    assert.equal(clock.pendingTimers, 0, 'no timer left once nothing is tracked');
  });

  test('close() stops the periodic timer', () => {
    const { t, clock } = rig({ flushIntervalMs: 1000 });
    t.opened(rec(server), () => ({ sent: 1, recv: 1 }));
    assert.equal(clock.pendingTimers, 1);
    t.close();
    assert.equal(clock.pendingTimers, 0);
  });
});

async function pair(): Promise<{ a: Socket; b: Socket; close: () => void }> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const accepted = once(srv, 'connection') as Promise<[Socket]>;
  const a = connect((srv.address() as AddressInfo).port, '127.0.0.1');
  await once(a, 'connect');
  const [b] = await accepted;
  return {
    a,
    b,
    close: () => {
      a.destroy();
      b.destroy();
      srv.close();
    },
  };
}

async function receive(s: Socket, n: number): Promise<void> {
  let got = 0;
  await new Promise<void>((resolve) => {
    const on = (c: Buffer): void => {
      got += c.length;
      if (got >= n) {
        s.off('data', on);
        resolve();
      }
    };
    s.on('data', on);
  });
}

describe('the scrape after known traffic (real sockets, real Telemetry, text parsed here)', () => {
  test('exact byte counts, during and after the connection, with the full label set', async () => {
    const registry = new Registry();
    const clock = new FakeClock(0);
    const t = new Telemetry(registry, silentLogger(), { clock, flushIntervalMs: 5000 });
    const { a, b, close } = await pair();
    try {
      // `a` is one leg as the agent sees it; what it reads counts as received, what it writes as sent
      a.write(Buffer.alloc(3)); // before the connection is counted: must not show up
      await receive(b, 3);
      await new Promise((r) => setImmediate(r));
      const r = rec(server, echo);
      const conn = t.opened(r, socketBytes(a, 'recv'));
      b.write(Buffer.alloc(123_456));
      await receive(a, 123_456);
      a.write(Buffer.alloc(789));
      await receive(b, 789);
      clock.advance(5000);
      const mid = parseExposition(await registry.metrics()).samples;
      assert.equal(find(mid, 'istio_tcp_received_bytes_total', { reporter: 'source' })[0]?.value, 123_456);
      assert.equal(find(mid, 'istio_tcp_sent_bytes_total', { reporter: 'source' })[0]?.value, 789);
      assert.equal(find(mid, 'istio_tcp_connections_closed_total', {}).length, 0);
      b.write(Buffer.alloc(1000));
      await receive(a, 1000);
      t.closed(r, { bytesSent: 789, bytesRecv: 124_456, durationMs: 5, responseFlags: '-' }, conn);
      const text = await registry.metrics();
      const { samples, types } = parseExposition(text);
      for (const n of ['opened', 'closed', 'failed']) assert.equal(types.get(`istio_tcp_connections_${n}_total`), 'counter');
      const sent = find(samples, 'istio_tcp_sent_bytes_total', {});
      const recv = find(samples, 'istio_tcp_received_bytes_total', {});
      assert.equal(sent.length, 1);
      assert.equal(sent[0]?.value, 789);
      assert.equal(recv[0]?.value, 124_456);
      assert.equal(find(samples, 'istio_tcp_connections_opened_total', {})[0]?.value, 1);
      assert.equal(find(samples, 'istio_tcp_connections_closed_total', {})[0]?.value, 1);
      assert.deepEqual(Object.keys(sent[0]?.labels ?? {}).sort(), [...ISTIO_TCP_LABELS].sort());
      assert.deepEqual(sent[0]?.labels, {
        reporter: 'source',
        source_workload: 'client',
        source_canonical_service: 'client',
        source_canonical_revision: 'v2',
        source_workload_namespace: 'demo',
        source_principal: 'spiffe://cluster.local/ns/demo/sa/client',
        source_app: 'client',
        source_version: 'v2',
        source_cluster: 'Kubernetes',
        destination_service: 'echo.demo.svc.cluster.local',
        destination_service_namespace: 'demo',
        destination_service_name: 'echo',
        destination_workload: 'server',
        destination_canonical_service: 'echo',
        destination_canonical_revision: 'latest',
        destination_workload_namespace: 'demo',
        destination_principal: 'spiffe://cluster.local/ns/demo/sa/echo',
        destination_app: 'echo',
        destination_version: 'unknown',
        destination_cluster: 'Kubernetes',
        request_protocol: 'tcp',
        response_flags: '-',
        connection_security_policy: 'mutual_tls',
      });
    } finally {
      close();
      t.close();
    }
  });

  test('OpenMetrics and Prometheus renderings of one registry agree, in any order', async () => {
    const { t, registry } = rig();
    const r = rec(server, echo);
    t.closed(r, { bytesSent: 11, bytesRecv: 22, durationMs: 1, responseFlags: '-' }, t.opened(r));
    t.failed(rec(gone), 'CONNECT', 'x');
    const om = await openMetricsText(registry);
    assert.ok(om.endsWith('# EOF\n'));
    assert.match(om, /^# TYPE istio_tcp_sent_bytes counter$/m);
    const omSamples = parseExposition(om).samples;
    const prom = await registry.metrics();
    assert.match(prom, /^# TYPE istio_tcp_sent_bytes_total counter$/m, 'Prometheus text keeps _total after an OpenMetrics rendering');
    const promSamples = parseExposition(prom).samples;
    const key = (s: Sample): string => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}=${s.value}`;
    assert.deepEqual(omSamples.map(key).sort(), promSamples.map(key).sort());
    assert.equal(find(omSamples, 'istio_tcp_sent_bytes_total', {})[0]?.value, 11);
    t.close();
  });
});
