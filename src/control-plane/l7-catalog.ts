/**
 * What the L7 translators need to know about services: every Service and
 * ServiceEntry host of a snapshot with its ports, VIPs and the waypoint it
 * is bound to (for `service` traffic), host-name resolution the Istio way
 * (short names in the namespace of the resource that names them), and each
 * service's ready in-mesh endpoints, taken from the workload translation
 * (so EndpointSlices, selectors and named target ports resolve exactly as
 * they do for node agents).
 */
import type { ServiceEntrySpec, ServiceSpec } from './kinds.js';
import type { EndpointInput, ServiceProtocol } from './l7-input.js';
import type { ResourceSnapshot } from './resource-store.js';
import type { TranslateOptions, Translation, WaypointIndex } from './translate.js';
import { bytesToIp } from '../workload-api/ip.js';

export interface CatalogPort {
  readonly port: number;
  readonly name?: string;
  readonly appProtocol?: string;
}

export interface CatalogService {
  /** `<namespace>/<hostname>`: the key of the service in the workload translation. */
  readonly key: string;
  readonly kind: 'Service' | 'ServiceEntry';
  /** Name of the Service or ServiceEntry object. */
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly addresses: readonly string[];
  readonly ports: readonly CatalogPort[];
  /** Key (`<ns>/<name>`) of the waypoint its service-addressed traffic goes to. */
  readonly waypoint?: string;
}

interface EndpointEntry {
  readonly endpoint: EndpointInput;
  readonly servicePort: number;
}

export class L7Catalog {
  readonly services: CatalogService[] = [];
  readonly #byHost = new Map<string, CatalogService>();
  readonly #byObject = new Map<string, CatalogService[]>();
  readonly #endpoints = new Map<string, EndpointEntry[]>();

