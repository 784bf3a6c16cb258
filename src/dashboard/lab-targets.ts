/**
 * What the dashboard scrapes in a lab: the agent of every node (reached from
 * inside the node's netns on 127.0.0.1, like `ambit lab exec --node n --
 * ambit status`), every waypoint pod (labelled with the Gateway API
 * gateway-name label; /stats/prometheus on 15020, reached from its node's
 * netns on the pod IP), and the control plane (monitoring port on the first
 * node). Pure: built from the lab's cluster config.
 */
import { join } from 'node:path';
import { DEFAULT_ADMIN_PORT, DEFAULT_METRICS_PORT, DEFAULT_READINESS_PORT } from '../agent/config.js';
import type { LocalClusterConfig } from '../state/local-config.js';
import type { DashboardTargets } from './collector.js';

export const WAYPOINT_LABEL = 'gateway.networking.k8s.io/gateway-name';
export const WAYPOINT_METRICS_PORT = 15020;
export const LAB_CONTROL_PLANE_MONITORING_PORT = 15014;

export function labTargets(cluster: LocalClusterConfig, opts: { stateDir?: string; controlPlane?: boolean } = {}): DashboardTargets {
  const nodeNetns = new Map(cluster.nodes.map((n) => [n.name, n.netns]));
  const first = cluster.nodes[0];
  const waypointPods = cluster.workloads.filter((w) => (w.labels[WAYPOINT_LABEL] ?? '') !== '');
  return {
    agents: cluster.nodes.map((n) => ({ node: n.name, netns: n.netns, host: '127.0.0.1', metricsPort: DEFAULT_METRICS_PORT, adminPort: DEFAULT_ADMIN_PORT, readinessPort: DEFAULT_READINESS_PORT })),
    waypoints: waypointPods.map((w) => ({ namespace: w.namespace, name: w.name, netns: nodeNetns.get(w.node), host: w.ip, port: WAYPOINT_METRICS_PORT, path: '/stats/prometheus' })),
    ...(opts.controlPlane !== false && first ? { controlPlane: { netns: first.netns, host: first.ip, port: LAB_CONTROL_PLANE_MONITORING_PORT } } : {}),
    ...(opts.stateDir ? { accessLogs: cluster.nodes.map((n) => ({ node: n.name, file: join(opts.stateDir as string, `agent-${n.name}.log`) })) } : {}),
    inventory: {
      workloads: cluster.workloads.map((w) => ({
        namespace: w.namespace,
        name: w.name,
        node: w.node,
        ...(w.labels.app ? { app: w.labels.app } : {}),
        ...(w.labels.version ? { version: w.labels.version } : {}),
        ...(waypointPods.includes(w) ? { waypoint: true } : {}),
      })),
      services: cluster.services.map((s) => ({ namespace: s.namespace, name: s.name, hostname: s.hostname })),
    },
  };
}
