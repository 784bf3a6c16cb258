/**
 * Checks that the deployment manifests agree with the code: every `ambit`
 * command and flag a container runs exists (flags come from the command
 * table, passed in to avoid a cli → cni → cli cycle), the ports the code
 * listens on are declared and probed, every $(VAR) has a source, every
 * path a flag names is under a mount, the node pod has exactly the
 * capabilities it needs and the host paths ZDS, netns discovery and CNI
 * installation need, the projected token has audience istio-ca, the grace
 * period covers the drain deadline, and the RBAC is least-privilege.
 * Waypoints (`ambit waypoint run`, deploy/waypoint.yaml): the flags the
 * command needs, its HBONE/metrics/status ports declared, readiness on
 * /healthz/ready, token audience istio-ca, root certificate from the
 * istio-ca-root-cert ConfigMap, pod labels (gateway-name, dataplane-mode
 * none), and a Service with port 15008 `mesh` (appProtocol hbone).
 * Schema validation is kube-schema.ts; this is the "what the code expects" half.
 */
import { validateKubeObject } from './kube-schema.js';

export interface CommandFlags {
  /** command name → its flag names */
  readonly [command: string]: readonly string[];
}

export interface DeployExpectations {
  readonly commands: CommandFlags;
  /** Ports of the node agent (metrics, readiness) and the control plane (xds, monitoring). */
  readonly agentMetricsPort: number;
  readonly agentReadinessPort: number;
  readonly controlPlaneXdsPort: number;
  readonly controlPlaneMonitoringPort: number;
  /** Commands the manifests may run that are not registered yet (reported, not failed). */
  readonly pendingCommands?: readonly string[];
  /** Which components must be present; default agent, cni and control-plane (a full install). */
  readonly components?: readonly DeployComponent[];
  /** Waypoint ports (`ambit waypoint run` defaults): HBONE 15008, metrics 15020, status 15021. */
  readonly waypointHbonePort?: number;
  readonly waypointMetricsPort?: number;
  readonly waypointStatusPort?: number;
}

export type DeployComponent = 'agent' | 'cni' | 'control-plane' | 'waypoint';

/** Flags `ambit waypoint run` cannot start without. */
export const WAYPOINT_REQUIRED_FLAGS = ['name', 'namespace', 'xds-address', 'root-cert', 'token-file'] as const;
export const ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert';
/** Writes the RBAC may grant (resource → verbs); everything else is read-only. */
const ALLOWED_WRITES: Readonly<Record<string, readonly string[]>> = { tokenreviews: ['create'], configmaps: ['create', 'update'] };

export const NODE_CAPABILITIES = ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN'] as const;
export const NODE_HOST_PATHS = ['/etc/cni/net.d', '/opt/cni/bin', '/proc', '/var/run/ambit', '/var/run/netns'] as const;
/** Flags whose value is a path that must be inside a mount. */
const PATH_FLAGS = ['zds-socket', 'plugin-socket', 'state-file', 'proc-root', 'netns-dir', 'cni-conf-dir', 'cni-bin-dir', 'token-file', 'root-cert', 'node-tokens', 'ca-dir'];
const READ_VERBS = new Set(['get', 'list', 'watch']);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

export interface DeployReport {
  readonly problems: string[];
  readonly notes: string[];
}

function flagsOf(args: string[]): Map<string, string | true> {
  const m = new Map<string, string | true>();
  for (let i = 1; i < args.length; i++) {
    const a = args[i] ?? '';
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) m.set(a.slice(2, eq), a.slice(eq + 1));
    else {
      const next = args[i + 1];
      if (next !== undefined && !next.startsWith('--')) {
        m.set(a.slice(2), next);
        i++;
      } else m.set(a.slice(2), true);
    }
  }
  return m;
}

function under(path: string, mount: string): boolean {
  return path === mount || path.startsWith(mount.endsWith('/') ? mount : `${mount}/`);
}

