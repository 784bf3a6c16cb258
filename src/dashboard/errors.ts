/**
 * Dashboard errors: the server could not bind (or enter the netns it was
 * told to listen in), the dashboard did not come up, or a scrape of an agent,
 * waypoint or control-plane endpoint failed. Scrape failures are values in
 * the dashboard's health view (an agent that is down is shown as down); the
 * class exists so their messages and codes are stable.
 */
import { AmbitError } from '../common/errors.js';

export class DashboardError extends AmbitError {}

/** The dashboard HTTP server could not listen on the requested address/port. */
export class DashboardBindError extends DashboardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_DASHBOARD_BIND', message, options);
  }
}

/**
 * The netns the dashboard was told to listen in cannot be entered (the path
 * does not exist, e.g. the process that owned /proc/<pid>/ns/net exited; no
 * privilege to setns), or the native addon that makes sockets there is not
 * available.
 */
export class DashboardNetnsError extends DashboardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_DASHBOARD_NETNS', message, options);
  }
}

/** The dashboard (served by the control plane) did not come up where the caller expected it, in time. */
export class DashboardUnavailableError extends DashboardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_DASHBOARD_UNAVAILABLE', message, options);
  }
}

/** An endpoint in the lab did not answer (connect error, timeout) or answered with a non-200 status. */
export class DashboardScrapeError extends DashboardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_DASHBOARD_SCRAPE', message, options);
  }
}
