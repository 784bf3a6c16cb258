/** The local cluster view: defaults, deep freezing, and errors that name the field. */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { ConfigError } from '../../src/common/errors.js';
import { parseLocalClusterConfig } from '../../src/state/local-config.js';

const pod = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ name: 'web', namespace: 'shop', node: 'n1', ip: '10.0.1.11', ...over });
const svc = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ name: 'web', namespace: 'shop', vips: ['10.96.0.10'], ports: [{ port: 80 }], selector: { app: 'web' }, ...over });

function fails(doc: unknown, fragment: string | RegExp, source?: string): void {
  assert.throws(
    () => parseLocalClusterConfig(doc, source),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
      assert.equal(err.code, 'AMBIT_ERR_CONFIG_INVALID');
      if (typeof fragment === 'string') assert.ok(err.message.includes(fragment), `${JSON.stringify(err.message)} lacks ${JSON.stringify(fragment)}`);
      else assert.match(err.message, fragment);
      return true;
    },
  );
}

describe('parseLocalClusterConfig defaults', () => {
  test('an empty document is an empty cluster with cluster.local domains', () => {
    assert.deepEqual(parseLocalClusterConfig({}), { trustDomain: 'cluster.local', clusterDomain: 'cluster.local', nodes: [], workloads: [], services: [] });
  });

  test('workload defaults: uid ns/name, default service account, no labels, HBONE, no netns', () => {
    const c = parseLocalClusterConfig({ workloads: [pod()] });
    assert.deepEqual(c.workloads[0], { uid: 'shop/web', name: 'web', namespace: 'shop', serviceAccount: 'default', node: 'n1', ip: '10.0.1.11', labels: {}, tunnelProtocol: 'HBONE' });
    assert.equal('netns' in (c.workloads[0] ?? {}), false);
  });

  test('explicit workload fields are kept', () => {
    const c = parseLocalClusterConfig({
      workloads: [pod({ uid: 'u-1', serviceAccount: 'web-sa', netns: '/var/run/netns/p', labels: { app: 'web', version: 'v1' }, tunnelProtocol: 'NONE', ip: 'fd00::b' })],
    });
    assert.deepEqual(c.workloads[0], {
      uid: 'u-1',
      name: 'web',
      namespace: 'shop',
      serviceAccount: 'web-sa',
      node: 'n1',
      ip: 'fd00::b',
      netns: '/var/run/netns/p',
      labels: { app: 'web', version: 'v1' },
      tunnelProtocol: 'NONE',
    });
  });

  test('service defaults: hostname from the cluster domain, targetPort = port, TCP, no name', () => {
    const c = parseLocalClusterConfig({ trustDomain: 'td.example', clusterDomain: 'corp.local', services: [svc({ ports: [{ port: 80 }, { name: 'grpc', port: 9090, targetPort: 19090, protocol: 'UDP' }] })] });
    assert.equal(c.trustDomain, 'td.example');
    assert.equal(c.clusterDomain, 'corp.local');
    assert.deepEqual(c.services[0], {
      name: 'web',
      namespace: 'shop',
      hostname: 'web.shop.svc.corp.local',
      vips: ['10.96.0.10'],
      ports: [
        { port: 80, targetPort: 80, protocol: 'TCP' },
        { name: 'grpc', port: 9090, targetPort: 19090, protocol: 'UDP' },
      ],
      selector: { app: 'web' },
    });
    const bare = parseLocalClusterConfig({ services: [{ name: 'db', namespace: 'data', hostname: 'db.example' }] });
    assert.deepEqual(bare.services[0], { name: 'db', namespace: 'data', hostname: 'db.example', vips: [], ports: [], selector: {} });
  });

  test('nodes keep name, ip and an optional netns', () => {
    const c = parseLocalClusterConfig({ nodes: [{ name: 'n1', ip: '172.18.0.2' }, { name: 'n2', ip: '172.18.0.3', netns: '/var/run/netns/n2' }] });
    assert.deepEqual(c.nodes, [
      { name: 'n1', ip: '172.18.0.2' },
      { name: 'n2', ip: '172.18.0.3', netns: '/var/run/netns/n2' },
    ]);
  });
});

