/**
 * `ambit status`, `ambit metrics`, `ambit config-dump`: formatting against a
 * recorded dump and scrape, and live against real agent endpoints (admin,
 * metrics, readiness handlers served on 127.0.0.1 ephemeral ports), plus the
 * message when no agent answers.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import type { AddressInfo, Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { adminHandler, listenHttp, metricsHandler, readinessHandler } from '../../src/agent/admin.js';
import { Telemetry, type ConnectionRecord } from '../../src/agent/telemetry.js';
import { parseAddress, unreachableMessage } from '../../src/cli/agent-client.js';
import { parseCommandArgs } from '../../src/cli/command.js';
import { configDumpCommand, runConfigDump } from '../../src/cli/config-dump-command.js';
import { renderDump, summarizeDump } from '../../src/cli/dump-summary.js';
import { AgentUnreachableError } from '../../src/cli/errors.js';
import { humanBytes, humanDuration, table, visibleLength, type Output } from '../../src/cli/format.js';
import { metricsCommand, runMetrics } from '../../src/cli/metrics-command.js';
import { parsePromText } from '../../src/cli/prom-text.js';
import { runStatus, statusCommand } from '../../src/cli/status-command.js';
import { summarizeTraffic } from '../../src/cli/traffic-summary.js';
import { silentLogger } from '../../src/common/logger.js';
import { parseLocalClusterConfig, type LocalWorkload } from '../../src/state/local-config.js';

const NOW = Date.parse('2026-11-22T04:00:00Z');

/** A dump as Agent.configDump() produces it (trimmed to what the views read, plus noise). */
const DUMP = {
  node: 'node-a',
  config: { node: 'node-a', adminPort: 15000 },
  workloads: [
    { uid: 'demo/client', name: 'client', namespace: 'demo', serviceAccount: 'client', node: 'node-a', ip: '10.244.1.2', labels: { app: 'client' }, tunnelProtocol: 'HBONE' },
    { uid: 'demo/server-a', name: 'server-a', namespace: 'demo', serviceAccount: 'echo', node: 'node-a', ip: '10.244.1.3', labels: { app: 'echo' }, tunnelProtocol: 'HBONE' },
    { uid: 'plain/legacy', name: 'legacy', namespace: 'plain', serviceAccount: 'default', node: 'node-a', ip: '10.244.1.9', labels: {}, tunnelProtocol: 'NONE' },
    { uid: 'demo/server-b', name: 'server-b', namespace: 'demo', serviceAccount: 'echo', node: 'node-b', ip: '10.244.2.7', labels: { app: 'echo' }, tunnelProtocol: 'HBONE' },
  ],
  services: [{ name: 'echo', namespace: 'demo', hostname: 'echo.demo.svc.cluster.local', vips: ['10.96.0.20'], ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }], selector: { app: 'echo' } }],
  certificates: [
    { identity: 'spiffe://cluster.local/ns/demo/sa/echo', state: 'Available', certificate: { serialNumber: 'abcdef0123456789abcdef', notBefore: '2026-11-22T03:00:00Z', notAfter: '2026-11-23T03:00:00Z', certChainPem: ['x'], rootsPem: ['y'] } },
    { identity: 'spiffe://cluster.local/ns/demo/sa/client', state: 'Unavailable: ca down', certificate: undefined },
  ],
  enrollment: { mode: 'in-process', pods: [{ uid: 'demo/client', phase: 'enrolled' }, { uid: 'demo/server-a', phase: 'enrolling', lastError: 'netns gone' }] },
  workloadState: { 'demo/client': { info: { name: 'client', namespace: 'demo', serviceAccount: 'client' }, state: 'Up' } },
};

