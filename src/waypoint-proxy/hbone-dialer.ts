/**
 * The waypoint's upstream: an UpstreamDialer that opens HBONE tunnels from a
 * pool under the waypoint's own identity. It dials <endpoint.address>:<hbone
 * port>, sends CONNECT <endpoint.address>:<endpoint.port>, and the pool's TLS
 * check requires the peer to present endpoint.principal (the destination
 * identity, as the agent's outbound does), so a tunnel never lands on the
 * wrong workload. Opaque TCP passthrough also carries the original client in
 * `forwarded: for="<ip>"` (plus `;host=<service>`) and the client's W3C
 * baggage, so the destination agent reports the real source (src/agent/inbound.ts
 * reportedSource); pooled HTTP connections are shared by many clients and
 * carry only a traceparent.
 */
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { formatAuthority } from '../hbone/authority.js';
import { newTraceParent } from '../hbone/headers.js';
import type { HbonePool } from '../hbone/pool.js';
import type { Endpoint } from '../waypoint/config.js';
import type { DialContext, UpstreamDialer } from '../waypoint/upstream.js';
import { WaypointProxyEndpointIdentityError } from './errors.js';

export interface HboneDialerOptions {
  readonly pool: HbonePool;
  /** Our SPIFFE id (the pool asks the identity provider for its certificate). */
  readonly srcIdentity: string;
  /** The destination agents' HBONE port (15008; tests use another). */
  readonly hbonePort: number;
  readonly trustDomain: string;
}

/** Endpoint principal as a spiffe:// URI; Istio-form "td/ns/x/sa/y" is accepted. Undefined when unknown. */
export function expectedIdentity(principal: string): string | undefined {
  if (!principal || principal === 'unknown') return undefined;
  return principal.startsWith('spiffe://') ? principal : `spiffe://${principal}`;
}

function quote(v: string): string {
  return `"${v.replace(/["\\]/g, '\\$&')}"`;
}

/** `forwarded` for the original client (no port: the agent accepts a bare ip). */
export function forwardedFor(ctx: DialContext): string {
  const ip = ctx.sourceAddress.replace(/^::ffff:/, '');
  return `for=${quote(ip.includes(':') ? `[${ip}]` : ip)}${ctx.serviceHost ? `;host=${ctx.serviceHost}` : ''}`;
}

export function baggageOf(b: ReadonlyMap<string, string>): string {
  return [...b].map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join(',');
}

export function hboneDialer(o: HboneDialerOptions): UpstreamDialer {
  return async (ep: Endpoint, protocol, ctx): Promise<Duplex> => {
    const want = expectedIdentity(ep.principal);
    if (!want) throw new WaypointProxyEndpointIdentityError(`${ep.address}:${ep.port}`);
    const headers: Record<string, string> = { traceparent: newTraceParent() };
    if (protocol === 'tcp' && ctx) {
      headers.forwarded = forwardedFor(ctx);
      if (ctx.baggage && ctx.baggage.size > 0) headers.baggage = baggageOf(ctx.baggage);
    }
    return o.pool.openTunnel({ srcIdentity: o.srcIdentity, dstIdentities: [want], dstHost: ep.address, dstPort: o.hbonePort }, formatAuthority(ep.address, ep.port), headers);
  };
}

/** The pool's raw dial: plain TCP from the pod's own address (not half-open; see HbonePoolOptions.dial). */
export function dialHbonePeer(dst: { host: string; port: number }): ReturnType<typeof netConnect> {
  return netConnect({ host: dst.host, port: dst.port, noDelay: true });
}
