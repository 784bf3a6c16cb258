/**
 * HBONE transport defaults, matching ztunnel (ztunnel.md §3, §10) so an Ambit
 * agent and a ztunnel behave alike on the wire. Units are in the names.
 */
export const HBONE_PORT = 15008;
export const HBONE_ALPN = 'h2';

export const DEFAULT_STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
/** 4x the stream window so one stalled stream cannot starve the others. */
export const DEFAULT_CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;
export const DEFAULT_CLIENT_MAX_HEADER_LIST_BYTES = 16 * 1024;
export const DEFAULT_SERVER_MAX_HEADER_LIST_BYTES = 64 * 1024;
export const DEFAULT_SERVER_MAX_CONCURRENT_STREAMS = 200;
export const DEFAULT_POOL_MAX_STREAMS_PER_CONNECTION = 100;
export const DEFAULT_POOL_IDLE_RELEASE_MS = 5 * 60 * 1000;
export const DEFAULT_PING_INTERVAL_MS = 10_000;
export const DEFAULT_PING_TIMEOUT_MS = 20_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
/** nghttp2's per-session memory cap, in MB; the default (10) is below one full connection window. */
export const DEFAULT_MAX_SESSION_MEMORY_MB = 64;

/** Only the TLS 1.3 AEAD suites ztunnel allows. */
export const TLS13_CIPHERSUITES = 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256';
