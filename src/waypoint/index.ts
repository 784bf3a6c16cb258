/**
 * Public API of the waypoint L7 engine. See README.md in this folder.
 */
export { compileL7Config, parseDuration, DEFAULTS, RETRY_CONDITIONS, GRPC_CODES } from './config.js';
export type { L7Config, ServiceConfig, RouteConfig, ClusterConfig, Endpoint, RetryPolicy, Fault, AuthzPolicy, JwtRule, LoadBalancer, ConnectionPool, OutlierDetection } from './config.js';
export { Waypoint, type WaypointOptions, type ConnectionMeta } from './server.js';
export { PIPELINE_PHASES, type PipelinePhase } from './pipeline.js';
export type { WaypointPlugin, PluginRequest, PluginResponse, PluginAction } from './plugin.js';
export { tcpDialer, type UpstreamDialer, type UpstreamProtocol } from './upstream.js';
export { ERROR_TABLE, type LocalOutcome, type LocalReply } from './error-table.js';
export { ISTIO_HTTP_LABELS, DURATION_BUCKETS_MS, BYTES_BUCKETS, type RequestRecord } from './telemetry.js';
export type { TracingOptions } from './tracing.js';
export { WaypointError, WaypointConfigError, WaypointJwksError, WaypointUpstreamError } from './errors.js';
