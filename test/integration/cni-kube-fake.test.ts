/**
 * Kubernetes mode against a MINIMAL FAKE Kubernetes API server written here
 * (plain HTTP on 127.0.0.1; not a real API server: discovery, list/watch of
 * pods and namespaces, namespace merge-patch, Gateway CRUD, TokenReview).
 * The real client-node code paths run against it: the node component's pod
 * source (list + watch, label changes), `ambit enroll/unenroll` (kubectl
 * label semantics), `ambit waypoint apply/list/delete`, and the CA's
 * TokenReview client. The same scenarios run in manifest mode and must give
 * the same results.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { kubeAuthClientFromConfig } from '../../src/ca/kube-token-authenticator.js';
import { runLabel } from '../../src/cli/enroll-command.js';
import { runWaypoint } from '../../src/cli/waypoint-command.js';
import { apiKubeOps, folderKubeOps, type KubeOps } from '../../src/cni/kube-ops.js';
import { isAmbient, KubePodSource, ManifestPodSource, type PodSource } from '../../src/cni/pod-source.js';
import { kubeInformerFactory } from '../../src/control-plane/kube-source.js';
import { silentLogger } from '../../src/common/logger.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The fake: objects by path, a resourceVersion counter, open watches by collection path. */
class FakeKubeApi {
  readonly objects = new Map<string, Obj>();
  readonly requests: string[] = [];
  readonly watches = new Map<string, Set<ServerResponse>>();
  rv = 1;
  server: Server;

  constructor() {
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  listen(): Promise<number> {
    return new Promise((r) => this.server.listen(0, '127.0.0.1', () => r((this.server.address() as AddressInfo).port)));
  }

  close(): Promise<void> {
    for (const set of this.watches.values()) for (const w of set) w.destroy();
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  static pathOf(o: Obj): string {
    const { kind } = o;
    const ns = o.metadata.namespace as string | undefined;
    if (kind === 'Namespace') return `/api/v1/namespaces/${o.metadata.name}`;
    if (kind === 'Pod') return `/api/v1/namespaces/${ns}/pods/${o.metadata.name}`;
    return `/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/gateways/${o.metadata.name}`;
  }

  put(o: Obj, type: 'ADDED' | 'MODIFIED' = 'ADDED'): void {
    o.metadata.resourceVersion = String(++this.rv);
    this.objects.set(FakeKubeApi.pathOf(o), o);
    this.notify(o, type);
  }

  remove(path: string): Obj | undefined {
    const o = this.objects.get(path);
    if (!o) return undefined;
    this.objects.delete(path);
    o.metadata.resourceVersion = String(++this.rv);
    this.notify(o, 'DELETED');
    return o;
  }

  notify(o: Obj, type: string): void {
    const all = o.kind === 'Namespace' ? '/api/v1/namespaces' : o.kind === 'Pod' ? '/api/v1/pods' : '/apis/gateway.networking.k8s.io/v1/gateways';
    for (const w of this.watches.get(all) ?? []) w.write(JSON.stringify({ type, object: o }) + '\n');
  }

  list(kind: string, ns?: string): Obj[] {
    return [...this.objects.values()].filter((o) => o.kind === kind && (ns === undefined || o.metadata.namespace === ns));
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const p = url.pathname;
    this.requests.push(`${req.method} ${p}${url.searchParams.get('watch') ? '?watch' : ''}`);
    let body = '';
    for await (const c of req) body += String(c);
    const send = (code: number, o: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(o));
    };
    const notFound = () => send(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: `${p} not found` });
    const resource = (name: string, kind: string, namespaced: boolean) => ({ name, singularName: kind.toLowerCase(), kind, namespaced, verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'] });
    if (p === '/api/v1') return send(200, { kind: 'APIResourceList', groupVersion: 'v1', resources: [resource('namespaces', 'Namespace', false), resource('pods', 'Pod', true)] });
    if (p === '/apis/gateway.networking.k8s.io/v1') return send(200, { kind: 'APIResourceList', groupVersion: 'gateway.networking.k8s.io/v1', resources: [resource('gateways', 'Gateway', true)] });
    if (p === '/apis/authentication.k8s.io/v1/tokenreviews' && req.method === 'POST') {
      const tr = JSON.parse(body) as Obj;
      const ok = tr.spec.token === 'good-token' && (tr.spec.audiences as string[]).includes('istio-ca');
      return send(201, {
        ...tr,
        status: ok
          ? { authenticated: true, audiences: ['istio-ca'], user: { username: 'system:serviceaccount:mesh:client', extra: { 'authentication.kubernetes.io/pod-name': ['client'] } } }
          : { authenticated: false, error: 'invalid bearer token' },
      });
    }
    const collections: Record<string, [string, string | undefined]> = {
      '/api/v1/namespaces': ['Namespace', undefined],
      '/api/v1/pods': ['Pod', undefined],
      '/apis/gateway.networking.k8s.io/v1/gateways': ['Gateway', undefined],
    };
    const nsGw = /^\/apis\/gateway\.networking\.k8s\.io\/v1\/namespaces\/([^/]+)\/gateways$/.exec(p);
    const coll = collections[p] ?? (nsGw ? (['Gateway', nsGw[1]] as [string, string]) : undefined);
    if (coll && req.method === 'GET') {
      if (url.searchParams.get('watch') === 'true') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
        const set = this.watches.get(p) ?? new Set();
        set.add(res);
        this.watches.set(p, set);
        res.on('close', () => set.delete(res));
        return;
      }
      return send(200, { kind: `${coll[0]}List`, apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items: this.list(coll[0], coll[1]) });
    }
    if (coll && req.method === 'POST') {
      const o = JSON.parse(body) as Obj;
      o.metadata.namespace ??= coll[1];
      if (this.objects.has(FakeKubeApi.pathOf(o))) return send(409, { kind: 'Status', code: 409, reason: 'AlreadyExists' });
      this.put(o);
      return send(201, o);
    }
    const o = this.objects.get(p);
    if (!o) return notFound();
    if (req.method === 'GET') return send(200, o);
    if (req.method === 'DELETE') return send(200, this.remove(p));
    if (req.method === 'PATCH') {
      if (!String(req.headers['content-type']).includes('merge-patch')) return send(415, { kind: 'Status', code: 415, message: 'only merge-patch' });
      const patch = JSON.parse(body) as Obj;
      const merge = (dst: Obj, src: Obj) => {
        for (const [k, v] of Object.entries(src)) {
          if (v === null) delete dst[k];
          else if (typeof v === 'object' && !Array.isArray(v)) merge((dst[k] ??= {}), v as Obj);
          else dst[k] = v;
        }
      };
      merge(o, patch);
      this.put(o, 'MODIFIED');
      return send(200, o);
    }
    return send(405, { kind: 'Status', code: 405 });
  }
}

const NS = (name: string, labels: Record<string, string> = {}): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const POD = (ns: string, name: string, node: string, labels: Record<string, string> = {}): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, uid: `uid-${name}`, labels },
  spec: { nodeName: node, serviceAccountName: name },
});

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeoutMs) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const capture = () => {
  let text = '';
  return { out: { write: (s: string) => void (text += s), colour: false }, text: () => text };
};

