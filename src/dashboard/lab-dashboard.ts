/**
 * One call that puts a dashboard on a running lab: the collector over the
 * lab's agents, waypoints and control plane, and the HTTP server. Used by
 * `ambit demo` and the browser test.
 */
import type { Logger } from '../common/logger.js';
import type { LocalClusterConfig } from '../state/local-config.js';
import { Collector } from './collector.js';
import { labTargets } from './lab-targets.js';
import { defaultFetch, type NetnsFetch } from './netns-http.js';
import { startDashboardServer } from './server.js';

export interface LabDashboardOptions {
  cluster: LocalClusterConfig;
  /** The lab's state dir (agent logs are tailed for the access-log list). */
  stateDir?: string;
  controlPlane?: boolean;
  port?: number;
  address?: string;
  intervalMs?: number;
  title?: string;
  logger?: Logger;
  /** Replaces the netns fetch (tests). */
  fetch?: NetnsFetch;
}

export interface LabDashboard {
  readonly url: string;
  readonly collector: Collector;
  readonly fetchHow: string;
  close(): Promise<void>;
}

export async function startLabDashboard(o: LabDashboardOptions): Promise<LabDashboard> {
  const f = o.fetch ? { fetch: o.fetch, how: 'injected' } : defaultFetch();
  const collector = new Collector({
    targets: labTargets(o.cluster, { ...(o.stateDir ? { stateDir: o.stateDir } : {}), ...(o.controlPlane !== undefined ? { controlPlane: o.controlPlane } : {}) }),
    fetch: f.fetch,
    fetchHow: f.how,
    ...(o.intervalMs ? { intervalMs: o.intervalMs } : {}),
  });
  collector.start();
  let server;
  try {
    server = await startDashboardServer({ collector, ...(o.port !== undefined ? { port: o.port } : {}), ...(o.address ? { address: o.address } : {}), ...(o.title ? { title: o.title } : {}), ...(o.logger ? { logger: o.logger } : {}) });
  } catch (err) {
    await collector.stop();
    throw err;
  }
  const s = server;
  return {
    url: s.url,
    collector,
    fetchHow: f.how,
    close: async () => {
      await collector.stop();
      await s.close();
    },
  };
}
