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
// A dead peer (link cut, node gone) is detected within interval + timeout = 15 s.
export const DEFAULT_PING_INTERVAL_MS = 5_000;
export const DEFAULT_PING_TIMEOUT_MS = 10_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * Server side: a connection with no open stream and no stream traffic for
 * this long is closed. PINGs do not count as traffic (Node's session timer),
 * so this is twice the pool's idle release: our clients drop an unused
 * connection first, and only abandoned sessions (a silent peer, or one
 * nghttp2 stopped reading after a GOAWAY for a protocol error) hit it.
 */
export const DEFAULT_SERVER_IDLE_TIMEOUT_MS = 2 * DEFAULT_POOL_IDLE_RELEASE_MS;
/** nghttp2's per-session memory cap, in MB; the default (10) is below one full connection window. */
export const DEFAULT_MAX_SESSION_MEMORY_MB = 64;

/** Only the TLS 1.3 AEAD suites ztunnel allows. */
export const TLS13_CIPHERSUITES = 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256';
