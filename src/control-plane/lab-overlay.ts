/**
 * The lab's "kubelet": what a real cluster's API server would know about a
 * pod once it runs (its IP, node and network namespace) and a Service once
 * it is allocated (its cluster IP). The user's manifests usually leave those
 * out; `ambit lab up` plans them and writes the lab's cluster file. This
 * overlay fills them in, before translation, for resources that lack them,
 * so the control plane can watch the user's own folder unchanged.
 */
import type { LocalClusterConfig } from '../state/local-config.js';
import type { PodSpec, Resource, ServiceSpec } from './kinds.js';
import { resourceKey, ResourceSnapshot } from './resource-store.js';

export function applyLabOverlay(snap: ResourceSnapshot, lab: LocalClusterConfig): ResourceSnapshot {
  const pods = new Map(lab.workloads.map((w) => [`${w.namespace}/${w.name}`, w]));
  const services = new Map(lab.services.map((s) => [`${s.namespace}/${s.name}`, s]));
  const out = new Map<string, Resource>();
  for (const r of snap.resources.values()) {
    const key = `${r.namespace}/${r.name}`;
    if (r.kindId === 'Pod') {
      const spec = r.spec as PodSpec;
      const w = pods.get(key);
      if (w && (spec.podIPs.length === 0 || spec.netns === undefined)) {
        const filled: PodSpec = {
          ...spec,
          podIPs: spec.podIPs.length > 0 ? spec.podIPs : [w.ip],
          nodeName: spec.nodeName !== '' ? spec.nodeName : w.node,
          ...(spec.netns === undefined && w.netns !== undefined ? { netns: w.netns } : {}),
        };
        out.set(resourceKey(r), { ...r, spec: filled });
        continue;
      }
    } else if (r.kindId === 'Service') {
      const spec = r.spec as ServiceSpec;
      const s = services.get(key);
      if (s && spec.clusterIPs.length === 0 && !spec.headless && s.vips.length > 0) {
        out.set(resourceKey(r), { ...r, spec: { ...spec, clusterIPs: [...s.vips] } });
        continue;
      }
    }
    out.set(resourceKey(r), r);
  }
  return new ResourceSnapshot(snap.version, out);
}