const SCRAPE = `# HELP istio_tcp_connections_opened_total The total number of TCP connections opened
# TYPE istio_tcp_connections_opened_total counter
istio_tcp_connections_opened_total{reporter="source",source_workload="client",source_workload_namespace="demo",destination_service="echo.demo.svc.cluster.local",destination_workload="server-b",destination_workload_namespace="demo",response_flags="-"} 3
istio_tcp_connections_opened_total{reporter="destination",source_workload="unknown",source_workload_namespace="unknown",destination_service="unknown",destination_workload="server-a",destination_workload_namespace="demo",response_flags="-"} 1

# TYPE istio_tcp_connections_closed_total counter
istio_tcp_connections_closed_total{reporter="source",source_workload="client",source_workload_namespace="demo",destination_service="echo.demo.svc.cluster.local",destination_workload="server-b",destination_workload_namespace="demo",response_flags="-"} 2
# TYPE istio_tcp_sent_bytes_total counter
istio_tcp_sent_bytes_total{reporter="source",source_workload="client",source_workload_namespace="demo",destination_service="echo.demo.svc.cluster.local",destination_workload="server-b",destination_workload_namespace="demo",response_flags="-"} 4194304
# TYPE istio_tcp_received_bytes_total counter
istio_tcp_received_bytes_total{reporter="source",source_workload="client",source_workload_namespace="demo",destination_service="echo.demo.svc.cluster.local",destination_workload="server-b",destination_workload_namespace="demo",response_flags="-"} 1000
# TYPE istio_tcp_connections_failed_total counter
istio_tcp_connections_failed_total{reporter="source",source_workload="client",source_workload_namespace="demo",destination_service="echo.demo.svc.cluster.local",destination_workload="server-b",destination_workload_namespace="demo",response_flags="CONNECT",note="a \\"quoted\\" \\\\ value"} 1
# TYPE istio_tcp_sockets_open gauge
istio_tcp_sockets_open{reporter="source"} 1
istio_build{component="ztunnel",tag="ambit-0.1.0"} 1
`;

function capture(colour = false): Output & { text: () => string } {
  const parts: string[] = [];
  return { write: (s) => void parts.push(s), colour, text: () => parts.join('') };
}

describe('recorded dump and scrape', () => {
  test('the dump summary: local workloads with state, services, certificates with expiry', () => {
    const s = summarizeDump(DUMP, NOW);
    assert.equal(s.node, 'node-a');
    assert.deepEqual(
      s.workloads.map((w) => [w.namespace, w.name, w.state]),
      [
        ['demo', 'client', 'Up'],
        ['demo', 'server-a', 'netns gone'],
        ['plain', 'legacy', 'not in mesh'],
      ],
      'only node-a pods; state from workloadState, else the enroller',
    );
    assert.deepEqual(
      s.certificates.map((c) => [c.identity, c.state, c.remainingMs]),
      [
        ['spiffe://cluster.local/ns/demo/sa/client', 'Unavailable: ca down', undefined],
        ['spiffe://cluster.local/ns/demo/sa/echo', 'Available', 23 * 3600_000],
      ],
    );
    const text = renderDump(DUMP, { colour: false, now: NOW });
    assert.match(text, /^node node-a {3}workloads in cluster view: 4 {3}services: 1$/m);
    assert.match(text, /^demo +client +10\.244\.1\.2 +client +Up$/m);
    assert.match(text, /^spiffe:\/\/cluster\.local\/ns\/demo\/sa\/echo +Available +abcdef0123456789… +2026-11-23T03:00:00Z +23h0m$/m);
    assert.match(text, /^demo +echo +10\.96\.0\.20 +80->8080$/m);
    assert.ok(!text.includes('\u001b['), 'no colour when not a TTY');
    assert.ok(renderDump(DUMP, { colour: true, now: NOW }).includes('\u001b[32mUp\u001b[0m'), 'colour on a TTY');
  });

  test('a dump with missing or odd fields still renders', () => {
    assert.doesNotThrow(() => renderDump({ workloads: [{ node: 5 }], certificates: 'x' }, { colour: false, now: NOW }));
    assert.doesNotThrow(() => renderDump(null, { colour: true, now: NOW }));
  });

  test('the scrape parses (escapes included) and sums per destination', () => {
    const p = parsePromText(SCRAPE);
    assert.deepEqual(p.badLines, []);
    assert.equal(p.types.istio_tcp_sockets_open, 'gauge');
    assert.equal(p.samples.length, 8);
    assert.equal(p.samples.find((s) => s.name === 'istio_tcp_connections_failed_total')?.labels.note, 'a "quoted" \\ value');
    const rows = summarizeTraffic(p.samples);
    assert.deepEqual(rows, [
      { reporter: 'destination', source: 'unknown', destination: 'demo/server-a', opened: 1, closed: 0, failed: 0, sent: 0, recv: 0 },
      { reporter: 'source', source: 'demo/client', destination: 'echo.demo.svc.cluster.local (demo/server-b)', opened: 3, closed: 2, failed: 1, sent: 4194304, recv: 1000 },
    ]);
    assert.deepEqual(parsePromText('ok 1\nbroken{a="x" 2\nalso bad\n').badLines, [2, 3]);
  });

  test('format helpers', () => {
    assert.equal(humanBytes(1023), '1023 B');
    assert.equal(humanBytes(4 << 20), '4.00 MiB');
    assert.equal(humanDuration(90_000), '1m30s');
    assert.equal(humanDuration(-300_000), 'expired 5m0s ago');
    assert.equal(humanDuration(2 * 86400_000 + 3600_000), '2d1h');
    const t = table(['A', 'BB'], [['\u001b[31mxyz\u001b[0m', '1'], ['q', '22']]);
    assert.deepEqual(t.split('\n').map(visibleLength), [7, 6, 7, 0]);
    assert.equal(table(['A'], []), '(none)\n');
  });

  test('addresses', () => {
    assert.deepEqual(parseAddress('127.0.0.1:15000', 'admin'), { host: '127.0.0.1', port: 15000, role: 'admin' });
    assert.deepEqual(parseAddress(':15020', 'metrics'), { host: '127.0.0.1', port: 15020, role: 'metrics' });
    assert.deepEqual(parseAddress('[::1]:15021', 'readiness'), { host: '::1', port: 15021, role: 'readiness' });
    assert.deepEqual(parseAddress('15000', 'admin'), { host: '127.0.0.1', port: 15000, role: 'admin' });
    assert.throws(() => parseAddress('localhost', 'admin'), /host:port/);
    assert.throws(() => parseAddress('h:99999', 'admin'), /1-65535/);
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:15000'), { code: 'ECONNREFUSED', syscall: 'connect' });
    assert.equal(unreachableMessage({ host: '127.0.0.1', port: 15000, role: 'admin' }, err), 'cannot reach the agent admin endpoint at 127.0.0.1:15000: connect ECONNREFUSED; is the agent running on this node?');
  });
});