describe('parseLocalClusterConfig freezing', () => {
  test('the result is deeply frozen', () => {
    const c = parseLocalClusterConfig({ nodes: [{ name: 'n1', ip: '172.18.0.2' }], workloads: [pod({ labels: { app: 'web' } })], services: [svc()] });
    const parts: Array<[string, unknown]> = [
      ['config', c],
      ['nodes', c.nodes],
      ['nodes[0]', c.nodes[0]],
      ['workloads', c.workloads],
      ['workloads[0]', c.workloads[0]],
      ['workloads[0].labels', c.workloads[0]?.labels],
      ['services', c.services],
      ['services[0]', c.services[0]],
      ['services[0].vips', c.services[0]?.vips],
      ['services[0].ports', c.services[0]?.ports],
      ['services[0].ports[0]', c.services[0]?.ports[0]],
      ['services[0].selector', c.services[0]?.selector],
    ];
    for (const [name, v] of parts) assert.ok(v !== undefined && Object.isFrozen(v), `${name} is frozen`);
    // ESM is strict mode: writes to frozen objects throw.
    assert.throws(() => Object.assign(c, { trustDomain: 'x' }), TypeError);
    assert.throws(() => (c.workloads as unknown[]).push({}), TypeError);
    assert.throws(() => Object.assign(c.workloads[0]?.labels ?? {}, { app: 'evil' }), TypeError);
    assert.throws(() => Object.assign(c.services[0]?.ports[0] ?? {}, { port: 1 }), TypeError);
  });

  test('the input document is not frozen or aliased', () => {
    const labels = { app: 'web' };
    const c = parseLocalClusterConfig({ workloads: [pod({ labels })] });
    assert.equal(Object.isFrozen(labels), false);
    assert.notEqual(c.workloads[0]?.labels, labels);
  });
});