function checkContainer(c: Obj, pod: Obj, cms: Map<string, Obj>, where: string, e: DeployExpectations, r: DeployReport): Map<string, string | true> {
  const args = list(c.args).map(str);
  const cmd = args[0] ?? '';
  const flags = flagsOf(args);
  const known = e.commands[cmd];
  if (!known) {
    if (e.pendingCommands?.includes(cmd)) r.notes.push(`${where}: runs 'ambit ${cmd}', which is not registered yet`);
    else r.problems.push(`${where}: runs 'ambit ${cmd}', which is not an ambit command`);
  } else for (const f of flags.keys()) if (!known.includes(f)) r.problems.push(`${where}: 'ambit ${cmd}' has no flag --${f}`);
  // $(VAR) needs an env entry or a ConfigMap key from envFrom.
  const env = new Set(list(c.env).map((x) => str(obj(x).name)));
  for (const ef of list(c.envFrom)) {
    const cm = cms.get(str(obj(obj(ef).configMapRef).name));
    for (const k of Object.keys(obj(cm?.data))) env.add(k);
  }
  for (const a of args) for (const m of a.matchAll(/\$\(([A-Z_][A-Z0-9_]*)\)/g)) if (m[1] && !env.has(m[1])) r.problems.push(`${where}: argument '${a}' uses $(${m[1]}) but nothing defines it`);
  // Paths named by flags must be inside a mount.
  const mounts = list(c.volumeMounts).map((m) => str(obj(m).mountPath));
  for (const f of PATH_FLAGS) {
    const v = flags.get(f);
    if (typeof v === 'string' && !mounts.some((m) => under(v, m))) r.problems.push(`${where}: --${f}=${v} is not inside any volumeMount`);
  }
  // Every mount has a volume.
  const vols = new Set(list(pod.volumes).map((v) => str(obj(v).name)));
  for (const m of list(c.volumeMounts)) if (!vols.has(str(obj(m).name))) r.problems.push(`${where}: volumeMount '${str(obj(m).name)}' has no volume`);
  const res = obj(c.resources);
  if (!isObj(res.requests) || !isObj(res.limits)) r.problems.push(`${where}: resources need requests and limits`);
  if (!c.readinessProbe || !c.livenessProbe) r.problems.push(`${where}: needs a readiness and a liveness probe`);
  return flags;
}

function checkWaypoint(c: Obj, w: Obj, pod: Obj, podLabels: Obj, flags: Map<string, string | true>, tokens: Map<string, string>, where: string, e: DeployExpectations, r: DeployReport): void {
  for (const f of WAYPOINT_REQUIRED_FLAGS) if (typeof flags.get(f) !== 'string') r.problems.push(`${where}: 'ambit waypoint run' needs --${f}`);
  const num = (f: string, d: number): number => Number(flags.get(f) ?? d);
  const want: Array<[string, number]> = [
    ['hbone', num('hbone-port', e.waypointHbonePort ?? 15008)],
    ['metrics', num('metrics-port', e.waypointMetricsPort ?? 15020)],
    ['status', num('status-port', e.waypointStatusPort ?? 15021)],
  ];
  for (const [what, p] of want) if (!ports(c).includes(p)) r.problems.push(`${where}: port ${p} (the waypoint's ${what} port) is not declared`);
  const status = (want[2] as [string, number])[1];
  const rp = obj(c.readinessProbe);
  if (probePort(rp) !== status || str(obj(rp.httpGet).path) !== '/healthz/ready') r.problems.push(`${where}: readinessProbe must be GET /healthz/ready on ${status}`);
  const mountOf = (p: string | true | undefined): Obj | undefined => (typeof p === 'string' ? list(c.volumeMounts).map(obj).find((m) => under(p, str(m.mountPath))) : undefined);
  const tm = mountOf(flags.get('token-file'));
  if (!tm || tokens.get(str(tm.name)) !== 'istio-ca') r.problems.push(`${where}: --token-file must be a projected service-account token with audience istio-ca`);
  const rm = mountOf(flags.get('root-cert'));
  const rv = list(pod.volumes).map(obj).find((v) => rm !== undefined && str(v.name) === str(rm.name));
  if (!rv || str(obj(rv.configMap).name) !== ROOT_CERT_CONFIGMAP) r.problems.push(`${where}: --root-cert must come from the ConfigMap ${ROOT_CERT_CONFIGMAP}`);
  const name = flags.get('name');
  if (typeof name === 'string' && podLabels['gateway.networking.k8s.io/gateway-name'] !== name) r.problems.push(`${where}: pods need the label gateway.networking.k8s.io/gateway-name=${name}`);
  if (podLabels['istio.io/dataplane-mode'] !== 'none') r.problems.push(`${where}: pods need the label istio.io/dataplane-mode=none (a waypoint is not captured by the node agent)`);
  const ns = flags.get('namespace');
  const wns = obj(w.metadata).namespace;
  if (typeof ns === 'string' && wns !== undefined && wns !== ns) r.problems.push(`${where}: --namespace=${ns} is not the namespace it runs in (${str(wns)})`);
  const podIp = flags.get('pod-ip');
  if (typeof podIp === 'string') {
    const v = /^\$\(([A-Z_][A-Z0-9_]*)\)$/.exec(podIp)?.[1];
    const env = list(c.env).map(obj).find((x) => x.name === v);
    if (!env || str(obj(obj(env.valueFrom).fieldRef).fieldPath) !== 'status.podIP') r.problems.push(`${where}: --pod-ip must be an env var from the downward API status.podIP`);
  }
}

