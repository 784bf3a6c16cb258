// Delta xDS over real gRPC on 127.0.0.1 (ephemeral ports): DeltaXdsServer
// and DeltaXdsClient end to end. Wildcard subscribe and initial push,
// incremental updates carrying only changed resources, removals, NACK of one
// resource (counted, not resent, others applied), reconnect with
// initial_resource_versions after a server restart, survival of server death
// with backoff, and the authenticate hook.
import assert from 'node:assert/strict';
import type { EventEmitter } from 'node:events';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { FakeClock } from '../../src/common/clock.js';
import { DeltaXdsClient, type XdsTypeHandler, type XdsTypeUpdate } from '../../src/xds/delta-client.js';
import { DeltaXdsServer, type XdsNackEvent } from '../../src/xds/delta-server.js';
import type { XdsResource } from '../../src/xds/codec.js';
import type { XdsStreamError } from '../../src/xds/errors.js';
import { buildNode } from '../../src/xds/node.js';

const ADDR = 'type.googleapis.com/istio.workload.Address';
const AUTHZ = 'type.googleapis.com/istio.security.Authorization';
const NODE = buildNode({ instanceIp: '127.0.0.1', podName: 'ambit-test', podNamespace: 'istio-system', nodeName: 'node-1' });

function res(name: string, version: string): XdsResource {
  return { name, version, body: Buffer.from(`${name}@${version}`) };
}

/** A handler that records every update it gets and can reject names. */
class RecordingHandler implements XdsTypeHandler {
  readonly state = new Map<string, { version: string; body: string }>();
  readonly updates: Array<{ upserts: string[]; removals: string[] }> = [];
  constructor(
    readonly typeUrl: string,
    readonly reject: (name: string, version: string) => string | undefined = () => undefined,
  ) {}

  apply(u: XdsTypeUpdate): { rejected: { name: string; reason: string }[] } {
    this.updates.push({ upserts: u.upserts.map((r) => `${r.name}@${r.version}`), removals: [...u.removals] });
    const rejected: { name: string; reason: string }[] = [];
    for (const r of u.upserts) {
      const reason = this.reject(r.name, r.version);
      if (reason) rejected.push({ name: r.name, reason });
      else this.state.set(r.name, { version: r.version, body: r.body.toString() });
    }
    for (const n of u.removals) this.state.delete(n);
    return { rejected };
  }

  snapshot(): Record<string, string> {
    return Object.fromEntries([...this.state].map(([k, v]) => [k, v.version]));
  }
}

async function listen(t: TestContext, server: DeltaXdsServer, port = 0): Promise<{ port: number; grpcServer: grpc.Server }> {
  const grpcServer = new grpc.Server();
  const svc = server.service();
  grpcServer.addService(svc.definition, svc.implementation);
  const bound = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  t.after(() => {
    server.close();
    grpcServer.forceShutdown();
  });
  return { port: bound, grpcServer };
}

function newClient(t: TestContext, port: number, handlers: XdsTypeHandler[], metadata?: Record<string, string>): DeltaXdsClient {
  const client = new DeltaXdsClient({
    address: `127.0.0.1:${port}`,
    credentials: grpc.credentials.createInsecure(),
    node: NODE,
    handlers,
    ...(metadata ? { metadata } : {}),
  });
  t.after(() => client.close());
  return client;
}

function once<T = unknown>(emitter: EventEmitter, event: string, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`timed out waiting for '${event}'`));
    }, timeoutMs);
    const on = (v: T): void => {
      clearTimeout(timer);
      resolve(v);
    };
    emitter.once(event, on);
  });
}

