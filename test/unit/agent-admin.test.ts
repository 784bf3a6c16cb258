/**
 * The agent's HTTP endpoints over real HTTP on 127.0.0.1 ephemeral ports:
 * readiness (200 / 500 with the pending tasks), metrics with content
 * negotiation, and the admin endpoints (index, config_dump, logging,
 * quitquitquit), including run-time log levels reaching child loggers.
 */
import { strict as assert } from 'node:assert';
import type { AddressInfo, Server } from 'node:net';
import { after, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { adminHandler, listenHttp, metricsHandler, parseLevelSpec, readinessHandler, wantsOpenMetrics } from '../../src/agent/admin.js';
import { Telemetry } from '../../src/agent/telemetry.js';
import { logControlFor, loggerWithControl, parseLogLevel } from '../../src/common/logger.js';

const servers: Server[] = [];
after(() => {
  for (const s of servers) {
    s.close();
    (s as unknown as { closeAllConnections(): void }).closeAllConnections();
  }
});

async function serve(h: Parameters<typeof listenHttp>[0]): Promise<string> {
  const s = await listenHttp(h, 0, '127.0.0.1');
  servers.push(s);
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

async function req(url: string, init: RequestInit = {}): Promise<{ status: number; type: string; body: string }> {
  const r = await fetch(url, init);
  return { status: r.status, type: r.headers.get('content-type') ?? '', body: await r.text() };
}

describe('readiness (15021)', () => {
  test('500 listing the pending tasks, then 200 ready', async () => {
    let pending = ['state manager', 'pod demo/client: enrolling'];
    const base = await serve(readinessHandler({ pending: () => pending }));
    const r1 = await req(`${base}/healthz/ready`);
    assert.equal(r1.status, 500);
    assert.equal(r1.body, 'not ready, pending: state manager, pod demo/client: enrolling\n');
    const j = await req(`${base}/healthz/ready`, { headers: { accept: 'application/json' } });
    assert.equal(j.status, 500);
    assert.deepEqual(JSON.parse(j.body), { ready: false, pending });
    pending = [];
    assert.deepEqual(await req(`${base}/healthz/ready`), { status: 200, type: 'text/plain; charset=utf-8', body: 'ready\n' });
    assert.equal((await req(`${base}/healthz/ready`, { method: 'POST' })).status, 405);
    assert.equal((await req(`${base}/other`)).status, 404);
  });
});

describe('metrics (15020)', () => {
  test('Prometheus text by default, OpenMetrics when Accept asks, both paths, and Prometheus again after', async () => {
    const registry = new Registry();
    const t = new Telemetry(registry, loggerWithControl('silent', () => undefined));
    t.failed({ direction: 'inbound', srcAddr: '1.2.3.4:5', dstAddr: '10.0.0.1:80', mtls: false, clusterId: 'Kubernetes' }, 'CONNECT', 'x');
    const base = await serve(metricsHandler(registry));
    const prom = await req(`${base}/metrics`);
    assert.equal(prom.status, 200);
    assert.match(prom.type, /^text\/plain; version=0\.0\.4/);
    assert.match(prom.body, /^istio_tcp_connections_failed_total\{.*response_flags="CONNECT".*\} 1$/m);
    const om = await req(`${base}/stats/prometheus`, { headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' } });
    assert.match(om.type, /^application\/openmetrics-text; version=1\.0\.0/);
    assert.match(om.body, /^# TYPE istio_tcp_connections_failed counter$/m);
    assert.match(om.body, /^istio_tcp_connections_failed_total\{.*\} 1$/m);
    assert.ok(om.body.endsWith('# EOF\n'));
    const again = await req(`${base}/metrics`);
    assert.match(again.body, /^# TYPE istio_tcp_connections_failed_total counter$/m, 'a Prometheus scrape after an OpenMetrics one keeps _total');
    assert.equal((await req(`${base}/nope`)).status, 404);
    t.close();
  });

  test('Accept negotiation', () => {
    assert.equal(wantsOpenMetrics(undefined), false);
    assert.equal(wantsOpenMetrics('text/plain'), false);
    assert.equal(wantsOpenMetrics('application/openmetrics-text; version=1.0.0'), true);
    assert.equal(wantsOpenMetrics('application/openmetrics-text;q=0, text/plain'), false);
  });
});

describe('admin (15000)', () => {
  test('/ lists the endpoints; /config_dump is the JSON the agent provides; other paths 404', async () => {
    const base = await serve(adminHandler({ registry: new Registry(), readiness: { pending: () => [] }, configDump: () => ({ node: 'n1', workloads: [] }), quit: () => undefined }));
    const idx = await req(`${base}/`);
    assert.equal(idx.status, 200);
    for (const p of ['/config_dump', '/logging', '/quitquitquit']) assert.ok(idx.body.includes(p), p);
    const dump = await req(`${base}/config_dump`);
    assert.equal(dump.type, 'application/json');
    assert.deepEqual(JSON.parse(dump.body), { node: 'n1', workloads: [] });
    assert.equal((await req(`${base}/config_dump`, { method: 'POST' })).status, 405);
    assert.equal((await req(`${base}/missing`)).status, 404);
  });

  test('POST /quitquitquit calls quit once; GET is 405', async () => {
    let quits = 0;
    const base = await serve(adminHandler({ registry: new Registry(), readiness: { pending: () => [] }, configDump: () => ({}), quit: () => void quits++ }));
    assert.equal((await req(`${base}/quitquitquit`)).status, 405);
    assert.equal(quits, 0);
    const r = await req(`${base}/quitquitquit`, { method: 'POST' });
    assert.deepEqual([r.status, r.body, quits], [200, 'shutting down\n', 1]);
  });

  test('POST /logging: shows levels, sets all or per component (also for children made later), resets, rejects bad input', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const root = loggerWithControl('info', (s) => void lines.push(JSON.parse(s) as Record<string, unknown>));
    const access = root.child({ component: 'access' });
    const agent = root.child({ component: 'agent' }).child({ pod: 'x' });
    const base = await serve(adminHandler({ registry: new Registry(), readiness: { pending: () => [] }, configDump: () => ({}), quit: () => undefined, logging: logControlFor(root) }));

    assert.equal((await req(`${base}/logging`)).status, 405, 'GET is not allowed');
    assert.equal((await req(`${base}/logging`, { method: 'POST' })).body, 'current log level is info\nlog format is json\n');

    access.debug('hidden');
    let r = await req(`${base}/logging?level=debug`, { method: 'POST' });
    assert.equal(r.body, 'current log level is debug\nlog format is json\n');
    access.debug('shown');
    agent.debug('agent shown');
    assert.deepEqual(lines.map((l) => l.msg), ['shown', 'agent shown']);

    r = await req(`${base}/logging?level=warn,access=trace`, { method: 'POST' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'current log level is warn\n  access: trace\nlog format is json\n');
    assert.equal(access.level, 'trace');
    assert.equal(agent.level, 'warn');
    assert.equal(root.level, 'warn');
    const later = root.child({ component: 'access' }, {});
    assert.equal(later.level, 'trace', 'a child made after the change gets its component level');

    r = await req(`${base}/logging?level=access=verbose`, { method: 'POST' });
    assert.equal(r.status, 400);
    assert.match(r.body, /unknown log level 'verbose'/);
    assert.equal(access.level, 'trace', 'a bad request changes nothing');

    r = await req(`${base}/logging?level=off`, { method: 'POST' });
    assert.equal(agent.level, 'silent');
    assert.equal(r.body, 'current log level is silent\nlog format is json\n');

    r = await req(`${base}/logging?reset`, { method: 'POST' });
    assert.equal(r.body, 'current log level is info\nlog format is json\n');
    assert.deepEqual([root.level, access.level, agent.level, later.level], ['info', 'info', 'info', 'info']);
  });

  test('POST /logging?format= switches JSON and pretty output at run time', async () => {
    const raw: string[] = [];
    const root = loggerWithControl('info', (s) => void raw.push(s));
    const access = root.child({ component: 'access' });
    const base = await serve(adminHandler({ registry: new Registry(), readiness: { pending: () => [] }, configDump: () => ({}), quit: () => undefined, logging: logControlFor(root) }));
    access.info({ 'src.addr': '10.0.0.1:1' }, 'connection complete');
    assert.equal((JSON.parse(raw[0] ?? '') as { msg: string }).msg, 'connection complete');
    let r = await req(`${base}/logging?format=pretty`, { method: 'POST' });
    assert.equal(r.body, 'current log level is info\nlog format is pretty\n');
    access.info({ 'src.addr': '10.0.0.1:2' }, 'connection complete');
    assert.throws(() => JSON.parse(raw[1] ?? ''), 'not JSON anymore');
    assert.match(raw[1] ?? '', /INFO.*connection complete/);
    assert.match(raw[1] ?? '', /src\.addr.*10\.0\.0\.1:2/);
    r = await req(`${base}/logging?format=xml`, { method: 'POST' });
    assert.equal(r.status, 400);
    await req(`${base}/logging?format=json&level=debug`, { method: 'POST' });
    access.debug('back to json');
    assert.equal((JSON.parse(raw[2] ?? '') as { msg: string }).msg, 'back to json');
  });

  test('POST /logging without a log control is 501, not a crash', async () => {
    const base = await serve(adminHandler({ registry: new Registry(), readiness: { pending: () => [] }, configDump: () => ({}), quit: () => undefined }));
    assert.equal((await req(`${base}/logging?level=debug`, { method: 'POST' })).status, 501);
  });

  test('a config dump that throws answers 500 and the server keeps serving', async () => {
    let fail = true;
    const base = await serve(
      adminHandler({
        registry: new Registry(),
        readiness: { pending: () => [] },
        configDump: () => {
          if (fail) throw new Error('boom');
          return { ok: true };
        },
        quit: () => undefined,
      }),
    );
    assert.equal((await req(`${base}/config_dump`)).status, 500);
    fail = false;
    assert.equal((await req(`${base}/config_dump`)).status, 200);
  });

  test('level specs and names', () => {
    assert.deepEqual(parseLevelSpec('debug'), { ok: true, value: [{ level: 'debug' }] });
    assert.deepEqual(parseLevelSpec('access=debug, agent=off'), { ok: true, value: [{ component: 'access', level: 'debug' }, { component: 'agent', level: 'silent' }] });
    assert.equal(parseLevelSpec('').ok, false);
    assert.equal(parseLevelSpec('=debug').ok, false);
    assert.equal(parseLogLevel('WARN'), 'warn');
    assert.equal(parseLogLevel('loud'), undefined);
  });
});
