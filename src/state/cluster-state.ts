/**
 * Read-only lookups over the cluster view: workloads by address, services by
 * VIP or hostname, and a service's endpoints. Built once from a frozen
 * LocalClusterConfig (the xDS-fed store of a later issue keeps this interface).
 */
import type { Authorization } from '../workload-api/types.js';
import type { LocalClusterConfig, LocalService, LocalServicePort, LocalWorkload } from './local-config.js';

export interface Endpoint {
  readonly workload: LocalWorkload;
  readonly port: number;
  readonly healthy: boolean;
}

export class ClusterState {
  readonly config: LocalClusterConfig;
  readonly #byIp = new Map<string, LocalWorkload>();
  readonly #byUid = new Map<string, LocalWorkload>();
  readonly #policyByKey = new Map<string, Authorization>();
  readonly #policiesByUid = new Map<string, Authorization[]>();
  readonly #svcByVip = new Map<string, LocalService>();
  readonly #svcByName = new Map<string, LocalService>();
  readonly #svcByNsHost = new Map<string, LocalService>();

  constructor(config: LocalClusterConfig) {
    this.config = config;
    for (const w of config.workloads) {
      this.#byIp.set(w.ip, w);
      this.#byUid.set(w.uid, w);
    }
    for (const p of config.policies ?? []) this.#policyByKey.set(`${p.namespace ?? ''}/${p.name ?? ''}`, p);
    for (const s of config.services) {
      for (const vip of s.vips) this.#svcByVip.set(vip, s);
      this.#svcByName.set(s.hostname, s);
      this.#svcByNsHost.set(`${s.namespace}/${s.hostname}`, s);
    }
  }

  workloadByIp(ip: string): LocalWorkload | undefined {
    return this.#byIp.get(ip);
  }

  /**
   * The policies in scope for a destination workload, as ztunnel selects
   * them: GLOBAL ones (root namespace), its namespace's NAMESPACE ones, and
   * the WORKLOAD_SELECTOR ones listed on the workload.
   */
  policiesFor(w: LocalWorkload): Authorization[] {
    // The view is immutable, so the scope of a workload is computed once per view.
    const cached = this.#policiesByUid.get(w.uid);
    if (cached) return cached;
    const out: Authorization[] = [];
    for (const p of this.config.policies ?? []) {
      if (p.scope === 'GLOBAL' || (p.scope === 'NAMESPACE' && p.namespace === w.namespace)) out.push(p);
    }
    for (const key of w.authorizationPolicies ?? []) {
      const p = this.#policyByKey.get(key);
      if (p && p.scope === 'WORKLOAD_SELECTOR') out.push(p);
    }
    this.#policiesByUid.set(w.uid, out);
    return out;
  }

  workloadByUid(uid: string): LocalWorkload | undefined {
    return this.#byUid.get(uid);
  }

  localWorkloads(node: string): LocalWorkload[] {
    return this.config.workloads.filter((w) => w.node === node);
  }

  serviceByVip(vip: string): LocalService | undefined {
    return this.#svcByVip.get(vip);
  }

  /** The service with exactly this namespace and hostname (a GatewayAddress hostname reference). */
  serviceByHostname(namespace: string, hostname: string): LocalService | undefined {
    return this.#svcByNsHost.get(`${namespace}/${hostname}`) ?? (namespace === '' ? this.#svcByName.get(hostname) : undefined);
  }

  /**
   * Resolves a DNS-style name as a pod in `fromNamespace` would: `<svc>`,
   * `<svc>.<ns>`, `<svc>.<ns>.svc` and the fully qualified name.
   */
  serviceByName(name: string, fromNamespace: string): LocalService | undefined {
    const domain = this.config.clusterDomain;
    const n = name.replace(/\.$/, '').toLowerCase();
    const dots = n.split('.').length - 1;
    const candidates = dots === 0 ? [`${n}.${fromNamespace}.svc.${domain}`] : dots === 1 ? [`${n}.svc.${domain}`] : dots === 2 && n.endsWith('.svc') ? [`${n}.${domain}`] : [n];
    for (const c of candidates) {
      const s = this.#svcByName.get(c);
      if (s) return s;
    }
    return undefined;
  }

  /**
   * Endpoints of a service port: the explicit (xDS) endpoints when the service
   * has them, healthy ones only; otherwise workloads in the service's
   * namespace whose labels match the selector.
   */
  endpoints(svc: LocalService, port: LocalServicePort, opts: { includeUnhealthy?: boolean } = {}): Endpoint[] {
    if (svc.endpoints) {
      const out: Endpoint[] = [];
      for (const ep of svc.endpoints) {
        const workload = this.#byUid.get(ep.uid);
        if (!workload || (!ep.healthy && !opts.includeUnhealthy)) continue;
        // An endpoint that lists ports but not this one does not serve it.
        const target = ep.ports[port.port];
        if (target === undefined && Object.keys(ep.ports).length > 0) continue;
        out.push({ workload, port: target !== undefined && target !== 0 ? target : port.targetPort, healthy: ep.healthy });
      }
      return out;
    }
    const sel = Object.entries(svc.selector);
    if (sel.length === 0) return [];
    return this.config.workloads
      .filter((w) => w.namespace === svc.namespace && sel.every(([k, v]) => w.labels[k] === v))
      .map((workload) => ({ workload, port: port.targetPort, healthy: true }));
  }

  identityOf(w: LocalWorkload): string {
    return `spiffe://${this.config.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`;
  }
}