async function until(pred: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('wildcard subscribe, initial push, incremental update and removal carry exactly the changes', async (t) => {
  const registry = new Registry();
  const server = new DeltaXdsServer({ typeUrls: [ADDR, AUTHZ], debounceMs: 20, registry });
  server.replaceAll(ADDR, [res('a', '1'), res('b', '1'), res('c', '1')]);
  const { port } = await listen(t, server);
  const addr = new RecordingHandler(ADDR);
  const authz = new RecordingHandler(AUTHZ);
  const client = newClient(t, port, [addr, authz]);
  const synced = once(client, 'synced');
  client.start();
  await synced;
  assert.equal(client.state, 'streaming');
  assert.deepEqual(addr.updates, [{ upserts: ['a@1', 'b@1', 'c@1'], removals: [] }]);
  assert.deepEqual(authz.updates, [{ upserts: [], removals: [] }], 'an empty type still gets its first response');
  assert.equal(addr.state.get('b')?.body, 'b@1');

  // Several changes inside the debounce window become one push of only the changed resource.
  server.update(ADDR, [res('b', '2')], []);
  server.update(ADDR, [res('a', '1')], []); // same version: not a change
  server.update(ADDR, [res('b', '3')], []);
  await until(() => addr.updates.length === 2, 'incremental push');
  assert.deepEqual(addr.updates[1], { upserts: ['b@3'], removals: [] });

  server.update(ADDR, [], ['c']);
  await until(() => addr.updates.length === 3, 'removal push');
  assert.deepEqual(addr.updates[2], { upserts: [], removals: ['c'] });
  assert.deepEqual(addr.snapshot(), { a: '1', b: '3' });

  // replaceAll computes the diff itself.
  server.replaceAll(ADDR, [res('a', '1'), res('b', '3'), res('d', '1')]);
  await until(() => addr.updates.length === 4, 'replaceAll push');
  assert.deepEqual(addr.updates[3], { upserts: ['d@1'], removals: [] });
  server.replaceAll(ADDR, [res('a', '1'), res('b', '3'), res('d', '1')]);
  await sleep(100);
  assert.equal(addr.updates.length, 4, 'an identical replaceAll pushes nothing');
  assert.equal(authz.updates.length, 1, 'other types are not pushed');

  const stats = server.stats();
  assert.equal(stats.connections, 1);
  assert.equal(stats.pushes, 5);
  assert.equal(stats.nacks, 0);
  await until(() => server.stats().acks === 5, 'all pushes acked');
  const info = server.connectionsInfo();
  assert.equal(info[0]?.nodeId, NODE.id);
  assert.equal(info[0]?.parsedNodeId?.podName, 'ambit-test');
  assert.equal(info[0]?.metadata.NODE_NAME, 'node-1');
  const metrics = await registry.metrics();
  assert.match(metrics, /ambit_xds_connections 1/);
  assert.match(metrics, new RegExp(`ambit_xds_pushes_total\\{type_url="${ADDR}"\\} 4`));
  assert.match(metrics, /ambit_xds_pushed_bytes_total\{type_url="[^"]+"\} [1-9]/);
});

test('NACK: one of three rejected, the other two applied, counted, not resent', async (t) => {
  const registry = new Registry();
  const server = new DeltaXdsServer({ typeUrls: [ADDR], debounceMs: 10, registry });
  server.replaceAll(ADDR, [res('a', '1'), res('b', '1'), res('c', '1')]);
  const { port } = await listen(t, server);
  const handler = new RecordingHandler(ADDR, (name, version) => (name === 'b' && version === '1' ? 'bad address' : undefined));
  const client = newClient(t, port, [handler]);
  const nackEvent = once<XdsNackEvent>(server, 'nack');
  const nackSent = once<{ rejected: { name: string }[]; message: string }>(client, 'nack-sent');
  client.start();
  const [ev, sent] = await Promise.all([nackEvent, nackSent]);
  assert.deepEqual(
    sent.rejected.map((r) => r.name),
    ['b'],
  );
  assert.equal(ev.nodeId, NODE.id);
  assert.equal(ev.code, 3);
  assert.match(ev.message, /b: bad address/);
  assert.equal(ev.error.code, 'AMBIT_ERR_XDS_NACK');
  assert.deepEqual(handler.snapshot(), { a: '1', c: '1' });
  assert.deepEqual(client.heldVersions(ADDR), { a: '1', c: '1' }, 'rejected resources are not held');
  assert.equal(server.stats().nacks, 1);
  assert.match(await registry.metrics(), new RegExp(`ambit_xds_nacks_total\\{type_url="${ADDR}"\\} 1`));
  assert.equal(server.connectionsInfo()[0]?.types[0]?.lastNack?.message, ev.message);

  // An unrelated change pushes only that resource: b@1 is not resent.
  server.update(ADDR, [res('d', '1')], []);
  await until(() => handler.updates.length === 2, 'push of d');
  assert.deepEqual(handler.updates[1], { upserts: ['d@1'], removals: [] });
  await sleep(80);
  assert.equal(handler.updates.length, 2);
  // A new version of b is pushed and accepted.
  server.update(ADDR, [res('b', '2')], []);
  await until(() => handler.updates.length === 3, 'push of b@2');
  assert.deepEqual(handler.updates[2], { upserts: ['b@2'], removals: [] });
  assert.deepEqual(handler.snapshot(), { a: '1', b: '2', c: '1', d: '1' });
  assert.equal(server.stats().nacks, 1);
});

test('reconnect with initial_resource_versions: only the changed one and the removal, no duplicates', async (t) => {
  const server1 = new DeltaXdsServer({ typeUrls: [ADDR], debounceMs: 10 });
  server1.replaceAll(ADDR, [res('a', '1'), res('b', '1'), res('c', '1')]);
  const first = await listen(t, server1);
  const handler = new RecordingHandler(ADDR);
  const client = newClient(t, first.port, [handler]);
  client.start();
  await once(client, 'synced');
  assert.deepEqual(handler.updates, [{ upserts: ['a@1', 'b@1', 'c@1'], removals: [] }]);

  const disconnected = once<XdsStreamError>(client, 'disconnected');
  server1.close();
  first.grpcServer.forceShutdown();
  const err = await disconnected;
  assert.equal(err.code, 'AMBIT_ERR_XDS_STREAM');
  assert.deepEqual(handler.snapshot(), { a: '1', b: '1', c: '1' }, 'last-known-good state is kept while disconnected');

  const server2 = new DeltaXdsServer({ typeUrls: [ADDR], debounceMs: 10 });
  server2.replaceAll(ADDR, [res('a', '1'), res('b', '2')]);
  await listen(t, server2, first.port);
  await once(client, 'synced');
  assert.deepEqual(handler.updates.slice(1), [{ upserts: ['b@2'], removals: ['c'] }]);
  await sleep(80);
  assert.equal(handler.updates.length, 2, 'nothing else is pushed');
  assert.deepEqual(handler.snapshot(), { a: '1', b: '2' });
  assert.equal(server2.stats().pushes, 1);
});

test('client survives server death and reconnects with backoff', async (t) => {
  const server1 = new DeltaXdsServer({ typeUrls: [ADDR], debounceMs: 10 });
  server1.replaceAll(ADDR, [res('a', '1')]);
  const first = await listen(t, server1);
  const handler = new RecordingHandler(ADDR);
  const client = newClient(t, first.port, [handler]);
  const disconnects: XdsStreamError[] = [];
  client.on('disconnected', (e: XdsStreamError) => disconnects.push(e));
  client.start();
  await once(client, 'synced');

  first.grpcServer.forceShutdown();
  server1.close();
  await until(() => disconnects.length >= 1, 'first disconnect');
  // Down for a while: the client keeps retrying (failed attempts) with growing delays.
  await sleep(400);
  assert.ok(disconnects.length >= 3, `expected several failed attempts, got ${disconnects.length}`);
  assert.ok(disconnects.length <= 8, `backoff should slow retries down, got ${disconnects.length} in 400 ms`);
  assert.ok(['backoff', 'connecting'].includes(client.state), client.state);
  assert.deepEqual(handler.snapshot(), { a: '1' });

  const server2 = new DeltaXdsServer({ typeUrls: [ADDR], debounceMs: 10 });
  server2.replaceAll(ADDR, [res('a', '1'), res('z', '1')]);
  await listen(t, server2, first.port);
  await once(client, 'synced', 10_000);
  assert.equal(client.state, 'streaming');
  assert.deepEqual(handler.updates.at(-1), { upserts: ['z@1'], removals: [] });
  assert.equal(server2.stats().connections, 1);

  await client.close();
  assert.equal(client.state, 'closed');
  await until(() => server2.stats().connections === 0, 'server sees the graceful close');
});

test('authenticate hook: missing bearer token is UNAUTHENTICATED; a token is accepted', async (t) => {
  const seen: string[] = [];
  const server = new DeltaXdsServer({
    typeUrls: [ADDR],
    authenticate: (md, peer) => {
      seen.push(peer);
      const auth = md.get('authorization')[0];
      if (typeof auth !== 'string' || !auth.startsWith('Bearer ')) return { ok: false, code: grpc.status.UNAUTHENTICATED, message: 'missing bearer token' };
      return { ok: true, principal: `token:${auth.slice(7)}` };
    },
  });
  server.replaceAll(ADDR, [res('a', '1')]);
  const { port } = await listen(t, server);

  const anonymous = newClient(t, port, [new RecordingHandler(ADDR)]);
  const denied = once<XdsStreamError>(anonymous, 'disconnected');
  anonymous.start();
  const err = await denied;
  assert.equal(err.grpcCode, grpc.status.UNAUTHENTICATED);
  assert.match(err.details, /missing bearer token/);
  await anonymous.close();
  assert.equal(server.stats().connections, 0);

  // Headers from a function are rebuilt on every attempt (a rotated token is re-read).
  const handler = new RecordingHandler(ADDR);
  const tokens = [undefined, 'abc'];
  let attempts = 0;
  const authed = new DeltaXdsClient({
    address: `127.0.0.1:${port}`,
    credentials: grpc.credentials.createInsecure(),
    node: NODE,
    handlers: [handler],
    metadata: () => {
      const tok = tokens[attempts++];
      if (tok === undefined) throw new Error('token file not there yet');
      return { authorization: `Bearer ${tok}`, clusterid: 'Kubernetes' };
    },
  });
  t.after(() => authed.close());
  const failed = once<XdsStreamError>(authed, 'disconnected');
  authed.start();
  assert.match((await failed).details, /token file not there yet/);
  await once(authed, 'synced');
  assert.equal(attempts, 2);
  assert.deepEqual(handler.snapshot(), { a: '1' });
  assert.equal(server.connectionsInfo()[0]?.principal, 'token:abc');
  assert.match(seen[0] ?? '', /127\.0\.0\.1/);
});

test('reconnect attempts follow the backoff schedule on the injected clock (10, 20, 40 ms ...)', async (t) => {
  // A port with nothing listening on 127.0.0.1: bind, then shut down.
  const probe = new grpc.Server();
  const port = await new Promise<number>((resolve, reject) =>
    probe.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  probe.forceShutdown();
  const clock = new FakeClock(0);
  const client = new DeltaXdsClient({ address: `127.0.0.1:${port}`, credentials: grpc.credentials.createInsecure(), node: NODE, handlers: [new RecordingHandler(ADDR)], clock });
  t.after(() => client.close());
  let disconnects = 0;
  client.on('disconnected', () => disconnects++);
  client.start();
  assert.equal(client.state, 'connecting');
  await until(() => disconnects === 1, 'first failure');
  assert.equal(client.state, 'backoff');
  for (const [i, delay] of [10, 20, 40, 80].entries()) {
    clock.advance(delay - 1);
    await sleep(30);
    assert.equal(disconnects, i + 1, `no attempt before ${delay} ms`);
    assert.equal(client.state, 'backoff');
    clock.advance(1);
    assert.equal(client.state, 'connecting', `attempt after ${delay} ms`);
    await until(() => disconnects === i + 2, `failure ${i + 2}`);
  }
});

test('a handler that throws rejects the whole response; unknown types and garbage do not hurt the server', async (t) => {
  const server = new DeltaXdsServer({ typeUrls: [ADDR], debounceMs: 5 });
  server.replaceAll(ADDR, [res('a', '1'), res('b', '1')]);
  const { port } = await listen(t, server);
  let calls = 0;
  const thrower: XdsTypeHandler = {
    typeUrl: ADDR,
    apply: () => {
      calls++;
      throw new Error('boom');
    },
  };
  const client = newClient(t, port, [thrower]);
  const nack = once<XdsNackEvent>(server, 'nack');
  client.start();
  const ev = await nack;
  assert.match(ev.message, /a: handler failed: boom; b: handler failed: boom/);
  assert.deepEqual(client.heldVersions(ADDR), {});
  assert.equal(calls, 1);
  await client.close();

  // A client subscribing to a type the server does not serve gets nothing for it but stays connected.
  const other = new RecordingHandler('type.googleapis.com/unknown.Type');
  const addr = new RecordingHandler(ADDR);
  const c2 = newClient(t, port, [addr, other]);
  c2.start();
  await until(() => addr.updates.length === 1, 'known type served');
  await sleep(50);
  assert.equal(other.updates.length, 0);
  assert.equal(c2.state, 'streaming');
  await c2.close();

  // Undecodable bytes end that one stream with a status; the server keeps serving.
  const Raw = grpc.makeGenericClientConstructor(
    { X: { path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources', requestStream: true, responseStream: true, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b } },
    'Raw',
  );
  const raw = new Raw(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.after(() => raw.close());
  const call = raw.makeBidiStreamRequest<Buffer, Buffer>('/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources', (b) => b, (b) => b, new grpc.Metadata());
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  call.on('error', () => {});
  call.write(Buffer.from([0x0a, 0xff, 0xff]));
  assert.equal((await status).code, grpc.status.INVALID_ARGUMENT);
  const again = new RecordingHandler(ADDR);
  const c3 = newClient(t, port, [again]);
  c3.start();
  await once(c3, 'synced');
  assert.deepEqual(again.snapshot(), { a: '1', b: '1' });
});
