/**
 * Agent configuration: parsed and validated once from flags, then frozen.
 * Ports and marks default to ztunnel's so existing NetworkPolicies, probes
 * and dashboards keep working (ztunnel.md §2, §4.2).
 */
import type { LogFormat, LogLevel } from '../common/logger.js';

export const DEFAULT_ADMIN_PORT = 15000;
export const DEFAULT_METRICS_PORT = 15020;
export const DEFAULT_READINESS_PORT = 15021;
export const DEFAULT_SOCKS5_PORT = 15080;
export const DEFAULT_INBOUND_PORT = 15008;
export const DEFAULT_OUTBOUND_CAPTURE_PORT = 15001;
export const DEFAULT_INBOUND_PLAINTEXT_PORT = 15006;
/** SO_MARK on every socket the agent opens from a pod netns, so redirection rules skip it. */
export const DEFAULT_PACKET_MARK = 0x539;
export const DEFAULT_DRAIN_DEADLINE_MS = 5_000;
export const DEFAULT_CERT_TTL_SECONDS = 24 * 60 * 60;
/**
 * Per pod and per direction: outbound connections accepted but not yet tunnelled, and plaintext
 * inbound (15006) connections not yet connected to the app; more are reset at accept.
 */
export const DEFAULT_MAX_PENDING_PER_POD = 1024;

/** Ports the agent itself listens on inside a pod; tunnelling to them is refused (self-call loop). */
export const ILLEGAL_TARGET_PORTS: ReadonlySet<number> = new Set([15001, 15006, 15008, 15080]);

/** Remote mode: workloads and policies over xDS, certificates from the Istio CA API. */
export interface ControlPlaneSettings {
  /** host:port of the delta xDS server (istiod's 15012). */
  readonly xdsAddress: string;
  /** host:port of the CA (often the same). */
  readonly caAddress: string;
  /** Bearer token sent with every xDS stream and CSR (re-read each time). */
  readonly tokenFile: string;
  /** The mesh root the control plane's certificate must chain to. */
  readonly rootCertFile: string;
  /** The SPIFFE id the control plane presents. */
  readonly identity: string;
  readonly clusterId: string;
}

export interface AgentConfig {
  readonly node: string;
  readonly clusterFile: string;
  readonly caDir: string;
  /**
   * The CNI node agent's ZDS socket. Without it the agent runs its own
   * in-process enroller (lab mode) for the ambient pods of its node.
   */
  readonly zdsSocket?: string;
  /** Remote mode. Without it the cluster file is the whole cluster view (local mode). */
  readonly controlPlane?: ControlPlaneSettings;
  /** Used when no cluster file says otherwise (remote mode). */
  readonly trustDomain: string;
  readonly readyFile?: string;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly adminPort: number;
  readonly metricsPort: number;
  readonly readinessPort: number;
  readonly socks5Port: number;
  readonly inboundPort: number;
  /** Install in-pod redirection and serve 15001/15006 (transparent capture). */
  readonly capture: boolean;
  /** Relay plain-TCP legs (passthrough, plaintext inbound) with splice() instead of a JS copy. */
  readonly splice: boolean;
  readonly packetMark: number;
  readonly drainDeadlineMs: number;
  readonly certTtlSeconds: number;
  /** Per-pod cap, each direction, on connections accepted but not yet set up (default DEFAULT_MAX_PENDING_PER_POD). */
  readonly maxPendingPerPod?: number;
}
