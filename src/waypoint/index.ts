/**
 * Public API of the waypoint L7 engine. See README.md in this folder.
 */
export { compileL7Config, parseDuration, DEFAULTS, RETRY_CONDITIONS, GRPC_CODES } from './config.js';
export type { L7Config, ServiceConfig, RouteConfig, ClusterConfig, Endpoint, RetryPolicy, Fault, AuthzPolicy, JwtRule, LoadBalancer, ConnectionPool, OutlierDetection, WorkloadConfig } from './config.js';
export { Waypoint, type WaypointOptions, type ConnectionMeta } from './server.js';
export { PIPELINE_PHASES, type PipelinePhase } from './pipeline.js';
export type { WaypointPlugin, PluginRequest, PluginResponse, PluginAction } from './plugin.js';
export { tcpDialer, type UpstreamDialer, type UpstreamProtocol, type DialContext } from './upstream.js';
export { L7_CONFIG_TYPE_URL, encodeL7Config, decodeL7Config } from './l7-codec.js';
export { sniff, type Sniffed } from './sniff.js';
export { evaluateL4Authz, l4Policies, type L4AuthzRequest } from './l4-authz.js';
export { ISTIO_TCP_LABELS, tcpLabels, type TcpLabels } from './tcp-telemetry.js';
export { ERROR_TABLE, type LocalOutcome, type LocalReply } from './error-table.js';
export { ISTIO_HTTP_LABELS, DURATION_BUCKETS_MS, BYTES_BUCKETS, type RequestRecord } from './telemetry.js';
export type { TracingOptions } from './tracing.js';
export { WaypointError, WaypointConfigError, WaypointJwksError, WaypointUpstreamError } from './errors.js';
