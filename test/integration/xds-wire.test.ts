// Wire fidelity of the delta xDS transport, over real gRPC on 127.0.0.1.
// Bytes produced by Ambit's client and server are decoded (and bytes fed to
// them are encoded) with test/fixtures/xds-wire/minimal.proto, an
// independently written description with only the fields checked, so a
// misnumbered field in proto/envoy/** fails here. The raw peers register the
// gRPC path as a literal string and pass bytes through untouched; they also
// check the per-stream headers (authorization, clusterid).
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { DeltaXdsClient, type XdsTypeUpdate } from '../../src/xds/delta-client.js';
import { DeltaXdsServer, type XdsNackEvent } from '../../src/xds/delta-server.js';
import { buildNode } from '../../src/xds/node.js';

const PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources';
const ADDR = 'type.googleapis.com/istio.workload.Address';
const AUTHZ = 'type.googleapis.com/istio.security.Authorization';
const MINIMAL = fileURLToPath(new URL('../../../test/fixtures/xds-wire/minimal.proto', import.meta.url));

const root = protobuf.loadSync(MINIMAL);
const WireReq = root.lookupType('ambit.fixture.xdswire.WireDeltaRequest');
const WireRes = root.lookupType('ambit.fixture.xdswire.WireDeltaResponse');

interface MiniReq {
  node?: { id?: string; cluster?: string; metadata?: { fields?: Record<string, { stringValue?: string }> } };
  typeUrl?: string;
  resourceNamesSubscribe?: string[];
  initialResourceVersions?: Record<string, string>;
  responseNonce?: string;
  errorDetail?: { code?: number; message?: string };
}

interface MiniRes {
  systemVersionInfo?: string;
  typeUrl?: string;
  nonce?: string;
  removedResources?: string[];
  resources?: Array<{ name?: string; version?: string; resource?: { typeUrl?: string; value?: Uint8Array } }>;
}

function decodeReq(b: Buffer): MiniReq {
  return WireReq.toObject(WireReq.decode(b), { arrays: true, objects: true }) as MiniReq;
}

function encodeRes(r: MiniRes): Buffer {
  return Buffer.from(WireRes.encode(WireRes.fromObject(r)).finish());
}

const identity = (b: Buffer): Buffer => b;

