/** xDS Node id build/parse (ztunnel format) and the reconnect backoff schedule. */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { FakeClock } from '../../src/common/clock.js';
import { Backoff } from '../../src/xds/backoff.js';
import { XdsInvalidNodeIdError } from '../../src/xds/errors.js';
import { buildNode, buildNodeId, parseNodeId } from '../../src/xds/node.js';

describe('node id', () => {
  test('ztunnel format by default', () => {
    assert.equal(buildNodeId({ instanceIp: '10.0.0.5', podName: 'ztunnel-abc', podNamespace: 'istio-system' }), 'ztunnel~10.0.0.5~ztunnel-abc.istio-system~istio-system.svc.cluster.local');
    assert.equal(buildNodeId({ role: 'ambit', instanceIp: 'fd00::1', podName: 'p', podNamespace: 'ns', dnsDomain: 'corp.local' }), 'ambit~fd00::1~p.ns~ns.svc.corp.local');
  });

  test('parse inverts build', () => {
    const parts = { role: 'ztunnel', instanceIp: '10.0.0.5', podName: 'ztunnel-abc', podNamespace: 'istio-system', dnsDomain: 'cluster.local' };
    const r = parseNodeId(buildNodeId(parts));
    assert.ok(r.ok);
    assert.deepEqual(r.value, parts);
  });

  for (const bad of ['', 'ztunnel', 'a~b~c', 'ztunnel~1.2.3.4~podns~ns.svc.cluster.local', 'ztunnel~1.2.3.4~pod.ns~other.svc.cluster.local', 'ztunnel~~pod.ns~ns.svc.cluster.local', 'ztunnel~1~pod.ns~ns.svc.', 'a~b~c~d~e']) {
    test(`rejects ${JSON.stringify(bad)} as a value`, () => {
      const r = parseNodeId(bad);
      assert.equal(r.ok, false);
      if (!r.ok) {
        assert.ok(r.error instanceof XdsInvalidNodeIdError);
        assert.equal(r.error.code, 'AMBIT_ERR_XDS_INVALID_NODE_ID');
      }
    });
  }

  test('metadata carries NAME, NAMESPACE, INSTANCE_IPS, NODE_NAME and extras that cannot override them', () => {
    const node = buildNode({ instanceIp: '10.0.0.5', instanceIps: ['10.0.0.5', 'fd00::5'], podName: 'z', podNamespace: 'istio-system', nodeName: 'node-1', cluster: 'Kubernetes', extraMetadata: { NAME: 'evil', ISTIO_VERSION: '1.2' } });
    assert.equal(node.id, 'ztunnel~10.0.0.5~z.istio-system~istio-system.svc.cluster.local');
    assert.deepEqual(node.metadata, { NAME: 'z', NAMESPACE: 'istio-system', INSTANCE_IPS: '10.0.0.5,fd00::5', NODE_NAME: 'node-1', ISTIO_VERSION: '1.2' });
    assert.equal(node.cluster, 'Kubernetes');
    assert.equal(buildNode({ instanceIp: '1.1.1.1', podName: 'a', podNamespace: 'b', nodeName: 'n' }).metadata?.INSTANCE_IPS, '1.1.1.1');
  });
});

describe('backoff', () => {
  test('10 ms doubling to 15 s, reset after success', () => {
    const b = new Backoff();
    const seq = Array.from({ length: 14 }, () => b.next());
    assert.deepEqual(seq, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 15000, 15000, 15000]);
    assert.equal(b.attempts, 14);
    b.reset();
    assert.equal(b.next(), 10);
  });

  test('drives retries on a fake clock at the scheduled times', () => {
    const clock = new FakeClock(0);
    const b = new Backoff({ initialMs: 10, maxMs: 50 });
    const attempts: number[] = [];
    const attempt = (): void => {
      attempts.push(clock.now());
      if (attempts.length < 6) clock.setTimeout(attempt, b.next());
    };
    clock.setTimeout(attempt, b.next());
    clock.advance(1000);
    assert.deepEqual(attempts, [10, 30, 70, 120, 170, 220]);
    assert.equal(clock.pendingTimers, 0);
  });
});
