/**
 * `ambit status` cluster-wide: aggregation and formatting over injected
 * fetchers (no cluster): the control plane's /debug/status and connections,
 * agents' readiness, metrics and admin dump, waypoints with and without
 * pods, and the verdict (problems → exit 2, warnings do not) in table, JSON
 * and YAML.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { collectClusterStatus, peerIsWaypoint, renderClusterStatus, xdsPeerOf, type AgentTarget, type HttpGet, type StatusSources } from '../../src/cli/cluster-status.js';
import { parseCommandArgs } from '../../src/cli/command.js';
import { visibleLength } from '../../src/cli/format.js';
import { runStatus, STATUS_UNHEALTHY_EXIT, statusCommand } from '../../src/cli/status-command.js';

const NOW = Date.parse('2026-11-22T04:00:00Z');
const secs = (msFromNow: number): number => (NOW + msFromNow) / 1000;

/** A fetcher answering from a table; a missing path is 404, `down` rejects like a refused connection. */
function get(table: Record<string, { status?: number; body: unknown }>, down = false): HttpGet & { calls: string[] } {
  const calls: string[] = [];
  const f = (path: string, accept?: string) => {
    calls.push(`${path}${accept ? ` [${accept}]` : ''}`);
    if (down) return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:15021'));
    const a = table[path];
    if (!a) return Promise.resolve({ status: 404, body: 'not found\n' });
    return Promise.resolve({ status: a.status ?? 200, body: typeof a.body === 'string' ? a.body : JSON.stringify(a.body) });
  };
  return Object.assign(f, { calls });
}

const metrics = (up: number, pending: number, certs: Array<[string, number, string]>): string =>
  [
    `workload_manager_active_proxy_count ${up}`,
    `workload_manager_pending_proxy_count ${pending}`,
    ...certs.map(([id, at]) => `ambit_certificate_expiry_timestamp_seconds{identity="${id}"} ${at}`),
    ...certs.map(([id, , state]) => `ambit_certificate_state{identity="${id}",state="${state}"} 1`),
  ].join('\n') + '\n';

function agent(node: string, o: { ready?: boolean; pending?: string[]; down?: boolean; certs?: Array<[string, number, string]>; dump?: unknown; usesXds?: boolean } = {}): AgentTarget {
  const ready = o.ready ?? true;
  return {
    node,
    where: `netns lab-${node}`,
    readiness: get({ '/healthz/ready': { status: ready ? 200 : 500, body: { ready, pending: o.pending ?? [] } } }, o.down),
    metrics: get({ '/metrics': { body: metrics(2, 1, o.certs ?? [['spiffe://cluster.local/ns/demo/sa/a', secs(86_400_000), 'Available']]) } }, o.down),
    ...(o.dump !== undefined ? { admin: get({ '/config_dump': { body: o.dump } }) } : {}),
    ...(o.usesXds !== undefined ? { usesXds: o.usesXds } : {}),
  };
}

const conn = (role: string, pod: string, ns: string, node = '', nack = false) => ({
  connectionId: 1,
  peer: 'ipv4:10.0.0.1:5555',
  principal: '',
  nodeId: `${role}~10.0.0.1~${pod}.${ns}~${ns}.svc.cluster.local`,
  parsedNodeId: { role, instanceIp: '10.0.0.1', podName: pod, podNamespace: ns, dnsDomain: 'cluster.local' },
  metadata: node ? { NODE_NAME: node } : {},
  connectedAt: NOW,
  types: nack ? [{ typeUrl: 'x', lastNack: { nonce: '1', message: 'bad' } }] : [],
});

function controlPlane(o: { issues?: string[]; notes?: string[]; ready?: boolean; connections?: unknown[]; inStatus?: boolean; rejections?: number } = {}) {
  const status = { version: 42, sources: ['m'], resources: {}, served: { workloads: 5, services: 2, authorizations: 1 }, issues: (o.issues ?? []).map((text) => ({ text })), notes: o.notes ?? [], rejections: o.rejections ?? 0 };
  const connections = o.connections ?? [conn('ztunnel', 'ztunnel-node-a', 'istio-system', 'node-a'), conn('ztunnel', 'ztunnel-node-b', 'istio-system', 'node-b'), conn('waypoint', 'waypoint', 'demo')];
  return {
    where: '10.1.0.2:15014',
    get: get({
      '/debug/status': { body: o.inStatus ? { ...status, connections } : status },
      '/ready': { status: o.ready === false ? 503 : 200, body: 'ready\n' },
      '/debug/config': { body: { status, connections } },
    }),
  };
}

