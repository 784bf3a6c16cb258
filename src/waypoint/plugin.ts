/**
 * The waypoint's filter plugin interface. A plugin sees plain data (method,
 * path, authority, header records) and returns plain data, never Node
 * request objects, so a later WebAssembly host (proxy-wasm's
 * on_request_headers / on_response_headers / on_log) can implement the same
 * interface by copying headers across the boundary.
 *
 * Hooks run in registration order:
 *   onRequestHeaders  after `route` (and before `fault`): may set/remove
 *                     request headers, rewrite path, or answer locally;
 *   onResponseHeaders after the upstream answered (or a local reply was
 *                     made), before headers go to the client;
 *   onLog             after telemetry recorded the request (read-only).
 * A hook that throws turns the request into a 500 with flag `PLUGIN`; it
 * never takes the server down.
 *
 * Example (adds a header to every upstream request):
 *   const addHeader: WaypointPlugin = {
 *     name: 'add-x-mesh',
 *     onRequestHeaders(req) { req.headers['x-mesh'] = 'ambit'; },
 *   };
 */
import type { RequestRecord } from './telemetry.js';

export interface PluginRequest {
  method: string;
  /** Path with query; may be rewritten. */
  path: string;
  authority: string;
  /** Lowercase names; mutate to set/remove headers sent upstream. */
  headers: Record<string, string>;
  readonly service: string;
  readonly route: string;
  /** The peer's SPIFFE id (spiffe://...), when the request came over HBONE. */
  readonly sourcePrincipal?: string;
  /** `iss/sub` of a validated JWT. */
  readonly requestPrincipal?: string;
}

export interface PluginResponse {
  readonly status: number;
  /** Lowercase names; mutate to change what the client gets. */
  headers: Record<string, string | string[]>;
  readonly request: Readonly<PluginRequest>;
}

export type PluginAction = { kind: 'continue' } | { kind: 'respond'; status: number; headers?: Record<string, string>; body?: string };

export interface WaypointPlugin {
  readonly name: string;
  onRequestHeaders?(req: PluginRequest): PluginAction | void | Promise<PluginAction | void>;
  onResponseHeaders?(res: PluginResponse): void | Promise<void>;
  onLog?(record: Readonly<RequestRecord>): void;
}
