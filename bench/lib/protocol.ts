/** Configs and command shapes shared by the driver and the endpoint processes. */

/** How the load generator reaches the sink. */
export type Path = 'direct' | 'hbone' | 'peer';

export interface ServerConfig {
  readonly caDir: string;
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The server pod's IP; the sink and echo targets listen on it. */
  readonly podIp: string;
  readonly hbonePort: number;
  readonly sinkPort: number;
  readonly echoPort: number;
}

export interface ClientConfig {
  readonly caDir: string;
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly serverIp: string;
  /** The SPIFFE id the HBONE server (and the peer proxy) must present. */
  readonly serverIdentity: string;
  readonly hbonePort: number;
  readonly sinkPort: number;
  readonly echoPort: number;
  /** The peer HTTP/2 CONNECT proxy's port on serverIp, when one runs. */
  readonly peerPort?: number;
  /** Size of each write of the load generator. */
  readonly chunkBytes: number;
}

/** Server `count`: what the sink has received so far, timed by the server's clock. */
export interface CountResult {
  readonly bytes: number;
  /** performance.now() in the server process, ms. */
  readonly t: number;
  readonly connections: number;
}

export interface LoadArgs {
  readonly path: Path;
  readonly streams: number;
}

export interface LoadStarted {
  readonly streams: number;
  readonly openMs: number;
}

export interface LoadStopped {
  /** Bytes handed to each stream's write(). */
  readonly written: readonly number[];
  readonly errors: readonly string[];
}

export interface SetupArgs {
  readonly path: Path;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

export interface SetupResult {
  readonly path: Path;
  readonly concurrency: number;
  readonly completed: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly elapsedMs: number;
  readonly perSecond: number;
  /** Per iteration: open (tunnel 200 / TCP connect), 1-byte echo back, and closed, in ms from the start. */
  readonly openMs: readonly number[];
  readonly firstByteMs: readonly number[];
  readonly closedMs: readonly number[];
}
