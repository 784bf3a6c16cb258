/**
 * KubeSource over a fake list/watch (no API server): initial lists, watch
 * add/update/delete, an invalid object dropped with an issue, a failing
 * informer restarted with backoff while the others keep feeding the store.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KubernetesObject } from '@kubernetes/client-node';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { DEFAULT_WATCH_TARGETS, KubeSource, loadKubeConfig, type KubeWatchTarget, type ObjectInformer } from '../../src/control-plane/kube-source.js';
import { ResourceStore } from '../../src/control-plane/resource-store.js';
import { KubeConfigError } from '../../src/control-plane/errors.js';
import { translate } from '../../src/control-plane/translate.js';
import { formatIssue } from '../../src/control-plane/validation.js';

type Verb = 'add' | 'update' | 'delete' | 'error';

class FakeInformer implements ObjectInformer {
  readonly handlers = new Map<Verb, Array<(x: never) => void>>();
  started = 0;
  stopped = 0;
  constructor(
    readonly target: KubeWatchTarget,
    private readonly initial: KubernetesObject[],
    private readonly failStart: boolean,
  ) {}
  on(verb: Verb, cb: (x: never) => void): void {
    this.handlers.set(verb, [...(this.handlers.get(verb) ?? []), cb]);
  }
  emit(verb: Verb, x: unknown): void {
    for (const h of this.handlers.get(verb) ?? []) h(x as never);
  }
  async start(): Promise<void> {
    this.started++;
    if (this.failStart) throw new Error('404 the server could not find the requested resource');
    // Like client-node: the list items come without apiVersion/kind.
    for (const o of this.initial) this.emit('add', o);
  }
  async stop(): Promise<void> {
    this.stopped++;
  }
}

const pod = (name: string, ip: string, labels: Record<string, string> = {}): KubernetesObject =>
  ({ metadata: { name, namespace: 'shop', labels }, spec: { nodeName: 'n1', serviceAccountName: 'sa' }, status: { podIP: ip } }) as KubernetesObject;

test('lists and watch events feed the store; invalid objects become issues; failed informers retry', async () => {
  const clock = new FakeClock();
  const store = new ResourceStore();
  const informers: FakeInformer[] = [];
  let peerAuthFails = true;
  const source = new KubeSource({
    store,
    clock,
    logger: silentLogger(),
    informers: (t) => {
      const initial =
        t.kind === 'Namespace'
          ? [{ metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } } as KubernetesObject]
          : t.kind === 'Pod'
            ? [pod('a', '10.244.1.1', { app: 'a' })]
            : [];
      const inf = new FakeInformer(t, initial, t.kind === 'PeerAuthentication' && peerAuthFails);
      informers.push(inf);
      return inf;
    },
  });
  try {
    await source.start();
    assert.deepEqual(store.snapshot().counts(), { Namespace: 1, Pod: 1 });
    const t0 = translate(store.snapshot());
    const a = t0.addresses.get('Kubernetes//Pod/shop/a');
    assert.ok(a?.type === 'workload');
    assert.equal(a.workload.tunnelProtocol, 'HBONE');
    assert.equal(source.errors, 1, 'the PeerAuthentication informer failed');

    const podInf = informers.find((i) => i.target.kind === 'Pod') as FakeInformer;
    podInf.emit('add', pod('b', '10.244.1.2'));
    podInf.emit('update', pod('a', '10.244.1.9', { app: 'a' }));
    podInf.emit('add', pod('bad', 'not-an-ip'));
    assert.equal(store.snapshot().list('Pod').length, 1, 'debounced, not applied yet');
    clock.advance(50);
    assert.deepEqual(
      store.snapshot().list<{ podIPs: string[] }>('Pod').map((p) => `${p.name}=${p.spec.podIPs[0] ?? ''}`),
      ['a=10.244.1.9', 'b=10.244.1.2'],
    );
    assert.deepEqual(store.issues().map(formatIssue), ["Pod shop/bad: status.podIP: must be an IP address; got 'not-an-ip'"]);

    // Fixing the bad object clears its issue; deleting removes it.
    podInf.emit('update', pod('bad', '10.244.1.3'));
    podInf.emit('delete', pod('b', '10.244.1.2'));
    clock.advance(50);
    assert.deepEqual(store.issues(), []);
    assert.deepEqual(store.snapshot().list('Pod').map((p) => p.name), ['a', 'bad']);

    // The failed informer is restarted after the backoff, with a new informer.
    peerAuthFails = false;
    clock.advance(1000);
    await new Promise((r) => setImmediate(r));
    const pa = informers.filter((i) => i.target.kind === 'PeerAuthentication');
    assert.equal(pa.length, 2);
    assert.equal(pa[0]?.stopped, 1);
    assert.equal(pa[1]?.started, 1);
    pa[1]?.emit('add', { metadata: { name: 'strict', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } });
    clock.advance(50);
    assert.equal(store.snapshot().list('PeerAuthentication.security.istio.io').length, 1);

    // A watch error after start also restarts (doubling backoff from the reset value).
    podInf.emit('error', new Error('watch closed'));
    assert.equal(source.errors, 2);
  } finally {
    await source.close();
  }
  assert.ok(informers.every((i) => i.stopped >= 1), 'close stops every informer');
  assert.equal(clock.pendingTimers, 0, 'no timers left after close');
});

test('default targets cover every kind of the table with list/watch paths', () => {
  const paths = DEFAULT_WATCH_TARGETS.map((t) => t.path);
  assert.ok(paths.includes('/api/v1/pods'));
  assert.ok(paths.includes('/apis/security.istio.io/v1/authorizationpolicies'));
  assert.ok(paths.includes('/apis/gateway.networking.k8s.io/v1/gateways'));
  assert.equal(DEFAULT_WATCH_TARGETS.length, 16);
});

test('loadKubeConfig: a missing file is a KubeConfigError', () => {
  assert.throws(() => loadKubeConfig('/nonexistent/kubeconfig-4242'), (e: unknown) => e instanceof KubeConfigError && e.code === 'AMBIT_ERR_CONTROL_PLANE_KUBECONFIG');
});
