import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/common/errors.js';
import { formatCidr } from '../../src/lab/cidr.js';
import { loadManifests, parseManifests, type LabSpec } from '../../src/lab/manifests.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/lab/', import.meta.url));

function parse(text: string, file = 'm.yaml'): LabSpec {
  return parseManifests([{ file, text }]);
}

/** Asserts a ConfigError whose message contains every fragment (file, object, field). */
function rejects(text: string, ...fragments: string[]): void {
  assert.throws(
    () => parse(text),
    (err: Error) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err.name}: ${err.message}`);
      for (const f of fragments) assert.ok(err.message.includes(f), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(f)}`);
      return true;
    },
  );
}

const POD = (extra = '', spec = '  nodeName: n1\n') => `kind: Pod\nmetadata:\n  name: p\n  namespace: ns\n${extra}spec:\n${spec}`;

void describe('lab manifests: good documents', () => {
  void it('reads the two-node fixture: namespaces, nodes in first-seen order, pods, services, and warns on unknown kinds', async () => {
    const spec = await loadManifests(join(FIXTURES, 'two-nodes.yaml'));
    assert.deepEqual(spec.namespaces, [{ name: 'demo', labels: {} }]);
    assert.deepEqual(spec.nodes, ['node-a', 'node-b']);
    assert.deepEqual(
      spec.pods.map((p) => [p.namespace, p.name, p.node, p.serviceAccount, p.ip ?? null]),
      [
        ['demo', 'client', 'node-a', 'client', null],
        ['demo', 'server-a', 'node-a', 'echo', null],
        ['demo', 'server-b', 'node-b', 'echo', '10.244.2.7'],
      ],
    );
    assert.deepEqual(spec.pods[0]?.labels, { app: 'client' });
    assert.equal(spec.services.length, 1);
    const svc = spec.services[0];
    assert.equal(svc?.clusterIP, '10.96.0.20');
    assert.deepEqual(svc?.ports, [{ name: 'tcp-echo', port: 80, targetPort: 8080, protocol: 'TCP' }]);
    assert.deepEqual(svc?.selector, { app: 'echo' });
    assert.equal(spec.warnings.length, 1);
    assert.match(spec.warnings[0] ?? '', /two-nodes\.yaml: ignoring Deployment demo\/ignored/);
    assert.equal(formatCidr(spec.ranges.podCIDR), '10.244.0.0/16');
    assert.equal(formatCidr(spec.ranges.serviceCIDR), '10.96.0.0/16');
    assert.equal(formatCidr(spec.ranges.nodeCIDR), '10.243.0.0/24');
  });

  void it('applies defaults: namespace default, serviceAccount default, targetPort = port, protocol TCP', () => {
    const spec = parse('kind: Pod\nmetadata: {name: a}\nspec: {nodeName: n}\n---\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 53, protocol: UDP}, {port: 80}]\n');
    assert.equal(spec.pods[0]?.namespace, 'default');
    assert.equal(spec.pods[0]?.serviceAccount, 'default');
    assert.equal(spec.services[0]?.namespace, 'default');
    assert.equal(spec.services[0]?.clusterIP, undefined);
    assert.deepEqual(spec.services[0]?.ports, [
      { port: 53, targetPort: 53, protocol: 'UDP' },
      { port: 80, targetPort: 80, protocol: 'TCP' },
    ]);
  });

  void it('reads LabConfig ranges, List items, Node objects, headless services and empty documents', () => {
    const spec = parse(
      [
        'apiVersion: ambit.dev/v1alpha1\nkind: LabConfig\nspec:\n  podCIDR: 10.50.0.0/16\n  serviceCIDR: 10.60.0.0/20\n  nodeCIDR: 192.168.77.0/28',
        '',
        'kind: Node\nmetadata: {name: spare}',
        'kind: List\nitems:\n  - kind: Pod\n    metadata: {name: x}\n    spec: {nodeName: n2}\n  - kind: Service\n    metadata: {name: h}\n    spec: {clusterIP: None}',
      ].join('\n---\n'),
    );
    assert.equal(formatCidr(spec.ranges.podCIDR), '10.50.0.0/16');
    assert.equal(formatCidr(spec.ranges.serviceCIDR), '10.60.0.0/20');
    assert.equal(formatCidr(spec.ranges.nodeCIDR), '192.168.77.0/28');
    assert.deepEqual(spec.nodes, ['spare', 'n2']);
    assert.equal(spec.services[0]?.clusterIP, 'None');
  });

  void it('reads every .yaml/.yml file of a directory in name order', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lab-manifests-'));
    try {
      await writeFile(join(dir, 'b.yml'), 'kind: Pod\nmetadata: {name: second}\nspec: {nodeName: n}\n');
      await writeFile(join(dir, 'a.yaml'), 'kind: Pod\nmetadata: {name: first}\nspec: {nodeName: n}\n');
      await writeFile(join(dir, 'notes.txt'), 'not yaml: [');
      const spec = await loadManifests(dir);
      assert.deepEqual(
        spec.pods.map((p) => p.name),
        ['first', 'second'],
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

void describe('lab manifests: every error names the file, the object and the field', () => {
  void it('bad YAML', () => rejects('kind: Pod\nmetadata: [\n', 'm.yaml', 'document 1', 'not valid YAML'));
  void it('a document that is not a mapping', () => rejects('- 1\n- 2\n', 'm.yaml', 'document 1', 'must be a mapping'));
  void it('missing kind', () => rejects('metadata: {name: x}\n', 'm.yaml', 'document 1', 'kind is required'));
  void it('missing metadata.name, before the name is known', () => rejects('---\nkind: Pod\nmetadata: {}\nspec: {nodeName: n}\n', 'Pod in document 1', 'metadata.name is required'));
  void it('invalid metadata.name', () => rejects('kind: Pod\nmetadata: {name: Bad_Name}\nspec: {nodeName: n}\n', 'Pod in document 1', 'metadata.name', 'DNS-1123', 'Bad_Name'));
  void it('invalid metadata.namespace', () => rejects('kind: Pod\nmetadata: {name: a, namespace: "a.b"}\nspec: {nodeName: n}\n', 'metadata.namespace', 'DNS-1123 label'));
  void it('missing spec', () => rejects('kind: Pod\nmetadata: {name: a}\n', 'Pod default/a', 'spec is required'));
  void it('missing spec.nodeName', () => rejects(POD('', '  serviceAccountName: sa\n'), 'm.yaml: Pod ns/p', 'spec.nodeName is required'));
  void it('non-string spec.nodeName', () => rejects(POD('', '  nodeName: 7\n'), 'Pod ns/p', 'spec.nodeName must be a string'));
  void it('non-string label value', () => rejects(POD('  labels: {version: 2}\n'), 'Pod ns/p', 'metadata.labels.version', 'must be a string'));
  void it('labels not a map', () => rejects(POD('  labels: [a]\n'), 'Pod ns/p', 'metadata.labels must be a map'));
  void it('bad status.podIP', () => rejects(`${POD()}status: {podIP: 10.244.1.300}\n`, 'Pod ns/p', 'status.podIP', 'IPv4'));
  void it('IPv6 status.podIP', () => rejects(`${POD()}status: {podIP: "fd00::1"}\n`, 'Pod ns/p', 'status.podIP', 'IPv4-only'));
  void it('duplicate pod', () => rejects(`${POD()}---\n${POD()}`, 'Pod ns/p is defined twice'));
  void it('service without spec', () => rejects('kind: Service\nmetadata: {name: s}\n', 'Service default/s', 'spec is required'));
  void it('bad clusterIP', () => rejects('kind: Service\nmetadata: {name: s}\nspec: {clusterIP: nope}\n', 'Service default/s', 'spec.clusterIP', 'IPv4'));
  void it('ports not a list', () => rejects('kind: Service\nmetadata: {name: s}\nspec: {ports: 80}\n', 'Service default/s', 'spec.ports must be a list'));
  void it('port out of range', () => rejects('kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 70000}]}\n', 'Service default/s', 'spec.ports[0].port', '1 to 65535'));
  void it('named targetPort', () => rejects('kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}, {port: 81, targetPort: http}]}\n', 'spec.ports[1].targetPort', 'named ports'));
  void it('bad protocol', () => rejects('kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, protocol: ICMP}]}\n', 'spec.ports[0].protocol', 'TCP, UDP or SCTP'));
  void it('duplicate service port', () => rejects('kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}, {port: 80, targetPort: 9}]}\n', 'spec.ports[1].port', 'listed twice'));
  void it('selector value not a string', () => rejects('kind: Service\nmetadata: {name: s}\nspec: {selector: {app: true}}\n', 'spec.selector.app', 'must be a string'));
  void it('LabConfig with the wrong apiVersion', () => rejects('apiVersion: v1\nkind: LabConfig\nspec: {}\n', 'LabConfig', 'apiVersion', 'ambit.dev/v1alpha1'));
  void it('LabConfig with a bad CIDR', () => rejects('apiVersion: ambit.dev/v1alpha1\nkind: LabConfig\nspec: {podCIDR: 10.244.0.1/16}\n', 'LabConfig', 'spec.podCIDR', 'no host bits'));
  void it('LabConfig with a pod range smaller than /24', () => rejects('apiVersion: ambit.dev/v1alpha1\nkind: LabConfig\nspec: {podCIDR: 10.244.0.0/25}\n', 'spec.podCIDR', '/24 or larger'));
  void it('LabConfig with overlapping ranges', () => rejects('apiVersion: ambit.dev/v1alpha1\nkind: LabConfig\nspec: {podCIDR: 10.0.0.0/8, serviceCIDR: 10.96.0.0/16}\n', 'spec.serviceCIDR', 'overlaps spec.podCIDR'));
  void it('two LabConfigs', () => rejects('apiVersion: ambit.dev/v1alpha1\nkind: LabConfig\n---\napiVersion: ambit.dev/v1alpha1\nkind: LabConfig\n', 'defined twice'));
  void it('an error inside a List names the item', () => rejects(`kind: List\nitems:\n  - kind: Pod\n    metadata: {name: a}\n    spec: {}\n`, 'List items[0]: Pod default/a', 'spec.nodeName is required'));
  void it('no pods and no nodes', () => rejects('kind: Namespace\nmetadata: {name: x}\n', 'no Pod and no Node'));

  void it('a missing path and an empty directory are ConfigErrors naming the path', async () => {
    await assert.rejects(loadManifests('/nonexistent/lab.yaml'), (err: Error) => err instanceof ConfigError && err.message.includes('/nonexistent/lab.yaml'));
    const dir = await mkdtemp(join(tmpdir(), 'lab-empty-'));
    try {
      await assert.rejects(loadManifests(dir), (err: Error) => err instanceof ConfigError && err.message.includes('no .yaml or .yml files'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