describe('live against real agent endpoints', () => {
  const servers: Server[] = [];
  const registry = new Registry();
  const telemetry = new Telemetry(registry, silentLogger());
  let pending: string[] = ['pod demo/server-a: enrolling', 'pod demo/client: connect failed, retrying'];
  let admin = '';
  let metrics = '';
  let ready = '';
  const addr = (s: Server): string => `127.0.0.1:${(s.address() as AddressInfo).port}`;

  before(async () => {
    const cluster = parseLocalClusterConfig({ trustDomain: 'cluster.local', workloads: DUMP.workloads.map(({ uid: _u, tunnelProtocol: _t, ...w }) => w) });
    const [client, , , serverB] = cluster.workloads as [LocalWorkload, LocalWorkload, LocalWorkload, LocalWorkload];
    const r: ConnectionRecord = { direction: 'outbound', srcAddr: '10.244.1.2:5555', srcWorkload: client, dstAddr: '10.244.2.7:15008', dstWorkload: serverB, mtls: true, clusterId: 'Kubernetes' };
    telemetry.closed(r, { bytesSent: 12_345, bytesRecv: 678, durationMs: 9, responseFlags: '-' }, telemetry.opened(r));
    telemetry.opened(r);
    const a = await listenHttp(adminHandler({ registry, readiness: { pending: () => pending }, configDump: () => DUMP, quit: () => undefined }), 0, '127.0.0.1');
    const m = await listenHttp(metricsHandler(registry), 0, '127.0.0.1');
    const rd = await listenHttp(readinessHandler({ pending: () => pending }), 0, '127.0.0.1');
    servers.push(a, m, rd);
    [admin, metrics, ready] = [addr(a), addr(m), addr(rd)];
  });
  after(() => {
    telemetry.close();
    for (const s of servers) s.close();
  });

  const statusArgs = (...extra: string[]) => parseCommandArgs(statusCommand, ['--address', admin, '--metrics-address', metrics, '--readiness-address', ready, ...extra]);

  test('ambit status names the workloads, certificates, readiness and connections', async () => {
    const out = capture();
    assert.equal(await runStatus(statusArgs(), out, NOW), 0);
    const text = out.text();
    assert.match(text, new RegExp(`^agent on node node-a: not ready {3}\\(admin ${admin.replace(/\./g, '\\.')}\\)$`, 'm'));
    assert.match(text, /^ {2}pending: pod demo\/server-a: enrolling\n {2}pending: pod demo\/client: connect failed, retrying$/m);
    assert.match(text, /^Workloads \(1\/2 up\)$/m);
    assert.match(text, /^demo +client +10\.244\.1\.2 +client +Up$/m);
    assert.match(text, /^demo +server-a +10\.244\.1\.3 +echo +netns gone$/m);
    assert.match(text, /^spiffe:\/\/cluster\.local\/ns\/demo\/sa\/echo +Available/m);
    assert.match(text, /^source +demo\/client +demo\/server-b +2 +1 +1 +0 +12\.1 KiB +678 B$/m);
    pending = [];
    const out2 = capture();
    await runStatus(statusArgs(), out2, NOW);
    assert.match(out2.text(), /: ready {3}\(admin/);
  });

  test('--json gives the collected status', async () => {
    const out = capture();
    await runStatus(statusArgs('--json'), out, NOW);
    const j = JSON.parse(out.text()) as { node: string; workloads: Array<{ name: string }>; traffic: Array<{ sent: number }> };
    assert.equal(j.node, 'node-a');
    assert.deepEqual(j.workloads.map((w) => w.name).sort(), ['client', 'legacy', 'server-a']);
    assert.equal(j.traffic[0]?.sent, 12_345);
  });

  test('metrics unreachable: status still shows the admin view and says so', async () => {
    const out = capture();
    await runStatus(parseCommandArgs(statusCommand, ['--address', admin, '--metrics-address', '127.0.0.1:1', '--readiness-address', ready]), out, NOW);
    assert.match(out.text(), /cannot reach the agent metrics endpoint at 127\.0\.0\.1:1: connect ECONNREFUSED/);
  });

  test('ambit metrics: the table, --raw and --json', async () => {
    const out = capture();
    await runMetrics(parseCommandArgs(metricsCommand, ['--address', metrics]), out);
    assert.match(out.text(), /^source +demo\/client +demo\/server-b +2 +1 +1 +0 +12\.1 KiB +678 B$/m);
    assert.match(out.text(), /^istio_tcp_sockets_open +reporter=source +1$/m);
    const raw = capture();
    await runMetrics(parseCommandArgs(metricsCommand, ['--address', metrics, '--raw']), raw);
    assert.match(raw.text(), /^istio_tcp_sent_bytes_total\{.*\} 12345$/m);
    const om = capture();
    await runMetrics(parseCommandArgs(metricsCommand, ['--address', metrics, '--openmetrics']), om);
    assert.ok(om.text().endsWith('# EOF\n'));
    const json = capture();
    await runMetrics(parseCommandArgs(metricsCommand, ['--address', metrics, '--json']), json);
    const j = JSON.parse(json.text()) as { samples: Array<{ name: string; value: number }> };
    assert.equal(j.samples.find((s) => s.name === 'istio_tcp_received_bytes_total')?.value, 678);
  });

  test('ambit config-dump: tables, and --json is the dump as served', async () => {
    const out = capture();
    await runConfigDump(parseCommandArgs(configDumpCommand, ['--address', admin]), out, NOW);
    assert.equal(out.text(), renderDump(DUMP, { colour: false, now: NOW }));
    const json = capture();
    await runConfigDump(parseCommandArgs(configDumpCommand, ['--address', admin, '--json']), json, NOW);
    assert.deepEqual(JSON.parse(json.text()), JSON.parse(JSON.stringify(DUMP)));
  });
});

describe('no agent', () => {
  async function freePort(): Promise<number> {
    const s = await listenHttp(() => undefined, 0, '127.0.0.1');
    const port = (s.address() as AddressInfo).port;
    await new Promise((r) => s.close(r));
    return port;
  }

  test('a clear error naming the endpoint', async () => {
    const port = await freePort();
    await assert.rejects(runStatus(parseCommandArgs(statusCommand, ['--address', `127.0.0.1:${port}`]), capture()), (err: unknown) => {
      assert.ok(err instanceof AgentUnreachableError);
      assert.equal(err.code, 'AMBIT_ERR_CLI_AGENT_UNREACHABLE');
      assert.equal(err.message, `cannot reach the agent admin endpoint at 127.0.0.1:${port}: connect ECONNREFUSED; is the agent running on this node?`);
      return true;
    });
  });

  test('the ambit binary prints it and exits 1', async () => {
    const port = await freePort();
    const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
    const r = await promisify(execFile)(process.execPath, [main, 'status', '--address', `127.0.0.1:${port}`]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `ambit status: cannot reach the agent admin endpoint at 127.0.0.1:${port}: connect ECONNREFUSED; is the agent running on this node? [AMBIT_ERR_CLI_AGENT_UNREACHABLE]\n`);
  });
});
