/**
 * Kubernetes mode against a MINIMAL FAKE Kubernetes API server
 * (test/helpers/fake-kube-api.ts: plain HTTP on 127.0.0.1; not a real API
 * server: discovery, list/watch, CRUD of a few kinds, TokenReview).
 * The real client-node code paths run against it: the node component's pod
 * source (list + watch, label changes), `ambit enroll/unenroll` (kubectl
 * label semantics), `ambit waypoint apply/list/delete`, and the CA's
 * TokenReview client. The same scenarios run in manifest mode and must give
 * the same results.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { kubeAuthClientFromConfig } from '../../src/ca/kube-token-authenticator.js';
import { runLabel } from '../../src/cli/enroll-command.js';
import { runWaypoint } from '../../src/cli/waypoint-command.js';
import { runStatus, statusCommand } from '../../src/cli/status-command.js';
import { parseCommandArgs } from '../../src/cli/command.js';
import { checkDeploy } from '../../src/cni/deploy-check.js';
import { commands } from '../../src/cli/commands.js';
import { ROOT_CERT_CONFIGMAP, ROOT_CERT_KEY, startRootCertPublisher } from '../../src/control-plane/root-cert-publisher.js';
import { apiKubeOps, folderKubeOps, type KubeOps } from '../../src/cni/kube-ops.js';
import { isAmbient, KubePodSource, ManifestPodSource, type PodSource } from '../../src/cni/pod-source.js';
import { kubeInformerFactory } from '../../src/control-plane/kube-source.js';
import { silentLogger } from '../../src/common/logger.js';
import { FakeKubeApi } from '../helpers/fake-kube-api.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

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
      const patched = fake.get('Namespace', undefined, 'plain') as Obj;
      patched.metadata.labels = { 'istio.io/dataplane-mode': 'ambient' };
      fake.put(patched, 'MODIFIED');
      await until('label change seen', () => ambientOf(kube).includes('plain/c'));
      assert.ok(changes > 0);
      // A new pod on this node, and a deleted one.
      fake.put(POD('mesh', 'e', 'node-1') as Obj);
      fake.remove('Pod', 'mesh', 'a');
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
      if (ops.mode === 'api') {
        // No gateway deployment controller: apply wrote what runs the waypoint too.
        const sa = fake.get('ServiceAccount', 'shop', 'waypoint');
        const svc = fake.get('Service', 'shop', 'waypoint') as Obj;
        const dep = fake.get('Deployment', 'shop', 'waypoint') as Obj;
        assert.ok(sa, 'ServiceAccount');
        assert.deepEqual(
          svc.spec.ports.map((p: Obj) => [p.name, p.port, p.appProtocol]),
          [
            ['status-port', 15021, 'tcp'],
            ['mesh', 15008, 'hbone'],
          ],
        );
        assert.equal(svc.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'waypoint');
        const podT = dep.spec.template;
        assert.equal(podT.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'waypoint');
        assert.equal(podT.metadata.labels['istio.io/dataplane-mode'], 'none');
        const c = podT.spec.containers[0] as Obj;
        assert.deepEqual(c.args.slice(0, 4), ['waypoint', 'run', '--name=waypoint', '--namespace=shop']);
        assert.ok(c.args.includes('--xds-address=istiod.istio-system.svc:15012'));
        assert.ok(c.args.includes('--pod-ip=$(POD_IP)'));
        assert.deepEqual(c.readinessProbe.httpGet, { path: '/healthz/ready', port: 15021 });
        assert.equal(podT.spec.volumes.find((v: Obj) => v.projected).projected.sources[0].serviceAccountToken.audience, 'istio-ca');
        assert.equal(podT.spec.volumes.find((v: Obj) => v.configMap).configMap.name, 'istio-ca-root-cert');
        // What was applied passes the same checks as deploy/.
        const applied = [fake.get('Gateway', 'shop', 'waypoint'), sa, svc, dep].map((o) => {
          const { resourceVersion: _r, uid: _u, ...metadata } = (o as Obj).metadata as Obj;
          return { ...(o as Obj), metadata };
        });
        const flags = Object.fromEntries(commands.map((x) => [x.name, Object.keys(x.flags)]));
        const r = checkDeploy(applied, { commands: flags, agentMetricsPort: 15020, agentReadinessPort: 15021, controlPlaneXdsPort: 15012, controlPlaneMonitoringPort: 15014, components: ['waypoint'] });
        assert.deepEqual(r.problems, []);
      }
      const c4 = capture();
      assert.equal(await runWaypoint(args(['delete'], { namespace: 'shop' }), c4.out, ops), 0);
      if (ops.mode === 'api') {
        for (const kind of ['Gateway', 'ServiceAccount', 'Service', 'Deployment']) assert.equal(fake.get(kind, 'shop', 'waypoint'), undefined, `${kind} deleted`);
        assert.match(c4.text(), /^waypoint shop\/waypoint deleted\n {2}deployment\/waypoint deleted\n {2}service\/waypoint deleted\n {2}serviceaccount\/waypoint deleted\n$/);
      }
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
  test('root-cert publisher: istio-ca-root-cert in every namespace, new namespaces, rotation, repair, RBAC', async () => {
    const ca = (n: string) => `-----BEGIN CERTIFICATE-----\nroot-${n}\n-----END CERTIFICATE-----\n`;
    fake.strictNamespaces = true;
    for (const n of ['rc-a', 'rc-b', 'kube-public', 'kube-system']) fake.put(NS(n));
    fake.put({ ...NS('rc-gone'), status: { phase: 'Terminating' } });
    fake.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: ROOT_CERT_CONFIGMAP, namespace: 'rc-b', labels: { team: 'b' } }, data: { [ROOT_CERT_KEY]: 'stale', extra: 'kept' } });
    const cm = (ns: string): Obj | undefined => fake.get('ConfigMap', ns, ROOT_CERT_CONFIGMAP);
    const { publisher, initial } = await startRootCertPublisher({ kube: apiKubeOps(kc), rootCertPem: ca('1'), logger: silentLogger(), informers: kubeInformerFactory(kc), resyncMs: 200 });
    try {
      assert.ok(initial.created.includes('rc-a') && initial.created.includes('kube-system'), `created: ${initial.created.join(',')}`);
      assert.deepEqual(initial.updated, ['rc-b']);
      assert.ok(initial.skipped.includes('kube-public') && initial.skipped.includes('rc-gone'));
      assert.equal(cm('rc-a')?.data[ROOT_CERT_KEY], ca('1'));
      assert.deepEqual(cm('rc-a')?.metadata.labels, { 'istio.io/config': 'true' });
      assert.deepEqual(cm('rc-b')?.data, { [ROOT_CERT_KEY]: ca('1'), extra: 'kept' }, 'other keys of an existing ConfigMap are kept');
      assert.equal(cm('kube-public'), undefined);
      assert.equal(cm('rc-gone'), undefined);
      // A namespace created later gets it from the watch.
      fake.put(NS('rc-new'));
      await until('ConfigMap in the new namespace', () => cm('rc-new')?.data[ROOT_CERT_KEY] === ca('1'));
      // Rotation: every namespace is updated.
      const rot = await publisher.setRoot([ca('1'), ca('2')]);
      assert.ok(rot.updated.includes('rc-a') && rot.updated.includes('rc-new'));
      assert.equal(cm('rc-a')?.data[ROOT_CERT_KEY], ca('1') + ca('2'));
      // Someone deletes or edits it: the resync puts it back.
      fake.remove('ConfigMap', 'rc-a', ROOT_CERT_CONFIGMAP);
      const edited = cm('rc-b') as Obj;
      edited.data[ROOT_CERT_KEY] = 'tampered';
      fake.put(edited, 'MODIFIED');
      await until('repaired by the resync', () => cm('rc-a')?.data[ROOT_CERT_KEY] === ca('1') + ca('2') && cm('rc-b')?.data[ROOT_CERT_KEY] === ca('1') + ca('2'));
      // Without RBAC for configmaps: reported, nothing thrown; allowed again: published.
      fake.forbid = (method, kind) => kind === 'ConfigMap' && method !== 'GET';
      fake.put(NS('rc-late'));
      const denied = await publisher.syncAll();
      assert.match(denied.failed['rc-late'] ?? '', /403|forbidden/i);
      assert.equal(cm('rc-late'), undefined);
      fake.forbid = () => false;
      await publisher.syncAll();
      assert.equal(cm('rc-late')?.data[ROOT_CERT_KEY], ca('1') + ca('2'));
    } finally {
      await publisher.close();
      fake.strictNamespaces = false;
      fake.forbid = () => false;
    }
  });

  test('ambit status --kubeconfig: agents, control plane and waypoints through the API server proxy', async () => {
    const now = Date.now();
    const NS_SYS = 'istio-system';
    fake.put(NS(NS_SYS));
    const agentPod = (name: string, node: string, ready: boolean): Obj => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: NS_SYS, labels: { app: 'ambit-node' } },
      spec: { nodeName: node },
      status: { phase: 'Running', podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
    });
    fake.put(agentPod('ambit-node-1', 'n1', true));
    fake.put(agentPod('ambit-node-2', 'n2', true));
    fake.put({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'wp', namespace: 'shop', labels: { 'istio.io/waypoint-for': 'service' } }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } });
    fake.put({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'wp-abc', namespace: 'shop', labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' } }, spec: { nodeName: 'n1' }, status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] } });
    let issues: unknown[] = [];
    const metrics = (certSecs: number) =>
      `workload_manager_active_proxy_count 3\nworkload_manager_pending_proxy_count 0\nambit_certificate_expiry_timestamp_seconds{identity="spiffe://cluster.local/ns/shop/sa/a"} ${certSecs}\nambit_certificate_state{identity="spiffe://cluster.local/ns/shop/sa/a",state="Available"} 1\n`;
    const seen: string[] = [];
    fake.proxy = (ns, target, path, headers) => {
      seen.push(`${ns} ${target} ${path} ${String(headers.accept ?? '')}`);
      if (target === 'services/istiod:15014') {
        if (path === '/ready') return { status: 200, body: 'ready\n' };
        if (path === '/debug/status') return { status: 200, body: JSON.stringify({ version: 7, served: { workloads: 4, services: 2, authorizations: 1 }, issues, notes: ['a note'], rejections: 0 }) };
        if (path === '/debug/config')
          return {
            status: 200,
            body: JSON.stringify({
              connections: [
                { nodeId: 'ztunnel~10.0.0.1~ztunnel-n1.istio-system~istio-system.svc.cluster.local', metadata: { NODE_NAME: 'n1' }, types: [] },
                { nodeId: 'ztunnel~10.0.0.2~ztunnel-n2.istio-system~istio-system.svc.cluster.local', metadata: { NODE_NAME: 'n2' }, types: [] },
                { nodeId: 'waypoint~10.0.1.9~wp-abc.shop~shop.svc.cluster.local', metadata: {}, types: [] },
              ],
            }),
          };
      }
      if (target.endsWith(':15021')) return { status: 200, body: JSON.stringify({ ready: true, pending: [] }) };
      if (target.endsWith(':15020')) return { status: 200, body: metrics(now / 1000 + (target.includes('node-2') ? 60 : 86400)) };
      return undefined;
    };
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'fake', cluster: { server: kc.getCurrentCluster()?.server, 'insecure-skip-tls-verify': true } }], users: [{ name: 'u', user: { token: 'admin-token' } }], contexts: [{ name: 'c', context: { cluster: 'fake', user: 'u' } }], 'current-context': 'c' }));
    try {
      const c1 = capture();
      assert.equal(await runStatus(parseCommandArgs(statusCommand, ['--kubeconfig', kubeconfig]), c1.out, now), 0, c1.text());
      assert.match(c1.text(), /^service istio-system\/istiod:15014 +yes +7 +2 +1 +4\/2\/1 +0$/m);
      assert.match(c1.text(), /^n1 +yes +3\/3 +connected +1 +1d0h \(ns\/shop\/sa\/a\) +pod istio-system\/ambit-node-1$/m);
      assert.match(c1.text(), /^n2 +yes +3\/3 +connected +1 +1m0s /m);
      assert.match(c1.text(), /^shop +wp +service +1\/1 +1 +ok$/m);
      assert.match(c1.text(), /expires in 1m0s/, 'a certificate close to expiry is a warning');
      assert.ok(seen.some((x) => x.startsWith('istio-system pods/ambit-node-1:15021 /healthz/ready application/json')), seen.join('\n'));
      // A config error and an agent pod that is not Ready: exit 2, named in the JSON.
      issues = [{ text: 'mesh.yaml: AuthorizationPolicy shop/x: spec.action: bad' }];
      fake.put(agentPod('ambit-node-2', 'n2', false), 'MODIFIED');
      const c2 = capture();
      assert.equal(await runStatus(parseCommandArgs(statusCommand, ['--kubeconfig', kubeconfig, '-o', 'json']), c2.out, now), 2);
      const j = JSON.parse(c2.text()) as { healthy: boolean; problems: string[]; configErrors: string[] };
      assert.equal(j.healthy, false);
      assert.deepEqual(j.configErrors, ['mesh.yaml: AuthorizationPolicy shop/x: spec.action: bad']);
      assert.ok(j.problems.some((p) => /agent on n2: pod istio-system\/ambit-node-2 is not Ready/.test(p)), j.problems.join('\n'));
    } finally {
      fake.proxy = () => undefined;
    }
  });
});
