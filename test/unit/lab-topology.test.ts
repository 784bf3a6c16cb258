import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/common/errors.js';
import { parseLocalClusterConfig } from '../../src/state/local-config.js';
import { cidrContains, parseCidr, parseIpv4 } from '../../src/lab/cidr.js';
import { parseManifests, type LabSpec } from '../../src/lab/manifests.js';
import { isLabNetns, labTag, MAX_IFNAME, MAX_NETNS_NAME, planLab, toClusterConfig, validateLabName, type LabPlan } from '../../src/lab/topology.js';

const FIXTURE = `
kind: Namespace
metadata: {name: demo}
---
kind: Pod
metadata: {name: client, namespace: demo, labels: {app: client}}
spec: {nodeName: node-a, serviceAccountName: client}
---
kind: Pod
metadata: {name: server-a, namespace: demo, labels: {app: echo}}
spec: {nodeName: node-a}
---
kind: Pod
metadata: {name: server-b, namespace: demo, labels: {app: echo}}
spec: {nodeName: node-b}
status: {podIP: 10.244.2.7}
---
kind: Service
metadata: {name: echo, namespace: demo}
spec:
  clusterIP: 10.96.0.20
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
---
kind: Service
metadata: {name: other, namespace: prod}
spec:
  ports: [{port: 80}]
`;

function spec(text: string): LabSpec {
  return parseManifests([{ file: 'm.yaml', text }]);
}

function plan(text = FIXTURE, name = 'tlab'): LabPlan {
  return planLab(name, spec(text));
}

