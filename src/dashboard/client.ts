/**
 * The dashboard seen from outside the process that serves it: the demo and
 * the tour read the graph, health and events over the same JSON API the
 * page polls, and find the dashboard through the control plane's
 * /debug/status (which says where it listens, or why it could not).
 */
import { toError } from '../common/errors.js';
import type { DashboardEvent, GraphView, HealthView } from './collector.js';
import type { DashboardStatus } from './control-plane-dashboard.js';
import { DashboardUnavailableError } from './errors.js';
import { fetchOk, type HttpTarget, type NetnsFetch } from './netns-http.js';

/** The `server` header the control plane's dashboard answers with. */
export const SERVER_HEADER_RE = /^ambit-control-plane\/(\d+)$/;

export class DashboardClient {
  readonly url: string;
  readonly #timeoutMs: number;

  constructor(url: string, opts: { timeoutMs?: number } = {}) {
    this.url = url.endsWith('/') ? url : `${url}/`;
    this.#timeoutMs = opts.timeoutMs ?? 5000;
  }

  async #get<T>(path: string): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, { signal: AbortSignal.timeout(this.#timeoutMs) });
    } catch (err) {
      throw new DashboardUnavailableError(`the dashboard at ${this.url} did not answer ${path}: ${toError(err).message}`, { cause: err });
    }
    if (res.status !== 200) throw new DashboardUnavailableError(`the dashboard at ${this.url} answered ${path} with ${res.status}: ${(await res.text()).trim().slice(0, 200)}`);
    return (await res.json()) as T;
  }

  graph(): Promise<GraphView> {
    return this.#get('api/graph');
  }

  health(): Promise<HealthView> {
    return this.#get('api/health');
  }

  async events(since = 0, limit = 100): Promise<DashboardEvent[]> {
    return (await this.#get<{ events: DashboardEvent[] }>(`api/events?since=${since}&limit=${limit}`)).events;
  }
}

/** The dashboard part of the control plane's /debug/status; undefined when it runs without one. */
export async function controlPlaneDashboardStatus(fetch: NetnsFetch, controlPlane: HttpTarget): Promise<DashboardStatus | undefined> {
  const st = JSON.parse(await fetchOk(fetch, controlPlane, '/debug/status', { timeoutMs: 3000 })) as { dashboard?: DashboardStatus };
  return st.dashboard;
}

export interface WaitForDashboardOptions {
  /** Reaches the control plane's monitoring port (inside the lab). */
  fetch: NetnsFetch;
  controlPlane: HttpTarget;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Poll period; default 200 ms. */
  everyMs?: number;
}

export interface ReadyDashboard {
  readonly url: string;
  /** The pid in the `server` header: the process that answered on the URL. */
  readonly servedByPid: number;
  readonly status: DashboardStatus;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the control plane reports its dashboard and the dashboard
 * answers /healthz 200 (its first scrape round ran) on the reported URL from
 * this process. A dashboard the control plane could not start fails at once
 * with its reason.
 */
export async function waitForDashboard(o: WaitForDashboardOptions): Promise<ReadyDashboard> {
  const deadline = Date.now() + o.timeoutMs;
  let last = 'the control plane did not answer';
  for (;;) {
    if (o.signal?.aborted) throw new DashboardUnavailableError('interrupted while waiting for the dashboard');
    const status = await controlPlaneDashboardStatus(o.fetch, o.controlPlane).catch((err: unknown) => {
      last = toError(err).message;
      return null;
    });
    if (status === undefined) throw new DashboardUnavailableError('the control plane runs without a dashboard (no --dashboard-listen)');
    if (status?.state === 'failed') throw new DashboardUnavailableError(`the control plane could not serve the dashboard: ${status.error?.message ?? 'unknown error'} (${status.error?.code ?? '?'})`);
    if (status?.url) {
      try {
        const res = await fetch(`${status.url}healthz`, { signal: AbortSignal.timeout(2000) });
        const server = res.headers.get('server') ?? '';
        await res.text();
        const pid = SERVER_HEADER_RE.exec(server)?.[1];
        if (res.status === 200 && pid) return { url: status.url, servedByPid: Number(pid), status };
        last = `${status.url}healthz answered ${res.status}${server ? ` (server: ${server})` : ''}`;
      } catch (err) {
        last = `${status.url} did not answer from here: ${toError(err).message}`;
      }
    }
    if (Date.now() > deadline) throw new DashboardUnavailableError(`the dashboard was not ready within ${o.timeoutMs} ms: ${last}`);
    await sleep(o.everyMs ?? 200);
  }
}
