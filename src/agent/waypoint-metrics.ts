/**
 * Counters for the agent's waypoint decisions (ztunnel has none; an operator
 * needs to see both that traffic reaches waypoints and what was refused):
 * - ambit_waypoint_connections_total{waypoint}: outbound connections the
 *   source agent sent to a waypoint pod;
 * - ambit_waypoint_refused_total{reporter,reason,waypoint}: connections
 *   refused because of a waypoint. reporter=source with reason
 *   no_ready_endpoints (the waypoint has no healthy pod); reporter=destination
 *   with reason not_from_waypoint (HBONE from a peer that is not the
 *   waypoint) or plaintext (non-mTLS traffic to a waypoint-protected pod).
 */
import { Counter, type Registry } from 'prom-client';

export type WaypointRefusal = 'no_ready_endpoints' | 'not_from_waypoint' | 'plaintext';

export class WaypointMetrics {
  readonly #routed: Counter<'waypoint'>;
  readonly #refused: Counter<'reporter' | 'reason' | 'waypoint'>;

  constructor(registry: Registry) {
    this.#routed = new Counter({ name: 'ambit_waypoint_connections_total', help: 'Outbound connections sent to a waypoint', labelNames: ['waypoint'], registers: [registry] });
    this.#refused = new Counter({
      name: 'ambit_waypoint_refused_total',
      help: 'Connections refused because of a waypoint: no ready waypoint pod (source), or a peer that is not the waypoint (destination)',
      labelNames: ['reporter', 'reason', 'waypoint'],
      registers: [registry],
    });
  }

  routed(waypoint: string): void {
    this.#routed.inc({ waypoint });
  }

  refused(reporter: 'source' | 'destination', reason: WaypointRefusal, waypoint: string): void {
    this.#refused.inc({ reporter, reason, waypoint });
  }
}
