/**
 * Bad input is reported precisely and dropped while the rest is served:
 * a file with a YAML syntax error, an AuthorizationPolicy with a bad action,
 * a pod with a bad IP; plus the status view and the config error metric.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/common/logger.js';
import { lookupKind, parseObject, registerKind } from '../../src/control-plane/kinds.js';
import { ManifestSource, parseManifestText } from '../../src/control-plane/manifest-source.js';
import { ResourceStore } from '../../src/control-plane/resource-store.js';
import { buildStatus, ControlPlaneMetrics, formatStatus } from '../../src/control-plane/status.js';
import { translate } from '../../src/control-plane/translate.js';
import { formatIssue } from '../../src/control-plane/validation.js';

const INVALID = fileURLToPath(new URL('../../../test/fixtures/control-plane/invalid/', import.meta.url));

test('a malformed YAML file and invalid resources become issues; the rest is translated', async () => {
  const store = new ResourceStore();
  const src = new ManifestSource({ dir: INVALID, store, logger: silentLogger() });
  await src.start({ watch: false });
  src.close();
  const lines = store.issues().map(formatIssue);
  assert.equal(lines.length, 3, lines.join('\n'));
  assert.equal(lines[0], "authz.yaml: AuthorizationPolicy default/deny-all: spec.action: must be one of ALLOW, DENY, AUDIT, CUSTOM; got 'BLOCK'");
  assert.match(lines[1] ?? '', /^broken\.yaml: document 1: is not valid YAML: /);
  assert.equal(lines[2], "pods.yaml: Pod default/bad-ip: status.podIP: must be an IP address; got '10.244.1.500'");

  const t = translate(store.snapshot());
  assert.deepEqual([...t.addresses.keys()], ['Kubernetes//Pod/default/ok']);
  assert.deepEqual([...t.authorizations.keys()], ['default/allow-nothing']);
  assert.deepEqual(t.authorizations.get('default/allow-nothing')?.rules, [], 'ALLOW without rules allows nothing');

  const registry = new Registry();
  const metrics = new ControlPlaneMetrics(registry);
  metrics.setIssues(store.issues());
  metrics.countRejection('address', 2);
  const text = await registry.metrics();
  assert.match(text, /ambit_control_plane_config_errors\{kind="AuthorizationPolicy"\} 1/);
  assert.match(text, /ambit_control_plane_config_errors\{kind="yaml"\} 1/);
  assert.match(text, /ambit_control_plane_config_errors\{kind="Pod"\} 1/);
  assert.match(text, /ambit_control_plane_rejections_total\{type="address"\} 2/);
  const status = buildStatus(store, t, metrics);
  assert.equal(status.resources.Pod, 1);
  assert.deepEqual(status.served, { workloads: 1, services: 0, authorizations: 1 });
  assert.equal(status.rejections, 2);
  assert.match(formatStatus(status), /issues \(3\):\n {2}authz\.yaml: AuthorizationPolicy default\/deny-all: spec\.action/);
  metrics.setIssues([]);
  assert.doesNotMatch(await registry.metrics(), /config_errors\{kind="Pod"\} 1/);
});

test('field-level messages name the field', () => {
  const cases: Array<[string, string]> = [
    ['apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 0}]}', 'x.yaml: Service default/s: spec.ports[0].port: must be an integer from 1 to 65535; got 0'],
    ['apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: 1}}\nspec: {}', 'x.yaml: Pod default/p: metadata.labels.a: must be a string (quote it in YAML); got 1'],
    ['apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {}', "x.yaml: Pod default/Bad_Name: metadata.name: must be a DNS-1123 name (lowercase letters, digits, '-', '.'); got 'Bad_Name'"],
    [
      'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: n}\nspec: {rules: [{from: [{source: {ipBlocks: [10.0.0.0/33]}}]}]}',
      "x.yaml: AuthorizationPolicy n/a: spec.rules[0].from[0].source.ipBlocks[0]: must be an IP address or CIDR; got '10.0.0.0/33'",
    ],
    [
      'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: n}\nspec: {rules: [{to: [{operation: {ports: ["http"]}}]}]}',
      "x.yaml: AuthorizationPolicy n/a: spec.rules[0].to[0].operation.ports[0]: must be a port number from 1 to 65535 (as a string); got 'http'",
    ],
    [
      'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: n}\nspec: {rules: [{when: [{key: source.ip, values: [bogus]}]}]}',
      "x.yaml: AuthorizationPolicy n/a: spec.rules[0].when[0].values[0]: must be an IP address or CIDR; got 'bogus'",
    ],
    [
      'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: n}\nspec: {mtls: {mode: strict}}',
      "x.yaml: PeerAuthentication n/a: spec.mtls.mode: must be one of UNSET, DISABLE, PERMISSIVE, STRICT; got 'strict'",
    ],
    ['apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4', "x.yaml: EndpointSlice default/e: metadata.labels: 'kubernetes.io/service-name' is required (it names the Service)"],
    ['kind: Pod\nmetadata: {name: p}', 'x.yaml: Pod p: apiVersion: is required'],
    ['- a\n- b', 'x.yaml: document 1: must be a mapping (a Kubernetes object)'],
  ];
  for (const [text, want] of cases) {
    const p = parseManifestText('x.yaml', text);
    assert.deepEqual(p.resources, [], text);
    assert.deepEqual(p.issues.map(formatIssue), [want]);
  }
});

test('unknown kinds are ignored; the kind table is open', () => {
  const p = parseManifestText('x.yaml', 'apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: r, namespace: n}\n');
  assert.deepEqual(p.ignored, ['gateway.networking.k8s.io/v1alpha2 TCPRoute n/r']);
  assert.equal(lookupKind('security.istio.io/v1beta1', 'AuthorizationPolicy')?.kind, 'AuthorizationPolicy');
  assert.equal(lookupKind('security.istio.io/v2', 'AuthorizationPolicy'), undefined);
  assert.equal(lookupKind('networking.istio.io/v1', 'Gateway'), undefined, 'the Istio Gateway is not the Gateway API one');
  registerKind<{ hostnames: string[] }>({ group: 'example.test', versions: ['v1'], kind: 'Route', namespaced: true, feeds: [], parse: (r) => ({ hostnames: r.child('spec').strings('hostnames') }) });
  const r = parseObject({ apiVersion: 'example.test/v1', kind: 'Route', metadata: { name: 'r' }, spec: { hostnames: ['a'] } }, 'kube');
  assert.ok(r.type === 'resource');
  assert.equal(r.resource.kindId, 'Route.example.test');
  assert.deepEqual(r.resource.spec, { hostnames: ['a'] });
});

test('the same object in two files: the first file wins, the second gets an issue', () => {
  const store = new ResourceStore();
  const doc = 'apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n';
  store.replaceSource('1.yaml', parseManifestText('1.yaml', doc).resources);
  store.replaceSource('2.yaml', parseManifestText('2.yaml', doc).resources);
  assert.equal(store.snapshot().list('Namespace')[0]?.source, '1.yaml');
  assert.deepEqual(store.issues().map(formatIssue), ['2.yaml: Namespace a: metadata.name: is also defined in 1.yaml; that one is used']);
  store.removeSource('1.yaml');
  assert.equal(store.snapshot().list('Namespace')[0]?.source, '2.yaml');
  assert.deepEqual(store.issues(), []);
});