const base = (over: Partial<StatusSources> = {}): StatusSources => ({
  mode: 'lab',
  where: 'ops1',
  controlPlane: controlPlane(),
  agents: [agent('node-b'), agent('node-a')],
  waypoints: [{ namespace: 'demo', name: 'waypoint', for: 'service', source: '/m/wp.yaml' }],
  ...over,
});

describe('cluster status aggregation', () => {
  test('all healthy: control plane, agents (sorted), waypoint by its xDS connection', async () => {
    const s = await collectClusterStatus(base(), NOW);
    assert.equal(s.healthy, true, s.problems.join('\n'));
    assert.deepEqual(s.problems, []);
    assert.equal(s.controlPlane?.configVersion, 42);
    assert.equal(s.controlPlane?.connectedAgents, 2);
    assert.equal(s.controlPlane?.connectedWaypoints, 1);
    assert.deepEqual(s.agents.map((a) => [a.node, a.ready, a.xds, a.enrolledUp, a.enrolled, a.certificates]), [
      ['node-a', true, 'connected', 2, 3, 1],
      ['node-b', true, 'connected', 2, 3, 1],
    ]);
    assert.equal(s.agents[0]?.soonestExpiry?.remainingMs, 86_400_000);
    assert.deepEqual(s.waypoints, [{ namespace: 'demo', name: 'waypoint', for: 'service', source: '/m/wp.yaml', xdsConnections: 1, healthy: true }]);
  });

  test('connections come from /debug/status when the control plane puts them there (no /debug/config call)', async () => {
    const cp = controlPlane({ inStatus: true });
    const s = await collectClusterStatus(base({ controlPlane: cp }), NOW);
    assert.equal(s.controlPlane?.connectedAgents, 2);
    assert.ok(!cp.get.calls.some((c) => c.startsWith('/debug/config')), cp.get.calls.join(','));
  });

  test('each problem is named; warnings do not make it unhealthy', async () => {
    const s = await collectClusterStatus(
      base({
        controlPlane: controlPlane({ issues: ['a.yaml: AuthorizationPolicy demo/x: spec.action: must be ALLOW or DENY'], notes: ['svc demo/y: no pods'], connections: [conn('ztunnel', 'ztunnel-node-a', 'istio-system', 'node-a', true)], rejections: 3 }),
        agents: [
          agent('node-a', { certs: [['spiffe://cluster.local/ns/demo/sa/a', secs(60_000), 'Available'], ['spiffe://cluster.local/ns/demo/sa/b', secs(-1000), 'Unavailable']] }),
          agent('node-b'),
          agent('node-c', { ready: false, pending: ['pod demo/x: enrolling'] }),
          agent('node-d', { down: true }),
        ],
      }),
      NOW,
    );
    assert.equal(s.healthy, false);
    assert.deepEqual(s.configErrors, ['a.yaml: AuthorizationPolicy demo/x: spec.action: must be ALLOW or DENY']);
    assert.deepEqual(s.problems, [
      'config error: a.yaml: AuthorizationPolicy demo/x: spec.action: must be ALLOW or DENY',
      'agent on node-a: certificate for spiffe://cluster.local/ns/demo/sa/b unavailable',
      'agent on node-a: certificate for spiffe://cluster.local/ns/demo/sa/b expired at 2026-11-22T03:59:59.000Z',
      'agent on node-b has no xDS connection to the control plane',
      'agent on node-c not ready: pod demo/x: enrolling',
      'agent on node-c has no xDS connection to the control plane',
      'agent on node-d unreachable: connect ECONNREFUSED 127.0.0.1:15021',
      'agent on node-d has no xDS connection to the control plane',
      'waypoint demo/waypoint: no waypoint proxy is connected to the control plane',
    ]);
    assert.ok(s.warnings.includes('agents rejected (NACKed) 3 resource(s) since the control plane started'));
    assert.ok(s.warnings.some((w) => /ztunnel-node-a rejected its last push/.test(w)));
    assert.equal(s.controlPlane?.notes[0], 'svc demo/y: no pods');
  });

  test('control plane unreachable or not ready; xDS then unknown, not a false alarm per agent', async () => {
    const down = await collectClusterStatus(base({ controlPlane: { where: '10.1.0.2:15014', get: get({}, true) } }), NOW);
    assert.equal(down.healthy, false);
    assert.match(down.problems[0] ?? '', /^control plane at 10\.1\.0\.2:15014 unreachable: connect ECONNREFUSED/);
    assert.ok(down.agents.every((a) => a.xds === 'unknown'));
    assert.equal(down.problems.filter((p) => p.includes('xDS')).length, 0);
    assert.equal(down.waypoints[0]?.healthy, true, 'unknown, not down');
    const notReady = await collectClusterStatus(base({ controlPlane: controlPlane({ ready: false }) }), NOW);
    assert.deepEqual(notReady.problems, ['control plane not ready (no configuration translated yet)']);
  });

  test('a lab without a control plane: agents on a cluster file, xDS not used, only a warning', async () => {
    const s = await collectClusterStatus({ mode: 'lab', where: 'l', agents: [agent('n', { usesXds: false })], waypoints: [] }, NOW);
    assert.equal(s.healthy, true);
    assert.equal(s.agents[0]?.xds, 'not used');
    assert.deepEqual(s.warnings, ['no control plane: the agents read a cluster file']);
  });

  test('the admin dump adds the enrolled pods and whether the agent uses xDS', async () => {
    const dump = { node: 'n', config: {}, workloads: [{ uid: 'demo/a', name: 'a', namespace: 'demo', node: 'n', tunnelProtocol: 'HBONE' }], workloadState: { 'demo/a': { state: 'Up' } } };
    const s = await collectClusterStatus({ mode: 'lab', where: 'l', controlPlane: controlPlane({ connections: [] }), agents: [agent('n', { dump })], waypoints: [] }, NOW);
    assert.deepEqual(s.agents[0]?.pods, ['demo/a (Up)']);
    assert.equal(s.agents[0]?.xds, 'not used', 'no controlPlane in its config: a cluster file');
  });

  test('waypoints with pods (Kubernetes): ready pods decide; pod names map xDS peers', async () => {
    const s = await collectClusterStatus(
      base({
        controlPlane: controlPlane({ connections: [conn('ztunnel', 'ztunnel-node-a', 'istio-system', 'node-a'), conn('ztunnel', 'ztunnel-node-b', 'istio-system', 'node-b'), conn('waypoint', 'wp-7d9-x', 'demo'), conn('waypoint', 'wpx-1', 'demo')] }),
        waypoints: [
          { namespace: 'demo', name: 'wp', for: 'service', source: 'api', pods: [{ name: 'wp-7d9-x', ready: true, phase: 'Running' }] },
          { namespace: 'demo', name: 'down', for: 'all', source: 'api', pods: [{ name: 'down-1', ready: false, phase: 'Pending' }] },
        ],
      }),
      NOW,
    );
    assert.deepEqual(
      s.waypoints.map((w) => [w.name, w.podsReady, w.pods, w.xdsConnections, w.healthy]),
      [
        ['down', 0, 1, 0, false],
        ['wp', 1, 1, 1, true],
      ],
    );
    assert.deepEqual(s.problems, ['waypoint demo/down: no ready pod (0/1)']);
  });

  test('xDS peers: parsed node id, or the raw id, or metadata', () => {
    assert.deepEqual(xdsPeerOf({ nodeId: 'ztunnel~1.2.3.4~ztunnel-n.istio-system~istio-system.svc.cluster.local', metadata: { NODE_NAME: 'n' } }), { role: 'ztunnel', pod: 'ztunnel-n', namespace: 'istio-system', node: 'n', nacked: false });
    assert.deepEqual(xdsPeerOf(null), { role: '', pod: '', namespace: '', node: '', nacked: false });
    // How `ambit waypoint run` presents itself: role router, the Gateway in metadata, any pod name.
    const wp = xdsPeerOf({ nodeId: 'router~10.0.1.9~somehost.demo~demo.svc.cluster.local', metadata: { WAYPOINT: 'demo/wp' } });
    assert.equal(wp.waypoint, 'demo/wp');
    assert.equal(peerIsWaypoint(wp, 'demo', 'wp'), true);
    assert.equal(peerIsWaypoint(wp, 'demo', 'other'), false);
    assert.equal(peerIsWaypoint(xdsPeerOf({ nodeId: 'router~1.1.1.1~wp-5f7-abc.demo~demo.svc.cluster.local' }), 'demo', 'wp'), true, 'by pod name');
    assert.equal(peerIsWaypoint(xdsPeerOf({ nodeId: 'ztunnel~1.1.1.1~wp.demo~demo.svc.cluster.local' }), 'demo', 'wp'), false, 'agents are not waypoints');
  });
});

