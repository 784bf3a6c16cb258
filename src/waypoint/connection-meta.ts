/** What the waypoint knows about one inner connection (shared by server.ts and tcp-proxy.ts). */
export interface ConnectionMeta {
  readonly sourceAddress: string;
  /** spiffe:// id of the HBONE peer. */
  readonly peerIdentity?: string;
  /** CONNECT target when the connection came through HBONE: selects the service. */
  readonly target?: { host: string; port: number };
  /** W3C baggage of the CONNECT (source workload attributes, as the agent sends them). */
  readonly baggage?: ReadonlyMap<string, string>;
}

