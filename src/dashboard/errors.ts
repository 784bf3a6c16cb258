/**
 * Dashboard errors: the server could not bind, or a scrape of an agent,
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

/** An endpoint in the lab did not answer (connect error, timeout) or answered with a non-200 status. */
export class DashboardScrapeError extends DashboardError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_DASHBOARD_SCRAPE', message, options);
  }
}
