/**
 * gRPC through the waypoint (h2c both sides) with @grpc/grpc-js: status
 * codes end up in grpc_response_status, a unary call failing with
 * UNAVAILABLE is retried, and a gRPC fault abort answers with a gRPC status.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { counterSum, startWaypoint, type Harness } from '../fixtures/waypoint/harness.js';

const identity = (b: Buffer): Buffer => b;
const def: grpc.ServiceDefinition = {
  echo: { path: '/test.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity, originalName: 'echo' },
};
const chatDef: grpc.ServiceDefinition = {
  chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity, originalName: 'chat' },
};
const EchoClient = grpc.makeGenericClientConstructor(def, 'Echo');

let server: grpc.Server;
let grpcPort: number;
let calls = 0;
let flakyCalls = 0;

before(async () => {
  server = new grpc.Server();
  server.addService(def, {
    echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      calls++;
      const msg = call.request.toString();
      if (msg === 'missing') return cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
      if (msg === 'flaky' && ++flakyCalls % 2 === 1) return cb({ code: grpc.status.UNAVAILABLE, details: 'try again' });
      cb(null, Buffer.from(`echo:${msg}`));
    },
  });
  server.addService(chatDef, {
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (m: Buffer) => call.write(Buffer.from(`re:${m.toString()}`)));
      call.on('end', () => call.end());
    },
  });
  grpcPort = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
});
after(() => {
  server.forceShutdown();
});

function config(route: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    clusters: [{ name: 'echo', protocol: 'h2c', endpoints: [{ address: '127.0.0.1', port: grpcPort, labels: { app: 'echo', version: 'v1' } }] }],
    services: [{ hostname: 'echo.default.svc.cluster.local', port: 50051, protocol: 'grpc', routes: [{ name: 'all', backends: [{ cluster: 'echo' }], ...route }] }],
  };
}

function call(h: Harness, msg: string): Promise<{ code: number; value?: string; details?: string }> {
  const client = new EchoClient(`127.0.0.1:${h.port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'echo.default.svc.cluster.local:50051', 'grpc.enable_retries': 0 });
  return new Promise((resolve) => {
    client.makeUnaryRequest('/test.Echo/Echo', identity, identity, Buffer.from(msg), (err: grpc.ServiceError | null, value?: Buffer) => {
      client.close();
      resolve(err ? { code: err.code, details: err.details } : { code: 0, value: value?.toString() });
    });
  });
}

describe('waypoint gRPC', () => {
  test('status codes are labelled in metrics', async () => {
    const h = await startWaypoint(config({ retries: { attempts: 0 } }));
    try {
      assert.deepEqual(await call(h, 'hi'), { code: 0, value: 'echo:hi' });
      assert.equal((await call(h, 'missing')).code, grpc.status.NOT_FOUND);
      assert.equal((await call(h, 'missing')).code, grpc.status.NOT_FOUND);
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { request_protocol: 'grpc', response_code: '200', grpc_response_status: '0' }), 1);
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { request_protocol: 'grpc', response_code: '200', grpc_response_status: '5' }), 2);
    } finally {
      await h.close();
    }
  });

  test('a unary call failing with UNAVAILABLE is retried (Istio default retry-on)', async () => {
    const h = await startWaypoint(config({ retries: { attempts: 2, backoff: '1ms' } }));
    try {
      const before = calls;
      for (let i = 0; i < 5; i++) assert.deepEqual(await call(h, 'flaky'), { code: 0, value: 'echo:flaky' });
      assert.equal(calls - before, 10, 'each call failed once, then succeeded');
      assert.equal(await counterSum(h.registry, 'ambit_waypoint_upstream_retries_total'), 5);
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { grpc_response_status: '0' }), 5);
    } finally {
      await h.close();
    }
    const h2 = await startWaypoint(config({ retries: { attempts: 0 } }));
    try {
      const r = [await call(h2, 'flaky'), await call(h2, 'flaky')];
      assert.deepEqual(r.map((x) => x.code).sort(), [0, grpc.status.UNAVAILABLE]);
      assert.equal(await counterSum(h2.registry, 'istio_requests_total', { grpc_response_status: '14' }), 1);
    } finally {
      await h2.close();
    }
  });

  test('a bidirectional stream flows through message by message (request body is not held back)', async () => {
    const h = await startWaypoint(config());
    const client = new EchoClient(`127.0.0.1:${h.port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'echo.default.svc.cluster.local:50051' });
    try {
      const call = client.makeBidiStreamRequest('/test.Echo/Chat', identity, identity);
      const next = (): Promise<string> => new Promise((resolve) => call.once('data', (m: Buffer) => resolve(m.toString())));
      for (const word of ['one', 'two', 'three']) {
        const reply = next();
        call.write(Buffer.from(word));
        assert.equal(await reply, `re:${word}`, 'each reply arrives before the client ends its side');
      }
      const status = new Promise<number>((resolve) => call.once('status', (s: grpc.StatusObject) => resolve(s.code)));
      call.end();
      call.resume();
      assert.equal(await status, 0);
    } finally {
      client.close();
      await h.close();
    }
  });

  test('fault abort with a gRPC status and no route give gRPC statuses, not HTTP errors', async () => {
    const h = await startWaypoint(config({ fault: { abort: { grpcStatus: 'RESOURCE_EXHAUSTED', percentage: 100 } } }));
    try {
      const r = await call(h, 'hi');
      assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { grpc_response_status: '8', response_flags: 'FI' }), 1);
    } finally {
      await h.close();
    }
  });
});
