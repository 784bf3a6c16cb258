/**
 * Source workload attributes from the W3C baggage of an HBONE CONNECT (as
 * src/hbone/headers.ts formatBaggage writes it), for the source_* labels of
 * HTTP and TCP telemetry.
 */
export interface SourceWorkload {
  workload?: string;
  namespace?: string;
  cluster?: string;
  canonicalService?: string;
  canonicalRevision?: string;
}

export function sourceFromBaggage(b: ReadonlyMap<string, string>): SourceWorkload {
  let workload: string | undefined;
  for (const [k, v] of b) {
    const m = /^k8s\.([a-z]+)\.name$/.exec(k);
    if (m && m[1] !== 'cluster' && m[1] !== 'namespace') workload = v;
  }
  return {
    ...(workload ? { workload } : {}),
    ...(b.get('k8s.namespace.name') ? { namespace: b.get('k8s.namespace.name') as string } : {}),
    ...(b.get('k8s.cluster.name') ? { cluster: b.get('k8s.cluster.name') as string } : {}),
    ...(b.get('service.name') ? { canonicalService: b.get('service.name') as string } : {}),
    ...(b.get('service.version') ? { canonicalRevision: b.get('service.version') as string } : {}),
  };
}