describe('parseLocalClusterConfig errors name the field', () => {
  test('the document must be a mapping', () => {
    for (const doc of [null, undefined, [], 'workloads: []', 42, true]) fails(doc, 'cluster config: the document must be a mapping');
    fails([], /^cluster\.json: the document must be a mapping$/, 'cluster.json');
  });

  test('errors start with the source name', () => {
    fails({ workloads: [pod({ ip: 'x' })] }, /^\/tmp\/c\.yaml: workloads\[0\]\.ip /, '/tmp/c.yaml');
  });

  test('top-level fields', () => {
    fails({ trustDomain: '' }, 'cluster config.trustDomain must be a non-empty string');
    fails({ clusterDomain: 5 }, 'cluster config.clusterDomain must be a non-empty string');
    fails({ workloads: {} }, 'cluster config.workloads must be a list');
    fails({ nodes: 'n1' }, 'cluster config.nodes must be a list');
    fails({ services: 1 }, 'cluster config.services must be a list');
  });

  test('bad IP addresses', () => {
    fails({ workloads: [pod(), pod({ name: 'b', ip: '10.0.1' })] }, "workloads[1].ip must be an IP address, got '10.0.1'");
    fails({ workloads: [pod({ ip: 'web.local' })] }, 'workloads[0].ip must be an IP address');
    fails({ workloads: [pod({ ip: 7 })] }, 'workloads[0].ip must be a non-empty string');
    fails({ workloads: [pod({ ip: undefined })] }, 'workloads[0].ip must be a non-empty string');
    fails({ nodes: [{ name: 'n1', ip: '300.1.1.1' }] }, 'nodes[0].ip must be an IP address');
    fails({ services: [svc({ vips: ['10.96.0.1', 'nope'] })] }, 'services[0].vips[1] must be an IP address');
    fails({ services: [svc({ vips: [1] })] }, 'services[0].vips[0] must be an IP address');
  });

  test('duplicate workload IPs', () => {
    fails({ workloads: [pod(), pod({ name: 'other' })] }, 'workloads[1].ip 10.0.1.11 is already used by workload shop/web');
    fails({ workloads: [pod({ uid: 'u1' }), pod({ name: 'b', ip: '10.0.0.2' }), pod({ name: 'c', namespace: 'x' })] }, 'workloads[2].ip 10.0.1.11 is already used by workload u1');
  });

  test('missing or mistyped required strings', () => {
    fails({ workloads: [pod({ name: '' })] }, 'workloads[0].name must be a non-empty string');
    fails({ workloads: [pod(), pod({ ip: '10.0.0.2', namespace: undefined })] }, 'workloads[1].namespace must be a non-empty string');
    fails({ workloads: [pod({ node: undefined })] }, 'workloads[0].node must be a non-empty string');
    fails({ workloads: [pod({ serviceAccount: 3 })] }, 'workloads[0].serviceAccount must be a non-empty string');
    fails({ workloads: [pod({ uid: '' })] }, 'workloads[0].uid must be a non-empty string');
    fails({ workloads: [pod({ netns: 1 })] }, 'workloads[0].netns must be a non-empty string');
    fails({ workloads: ['web'] }, 'workloads[0] must be a mapping');
    fails({ nodes: [{ ip: '172.18.0.2' }] }, 'nodes[0].name must be a non-empty string');
    fails({ nodes: [null] }, 'nodes[0] must be a mapping');
    fails({ services: [svc({ name: undefined })] }, 'services[0].name must be a non-empty string');
    fails({ services: [svc({ hostname: '' })] }, 'services[0].hostname must be a non-empty string');
    fails({ services: [[]] }, 'services[0] must be a mapping');
  });

  test('bad ports', () => {
    for (const p of [0, 65536, -1, 1.5, '80', null, Number.NaN]) {
      fails({ services: [svc({ ports: [{ port: 80 }, { port: p }] })] }, 'services[0].ports[1].port must be a port number from 1 to 65535');
    }
    fails({ services: [svc({ ports: [{ port: 80, targetPort: 0 }] })] }, 'services[0].ports[0].targetPort must be a port number');
    fails({ services: [svc({ ports: [{ port: 80, targetPort: 'http' }] })] }, 'services[0].ports[0].targetPort must be a port number');
    fails({ services: [svc({ ports: [{}] })] }, 'services[0].ports[0].port must be a port number');
    fails({ services: [svc({ ports: [80] })] }, 'services[0].ports[0] must be a mapping');
    fails({ services: [svc({ ports: { port: 80 } })] }, 'services[0].ports must be a list');
  });

  test('bad protocols', () => {
    fails({ services: [svc({ ports: [{ port: 80, protocol: 'HTTP' }] })] }, 'services[0].ports[0].protocol must be TCP, UDP or SCTP');
    fails({ services: [svc({ ports: [{ port: 80, protocol: 'tcp' }] })] }, 'services[0].ports[0].protocol must be TCP, UDP or SCTP');
    fails({ services: [svc({ ports: [{ port: 80, protocol: 6 }] })] }, 'services[0].ports[0].protocol must be a non-empty string');
    fails({ workloads: [pod({ tunnelProtocol: 'MTLS' })] }, 'workloads[0].tunnelProtocol must be HBONE or NONE');
    fails({ workloads: [pod({ tunnelProtocol: 'hbone' })] }, 'workloads[0].tunnelProtocol must be HBONE or NONE');
  });

  test('labels and selectors must be maps of strings', () => {
    fails({ workloads: [pod({ labels: { app: 'web', replicas: 3 } })] }, 'workloads[0].labels.replicas must be a string');
    fails({ workloads: [pod({ labels: ['app=web'] })] }, 'workloads[0].labels must be a map of strings');
    fails({ workloads: [pod({ labels: 'app=web' })] }, 'workloads[0].labels must be a map of strings');
    fails({ services: [svc({ selector: { app: null } })] }, 'services[0].selector.app must be a string');
    fails({ services: [svc({ selector: 'app=web' })] }, 'services[0].selector must be a map of strings');
  });
});
