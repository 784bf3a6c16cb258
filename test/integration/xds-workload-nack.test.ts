/**
 * NACK of invalid workload resources, end to end over real gRPC (loopback):
 * the control plane's xDS server pushes three Addresses in one response, one
 * with a 5-byte IP and one with an unknown tunnel_protocol enum value (bytes
 * crafted with protobufjs, bypassing our encoder's validation, as a buggy or
 * newer control plane might send). The agent-side WorkloadStore applies the
 * valid one and the client NACKs with an error_detail naming the two others;
 * the server counts the NACK and does not resend the same versions.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/common/logger.js';
import { ipToBytes } from '../../src/workload-api/ip.js';
import { workloadApiTypes } from '../../src/workload-api/proto.js';
import { WorkloadStore } from '../../src/workload-api/store.js';
import { ADDRESS_TYPE_URL } from '../../src/workload-api/types.js';
import { DeltaXdsClient } from '../../src/xds/delta-client.js';
import { DeltaXdsServer } from '../../src/xds/delta-server.js';
import { buildNode } from '../../src/xds/node.js';

const T = workloadApiTypes();
function rawAddress(workload: Record<string, unknown>): Buffer {
  // fromObject would reject an unknown enum name; numbers pass through, as on the wire.
  return Buffer.from(T.Address.encode(T.Address.create({ workload: T.Workload.create(workload) })).finish());
}

void test('invalid IP and unknown enum are NACKed with detail; the valid resource of the same push is applied', async (t) => {
  const registry = new Registry();
  const server = new DeltaXdsServer({ typeUrls: [ADDRESS_TYPE_URL], debounceMs: 5, logger: silentLogger(), registry });
  const grpcServer = new grpc.Server();
  const svc = server.service();
  grpcServer.addService(svc.definition, svc.implementation);
  const port = await new Promise<number>((resolve, reject) => grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  t.after(() => grpcServer.forceShutdown());

  const good = { uid: 'Kubernetes//Pod/ns/good', name: 'good', namespace: 'ns', addresses: [ipToBytes('10.244.1.2')], tunnelProtocol: 1 };
  const badIp = { uid: 'Kubernetes//Pod/ns/bad-ip', name: 'bad-ip', namespace: 'ns', addresses: [Uint8Array.from([10, 244, 1, 3, 7])] };
  const badEnum = { uid: 'Kubernetes//Pod/ns/bad-enum', name: 'bad-enum', namespace: 'ns', addresses: [ipToBytes('10.244.1.4')], tunnelProtocol: 7 };
  server.replaceAll(ADDRESS_TYPE_URL, [
    { name: good.uid, version: 'v1', body: rawAddress(good) },
    { name: badIp.uid, version: 'v1', body: rawAddress(badIp) },
    { name: badEnum.uid, version: 'v1', body: rawAddress(badEnum) },
  ]);

  const store = new WorkloadStore();
  const client = new DeltaXdsClient({
    address: `127.0.0.1:${port}`,
    credentials: grpc.credentials.createInsecure(),
    node: buildNode({ instanceIp: '127.0.0.1', podName: 'ztunnel-a', podNamespace: 'istio-system', nodeName: 'node-a' }),
    handlers: [{ typeUrl: ADDRESS_TYPE_URL, apply: (u) => store.applyAddresses({ upserts: u.upserts.map((r) => ({ name: r.name, resource: r.body })), removals: u.removals }) }],
    logger: silentLogger(),
  });
  t.after(() => client.close());
  const nackSeen = once(server, 'nack');
  client.start();
  const [nack] = (await nackSeen) as [{ message: string; code: number }];

  assert.equal(nack.code, 3, 'INVALID_ARGUMENT');
  assert.match(nack.message, /bad-ip.*(4 or 16 bytes)/s);
  assert.match(nack.message, /bad-enum.*tunnel/is);
  assert.ok(store.getWorkload(good.uid), 'the valid workload was applied');
  assert.equal(store.getWorkload(badIp.uid), undefined);
  assert.equal(store.getWorkload(badEnum.uid), undefined);
  assert.equal(store.workloadByIp('', '10.244.1.2')?.name, 'good');

  // No resend of the NACKed versions: nothing more arrives until the resources change.
  const pushesAfterNack = server.stats().pushes;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(server.stats().pushes, pushesAfterNack);
  assert.equal(server.stats().nacks, 1);
  const metrics = await registry.metrics();
  assert.match(metrics, /ambit_xds_nacks_total\{type_url="type.googleapis.com\/istio.workload.Address"\} 1/);

  // A fixed version of one of them is accepted on the next push.
  const fixed = { ...badIp, addresses: [ipToBytes('10.244.1.3')] };
  const applied = new Promise<void>((resolve) => store.on('change', () => store.getWorkload(badIp.uid) && resolve()));
  server.update(ADDRESS_TYPE_URL, [{ name: badIp.uid, version: 'v2', body: rawAddress(fixed) }], []);
  await applied;
  assert.equal(store.workloadByIp('', '10.244.1.3')?.name, 'bad-ip');
});