const args = (positionals: string[], values: Record<string, string | boolean> = {}) => ({ positionals, values, rest: [] });

describe('kubernetes mode against a minimal FAKE API server (not a real Kubernetes)', () => {
  let fake: FakeKubeApi;
  let kc: KubeConfig;
  let dir: string;

  before(async () => {
    fake = new FakeKubeApi();
    const port = await fake.listen();
    kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'u', token: 'admin-token' }],
      contexts: [{ name: 'c', cluster: 'fake', user: 'u' }],
      currentContext: 'c',
    });
    dir = mkdtempSync(join(tmpdir(), 'ambit-kube-fake-'));
  });

  after(async () => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The same pods/namespaces in the fake API and in a manifest file. */
  function seed(): void {
    const objs = [NS('mesh', { 'istio.io/dataplane-mode': 'ambient' }), NS('plain'), POD('mesh', 'a', 'node-1'), POD('mesh', 'b', 'node-2'), POD('plain', 'c', 'node-1'), POD('mesh', 'd', 'node-1', { 'istio.io/dataplane-mode': 'none' })];
    for (const o of objs) fake.put(JSON.parse(JSON.stringify(o)) as Obj);
    writeFileSync(join(dir, 'pods.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objs }));
  }

  const ambientOf = (s: PodSource): string[] =>
    [...s.current().pods.values()]
      .filter((p) => isAmbient(p, s.current()))
      .map((p) => `${p.namespace}/${p.name}`)
      .sort();

  test('pod source: list/watch of the node\'s pods gives the same view as manifest mode, and follows label changes', async () => {
    seed();
    const kube = new KubePodSource({ node: 'node-1', informers: kubeInformerFactory(kc), logger: silentLogger() });
    const file = new ManifestPodSource({ node: 'node-1', file: join(dir, 'pods.json'), logger: silentLogger(), pollMs: 50 });
    try {
      await kube.start();
      await file.start();
      assert.deepEqual([...kube.current().pods.keys()].sort(), ['mesh/a', 'mesh/d', 'plain/c'], 'only pods of node-1');
      assert.deepEqual([...kube.current().pods.keys()].sort(), [...file.current().pods.keys()].sort());
      assert.deepEqual(ambientOf(kube), ['mesh/a']);
      assert.deepEqual(ambientOf(kube), ambientOf(file));
      assert.ok(fake.requests.includes('GET /api/v1/pods?watch'), 'the informer watches');

      // Namespace label change (enroll plain) arrives over the watch.
      let changes = 0;
      kube.on('change', () => changes++);
      const patched = fake.objects.get('/api/v1/namespaces/plain') as Obj;
      patched.metadata.labels = { 'istio.io/dataplane-mode': 'ambient' };
      fake.put(patched, 'MODIFIED');
      await until('label change seen', () => ambientOf(kube).includes('plain/c'));
      assert.ok(changes > 0);
      // A new pod on this node, and a deleted one.
      fake.put(POD('mesh', 'e', 'node-1') as Obj);
      fake.remove('/api/v1/namespaces/mesh/pods/a');
      await until('pod add/delete seen', () => ambientOf(kube).join() === 'mesh/e,plain/c');
    } finally {
      await kube.stop();
      await file.stop();
    }
  });

  async function labelScenario(ops: KubeOps): Promise<unknown[]> {
    const results: unknown[] = [];
    const run = async (enroll: boolean, ns: string, values: Record<string, string | boolean> = {}) => {
      const c = capture();
      try {
        await runLabel(args([ns], { output: 'json', ...values }), c.out, enroll, ops);
        results.push(JSON.parse(c.text()));
      } catch (e) {
        results.push({ error: (e as Error).message });
      }
    };
    await run(true, 'shop');
    await run(true, 'shop');
    await run(false, 'shop');
    await run(false, 'shop');
    await run(true, 'legacy');
    await run(true, 'legacy', { overwrite: true });
    results.push(await ops.namespaceLabels('legacy'), await ops.namespaceLabels('shop'));
    return results;
  }

  test('enroll/unenroll: kubectl label semantics through the API, same results as manifest mode', async () => {
    fake.put(NS('shop', { team: 'a' }));
    fake.put(NS('legacy', { 'istio.io/dataplane-mode': 'none' }));
    const folder = mkdtempSync(join(dir, 'manifests-'));
    writeFileSync(join(folder, 'ns.yaml'), '# shop and legacy\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    team: a\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: legacy\n  labels:\n    istio.io/dataplane-mode: none\n');
    const viaApi = await labelScenario(apiKubeOps(kc));
    const viaFolder = await labelScenario(folderKubeOps(folder));
    assert.deepEqual(viaApi, viaFolder);
    assert.deepEqual(
      viaApi.slice(0, 6).map((r) => (r as { result?: string; error?: string }).result ?? 'error'),
      ['labeled', 'unchanged', 'unlabeled', 'unchanged', 'error', 'labeled'],
    );
    assert.match(String((viaApi[4] as { error: string }).error), /already has istio.io\/dataplane-mode=none; use --overwrite/);
    assert.deepEqual(viaApi[6], { 'istio.io/dataplane-mode': 'ambient' });
    assert.deepEqual(viaApi[7], { team: 'a' });
    assert.ok(fake.requests.includes('PATCH /api/v1/namespaces/shop'));
    assert.match(readFileSync(join(folder, 'ns.yaml'), 'utf8'), /^# shop and legacy/, 'comments in the folder are kept');
    await assert.rejects(runLabel(args(['nope']), capture().out, true, apiKubeOps(kc)), /namespace 'nope' not found/);
  });

  test('waypoint apply/list/delete through the API and in a folder', async () => {
    fake.put(NS('shop'));
    for (const ops of [apiKubeOps(kc), folderKubeOps(mkdtempSync(join(dir, 'wp-')))]) {
      const c1 = capture();
      assert.equal(await runWaypoint(args(['apply'], { namespace: 'shop', output: 'json' }), c1.out, ops), 0);
      assert.equal((JSON.parse(c1.text()) as { result: string }).result, 'created');
      const c2 = capture();
      await runWaypoint(args(['apply'], { namespace: 'shop', output: 'json' }), c2.out, ops);
      assert.equal((JSON.parse(c2.text()) as { result: string }).result, 'configured');
      const c3 = capture();
      await runWaypoint(args(['list'], { namespace: 'shop' }), c3.out, ops);
      assert.match(c3.text(), /^NAMESPACE\s+NAME\s+FOR\s+SOURCE\nshop\s+waypoint\s+service/);
      const c4 = capture();
      assert.equal(await runWaypoint(args(['delete'], { namespace: 'shop' }), c4.out, ops), 0);
      assert.equal(await runWaypoint(args(['delete'], { namespace: 'shop' }), capture().out, ops), 1, 'deleting twice: not found');
      const c5 = capture();
      await runWaypoint(args(['list'], { namespace: 'shop', output: 'yaml' }), c5.out, ops);
      assert.equal(c5.text().trim(), '[]');
    }
  });

  test('TokenReview: the CA client authenticates a projected token with audience istio-ca', async () => {
    const client = kubeAuthClientFromConfig(kc);
    const ok = await client.reviewToken('good-token', ['istio-ca']);
    assert.equal(ok.authenticated, true);
    assert.equal(ok.user?.username, 'system:serviceaccount:mesh:client');
    const bad = await client.reviewToken('stolen', ['istio-ca']);
    assert.equal(bad.authenticated, false);
    assert.ok(fake.requests.includes('POST /apis/authentication.k8s.io/v1/tokenreviews'));
  });
});