function configError(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (err: Error) => {
    assert.ok(err instanceof ConfigError, `${err.name}: ${err.message}`);
    for (const f of fragments) assert.ok(err.message.includes(f), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(f)}`);
    return true;
  });
}

void describe('lab topology: addresses', () => {
  const p = plan();

  void it('gives node i the underlay address .i+1 and the pod CIDR 10.244.<i+1>.0/24, or the /24 of its pinned pod IPs', () => {
    assert.deepEqual(
      p.nodes.map((n) => [n.name, n.ip, n.prefix, n.podCidr]),
      [
        ['node-a', '10.243.0.1', 24, '10.244.1.0/24'],
        ['node-b', '10.243.0.2', 24, '10.244.2.0/24'],
      ],
    );
  });

  void it('allocates pod IPs from the node /24 starting at .2 and keeps pinned ones', () => {
    assert.deepEqual(
      p.pods.map((x) => [x.uid, x.node, x.ip]),
      [
        ['demo/client', 'node-a', '10.244.1.2'],
        ['demo/server-a', 'node-a', '10.244.1.3'],
        ['demo/server-b', 'node-b', '10.244.2.7'],
      ],
    );
  });

  void it('keeps given cluster IPs and allocates missing ones in the service range from .10', () => {
    assert.deepEqual(
      p.services.map((s) => [s.namespace, s.name, s.vips, s.hostname]),
      [
        ['demo', 'echo', ['10.96.0.20'], 'echo.demo.svc.cluster.local'],
        ['prod', 'other', ['10.96.0.10'], 'other.prod.svc.cluster.local'],
      ],
    );
  });

  void it('blackholes the pod, service and node ranges in the host', () => {
    assert.deepEqual(p.hostBlackholes, ['10.244.0.0/16', '10.96.0.0/16', '10.243.0.0/24']);
  });

  void it('infers a node /24 from a pinned IP and skips it for nodes that would get it by index', () => {
    const q = plan('kind: Pod\nmetadata: {name: a}\nspec: {nodeName: n1}\n---\nkind: Pod\nmetadata: {name: b}\nspec: {nodeName: n2}\nstatus: {podIP: 10.244.1.9}\n');
    assert.deepEqual(
      q.nodes.map((n) => n.podCidr),
      ['10.244.2.0/24', '10.244.1.0/24'],
    );
    assert.equal(q.pods[0]?.ip, '10.244.2.2');
  });

  void it('honours LabConfig ranges', () => {
    const q = plan('apiVersion: ambit.dev/v1alpha1\nkind: LabConfig\nspec: {podCIDR: 172.30.0.0/16, serviceCIDR: 172.31.0.0/24, nodeCIDR: 192.168.200.0/29}\n---\nkind: Pod\nmetadata: {name: a}\nspec: {nodeName: n1}\n---\nkind: Service\nmetadata: {name: s}\nspec: {}\n');
    assert.equal(q.nodes[0]?.ip, '192.168.200.1');
    assert.equal(q.nodes[0]?.prefix, 29);
    assert.equal(q.nodes[0]?.podCidr, '172.30.1.0/24');
    assert.deepEqual(q.services[0]?.vips, ['172.31.0.10']);
    assert.deepEqual(q.hostBlackholes, ['172.30.0.0/16', '172.31.0.0/24', '192.168.200.0/29']);
  });

  void it('every allocated address lies in its range', () => {
    const podRange = parseCidr(p.ranges.pod)!;
    for (const pod of p.pods) assert.ok(cidrContains(podRange, parseIpv4(pod.ip)!), pod.ip);
  });
});

void describe('lab topology: names', () => {
  void it('names netns <lab>-br, <lab>-n-<node>, <lab>-p-<ns>-<pod>', () => {
    const p = plan();
    assert.equal(p.bridgeNetns, 'tlab-br');
    assert.deepEqual(
      p.nodes.map((n) => n.netns),
      ['tlab-n-node-a', 'tlab-n-node-b'],
    );
    assert.deepEqual(
      p.pods.map((x) => x.netns),
      ['tlab-p-demo-client', 'tlab-p-demo-server-a', 'tlab-p-demo-server-b'],
    );
    for (const n of [p.bridgeNetns, ...p.nodes.map((x) => x.netns), ...p.pods.map((x) => x.netns)]) assert.ok(isLabNetns('tlab', n), n);
    assert.equal(isLabNetns('tlab', 'tlab2-n-x'), false);
    assert.equal(isLabNetns('tlab', 'other'), false);
  });

  void it('keeps interface names within 15 characters, unique, and different between labs', () => {
    const many = Array.from({ length: 120 }, (_, i) => `kind: Pod\nmetadata: {name: pod-${i}}\nspec: {nodeName: node-${i % 12}}\n`).join('---\n');
    const p = plan(many, 'a-very-long-lab-name-of-32-chars');
    const names = [...p.nodes.map((n) => n.bridgePort), ...p.pods.map((x) => x.nodeVeth)];
    for (const n of names) assert.ok(n.length <= MAX_IFNAME, `${n} is longer than 15`);
    assert.equal(new Set(names).size, names.length);
    assert.notEqual(labTag('lab1'), labTag('lab2'));
    assert.ok(p.pods[0]?.nodeVeth.includes(labTag('a-very-long-lab-name-of-32-chars')));
  });

  void it('truncates long netns names and disambiguates collisions with a hash', () => {
    const long = 'x'.repeat(70);
    const p = plan(`kind: Pod\nmetadata: {name: ${long}, namespace: a-b}\nspec: {nodeName: n}\n---\nkind: Pod\nmetadata: {name: c, namespace: a-b}\nspec: {nodeName: n}\n---\nkind: Pod\nmetadata: {name: b-c, namespace: a}\nspec: {nodeName: n}\n`);
    const [first, second, third] = p.pods.map((x) => x.netns);
    assert.ok(first && first.length <= MAX_NETNS_NAME, first);
    assert.match(first ?? '', /^tlab-p-a-b-x+-[0-9a-f]{6}$/);
    assert.equal(second, 'tlab-p-a-b-c');
    assert.match(third ?? '', /^tlab-p-a-b-c-[0-9a-f]{6}$/);
  });

  void it('rejects bad lab names with a ConfigError', () => {
    for (const bad of ['', 'UPPER', '-x', 'x-', 'a/b', 'x'.repeat(33), 'a b']) configError(() => validateLabName(bad), 'lab name');
    assert.equal(validateLabName('t1a2b'), 't1a2b');
  });
});

void describe('lab topology: routes and files', () => {
  const p = plan();

  void it('routes local pods on their veth from the node address, and remote pod CIDRs via the other node', () => {
    const a = p.nodes[0]!;
    assert.deepEqual(a.routes, [
      { dst: '10.244.1.2/32', dev: p.pods[0]!.nodeVeth, scope: 'link', src: '10.243.0.1' },
      { dst: '10.244.1.3/32', dev: p.pods[1]!.nodeVeth, scope: 'link', src: '10.243.0.1' },
      { dst: '10.244.2.0/24', via: '10.243.0.2', dev: 'eth0' },
    ]);
    const b = p.nodes[1]!;
    assert.deepEqual(b.routes, [
      { dst: '10.244.2.7/32', dev: p.pods[2]!.nodeVeth, scope: 'link', src: '10.243.0.2' },
      { dst: '10.244.1.0/24', via: '10.243.0.1', dev: 'eth0' },
    ]);
  });

  void it('writes hosts files: qualified service names everywhere, the short name only in the same namespace', () => {
    const hosts = p.pods[0]!.hosts;
    assert.match(hosts, /^127\.0\.0\.1\tlocalhost$/m);
    assert.match(hosts, /^10\.96\.0\.20\techo\.demo\.svc\.cluster\.local echo\.demo\.svc echo\.demo echo$/m);
    assert.match(hosts, /^10\.96\.0\.10\tother\.prod\.svc\.cluster\.local other\.prod\.svc other\.prod$/m);
    assert.match(hosts, /^10\.244\.1\.2\tclient$/m);
  });

  void it('lists the selected pod IPs for headless services', () => {
    const q = plan('kind: Pod\nmetadata: {name: a, labels: {app: db}}\nspec: {nodeName: n}\n---\nkind: Pod\nmetadata: {name: b, labels: {app: web}}\nspec: {nodeName: n}\n---\nkind: Service\nmetadata: {name: db}\nspec: {clusterIP: None, selector: {app: db}}\n');
    assert.match(q.pods[1]!.hosts, /^10\.244\.1\.2\tdb\.default\.svc\.cluster\.local db\.default\.svc db\.default db$/m);
    assert.doesNotMatch(q.pods[1]!.hosts, /10\.244\.1\.3\tdb/);
  });

  void it('produces a LocalClusterConfig that parseLocalClusterConfig accepts', () => {
    const cfg = parseLocalClusterConfig(JSON.parse(JSON.stringify(toClusterConfig(p))) as unknown);
    assert.deepEqual(
      cfg.nodes.map((n) => [n.name, n.ip, n.netns]),
      [
        ['node-a', '10.243.0.1', '/var/run/netns/tlab-n-node-a'],
        ['node-b', '10.243.0.2', '/var/run/netns/tlab-n-node-b'],
      ],
    );
    const w = cfg.workloads[0]!;
    assert.equal(w.uid, 'demo/client');
    assert.equal(w.serviceAccount, 'client');
    assert.equal(w.node, 'node-a');
    assert.equal(w.ip, '10.244.1.2');
    assert.equal(w.netns, '/var/run/netns/tlab-p-demo-client');
    assert.deepEqual(w.labels, { app: 'client' });
    assert.equal(cfg.workloads[1]?.serviceAccount, 'default');
    const s = cfg.services[0]!;
    assert.deepEqual([s.name, s.namespace, s.vips, s.selector], ['echo', 'demo', ['10.96.0.20'], { app: 'echo' }]);
    assert.deepEqual(s.ports, [{ port: 80, targetPort: 8080, protocol: 'TCP' }]);
  });

  void it('marks pods that opt out of the mesh (Istio dataplane-mode label) with tunnelProtocol NONE', () => {
    const q = plan(
      'kind: Namespace\nmetadata: {name: off, labels: {istio.io/dataplane-mode: none}}\n---\nkind: Pod\nmetadata: {name: a, namespace: off}\nspec: {nodeName: n}\n---\nkind: Pod\nmetadata: {name: b, namespace: off, labels: {istio.io/dataplane-mode: ambient}}\nspec: {nodeName: n}\n---\nkind: Pod\nmetadata: {name: c, labels: {istio.io/dataplane-mode: none}}\nspec: {nodeName: n}\n---\nkind: Pod\nmetadata: {name: d}\nspec: {nodeName: n}\n',
    );
    const cfg = parseLocalClusterConfig(JSON.parse(JSON.stringify(toClusterConfig(q))) as unknown);
    assert.deepEqual(
      cfg.workloads.map((w) => [w.name, w.tunnelProtocol]),
      [
        ['a', 'NONE'],
        ['b', 'HBONE'],
        ['c', 'NONE'],
        ['d', 'HBONE'],
      ],
    );
  });
});

void describe('lab topology: address errors name the pod or service and the field', () => {
  void it('podIP outside the pod range', () =>
    configError(() => plan('kind: Pod\nmetadata: {name: a}\nspec: {nodeName: n}\nstatus: {podIP: 10.1.2.3}\n'), 'm.yaml: Pod default/a', 'status.podIP', 'outside the pod range 10.244.0.0/16'));
  void it('pods of one node in two /24s', () =>
    configError(() => plan('kind: Pod\nmetadata: {name: a}\nspec: {nodeName: n}\nstatus: {podIP: 10.244.5.2}\n---\nkind: Pod\nmetadata: {name: b}\nspec: {nodeName: n}\nstatus: {podIP: 10.244.6.2}\n'), 'Pod default/b', 'status.podIP', 'one /24'));
  void it('two nodes in one /24', () =>
    configError(() => plan('kind: Pod\nmetadata: {name: a}\nspec: {nodeName: n1}\nstatus: {podIP: 10.244.5.2}\n---\nkind: Pod\nmetadata: {name: b}\nspec: {nodeName: n2}\nstatus: {podIP: 10.244.5.3}\n'), 'Pod default/b', 'status.podIP', 'node n1'));
  void it('duplicate podIP', () =>
    configError(() => plan('kind: Pod\nmetadata: {name: a}\nspec: {nodeName: n}\nstatus: {podIP: 10.244.5.2}\n---\nkind: Pod\nmetadata: {name: b}\nspec: {nodeName: n}\nstatus: {podIP: 10.244.5.2}\n'), 'Pod default/b', 'status.podIP', 'already used by pod default/a'));
  void it('network address as podIP', () => configError(() => plan('kind: Pod\nmetadata: {name: a}\nspec: {nodeName: n}\nstatus: {podIP: 10.244.5.0}\n'), 'status.podIP', 'network or broadcast'));
  void it('clusterIP outside the service range', () =>
    configError(() => plan('kind: Pod\nmetadata: {name: a}\nspec: {nodeName: n}\n---\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.97.0.1}\n'), 'Service default/s', 'spec.clusterIP', 'outside the service range'));
  void it('duplicate clusterIP', () =>
    configError(() => plan('kind: Pod\nmetadata: {name: a}\nspec: {nodeName: n}\n---\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1}\n---\nkind: Service\nmetadata: {name: t}\nspec: {clusterIP: 10.96.0.1}\n'), 'Service default/t', 'already used by service default/s'));
  void it('more nodes than the node range holds', () =>
    configError(() => plan('apiVersion: ambit.dev/v1alpha1\nkind: LabConfig\nspec: {nodeCIDR: 10.243.0.0/30}\n---\n' + ['a', 'b', 'c'].map((n) => `kind: Node\nmetadata: {name: ${n}}\n`).join('---\n')), 'do not fit', 'spec.nodeCIDR'));
  void it('more nodes than pod /24s', () =>
    configError(() => plan('apiVersion: ambit.dev/v1alpha1\nkind: LabConfig\nspec: {podCIDR: 10.244.0.0/24}\n---\n' + ['a', 'b'].map((n) => `kind: Node\nmetadata: {name: ${n}}\n`).join('---\n')), 'no free /24 for node b'));
});
