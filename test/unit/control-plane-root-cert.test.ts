/**
 * RootCertPublisher against an in-memory fake of the narrow Kubernetes
 * interface, a fake namespace informer and a fake clock: which namespaces get
 * istio-ca-root-cert, what an existing ConfigMap keeps, rotation, races
 * (AlreadyExists, Conflict), RBAC denial and API failures as values, the
 * periodic repair, and shutdown.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { KubernetesObject } from '@kubernetes/client-node';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { InformerFactory, ObjectInformer } from '../../src/control-plane/kube-source.js';
import {
  ROOT_CERT_CONFIGMAP,
  ROOT_CERT_KEY,
  RootCertPublisher,
  startRootCertPublisher,
  type RootCertConfigMap,
  type RootCertKube,
  type RootCertNamespace,
} from '../../src/control-plane/root-cert-publisher.js';

const PEM1 = '-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n';
const PEM2 = '-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n';

const apiError = (code: number, reason: string): Error => Object.assign(new Error(`HTTP-Code: ${code} Message: ${reason}`), { code, body: JSON.stringify({ kind: 'Status', code, reason }) });

class FakeKube implements RootCertKube {
  namespaces: RootCertNamespace[] = [];
  readonly cms = new Map<string, RootCertConfigMap & { resourceVersion: string }>();
  readonly calls: string[] = [];
  rv = 0;
  /** One-shot failures by `${op} ${ns}`. */
  readonly failOnce = new Map<string, Error>();
  failAlways: ((op: string, ns: string) => Error | undefined) | undefined;
  /** Namespaces whose ConfigMap the next get does not see (it is created concurrently). */
  readonly hideOnce = new Set<string>();

  #fail(op: string, ns: string): void {
    this.calls.push(`${op} ${ns}`);
    const e = this.failAlways?.(op, ns) ?? this.failOnce.get(`${op} ${ns}`);
    this.failOnce.delete(`${op} ${ns}`);
    if (e) throw e;
  }

  ns(name: string, extra: Partial<RootCertNamespace> = {}): void {
    this.namespaces.push({ name, labels: {}, terminating: false, ...extra });
  }

  listNamespaces(): Promise<readonly RootCertNamespace[]> {
    try {
      this.#fail('list', '*');
    } catch (e) {
      return Promise.reject(e);
    }
    return Promise.resolve([...this.namespaces]);
  }

  async getConfigMap(ns: string, name: string): Promise<RootCertConfigMap | undefined> {
    await Promise.resolve();
    this.#fail('get', ns);
    if (this.hideOnce.delete(ns)) return undefined;
    const cm = this.cms.get(`${ns}/${name}`);
    return cm && { ...cm, data: { ...cm.data }, labels: { ...cm.labels } };
  }

  async createConfigMap(cm: RootCertConfigMap): Promise<void> {
    await Promise.resolve();
    this.#fail('create', cm.namespace);
    if (this.cms.has(`${cm.namespace}/${cm.name}`)) throw apiError(409, 'AlreadyExists');
    this.cms.set(`${cm.namespace}/${cm.name}`, { ...cm, resourceVersion: String(++this.rv) });
  }

  async replaceConfigMap(cm: RootCertConfigMap): Promise<void> {
    await Promise.resolve();
    this.#fail('replace', cm.namespace);
    const cur = this.cms.get(`${cm.namespace}/${cm.name}`);
    if (!cur) throw apiError(404, 'NotFound');
    if (cm.resourceVersion !== cur.resourceVersion) throw apiError(409, 'Conflict');
    this.cms.set(`${cm.namespace}/${cm.name}`, { ...cm, resourceVersion: String(++this.rv) });
  }

  pem(ns: string): string | undefined {
    return this.cms.get(`${ns}/${ROOT_CERT_CONFIGMAP}`)?.data[ROOT_CERT_KEY];
  }
}

