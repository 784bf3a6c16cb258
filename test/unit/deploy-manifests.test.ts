/**
 * The manifests in deploy/ against the Kubernetes schemas (client-node's
 * generated OpenAPI models: unknown fields, types, required fields) and
 * against what the code expects (commands, flags, ports, $(VARS), mounts,
 * capabilities, host paths, token audience, grace period, RBAC). Broken
 * copies (wrong port, missing capability, ...) must fail.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_METRICS_PORT, DEFAULT_READINESS_PORT } from '../../src/agent/config.js';
import { commands } from '../../src/cli/commands.js';
import { DEFAULT_MONITORING_PORT, DEFAULT_XDS_TLS_PORT } from '../../src/cli/control-plane-command.js';
import { parseCommandArgs } from '../../src/cli/command.js';
import { runWaypoint, WAYPOINT_RUN_FLAGS, waypointCommand } from '../../src/cli/waypoint-command.js';
import { checkDeploy, WAYPOINT_REQUIRED_FLAGS, type CommandFlags, type DeployExpectations } from '../../src/cni/deploy-check.js';
import { DEPLOY_DIR, loadDeployDocs, renderDeploy, renderWaypoint } from '../../src/cni/deploy-render.js';
import { validateKubeObject } from '../../src/cni/kube-schema.js';

const flags: CommandFlags = Object.fromEntries(commands.map((c) => [c.name, Object.keys(c.flags)]));
const expect: DeployExpectations = {
  commands: flags,
  agentMetricsPort: DEFAULT_METRICS_PORT,
  agentReadinessPort: DEFAULT_READINESS_PORT,
  controlPlaneXdsPort: DEFAULT_XDS_TLS_PORT,
  controlPlaneMonitoringPort: DEFAULT_MONITORING_PORT,
};
const wpExpect: DeployExpectations = { ...expect, components: ['waypoint'] };

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const docs = (): Obj[] => JSON.parse(JSON.stringify(loadDeployDocs())) as Obj[];
const find = (ds: Obj[], kind: string, name?: string): Obj => ds.find((d) => d.kind === kind && (name === undefined || d.metadata.name === name)) ?? assert.fail(`no ${kind}`);
const container = (ds: Obj[], cmd: string): Obj => {
  for (const d of ds) for (const c of d.spec?.template?.spec?.containers ?? []) if (c.args?.[0] === cmd) return c as Obj;
  return assert.fail(`no container runs ${cmd}`);
};

function problems(ds: Obj[]): string[] {
  return checkDeploy(ds, expect).problems;
}

describe('deploy/ manifests', () => {
  test('every document of deploy/ is schema-valid and matches the code', () => {
    const r = checkDeploy(docs(), expect);
    assert.deepEqual(r.problems, []);
    assert.ok(docs().length >= 10, 'namespace, RBAC, control plane and DaemonSet are all there');
  });

  test('the waypoint template is schema-valid and runs `ambit waypoint run` with every flag and port it needs', () => {
    const wp = loadDeployDocs(DEPLOY_DIR, ['waypoint.yaml']);
    assert.deepEqual(wp.map((d) => (d as Obj).kind), ['Gateway', 'ServiceAccount', 'Service', 'Deployment']);
    for (const d of wp) assert.deepEqual(validateKubeObject(d), []);
    assert.deepEqual(checkDeploy(wp, wpExpect).problems, []);
    const c = container(wp as Obj[], 'waypoint');
    assert.equal(c.args[1], 'run');
    for (const f of WAYPOINT_REQUIRED_FLAGS) assert.ok(c.args.some((a: string) => a.startsWith(`--${f}=`)), `--${f}`);
    for (const a of c.args.slice(2) as string[]) assert.ok(Object.keys(WAYPOINT_RUN_FLAGS).includes(a.slice(2).split('=')[0] as string) || /^--(name|namespace)=/.test(a), `${a} is a waypoint run flag`);
    assert.deepEqual(c.ports.map((p: Obj) => p.containerPort).sort(), [15008, 15020, 15021]);
  });

  test("the template's command line parses as `ambit waypoint run`, which the waypoint command dispatches", async () => {
    const c = container(loadDeployDocs(DEPLOY_DIR, ['waypoint.yaml']) as Obj[], 'waypoint');
    const argv = (c.args as string[]).slice(1).map((a) => a.replace('$(POD_IP)', '10.0.0.9'));
    const parsed = parseCommandArgs(waypointCommand, argv);
    assert.deepEqual(parsed.positionals, ['run']);
    const out = { write: () => undefined, colour: false };
    // Without its required flags the run subcommand itself answers (so the dispatch reached it).
    await assert.rejects(runWaypoint(parseCommandArgs(waypointCommand, ['run', '--name', 'wp']), out), /--namespace is required|--xds-address is required/);
    const runModule: string = '../../src/cli/waypoint-run-command.js';
    const mod = (await import(runModule)) as { parseWaypointRunConfig?: (a: typeof parsed) => Record<string, unknown> };
    if (mod.parseWaypointRunConfig) {
      const cfg = mod.parseWaypointRunConfig(parsed);
      assert.equal(cfg.name, '__NAME__');
      assert.equal(cfg.podIp, '10.0.0.9');
      assert.equal(cfg.statusPort, 15021);
      assert.equal(cfg.metricsPort, 15020);
      assert.equal(cfg.tokenFile, '/var/run/secrets/tokens/istio-token');
    }
  });

  test('renderWaypoint: names, namespace, image, for-label and istiod namespace filled in; the result is valid', () => {
    const docs = renderWaypoint({ namespace: 'shop', name: 'wp1', forKind: 'all', image: 'registry.example/ambit:dev', controlPlaneNamespace: 'mesh-system' }) as Obj[];
    assert.deepEqual(checkDeploy(docs, wpExpect).problems, []);
    assert.ok(!JSON.stringify(docs).includes('__'), 'no placeholder left');
    assert.ok(docs.every((d) => d.metadata.namespace === 'shop' && d.metadata.name === 'wp1'));
    assert.equal(find(docs, 'Gateway').metadata.labels['istio.io/waypoint-for'], 'all');
    const c = container(docs, 'waypoint');
    assert.equal(c.image, 'registry.example/ambit:dev');
    assert.ok(c.args.includes('--xds-address=istiod.mesh-system.svc:15012'));
    assert.ok(c.args.includes('--name=wp1') && c.args.includes('--namespace=shop'));
    assert.equal(find(docs, 'Deployment').spec.template.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'wp1');
    assert.deepEqual(find(docs, 'Service').spec.selector, { 'gateway.networking.k8s.io/gateway-name': 'wp1' });
  });

  const wpBroken: Array<[string, (ds: Obj[]) => void, RegExp]> = [
    ['no --token-file', (ds) => (container(ds, 'waypoint').args = container(ds, 'waypoint').args.filter((a: string) => !a.startsWith('--token-file'))), /needs --token-file/],
    ['unknown run flag', (ds) => container(ds, 'waypoint').args.push('--admin-port=15000'), /has no flag --admin-port/],
    ['status port not probed', (ds) => (container(ds, 'waypoint').readinessProbe.httpGet.port = 15020), /readinessProbe must be GET \/healthz\/ready on 15021/],
    ['HBONE port not declared', (ds) => (container(ds, 'waypoint').ports = container(ds, 'waypoint').ports.filter((p: Obj) => p.containerPort !== 15008)), /port 15008 \(the waypoint's hbone port\)/],
    ['metrics flag moved', (ds) => (container(ds, 'waypoint').args = container(ds, 'waypoint').args.map((a: string) => (a.startsWith('--metrics-port') ? '--metrics-port=9090' : a))), /port 9090/],
    ['root cert not from the ConfigMap', (ds) => (find(ds, 'Deployment').spec.template.spec.volumes.find((v: Obj) => v.configMap).configMap.name = 'other'), /istio-ca-root-cert/],
    ['token audience', (ds) => (find(ds, 'Deployment').spec.template.spec.volumes.find((v: Obj) => v.projected).projected.sources[0].serviceAccountToken.audience = 'api'), /audience istio-ca/],
    ['pod captured by the agent', (ds) => delete find(ds, 'Deployment').spec.template.metadata.labels['istio.io/dataplane-mode'], /dataplane-mode=none/],
    ['mesh port without hbone appProtocol', (ds) => (find(ds, 'Service').spec.ports.find((p: Obj) => p.port === 15008).appProtocol = 'tcp'), /port 15008 named mesh with appProtocol hbone/],
    ['pod IP not from the downward API', (ds) => (container(ds, 'waypoint').env = container(ds, 'waypoint').env.map((e: Obj) => (e.name === 'POD_IP' ? { name: 'POD_IP', value: '1.2.3.4' } : e))), /--pod-ip must be an env var/],
  ];
  for (const [what, breakIt, msg] of wpBroken) {
    test(`a broken waypoint template fails: ${what}`, () => {
      const ds = JSON.parse(JSON.stringify(loadDeployDocs(DEPLOY_DIR, ['waypoint.yaml']))) as Obj[];
      breakIt(ds);
      const p = checkDeploy(ds, wpExpect).problems;
      assert.ok(p.some((x) => msg.test(x)), `expected ${String(msg)} among: ${p.join(' | ') || '(no problems)'}`);
    });
  }

  test('the control plane may write ConfigMaps (istio-ca-root-cert) but not delete them', () => {
    const cp = find(docs(), 'ClusterRole', 'ambit-control-plane');
    assert.deepEqual(cp.rules.find((r: Obj) => r.resources.includes('configmaps')).verbs, ['get', 'list', 'watch', 'create', 'update']);
  });

  test('the node DaemonSet: capabilities, host paths, token audience, probes, priority, tolerations, rollout, grace', () => {
    const ds = find(docs(), 'DaemonSet');
    const pod = ds.spec.template.spec;
    for (const c of pod.containers) {
      assert.equal(c.securityContext.privileged, false);
      assert.deepEqual([...c.securityContext.capabilities.add].sort(), ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN']);
      assert.ok(c.resources.requests && c.resources.limits);
    }
    assert.deepEqual(pod.volumes.filter((v: Obj) => v.hostPath).map((v: Obj) => v.hostPath.path).sort(), ['/etc/cni/net.d', '/opt/cni/bin', '/proc', '/var/run/ambit', '/var/run/netns']);
    const token = pod.volumes.find((v: Obj) => v.projected).projected.sources[0].serviceAccountToken;
    assert.equal(token.audience, 'istio-ca');
    assert.equal(pod.priorityClassName, 'system-node-critical');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    assert.equal(ds.spec.updateStrategy.rollingUpdate.maxUnavailable, 1);
    const agent = container([ds], 'agent');
    const drain = Number(String(agent.args.find((a: string) => a.startsWith('--drain-deadline-ms='))).split('=')[1]);
    assert.equal(pod.terminationGracePeriodSeconds, drain / 1000 + 5);
    assert.equal(agent.readinessProbe.httpGet.port, DEFAULT_READINESS_PORT);
  });

  test('install --dry-run output for another namespace, image and drain deadline is valid too', () => {
    const ds = renderDeploy({ namespace: 'mesh-system', image: 'registry.example/ambit:dev', drainDeadlineMs: 40_000, trustDomain: 'example.org' }) as Obj[];
    assert.deepEqual(checkDeploy(ds, expect).problems, []);
    assert.equal(find(ds, 'Namespace').metadata.name, 'mesh-system');
    assert.ok(ds.filter((d) => d.metadata.namespace !== undefined).every((d) => d.metadata.namespace === 'mesh-system'));
    const agent = container(ds, 'agent');
    assert.equal(agent.image, 'registry.example/ambit:dev');
    assert.ok(agent.args.includes('--xds-address=istiod.mesh-system.svc:15012'));
    assert.ok(agent.args.includes('--control-plane-identity=spiffe://example.org/ns/mesh-system/sa/istiod'));
    assert.equal(find(ds, 'DaemonSet').spec.template.spec.terminationGracePeriodSeconds, 45);
  });

  const broken: Array<[string, (ds: Obj[]) => void, RegExp]> = [
    ['wrong readiness port', (ds) => (container(ds, 'agent').readinessProbe.httpGet.port = 15022), /readinessProbe must be GET \/healthz\/ready on 15021/],
    ['undeclared metrics port', (ds) => (container(ds, 'agent').ports = container(ds, 'agent').ports.filter((p: Obj) => p.containerPort !== 15020)), /port 15020/],
    ['missing capability', (ds) => (container(ds, 'cni').securityContext.capabilities.add = ['NET_ADMIN', 'NET_RAW']), /capabilities.add must be exactly/],
    ['privileged', (ds) => (container(ds, 'agent').securityContext.privileged = true), /privileged: false/],
    ['unknown field (schema)', (ds) => (container(ds, 'agent').securityContext.capabilites = {}), /unknown field 'capabilites'/],
    ['string port (schema)', (ds) => (container(ds, 'agent').ports[0].containerPort = '15020'), /must be a number/],
    ['unknown flag', (ds) => container(ds, 'cni').args.push('--no-such-flag=1'), /has no flag --no-such-flag/],
    ['flag path outside mounts', (ds) => (container(ds, 'cni').volumeMounts = container(ds, 'cni').volumeMounts.filter((m: Obj) => m.name !== 'host-proc')), /--proc-root=\/host\/proc is not inside any volumeMount/],
    ['missing hostPath', (ds) => (find(ds, 'DaemonSet').spec.template.spec.volumes = find(ds, 'DaemonSet').spec.template.spec.volumes.filter((v: Obj) => v.name !== 'netns')), /hostPath \/var\/run\/netns is missing|has no volume/],
    ['token audience', (ds) => (find(ds, 'DaemonSet').spec.template.spec.volumes.find((v: Obj) => v.projected).projected.sources[0].serviceAccountToken.audience = 'api'), /audience istio-ca/],
    ['grace shorter than drain', (ds) => (find(ds, 'DaemonSet').spec.template.spec.terminationGracePeriodSeconds = 5), /terminationGracePeriodSeconds 5/],
    ['maxUnavailable', (ds) => (find(ds, 'DaemonSet').spec.updateStrategy.rollingUpdate.maxUnavailable = 3), /maxUnavailable must be 1/],
    ['undefined $(VAR)', (ds) => (container(ds, 'control-plane').envFrom = []), /\$\(TRUST_DOMAIN\) but nothing defines it/],
    ['RBAC write verb', (ds) => find(ds, 'ClusterRole', 'ambit-node').rules[0].verbs.push('delete'), /verb 'delete'/],
    ['RBAC deletes ConfigMaps', (ds) => find(ds, 'ClusterRole', 'ambit-control-plane').rules.find((r: Obj) => r.resources.includes('configmaps')).verbs.push('delete'), /verb 'delete' on configmaps/],
    ['no TokenReview', (ds) => (find(ds, 'ClusterRole', 'ambit-control-plane').rules = find(ds, 'ClusterRole', 'ambit-control-plane').rules.filter((r: Obj) => !r.resources.includes('tokenreviews'))), /tokenreviews/],
    ['service targetPort', (ds) => (find(ds, 'Service').spec.ports[0].targetPort = 15013), /targetPort 15013 is not a container port/],
    ['zds socket mismatch', (ds) => (container(ds, 'agent').args = container(ds, 'agent').args.map((a: string) => (a.startsWith('--zds-socket') ? '--zds-socket=/var/run/ambit/other.sock' : a))), /zds-socket/],
  ];
  for (const [what, breakIt, msg] of broken) {
    test(`a broken copy fails: ${what}`, () => {
      const ds = docs();
      breakIt(ds);
      const p = problems(ds);
      assert.ok(p.some((x) => msg.test(x)), `expected ${String(msg)} among: ${p.join(' | ') || '(no problems)'}`);
    });
  }
});