const rawDefinition: grpc.ServiceDefinition = {
  DeltaAggregatedResources: {
    path: PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

async function bind(t: TestContext, server: grpc.Server): Promise<number> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  t.after(() => server.forceShutdown());
  return port;
}

async function until(pred: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('client bytes: node id/metadata, wildcard, initial versions, headers, ACK and NACK', async (t) => {
  const requests: MiniReq[] = [];
  let headers: grpc.Metadata | undefined;
  let stream: grpc.ServerDuplexStream<Buffer, Buffer> | undefined;
  const server = new grpc.Server();
  server.addService(rawDefinition, {
    DeltaAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      headers = call.metadata;
      stream = call;
      call.on('data', (b: Buffer) => requests.push(decodeReq(b)));
      call.on('end', () => call.end());
    },
  });
  const port = await bind(t, server);

  const got: XdsTypeUpdate[] = [];
  const node = buildNode({ instanceIp: '10.1.2.3', podName: 'ztunnel-x', podNamespace: 'istio-system', nodeName: 'worker-1', cluster: 'Kubernetes', extraMetadata: { CLUSTER_ID: 'Kubernetes' } });
  const client = new DeltaXdsClient({
    address: `127.0.0.1:${port}`,
    credentials: grpc.credentials.createInsecure(),
    node,
    metadata: { authorization: 'Bearer tok-123', clusterid: 'Kubernetes' },
    handlers: [
      {
        typeUrl: ADDR,
        apply: (u) => {
          got.push(u);
          return { rejected: u.upserts.filter((r) => r.name === 'bad').map((r) => ({ name: r.name, reason: 'no good' })) };
        },
      },
      { typeUrl: AUTHZ, apply: () => ({ rejected: [] }) },
    ],
  });
  t.after(() => client.close());
  client.start();
  await until(() => requests.length === 2, 'two initial requests');

  assert.equal(headers?.get('authorization')[0], 'Bearer tok-123');
  assert.equal(headers?.get('clusterid')[0], 'Kubernetes');
  const [r0, r1] = requests;
  assert.equal(r0?.node?.id, 'ztunnel~10.1.2.3~ztunnel-x.istio-system~istio-system.svc.cluster.local');
  assert.equal(r0?.node?.cluster, 'Kubernetes');
  const md = r0?.node?.metadata?.fields ?? {};
  assert.equal(md.NAME?.stringValue, 'ztunnel-x');
  assert.equal(md.NAMESPACE?.stringValue, 'istio-system');
  assert.equal(md.INSTANCE_IPS?.stringValue, '10.1.2.3');
  assert.equal(md.NODE_NAME?.stringValue, 'worker-1');
  assert.equal(md.CLUSTER_ID?.stringValue, 'Kubernetes');
  assert.equal(r0?.typeUrl, ADDR);
  assert.deepEqual(r0?.resourceNamesSubscribe, [], 'wildcard = empty subscribe list');
  assert.deepEqual(r0?.initialResourceVersions, {});
  assert.equal(r0?.responseNonce ?? '', '', 'no nonce on an initial request');
  assert.equal(r1?.typeUrl, AUTHZ);

  // A response encoded with the minimal proto is decoded by the client.
  stream?.write(
    encodeRes({
      systemVersionInfo: '7',
      typeUrl: ADDR,
      nonce: 'n-1',
      resources: [
        { name: 'good', version: 'v1', resource: { typeUrl: ADDR, value: Buffer.from([1, 2, 3]) } },
        { name: 'bad', version: 'v1', resource: { typeUrl: ADDR, value: Buffer.from([9]) } },
      ],
      removedResources: ['old'],
    }),
  );
  await until(() => requests.length === 3, 'NACK');
  assert.deepEqual(
    got[0]?.upserts.map((r) => [r.name, r.version, [...r.body]]),
    [
      ['good', 'v1', [1, 2, 3]],
      ['bad', 'v1', [9]],
    ],
  );
  assert.deepEqual(got[0]?.removals, ['old']);
  const nack = requests[2];
  assert.equal(nack?.typeUrl, ADDR);
  assert.equal(nack?.responseNonce, 'n-1');
  assert.equal(nack?.errorDetail?.code, 3);
  assert.match(nack?.errorDetail?.message ?? '', /bad: no good/);
  assert.equal(nack?.node, undefined, 'node is sent on the first request of a stream only');

  stream?.write(encodeRes({ systemVersionInfo: '8', typeUrl: AUTHZ, nonce: 'n-2' }));
  await until(() => requests.length === 4, 'ACK');
  assert.equal(requests[3]?.responseNonce, 'n-2');
  assert.equal(requests[3]?.errorDetail, undefined, 'an ACK has no error_detail');
  assert.deepEqual(client.heldVersions(ADDR), { good: 'v1' });
});

test('server bytes: Any-wrapped resources, removals from initial versions, nonce, system version; NACK decoded', async (t) => {
  const xds = new DeltaXdsServer({ typeUrls: [ADDR], debounceMs: 5 });
  xds.replaceAll(ADDR, [
    { name: 'keep', version: '1', body: Buffer.from('k') },
    { name: 'changed', version: '2', body: Buffer.from([0xca, 0xfe]) },
  ]);
  const server = new grpc.Server();
  const svc = xds.service();
  server.addService(svc.definition, svc.implementation);
  const port = await bind(t, server);
  t.after(() => xds.close());

  const Raw = grpc.makeGenericClientConstructor(rawDefinition, 'AggregatedDiscoveryService');
  const raw = new Raw(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.after(() => raw.close());
  const call = raw.makeBidiStreamRequest<Buffer, Buffer>(PATH, identity, identity, new grpc.Metadata());
  const responses: MiniRes[] = [];
  call.on('data', (b: Buffer) => responses.push(WireRes.toObject(WireRes.decode(b), { arrays: true, objects: true }) as MiniRes));
  call.on('error', () => {});
  t.after(() => call.cancel());

  call.write(
    Buffer.from(
      WireReq.encode(
        WireReq.fromObject({
          node: { id: 'ztunnel~10.9.9.9~z.ns~ns.svc.cluster.local', metadata: { fields: { NODE_NAME: { stringValue: 'w9' } } } },
          typeUrl: ADDR,
          initialResourceVersions: { keep: '1', changed: '1', gone: '5' },
        }),
      ).finish(),
    ),
  );
  await until(() => responses.length === 1, 'initial response');
  const r = responses[0];
  assert.equal(r?.typeUrl, ADDR);
  assert.ok(r?.nonce, 'nonce set');
  assert.equal(r?.systemVersionInfo, '1');
  assert.deepEqual(r?.removedResources, ['gone']);
  assert.equal(r?.resources?.length, 1);
  const res0 = r?.resources?.[0];
  assert.equal(res0?.name, 'changed');
  assert.equal(res0?.version, '2');
  assert.equal(res0?.resource?.typeUrl, ADDR);
  assert.deepEqual([...(res0?.resource?.value ?? [])], [0xca, 0xfe]);

  const info = xds.connectionsInfo()[0];
  assert.equal(info?.nodeId, 'ztunnel~10.9.9.9~z.ns~ns.svc.cluster.local');
  assert.equal(info?.metadata.NODE_NAME, 'w9');

  const nacked = new Promise<XdsNackEvent>((resolve) => xds.once('nack', resolve));
  call.write(Buffer.from(WireReq.encode(WireReq.fromObject({ typeUrl: ADDR, responseNonce: r?.nonce, errorDetail: { code: 3, message: 'changed: nope' } })).finish()));
  const ev = await nacked;
  assert.equal(ev.nodeId, info?.nodeId);
  assert.equal(ev.code, 3);
  assert.equal(ev.message, 'changed: nope');
  assert.equal(xds.stats().nacks, 1);

  xds.update(ADDR, [{ name: 'new', version: '1', body: Buffer.from('n') }], ['keep']);
  await until(() => responses.length === 2, 'incremental response');
  assert.equal(responses[1]?.systemVersionInfo, '2');
  assert.notEqual(responses[1]?.nonce, r?.nonce, 'every response has a unique nonce');
  assert.deepEqual(
    responses[1]?.resources?.map((x) => x.name),
    ['new'],
  );
  assert.deepEqual(responses[1]?.removedResources, ['keep']);
});