class FakeInformer implements ObjectInformer {
  readonly handlers = new Map<string, Array<(o?: unknown) => void>>();
  started = 0;
  stopped = 0;
  on(verb: string, cb: (o: any) => void): void { // eslint-disable-line @typescript-eslint/no-explicit-any
    this.handlers.set(verb, [...(this.handlers.get(verb) ?? []), cb]);
  }
  start(): Promise<void> {
    this.started++;
    return Promise.resolve();
  }
  stop(): Promise<void> {
    this.stopped++;
    return Promise.resolve();
  }
  emit(verb: 'add' | 'update' | 'error', o?: KubernetesObject): void {
    for (const h of this.handlers.get(verb) ?? []) h(o);
  }
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

function setup(): { kube: FakeKube; clock: FakeClock; informer: FakeInformer; informers: InformerFactory; paths: string[] } {
  const kube = new FakeKube();
  for (const n of ['default', 'kube-system', 'kube-public', 'kube-node-lease', 'shop']) kube.ns(n);
  kube.ns('leaving', { terminating: true });
  const informer = new FakeInformer();
  const paths: string[] = [];
  return {
    kube,
    clock: new FakeClock(0),
    informer,
    paths,
    informers: (t) => {
      paths.push(t.path);
      return informer;
    },
  };
}

describe('root-cert publisher', () => {
  test('start: every namespace but the ignored and terminating ones; existing ConfigMaps keep their other keys', async () => {
    const { kube, clock, informers, paths } = setup();
    kube.cms.set(`shop/${ROOT_CERT_CONFIGMAP}`, { namespace: 'shop', name: ROOT_CERT_CONFIGMAP, labels: { owner: 'me' }, data: { [ROOT_CERT_KEY]: 'old', other: 'x' }, resourceVersion: '7' });
    const { publisher, initial } = await startRootCertPublisher({ kube, rootCertPem: PEM1, logger: silentLogger(), clock, informers });
    try {
      assert.deepEqual(initial.created, ['default', 'kube-system']);
      assert.deepEqual(initial.updated, ['shop']);
      assert.deepEqual(initial.skipped, ['kube-node-lease', 'kube-public', 'leaving']);
      assert.deepEqual(initial.failed, {});
      assert.equal(kube.pem('default'), PEM1);
      assert.deepEqual(kube.cms.get(`default/${ROOT_CERT_CONFIGMAP}`)?.labels, { 'istio.io/config': 'true' });
      assert.deepEqual(kube.cms.get(`shop/${ROOT_CERT_CONFIGMAP}`)?.data, { [ROOT_CERT_KEY]: PEM1, other: 'x' });
      assert.deepEqual(kube.cms.get(`shop/${ROOT_CERT_CONFIGMAP}`)?.labels, { owner: 'me' });
      assert.equal(kube.pem('kube-public'), undefined);
      assert.deepEqual(paths, ['/api/v1/namespaces']);
      // A second pass writes nothing.
      const n = kube.calls.length;
      const again = await publisher.syncAll();
      assert.deepEqual(again.unchanged, ['default', 'kube-system', 'shop']);
      assert.deepEqual(kube.calls.slice(n).filter((c) => !c.startsWith('get')), ['list *']);
    } finally {
      await publisher.close();
    }
  });

  test('a namespace added (watch event) gets it; a filtered one does not', async () => {
    const { kube, clock, informer, informers } = setup();
    const publisher = new RootCertPublisher({ kube, rootCertPem: PEM1, logger: silentLogger(), clock, informers, namespaceFilter: (ns) => ns.labels['mesh'] !== 'off' });
    await publisher.start();
    try {
      informer.emit('add', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'late' } });
      informer.emit('add', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'optout', labels: { mesh: 'off' } } });
      informer.emit('update', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'dying' }, status: { phase: 'Terminating' } } as KubernetesObject);
      await settle();
      assert.equal(kube.pem('late'), PEM1);
      assert.equal(kube.pem('optout'), undefined);
      assert.equal(kube.pem('dying'), undefined);
    } finally {
      await publisher.close();
    }
  });

  test('rotation: a trust bundle replaces the root everywhere; the same root again is a no-op', async () => {
    const { kube, clock } = setup();
    const publisher = new RootCertPublisher({ kube, rootCertPem: PEM1, logger: silentLogger(), clock, resyncMs: 0 });
    await publisher.start();
    const s = await publisher.setRoot([PEM1, PEM2.trimEnd()]);
    assert.deepEqual(s.updated, ['default', 'kube-system', 'shop']);
    assert.equal(kube.pem('shop'), PEM1 + PEM2);
    const n = kube.calls.length;
    const same = await publisher.setRoot(PEM1 + PEM2);
    assert.deepEqual(same.updated, []);
    assert.equal(kube.calls.length, n, 'no API call');
    assert.equal(clock.pendingTimers, 0, 'resyncMs 0: no timer');
    await publisher.close();
  });

  test('races: AlreadyExists on create and Conflict on replace are retried by reading again', async () => {
    const { kube, clock } = setup();
    const publisher = new RootCertPublisher({ kube, rootCertPem: PEM1, logger: silentLogger(), clock, resyncMs: 0 });
    // Someone else creates it between our get and create.
    kube.failOnce.set('create default', apiError(409, 'AlreadyExists'));
    kube.cms.set(`default/${ROOT_CERT_CONFIGMAP}`, { namespace: 'default', name: ROOT_CERT_CONFIGMAP, labels: {}, data: { [ROOT_CERT_KEY]: 'theirs' }, resourceVersion: '1' });
    kube.hideOnce.add('default');
    kube.failOnce.set('replace shop', apiError(409, 'Conflict'));
    kube.cms.set(`shop/${ROOT_CERT_CONFIGMAP}`, { namespace: 'shop', name: ROOT_CERT_CONFIGMAP, labels: {}, data: { [ROOT_CERT_KEY]: 'old' }, resourceVersion: '3' });
    const s = await publisher.start();
    assert.deepEqual(s.failed, {});
    assert.equal(kube.pem('default'), PEM1);
    assert.equal(kube.pem('shop'), PEM1);
    assert.equal(kube.calls.filter((c) => c === 'get shop').length, 2, 'read again after the conflict');
    assert.deepEqual(kube.calls.filter((c) => c.endsWith(' default')), ['get default', 'create default', 'get default', 'replace default'], 'read again after AlreadyExists, then replaced');
    await publisher.close();
  });

  test('forbidden and failing API calls are values (summary, log), never throws; the namespace vanishing is a skip', async () => {
    const { kube, clock } = setup();
    kube.failAlways = (op, ns) => (op === 'create' && ns === 'default' ? apiError(403, 'Forbidden') : op === 'get' && ns === 'shop' ? new Error('socket hang up') : op === 'create' && ns === 'kube-system' ? apiError(404, 'NotFound') : undefined);
    const publisher = new RootCertPublisher({ kube, rootCertPem: PEM1, logger: silentLogger(), clock, resyncMs: 0 });
    const s = await publisher.start();
    assert.deepEqual(Object.keys(s.failed).sort(), ['default', 'shop']);
    assert.match(s.failed.default ?? '', /403/);
    assert.match(s.failed.shop ?? '', /socket hang up/);
    assert.ok(s.skipped.includes('kube-system'));
    kube.failAlways = (op) => (op === 'list' ? new Error('api down') : undefined);
    const down = await publisher.syncAll();
    assert.deepEqual(down.failed, { '*': 'api down' });
    await publisher.close();
  });

  test('a namespace watch that cannot start is retried, not fatal', async () => {
    const { kube, clock, informer, informers } = setup();
    let fails = 1;
    informer.start = () => {
      informer.started++;
      return fails-- > 0 ? Promise.reject(new Error('api down')) : Promise.resolve();
    };
    const { publisher } = await startRootCertPublisher({ kube, rootCertPem: PEM1, logger: silentLogger(), clock, informers, resyncMs: 0 });
    assert.equal(informer.started, 1);
    clock.advance(1000);
    await settle();
    assert.equal(informer.started, 2, 'restarted after 1 s');
    informer.emit('error', undefined);
    clock.advance(1000);
    await settle();
    assert.equal(informer.started, 3, 'a watch error restarts it too');
    await publisher.close();
    clock.advance(5000);
    assert.equal(informer.started, 3, 'not after close');
  });

  test('the periodic resync repairs a deleted or edited ConfigMap; close stops it and the watch', async () => {
    const { kube, clock, informer, informers } = setup();
    const publisher = new RootCertPublisher({ kube, rootCertPem: PEM1, logger: silentLogger(), clock, informers, resyncMs: 30_000 });
    await publisher.start();
    kube.cms.delete(`default/${ROOT_CERT_CONFIGMAP}`);
    const shop = kube.cms.get(`shop/${ROOT_CERT_CONFIGMAP}`);
    assert.ok(shop);
    kube.cms.set(`shop/${ROOT_CERT_CONFIGMAP}`, { ...shop, data: { [ROOT_CERT_KEY]: 'tampered' }, resourceVersion: '99' });
    clock.advance(29_999);
    await settle();
    assert.equal(kube.pem('default'), undefined, 'not before the period');
    clock.advance(1);
    await settle();
    assert.equal(kube.pem('default'), PEM1);
    assert.equal(kube.pem('shop'), PEM1);
    assert.equal(clock.pendingTimers, 1, 'the next resync is scheduled');
    await publisher.close();
    assert.equal(clock.pendingTimers, 0);
    assert.equal(informer.stopped, 1);
    informer.emit('add', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'after-close' } });
    await settle();
    assert.equal(kube.pem('after-close'), undefined, 'nothing published after close');
  });

  test('events for one namespace while it is being reconciled coalesce (one create)', async () => {
    const { kube, clock } = setup();
    kube.namespaces = [];
    const publisher = new RootCertPublisher({ kube, rootCertPem: PEM1, logger: silentLogger(), clock, resyncMs: 0 });
    const ns: RootCertNamespace = { name: 'busy', labels: {}, terminating: false };
    const rs = await Promise.all([publisher.namespaceChanged(ns), publisher.namespaceChanged(ns), publisher.namespaceChanged(ns)]);
    await settle();
    assert.deepEqual(rs, ['created', 'created', 'created']);
    assert.equal(kube.calls.filter((c) => c === 'create busy').length, 1);
    assert.equal(kube.calls.filter((c) => c === 'get busy').length, 2, 'one follow-up pass for the events that came during the first');
    await publisher.close();
  });
});