describe('cluster status output', () => {
  test('tables: aligned, one row per agent and waypoint, problems listed, colour only on a TTY', async () => {
    const s = await collectClusterStatus(base({ agents: [agent('node-a'), agent('node-b', { ready: false, pending: ['x'] })] }), NOW);
    const text = renderClusterStatus(s, false);
    assert.match(text, /^lab ops1: unhealthy \(1 problem\(s\)\)$/m);
    assert.match(text, /^ADDRESS +READY +CONFIG VERSION +AGENTS +WAYPOINTS +SERVED \(W\/S\/A\) +CONFIG ERRORS\n10\.1\.0\.2:15014 +yes +42 +2 +1 +5\/2\/1 +0$/m);
    assert.match(text, /^Agents \(1\/2 ready\)$/m);
    assert.match(text, /^node-a +yes +2\/3 +connected +1 +1d0h \(ns\/demo\/sa\/a\) +netns lab-node-a$/m);
    assert.match(text, /^node-b +no +2\/3 +connected/m);
    assert.match(text, /^demo +waypoint +service +- +1 +ok$/m);
    assert.match(text, /^ {2}✗ agent on node-b not ready: x$/m);
    assert.ok(!text.includes('\u001b['));
    const lines = text.split('\n');
    const header = lines.findIndex((l) => l.startsWith('NODE'));
    assert.equal(lines[header + 1]?.indexOf('yes'), lines[header]?.indexOf('READY'), 'columns line up');
    const coloured = renderClusterStatus(s, true);
    assert.ok(coloured.includes('\u001b[31m'));
    assert.deepEqual(coloured.split('\n').map(visibleLength), text.split('\n').map(visibleLength), 'colour does not change the layout');
  });

  const args = (...a: string[]) => parseCommandArgs(statusCommand, ['--lab', 'ops1', ...a]);
  const capture = () => {
    let text = '';
    return { write: (x: string) => void (text += x), colour: false, text: () => text };
  };

  test('exit code 0 healthy, 2 unhealthy; -o json and -o yaml are the same report', async () => {
    const ok = capture();
    assert.equal(await runStatus(args(), ok, NOW, () => Promise.resolve(base())), 0);
    assert.match(ok.text(), /^lab ops1: healthy$/m);
    const sick = base({ agents: [agent('node-a', { down: true }), agent('node-b')] });
    const j = capture();
    assert.equal(await runStatus(args('-o', 'json'), j, NOW, () => Promise.resolve(sick)), STATUS_UNHEALTHY_EXIT);
    const y = capture();
    assert.equal(await runStatus(args('-o', 'yaml'), y, NOW, () => Promise.resolve(sick)), 2);
    const fromJson = JSON.parse(j.text()) as { healthy: boolean; problems: string[] };
    assert.deepEqual(parse(y.text()), fromJson);
    assert.equal(fromJson.healthy, false);
    assert.match(fromJson.problems[0] ?? '', /agent on node-a unreachable/);
    await assert.rejects(runStatus(args('-o', 'xml'), capture(), NOW, () => Promise.resolve(base())), /--output must be one of table, json, yaml/);
  });

  test('--kubernetes and --kubeconfig select the cluster-wide mode; no flag keeps the single-agent view', async () => {
    let called = 0;
    const src = () => {
      called++;
      return Promise.resolve(base({ mode: 'kubernetes', where: 'k' }));
    };
    assert.equal(await runStatus(parseCommandArgs(statusCommand, ['--kubernetes']), capture(), NOW, src), 0);
    assert.equal(await runStatus(parseCommandArgs(statusCommand, ['--kubeconfig', '/nonexistent']), capture(), NOW, src), 0);
    assert.equal(called, 2);
    await assert.rejects(runStatus(parseCommandArgs(statusCommand, ['--address', '127.0.0.1:1']), capture(), NOW, src), /cannot reach the agent admin endpoint/);
    assert.equal(called, 2);
  });
});