function ports(c: Obj): number[] {
  return list(c.ports).map((p) => Number(obj(p).containerPort));
}

function probePort(p: unknown): number | undefined {
  const o = obj(p);
  const v = obj(o.httpGet).port ?? obj(o.tcpSocket).port;
  return typeof v === 'number' ? v : undefined;
}

/** Validates every document (schema) and the code expectations. */
export function checkDeploy(docs: readonly unknown[], e: DeployExpectations): DeployReport {
  const r: DeployReport = { problems: [], notes: [] };
  docs.forEach((d, i) => r.problems.push(...validateKubeObject(d, `#${i} `)));
  const objs = docs.filter(isObj);
  const cms = new Map(objs.filter((o) => o.kind === 'ConfigMap').map((o) => [str(obj(o.metadata).name), o]));
  const workloads = objs.filter((o) => o.kind === 'DaemonSet' || o.kind === 'Deployment');
  const projected = (pod: Obj): Map<string, string> => {
    // volume name → audience of its projected service-account token
    const m = new Map<string, string>();
    for (const v of list(pod.volumes)) for (const s of list(obj(obj(v).projected).sources)) if (isObj(obj(s).serviceAccountToken)) m.set(str(obj(v).name), str(obj(obj(s).serviceAccountToken).audience));
    return m;
  };
  let sawAgent = false;
  let sawCni = false;
  let sawCp = false;
  let sawWaypoint = false;
  const waypointServices = new Map<string, string>(); // workload name → waypoint name, for the Service check
  for (const w of workloads) {
    const name = `${str(w.kind)}/${str(obj(w.metadata).name)}`;
    const tmpl = obj(obj(w.spec).template);
    const pod = obj(tmpl.spec);
    const podLabels = obj(obj(tmpl.metadata).labels);
    for (const [k, v] of Object.entries(obj(obj(obj(w.spec).selector).matchLabels))) if (podLabels[k] !== v) r.problems.push(`${name}: selector ${k}=${str(v)} does not match the pod labels`);
    const containers = list(pod.containers).map(obj);
    for (const c of containers) {
      const where = `${name} container ${str(c.name)}`;
      const flags = checkContainer(c, pod, cms, where, e, r);
      const cmd = str(list(c.args)[0]);
      const sc = obj(c.securityContext);
      if (cmd === 'agent' || cmd === 'cni') {
        if (cmd === 'agent') sawAgent = true;
        else sawCni = true;
        if (sc.privileged !== false) r.problems.push(`${where}: must set privileged: false`);
        const add = list(obj(sc.capabilities).add).map(str).sort();
        if (JSON.stringify(add) !== JSON.stringify([...NODE_CAPABILITIES])) r.problems.push(`${where}: capabilities.add must be exactly ${NODE_CAPABILITIES.join(', ')}, got ${add.join(', ') || '(none)'}`);
        if (!list(obj(sc.capabilities).drop).includes('ALL')) r.problems.push(`${where}: capabilities.drop must include ALL`);
      } else if (sc.privileged === true || list(obj(sc.capabilities).add).length > 0) r.problems.push(`${where}: needs no privileges`);
      if (cmd === 'agent') {
        const metrics = Number(flags.get('metrics-port') ?? e.agentMetricsPort);
        const ready = Number(flags.get('readiness-port') ?? e.agentReadinessPort);
        if (metrics !== e.agentMetricsPort || ready !== e.agentReadinessPort) r.notes.push(`${where}: non-default ports ${metrics}/${ready}`);
        for (const p of [metrics, ready]) if (!ports(c).includes(p)) r.problems.push(`${where}: port ${p} (the agent listens there) is not declared`);
        const rp = obj(c.readinessProbe);
        if (probePort(rp) !== ready || str(obj(rp.httpGet).path) !== '/healthz/ready') r.problems.push(`${where}: readinessProbe must be GET /healthz/ready on ${ready}`);
        const drainMs = Number(flags.get('drain-deadline-ms') ?? 5000);
        const grace = Number(pod.terminationGracePeriodSeconds ?? 30);
        if (grace < drainMs / 1000 + 1 || grace > drainMs / 1000 + 15) r.problems.push(`${name}: terminationGracePeriodSeconds ${grace} does not match the drain deadline (${drainMs} ms + 1..15 s)`);
        const tokenFile = flags.get('token-file');
        const mount = list(c.volumeMounts).map(obj).find((m) => typeof tokenFile === 'string' && under(tokenFile, str(m.mountPath)));
        if (!mount || projected(pod).get(str(mount.name)) !== 'istio-ca') r.problems.push(`${where}: --token-file must be a projected service-account token with audience istio-ca`);
        if (typeof flags.get('zds-socket') !== 'string') r.problems.push(`${where}: the agent needs --zds-socket (the CNI node component enrolls the pods)`);
      }
      if (cmd === 'waypoint' && str(list(c.args)[1]) === 'run') {
        sawWaypoint = true;
        checkWaypoint(c, w, pod, podLabels, flags, projected(pod), where, e, r);
        waypointServices.set(str(obj(w.metadata).name), str(flags.get('name')));
      }
      if (cmd === 'control-plane') {
        sawCp = true;
        const xds = Number(flags.get('port') ?? e.controlPlaneXdsPort);
        const mon = Number(flags.get('monitoring-port') ?? e.controlPlaneMonitoringPort);
        for (const p of [xds, mon]) if (!ports(c).includes(p)) r.problems.push(`${where}: port ${p} (the control plane listens there) is not declared`);
        if (probePort(c.readinessProbe) !== mon) r.problems.push(`${where}: readinessProbe must use the monitoring port ${mon}`);
      }
    }
    const cmds = containers.map((c) => str(list(c.args)[0]));
    if (cmds.includes('agent') && cmds.includes('cni')) {
      const agent = containers[cmds.indexOf('agent')] as Obj;
      const cni = containers[cmds.indexOf('cni')] as Obj;
      const zA = flagsOf(list(agent.args).map(str)).get('zds-socket');
      const zC = flagsOf(list(cni.args).map(str)).get('zds-socket') ?? '/var/run/ambit/zds.sock';
      if (zA !== zC) r.problems.push(`${name}: the agent's --zds-socket (${String(zA)}) is not the node component's (${String(zC)})`);
      const vol = (c: Obj, p: string): string | undefined => str(list(c.volumeMounts).map(obj).find((m) => typeof p === 'string' && under(p, str(m.mountPath)))?.name) || undefined;
      if (typeof zA === 'string' && vol(agent, zA) !== vol(cni, zA)) r.problems.push(`${name}: agent and cni must share the volume holding ${zA}`);
      const hostPaths = list(pod.volumes).map((v) => str(obj(obj(v).hostPath).path));
      for (const hp of NODE_HOST_PATHS) if (!hostPaths.includes(hp)) r.problems.push(`${name}: hostPath ${hp} is missing`);
      if (pod.priorityClassName !== 'system-node-critical') r.problems.push(`${name}: priorityClassName must be system-node-critical`);
      if (!list(pod.tolerations).some((t) => obj(t).operator === 'Exists' && obj(t).key === undefined)) r.problems.push(`${name}: needs a toleration for all taints (operator: Exists)`);
      const ru = obj(obj(obj(w.spec).updateStrategy).rollingUpdate);
      if (ru.maxUnavailable !== 1) r.problems.push(`${name}: updateStrategy.rollingUpdate.maxUnavailable must be 1`);
      if (pod.hostNetwork === true) r.problems.push(`${name}: must not use hostNetwork (the agent listens inside pod netns)`);
    }
  }
  const required = new Set(e.components ?? ['agent', 'cni', 'control-plane']);
  if (required.has('agent') && !sawAgent) r.problems.push('no container runs `ambit agent`');
  if (required.has('cni') && !sawCni) r.problems.push('no container runs `ambit cni`');
  if (required.has('control-plane') && !sawCp) r.problems.push('no container runs `ambit control-plane`');
  if (required.has('waypoint') && !sawWaypoint) r.problems.push('no container runs `ambit waypoint run`');
  // Services: selectors match a workload, targetPorts are declared container ports.
  for (const s of objs.filter((o) => o.kind === 'Service')) {
    const sel = obj(obj(s.spec).selector);
    const match = workloads.find((w) => Object.entries(sel).every(([k, v]) => obj(obj(obj(obj(w.spec).template).metadata).labels)[k] === v));
    const name = `Service/${str(obj(s.metadata).name)}`;
    if (!match) {
      r.problems.push(`${name}: selector matches no workload`);
      continue;
    }
    const declared = list(obj(obj(obj(match.spec).template).spec).containers).flatMap((c) => ports(obj(c)));
    for (const p of list(obj(s.spec).ports)) {
      const tp = obj(p).targetPort ?? obj(p).port;
      if (typeof tp === 'number' && !declared.includes(tp)) r.problems.push(`${name}: targetPort ${tp} is not a container port`);
    }
    const wp = waypointServices.get(str(obj(match.metadata).name));
    if (wp !== undefined) {
      const hbone = e.waypointHbonePort ?? 15008;
      const mesh = list(obj(s.spec).ports).map(obj).find((p) => p.port === hbone);
      if (!mesh || mesh.name !== 'mesh' || mesh.appProtocol !== 'hbone') r.problems.push(`${name}: a waypoint Service needs port ${hbone} named mesh with appProtocol hbone`);
      if (str(obj(s.metadata).name) !== wp) r.problems.push(`${name}: the waypoint Service must be named like its Gateway (${wp}); the control plane finds the waypoint address by that name`);
    }
  }
  // RBAC: read-only except TokenReview create; no wildcards.
  for (const role of objs.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')) {
    const name = `${str(role.kind)}/${str(obj(role.metadata).name)}`;
    for (const rule of list(role.rules).map(obj)) {
      const verbs = list(rule.verbs).map(str);
      const resources = list(rule.resources).map(str);
      if ([...verbs, ...resources, ...list(rule.apiGroups).map(str)].includes('*')) r.problems.push(`${name}: wildcards are not least privilege`);
      const writable = resources.length === 1 ? (ALLOWED_WRITES[resources[0] as string] ?? []) : [];
      for (const v of verbs) if (!(READ_VERBS.has(v) || writable.includes(v))) r.problems.push(`${name}: verb '${v}' on ${resources.join(',')} is more than reading`);
    }
  }
  if (required.has('control-plane') && !objs.some((o) => o.kind === 'ClusterRole' && list(o.rules).some((x) => list(obj(x).resources).includes('tokenreviews') && list(obj(x).verbs).includes('create')))) {
    r.problems.push('the control plane needs RBAC to create tokenreviews (CA authentication of projected tokens)');
  }
  return r;
}
