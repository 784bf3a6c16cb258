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
import { checkDeploy, type CommandFlags, type DeployExpectations } from '../../src/cni/deploy-check.js';
import { DEPLOY_DIR, loadDeployDocs, renderDeploy } from '../../src/cni/deploy-render.js';
import { validateKubeObject } from '../../src/cni/kube-schema.js';

const flags: CommandFlags = Object.fromEntries(commands.map((c) => [c.name, Object.keys(c.flags)]));
const expect: DeployExpectations = {
  commands: flags,
  agentMetricsPort: DEFAULT_METRICS_PORT,
  agentReadinessPort: DEFAULT_READINESS_PORT,
  controlPlaneXdsPort: DEFAULT_XDS_TLS_PORT,
  controlPlaneMonitoringPort: DEFAULT_MONITORING_PORT,
  // The waypoint proxy command comes with the waypoint issue.
  pendingCommands: ['waypoint-proxy'],
};

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

  test('the waypoint template is schema-valid', () => {
    const wp = loadDeployDocs(DEPLOY_DIR, ['waypoint.yaml']);
    assert.deepEqual(wp.map((d) => (d as Obj).kind), ['Gateway', 'ServiceAccount', 'Service', 'Deployment']);
    for (const d of wp) assert.deepEqual(validateKubeObject(d), []);
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
