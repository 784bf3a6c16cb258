/**
 * Endpoint choice for a Service, as ztunnel does it:
 * - only healthy endpoints, unless the service's health policy is ALLOW_ALL;
 * - with a routing preference (scopes in order: REGION, ZONE, SUBZONE, NODE,
 *   CLUSTER, NETWORK), an endpoint's rank is how many scopes of the list,
 *   from the first, it shares with the source. STRICT keeps only endpoints
 *   matching every scope; FAILOVER (the default with a preference) keeps the
 *   highest rank present, so same-node endpoints win while they exist;
 * - then a random pick weighted by capacity (default 1; 0 never chosen).
 * Pure: randomness is injected.
 */
import type { Endpoint } from '../state/cluster-state.js';
import type { LocalLoadBalancing, LocalityScope, LocalWorkload } from '../state/local-config.js';

function sameScope(scope: LocalityScope, a: LocalWorkload, b: LocalWorkload): boolean {
  const la = a.locality;
  const lb = b.locality;
  switch (scope) {
    case 'REGION':
      return (la?.region ?? '') === (lb?.region ?? '');
    case 'ZONE':
      return (la?.region ?? '') === (lb?.region ?? '') && (la?.zone ?? '') === (lb?.zone ?? '');
    case 'SUBZONE':
      return (la?.region ?? '') === (lb?.region ?? '') && (la?.zone ?? '') === (lb?.zone ?? '') && (la?.subzone ?? '') === (lb?.subzone ?? '');
    case 'NODE':
      return a.node !== '' && a.node === b.node;
    case 'CLUSTER':
    case 'NETWORK':
      // One cluster, one network in this mesh.
      return true;
  }
}

function rank(scopes: readonly LocalityScope[], src: LocalWorkload, dst: LocalWorkload): number {
  let n = 0;
  for (const s of scopes) {
    if (!sameScope(s, src, dst)) break;
    n++;
  }
  return n;
}

/** The endpoints eligible under the policy (before the weighted pick). */
export function eligibleEndpoints(eps: readonly Endpoint[], src: LocalWorkload, lb: LocalLoadBalancing | undefined): Endpoint[] {
  let out = lb?.healthPolicy === 'ALLOW_ALL' ? [...eps] : eps.filter((e) => e.healthy);
  const scopes = lb?.routingPreference ?? [];
  if (scopes.length === 0 || out.length === 0) return out;
  const ranked = out.map((e) => ({ e, r: rank(scopes, src, e.workload) }));
  if (lb?.mode === 'STRICT') return ranked.filter((x) => x.r === scopes.length).map((x) => x.e);
  const best = Math.max(...ranked.map((x) => x.r));
  out = ranked.filter((x) => x.r === best).map((x) => x.e);
  return out;
}

/** Weighted random choice by capacity; undefined when nothing can be chosen. */
export function pickWeighted(eps: readonly Endpoint[], random: () => number): Endpoint | undefined {
  const weight = (e: Endpoint): number => Math.max(0, e.workload.capacity ?? 1);
  const total = eps.reduce((n, e) => n + weight(e), 0);
  if (total <= 0) return undefined;
  let x = random() * total;
  for (const e of eps) {
    x -= weight(e);
    if (x < 0 && weight(e) > 0) return e;
  }
  return [...eps].reverse().find((e) => weight(e) > 0);
}