  constructor(
    snap: ResourceSnapshot,
    t: Translation,
    readonly options: TranslateOptions,
    waypoints: WaypointIndex,
  ) {
    const wpFor = (labels: Readonly<Record<string, string>>, ns: string, name?: string): string | undefined => {
      // A waypoint's own Service is not routed through a waypoint.
      if (labels['gateway.networking.k8s.io/gateway-name'] !== undefined || (name !== undefined && waypoints.waypoints.has(`${ns}/${name}`))) return undefined;
      const b = waypoints.bindingFor(labels, ns);
      return b.waypoint?.forKinds.has('service') ? b.waypoint.key : undefined;
    };
    for (const s of snap.list<ServiceSpec>('Service')) {
      if (s.spec.type === 'ExternalName') continue;
      const hostname = `${s.name}.${s.namespace}.svc.${options.clusterDomain}`;
      const wp = wpFor(s.labels, s.namespace, s.name);
      this.#add({
        key: `${s.namespace}/${hostname}`,
        kind: 'Service',
        name: s.name,
        namespace: s.namespace,
        hostname,
        addresses: [...s.spec.clusterIPs],
        ports: s.spec.ports.filter((p) => p.protocol === 'TCP').map((p) => ({ port: p.port, ...(p.name ? { name: p.name } : {}), ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) })),
        ...(wp ? { waypoint: wp } : {}),
      });
    }
    for (const se of snap.list<ServiceEntrySpec>('ServiceEntry.networking.istio.io')) {
      const wp = wpFor(se.labels, se.namespace);
      for (const host of se.spec.hosts) {
        this.#add({
          key: `${se.namespace}/${host}`,
          kind: 'ServiceEntry',
          name: se.name,
          namespace: se.namespace,
          hostname: host,
          addresses: se.spec.addresses.map((a) => a.split('/')[0] as string),
          ports: se.spec.ports.map((p) => ({ port: p.number, ...(p.name ? { name: p.name } : {}), appProtocol: p.protocol.toLowerCase() })),
          ...(wp ? { waypoint: wp } : {}),
        });
      }
    }
    // Endpoints: ready, in-mesh (HBONE) workloads of each service, per service port.
    for (const [uid, a] of t.addresses) {
      if (a.type !== 'workload') continue;
      const w = a.workload;
      if (w.status !== 'HEALTHY' || w.tunnelProtocol !== 'HBONE') continue;
      const raw = w.addresses?.[0];
      const ip = raw === undefined ? undefined : bytesToIp(raw);
      if (ip === undefined) continue;
      const labels = { ...(t.workloadMeta.get(uid)?.labels ?? {}) };
      const namespace = w.namespace ?? '';
      for (const [svcKey, pl] of Object.entries(w.services ?? {})) {
        let list = this.#endpoints.get(svcKey);
        if (!list) this.#endpoints.set(svcKey, (list = []));
        for (const p of pl.ports ?? []) {
          const servicePort = p.servicePort ?? 0;
          list.push({
            servicePort,
            endpoint: {
              address: ip,
              port: p.targetPort || servicePort,
              labels,
              workload: w.name ?? '',
              namespace,
              principal: `spiffe://${w.trustDomain || options.trustDomain}/ns/${namespace}/sa/${w.serviceAccount || 'default'}`,
            },
          });
        }
      }
    }
    for (const l of this.#endpoints.values()) l.sort((a, b) => (a.endpoint.address < b.endpoint.address ? -1 : a.endpoint.address > b.endpoint.address ? 1 : a.endpoint.port - b.endpoint.port));
  }

  #add(s: CatalogService): void {
    this.services.push(s);
    if (!this.#byHost.has(s.hostname)) this.#byHost.set(s.hostname, s);
    const k = `${s.kind}/${s.namespace}/${s.name}`;
    this.#byObject.set(k, [...(this.#byObject.get(k) ?? []), s]);
  }

  /** The services of a Service (one) or ServiceEntry (one per host) object. */
  byObject(kind: 'Service' | 'ServiceEntry', namespace: string, name: string): readonly CatalogService[] {
    return this.#byObject.get(`${kind}/${namespace}/${name}`) ?? [];
  }

  byHostname(hostname: string): CatalogService | undefined {
    return this.#byHost.get(hostname.toLowerCase());
  }

  /**
   * Istio host resolution in namespace `ns`: `reviews` is
   * reviews.<ns>.svc.<domain>; `reviews.other` is tried as
   * reviews.other.svc.<domain>, then literally; anything else literally.
   */
  resolveHost(host: string, ns: string): CatalogService | undefined {
    const h = host.toLowerCase();
    const d = this.options.clusterDomain;
    if (!h.includes('.')) return this.byHostname(`${h}.${ns}.svc.${d}`);
    const parts = h.split('.');
    if (parts.length === 2) return this.byHostname(`${h}.svc.${d}`) ?? this.byHostname(h);
    return this.byHostname(h);
  }

  /** The FQDN Istio makes of `host` written in namespace `ns` (short names get `.<ns>.svc.<domain>`). */
  fqdn(host: string, ns: string): string {
    const h = host.toLowerCase();
    return h.includes('.') ? h : `${h}.${ns}.svc.${this.options.clusterDomain}`;
  }

  /** Whether a host pattern (`*`, `*.example.com`, short name, FQDN) written in `ns` covers `svc`. */
  hostCovers(pattern: string, ns: string, svc: CatalogService): boolean {
    const p = pattern.toLowerCase();
    if (p === '*') return true;
    if (p.startsWith('*.')) return svc.hostname.endsWith(p.slice(1));
    return this.resolveHost(p, ns) === svc;
  }

  /** Ready in-mesh endpoints of `svc` for one service port. */
  endpoints(svc: CatalogService, port: number): EndpointInput[] {
    return (this.#endpoints.get(svc.key) ?? []).filter((e) => e.servicePort === port).map((e) => e.endpoint);
  }
}

const TCP_PROTOCOLS = new Set(['tcp', 'tls', 'https', 'mongo', 'mysql', 'redis', 'kafka', 'zookeeper', 'postgres', 'postgresql', 'amqp', 'nats']);

/** The protocol prefix Istio reads from appProtocol, else from the port name (`grpc-web`, `http2-x` -> grpc-web, http2). */
function protocolName(p: CatalogPort): string {
  const ap = p.appProtocol?.toLowerCase();
  if (ap) return ap === 'kubernetes.io/h2c' ? 'h2c' : ap;
  const name = (p.name ?? '').toLowerCase();
  if (name.startsWith('grpc-web')) return 'grpc-web';
  return name.split('-')[0] ?? '';
}

/** How the waypoint treats a service port: grpc, opaque tcp, or http (HTTP/1.1 or h2c, sniffed, TCP fallback). */
export function serviceProtocol(p: CatalogPort): ServiceProtocol {
  const n = protocolName(p);
  if (n === 'grpc') return 'grpc';
  if (TCP_PROTOCOLS.has(n)) return 'tcp';
  return 'http';
}

/** How the waypoint talks to the endpoints: h2c for gRPC/HTTP2 ports, else HTTP/1.1. */
export function clusterProtocol(p: CatalogPort | undefined): 'http1' | 'h2c' {
  if (!p) return 'http1';
  const n = protocolName(p);
  return n === 'grpc' || n === 'http2' || n === 'h2c' ? 'h2c' : 'http1';
}
