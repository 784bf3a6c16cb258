/**
 * Waypoint L7 routing and resilience over real loopback HTTP: weighted
 * split, header match, rewrite/redirect/header ops, retries, timeouts, fault
 * injection, circuit breaking and outlier detection.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Agent } from 'node:http';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { backend, closeBackends, counterSum, httpGet, simpleConfig, startWaypoint } from '../fixtures/waypoint/harness.js';
import { requiresTool } from '../helpers/privileged.js';

describe('waypoint routing', () => {
  test('90/10 weighted split over 2,000 requests, and end-user: jason always goes to v2', async () => {
    const v1 = await backend('v1');
    const v2 = await backend('v2');
    const config = {
      clusters: [
        { name: 'reviews-v1', endpoints: [{ address: '127.0.0.1', port: v1.port, labels: { app: 'reviews', version: 'v1' } }] },
        { name: 'reviews-v2', endpoints: [{ address: '127.0.0.1', port: v2.port, labels: { app: 'reviews', version: 'v2' } }] },
      ],
      services: [{
        hostname: 'reviews.default.svc.cluster.local', port: 9080,
        routes: [
          { name: 'jason', matches: [{ headers: [{ name: 'end-user', exact: 'jason' }] }], backends: [{ cluster: 'reviews-v2' }] },
          { name: 'split', backends: [{ cluster: 'reviews-v1', weight: 90 }, { cluster: 'reviews-v2', weight: 10 }] },
        ],
      }],
    };
    const h = await startWaypoint(config);
    const agent = new Agent({ keepAlive: true, maxSockets: 20 });
    try {
      const N = 2000;
      const counts = { v1: 0, v2: 0 };
      for (let i = 0; i < N; i += 50) {
        const batch = await Promise.all(Array.from({ length: 50 }, () => httpGet(h.port, '/reviews/1', { agent })));
        for (const r of batch) {
          assert.equal(r.status, 200);
          counts[r.headers['x-backend'] as 'v1' | 'v2']++;
        }
      }
      // binomial(2000, 0.1): sd ≈ 13.4; ±5 sd
      assert.ok(Math.abs(counts.v2 - 200) < 67, `v2 got ${counts.v2} of ${N}`);
      assert.equal(counts.v1 + counts.v2, N);
      for (let i = 0; i < 100; i++) {
        const r = await httpGet(h.port, '/reviews/1', { agent, headers: { 'end-user': 'jason' } });
        assert.equal(r.headers['x-backend'], 'v2');
      }
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { response_code: '200', destination_version: 'v2' }), counts.v2 + 100);
    } finally {
      agent.destroy();
      await h.close();
      await closeBackends(v1, v2);
    }
  });

  test('path match, rewrite, header ops, redirect, direct response and 404 for no route', async () => {
    const b = await backend('b');
    const h = await startWaypoint({
      clusters: [{ name: 'c', endpoints: [{ address: '127.0.0.1', port: b.port }] }],
      services: [{
        hostname: 'reviews.default.svc.cluster.local', port: 9080,
        routes: [
          { name: 'old', matches: [{ path: { prefix: '/old' } }], redirect: { path: '/new', status: 302 } },
          { name: 'health', matches: [{ path: { exact: '/healthz' } }], directResponse: { status: 200, body: 'ok' } },
          {
            name: 'api', matches: [{ path: { prefix: '/api' }, method: 'POST' }, { path: { regex: '/v[0-9]+/items' }, queryParams: [{ name: 'debug', exact: '1' }] }],
            rewrite: { uriPrefix: '/internal' }, backends: [{ cluster: 'c', requestHeaders: { set: { 'x-backend-route': 'api' } } }],
            requestHeaders: { set: { 'x-set': 'yes' }, add: { 'x-added': 'a' }, remove: ['x-secret'] },
            responseHeaders: { set: { 'x-resp': 'r' }, remove: ['x-backend'] },
          },
        ],
      }],
    });
    try {
      const r1 = await httpGet(h.port, '/api/things?q=1', { method: 'POST', body: 'hello', headers: { 'x-secret': 's', 'x-added': 'orig' } });
      assert.equal(r1.status, 200);
      assert.equal(r1.headers['x-resp'], 'r');
      assert.equal(r1.headers['x-backend'], undefined);
      const seen = b.seen.at(-1);
      assert.equal(seen?.url, '/internal/things?q=1');
      assert.equal(seen?.body, 'hello');
      assert.equal(seen?.headers['x-set'], 'yes');
      assert.equal(seen?.headers['x-added'], 'orig,a');
      assert.equal(seen?.headers['x-secret'], undefined);
      assert.equal(seen?.headers['x-backend-route'], 'api');
      assert.match(String(seen?.headers['x-request-id']), /^[0-9a-f-]{36}$/);
      assert.match(String(seen?.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      const r2 = await httpGet(h.port, '/v2/items?debug=1');
      assert.equal(r2.status, 200);
      assert.equal((await httpGet(h.port, '/v2/items?debug=0')).status, 404, 'query mismatch: no route');
      assert.equal((await httpGet(h.port, '/api/things')).status, 404, 'GET does not match the POST route');
      const r3 = await httpGet(h.port, '/old/x?y=1');
      assert.equal(r3.status, 302);
      assert.equal(r3.headers.location, 'http://reviews.default.svc.cluster.local/new?y=1');
      const r4 = await httpGet(h.port, '/healthz');
      assert.deepEqual([r4.status, r4.body], [200, 'ok']);
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { response_code: '404', response_flags: 'NR' }), 2);
    } finally {
      await h.close();
      await closeBackends(b);
    }
  });
});

describe('waypoint with curl and extra routing features', () => {
  test('curl over HTTP/1.1 and h2c prior knowledge', requiresTool('curl'), async () => {
    const b = await backend('b');
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [b.port] }], { responseHeaders: { set: { 'x-route': 'default' } } }));
    try {
      const run = promisify(execFile);
      for (const flag of ['--http1.1', '--http2-prior-knowledge']) {
        const { stdout: out } = await run('curl', ['-sS', '-i', flag, '-H', 'host: reviews.default.svc.cluster.local', `http://127.0.0.1:${h.port}/curl`], { timeout: 10_000 });
        assert.match(out, /^HTTP\/(1\.1|2) 200/);
        assert.match(out, /x-route: default/i);
        assert.match(out, /"backend":"b"/);
      }
    } finally {
      await h.close();
      await closeBackends(b);
    }
  });

  test('mirror sends a fire-and-forget copy with a -shadow host; maxRequestsPerConnection 1 uses a new connection per request', async () => {
    const main = await backend('main');
    const shadow = await backend('shadow', { delayMs: 300 });
    let conns = 0;
    main.server.on('connection', () => conns++);
    const h = await startWaypoint(simpleConfig(
      [{ name: 'c', ports: [main.port], extra: { connectionPool: { maxRequestsPerConnection: 1 } } }, { name: 'shadow', ports: [shadow.port] }],
      { backends: [{ cluster: 'c' }], mirrors: [{ cluster: 'shadow' }] },
    ));
    try {
      for (let i = 0; i < 3; i++) {
        const r = await httpGet(h.port, '/m', { method: 'POST', body: 'copy-me' });
        assert.equal(r.status, 200);
        assert.ok(r.ms < 250, 'the mirror response is not awaited');
      }
      assert.equal(conns, 3);
      const deadline = Date.now() + 2000;
      while (shadow.hits < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(shadow.hits, 3);
      assert.equal(shadow.seen[0]?.headers.host, 'reviews.default.svc.cluster.local-shadow');
      assert.equal(shadow.seen[0]?.body, 'copy-me');
    } finally {
      await h.close();
      await closeBackends(main, shadow);
    }
  });
});

describe('waypoint retries and timeouts', () => {
  test('a backend failing 50% with 503 is seen as ~100% success with retries, and retries are counted', async () => {
    const flaky = await backend('flaky', { status: (n) => (n % 2 === 0 ? 503 : 200) });
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [flaky.port] }], { retries: { attempts: 3, retryOn: '5xx', backoff: '1ms' } }));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      let ok = 0;
      for (let i = 0; i < 200; i++) if ((await httpGet(h.port, '/', { agent })).status === 200) ok++;
      assert.equal(ok, 200);
      const retries = await counterSum(h.registry, 'ambit_waypoint_upstream_retries_total');
      // every second backend answer is a 503, and each one was retried
      assert.equal(flaky.hits, 200 + retries);
      assert.equal(retries, Math.floor(flaky.hits / 2));
      assert.ok(retries >= 150, `retries ${retries}`);
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { response_code: '200' }), 200);
    } finally {
      agent.destroy();
      await h.close();
      await closeBackends(flaky);
    }
  });

  test('Istio default retry policy does not retry 503; retries exhausted give URX', async () => {
    const dead = await backend('dead', { status: 503 });
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [dead.port] }]));
    const h2 = await startWaypoint(simpleConfig([{ name: 'c', ports: [dead.port] }], { retries: { attempts: 2, retryOn: 'gateway-error', backoff: '1ms' } }));
    try {
      assert.equal((await httpGet(h.port, '/')).status, 503);
      assert.equal(dead.hits, 1);
      assert.equal((await httpGet(h2.port, '/')).status, 503);
      assert.equal(dead.hits, 4);
      assert.equal(await counterSum(h2.registry, 'istio_requests_total', { response_code: '503', response_flags: 'URX' }), 1);
    } finally {
      await h.close();
      await h2.close();
      await closeBackends(dead);
    }
  });

  test('per-try timeout 100 ms against a 1 s backend gives 504 within the expected time', async () => {
    const slow = await backend('slow', { delayMs: 1000 });
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [slow.port] }], { retries: { attempts: 2, perTryTimeout: '100ms', retryOn: 'gateway-error', backoff: '5ms' } }));
    try {
      const r = await httpGet(h.port, '/');
      assert.equal(r.status, 504);
      // 3 tries × 100 ms + ≤ 5+10 ms backoff; well under the backend's 1 s
      assert.ok(r.ms >= 290 && r.ms < 700, `took ${r.ms} ms`);
      assert.equal(slow.hits, 3);
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { response_code: '504', response_flags: 'URX,UT' }), 1);
    } finally {
      await h.close();
      await closeBackends(slow);
    }
  });

  test('a body larger than the replay limit streams through but is not retried', async () => {
    const seen: number[] = [];
    const flaky = await backend('flaky', { status: (n) => (n === 1 ? 503 : 200) });
    flaky.server.on('request', (req) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => seen.push(n));
    });
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [flaky.port] }], { retries: { attempts: 2, retryOn: '5xx', backoff: '1ms' } }), { maxReplayBodyBytes: 64 * 1024 });
    try {
      const big = 'b'.repeat(1 << 20);
      assert.equal((await httpGet(h.port, '/', { method: 'POST', body: big })).status, 503, 'no retry without a replay copy');
      assert.equal(flaky.hits, 1);
      assert.equal(seen[0], 1 << 20);
      assert.equal((await httpGet(h.port, '/', { method: 'POST', body: 'small' })).status, 200);
      assert.match(await h.registry.metrics(), /istio_request_bytes_sum\{[^}]*response_code="503"[^}]*\} 1048576/);
    } finally {
      await h.close();
      await closeBackends(flaky);
    }
  });

  test('a retry budget of 0% with no minimum concurrency allows no retries', async () => {
    const dead = await backend('dead', { status: 503 });
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [dead.port] }], { retries: { attempts: 3, retryOn: '5xx', backoff: '1ms', budget: { percent: 0, minRetryConcurrency: 0 } } }));
    try {
      assert.equal((await httpGet(h.port, '/')).status, 503);
      assert.equal(dead.hits, 1);
      assert.equal(await counterSum(h.registry, 'ambit_waypoint_upstream_retries_total'), 0);
    } finally {
      await h.close();
      await closeBackends(dead);
    }
  });

  test('route timeout bounds the whole request including retries', async () => {
    const slow = await backend('slow', { delayMs: 1000 });
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [slow.port] }], { timeout: '150ms' }));
    try {
      const r = await httpGet(h.port, '/');
      assert.equal(r.status, 504);
      assert.ok(r.ms >= 140 && r.ms < 600, `took ${r.ms} ms`);
      assert.match(r.body, /upstream request timeout/);
    } finally {
      await h.close();
      await closeBackends(slow);
    }
  });

  test('connect failure is retried on another host (retryIgnorePreviousHosts) and is UF when nothing answers', async () => {
    const good = await backend('good');
    const deadPort = await freePort();
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [deadPort, good.port], extra: { loadBalancer: { simple: 'ROUND_ROBIN' } } }]));
    const h2 = await startWaypoint(simpleConfig([{ name: 'c', ports: [deadPort] }], { retries: { attempts: 0 } }));
    try {
      for (let i = 0; i < 6; i++) assert.equal((await httpGet(h.port, '/')).status, 200);
      const r = await httpGet(h2.port, '/');
      assert.equal(r.status, 503);
      assert.equal(await counterSum(h2.registry, 'istio_requests_total', { response_code: '503', response_flags: 'UF' }), 1);
    } finally {
      await h.close();
      await h2.close();
      await closeBackends(good);
    }
  });
});

describe('waypoint fault injection', () => {
  test('50% abort with 503 and a fixed delay are observable at the client', async () => {
    const b = await backend('b');
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [b.port] }], { fault: { abort: { httpStatus: 503, percentage: 50 } } }));
    const h2 = await startWaypoint(simpleConfig([{ name: 'c', ports: [b.port] }], { fault: { delay: { fixedDelay: '200ms', percentage: 100 } } }));
    const agent = new Agent({ keepAlive: true, maxSockets: 10 });
    try {
      const rs = await Promise.all(Array.from({ length: 400 }, () => httpGet(h.port, '/', { agent })));
      const aborted = rs.filter((r) => r.status === 503).length;
      assert.equal(rs.filter((r) => r.status === 200).length + aborted, 400);
      assert.ok(aborted > 150 && aborted < 250, `aborted ${aborted}/400`);
      assert.equal(b.hits, 400 - aborted, 'aborted requests never reach the backend');
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { response_code: '503', response_flags: 'FI' }), aborted);
      const d = await httpGet(h2.port, '/');
      assert.equal(d.status, 200);
      assert.ok(d.ms >= 195, `delayed ${d.ms} ms`);
      assert.equal(await counterSum(h2.registry, 'istio_requests_total', { response_code: '200', response_flags: 'DI' }), 1);
    } finally {
      agent.destroy();
      await h.close();
      await h2.close();
      await closeBackends(b);
    }
  });
});

describe('waypoint circuit breaking and outlier detection', () => {
  test('maxPending 1 with 20 concurrent clients: the excess get 503 quickly with UO', async () => {
    const slow = await backend('slow', { delayMs: 300 });
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [slow.port], extra: { connectionPool: { maxConnections: 1, maxPendingRequests: 1, maxRequestsPerConnection: 1 } } }]));
    try {
      const rs = await Promise.all(Array.from({ length: 20 }, () => httpGet(h.port, '/')));
      const ok = rs.filter((r) => r.status === 200);
      const overflow = rs.filter((r) => r.status === 503);
      assert.equal(ok.length, 2, 'one active + one pending');
      assert.equal(overflow.length, 18);
      for (const r of overflow) assert.ok(r.ms < 250, `overflow answered in ${r.ms} ms`);
      assert.match(overflow[0]?.body ?? '', /overflow/);
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { response_code: '503', response_flags: 'UO' }), 18);
    } finally {
      await h.close();
      await closeBackends(slow);
    }
  });

  test('outlier detection ejects an always-500 backend and traffic moves to the healthy one', async () => {
    const bad = await backend('bad', { status: 500 });
    const good = await backend('good');
    const h = await startWaypoint(simpleConfig([{
      name: 'c', ports: [bad.port, good.port],
      extra: { loadBalancer: { simple: 'ROUND_ROBIN' }, outlierDetection: { consecutive5xxErrors: 3, interval: '1s', baseEjectionTime: '30s', maxEjectionPercent: 50 } },
    }], { retries: { attempts: 0 } }));
    try {
      const first = [];
      for (let i = 0; i < 10; i++) first.push((await httpGet(h.port, '/')).status);
      assert.equal(bad.hits, 3, 'ejected after 3 consecutive 5xx');
      assert.equal(h.wp.clusterState('c')?.ejectedCount(), 1);
      const before = good.hits;
      for (let i = 0; i < 20; i++) assert.equal((await httpGet(h.port, '/')).status, 200);
      assert.equal(good.hits - before, 20);
      assert.equal(bad.hits, 3);
    } finally {
      await h.close();
      await closeBackends(bad, good);
    }
  });
});

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('waypoint upstream protocols and config updates', () => {
  test('plain HTTP over an h2c upstream, request and response bodies intact', async () => {
    const { createServer: createH2 } = await import('node:http2');
    const srv = createH2((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.writeHead(201, { 'x-proto': req.httpVersion });
        res.end(`got ${Buffer.concat(chunks).length} bytes on ${req.url}`);
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [port], extra: { protocol: 'h2c' } }]));
    try {
      const body = 'x'.repeat(100_000);
      const r = await httpGet(h.port, '/up?a=1', { method: 'PUT', body });
      assert.equal(r.status, 201);
      assert.equal(r.headers['x-proto'], '2.0');
      assert.equal(r.body, 'got 100000 bytes on /up?a=1');
    } finally {
      await h.close();
      srv.close();
    }
  });

  test('updateConfig switches routes for new requests and keeps the state of unchanged clusters', async () => {
    const { compileL7Config } = await import('../../src/waypoint/config.js');
    const v1 = await backend('v1');
    const v2 = await backend('v2');
    const clusters = [{ name: 'v1', ports: [v1.port], extra: { outlierDetection: {} } }, { name: 'v2', ports: [v2.port] }];
    const h = await startWaypoint(simpleConfig(clusters, { backends: [{ cluster: 'v1' }] }));
    try {
      assert.equal((await httpGet(h.port, '/')).headers['x-backend'], 'v1');
      const before = h.wp.clusterState('v1');
      h.wp.updateConfig(compileL7Config(simpleConfig(clusters, { backends: [{ cluster: 'v2' }] })));
      assert.equal((await httpGet(h.port, '/')).headers['x-backend'], 'v2');
      assert.equal(h.wp.clusterState('v1'), before, 'same cluster config keeps its run-time state');
    } finally {
      await h.close();
      await closeBackends(v1, v2);
    }
  });
});

describe('waypoint robustness', () => {
  test('a client that goes away cancels the upstream attempt and is logged with code 0 and DC', async () => {
    const { request } = await import('node:http');
    const slow = await backend('slow', { delayMs: 2000 });
    let upstreamClosed = false;
    slow.server.on('request', (req) => req.socket.once('close', () => (upstreamClosed = true)));
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [slow.port] }]));
    try {
      const req = request({ host: '127.0.0.1', port: h.port, path: '/', headers: { host: 'reviews.default.svc.cluster.local' } });
      req.on('error', () => undefined);
      req.end();
      await new Promise((r) => setTimeout(r, 150));
      req.destroy();
      const deadline = Date.now() + 2000;
      while ((await counterSum(h.registry, 'istio_requests_total')) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { response_code: '0', response_flags: 'DC' }), 1);
      assert.ok(upstreamClosed, 'the upstream request was cancelled');
    } finally {
      await h.close();
      await closeBackends(slow);
    }
  });

  test('garbage bytes, a broken h2 preface and an unknown host do not take the server down', async () => {
    const { connect } = await import('node:net');
    const b = await backend('b');
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [b.port] }]));
    const send = (bytes: Buffer | string): Promise<string> => new Promise((resolve) => {
      const s = connect(h.port, '127.0.0.1', () => s.end(bytes));
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('error', () => resolve(Buffer.concat(chunks).toString()));
      s.on('close', () => resolve(Buffer.concat(chunks).toString()));
    });
    try {
      assert.match(await send('\x00\x01\x02 not http at all\r\n\r\n'), /^HTTP\/1\.1 400/);
      await send(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 4, 0xff, 0, 0, 0, 0, 1, 1, 2, 3, 4])]));
      const unknown = await httpGet(h.port, '/', { host: 'nobody.example' });
      assert.equal(unknown.status, 404);
      assert.equal((await httpGet(h.port, '/')).status, 200);
    } finally {
      await h.close();
      await closeBackends(b);
    }
  });
});
