/**
 * Outbound: connections leaving a local pod, by either entry:
 *   - captured (15001 inside the pod, the redirection rules send it there):
 *     the destination is the pre-REDIRECT address (SO_ORIGINAL_DST);
 *   - SOCKS5 on 127.0.0.1:15080 (the explicit-proxy path ztunnel also offers).
 * Then: route (state) ─► HBONE tunnel from the pod's own address, or plain
 * TCP passthrough ─► bridge bytes. Nothing reaches the destination before the
 * route is established; a refusal is a SOCKS reply code or a TCP reset, plus
 * an access-log line saying why.
 *
 * Each pod may hold at most `maxPendingPerPod` connections that were accepted
 * but are not tunnelled yet (SOCKS handshake, route, HBONE CONNECT or
 * passthrough dial in progress); beyond it a new connection is reset at
 * once, so one pod flooding its agent cannot starve the other pods' setup
 * (PendingConnections, src/agent/pending-connections.ts; direction "outbound").
 */
import type { ClientHttp2Stream } from 'node:http2';
import { isIP, type Socket } from 'node:net';
import { toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { bridge, h2Side, tcpSide, type BridgeResult } from '../hbone/bridge.js';
import { HboneConnectError, HboneConnectTimeoutError, HboneError, HboneIdentityMismatchError, HboneStatusError, HboneTlsError } from '../hbone/errors.js';
import { formatBaggage, formatForwarded, newTraceParent } from '../hbone/headers.js';
import type { HbonePool } from '../hbone/pool.js';
import type { NativeBinding, NetnsRef } from '../native/binding.js';
import { originalDst } from '../native/sockets.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { LocalWorkload } from '../state/local-config.js';
import { ILLEGAL_TARGET_PORTS } from './config.js';
import { dialPod } from './dial.js';
import type { PendingConnections } from './pending-connections.js';
import { armAppSocket, relayTcp } from './relay.js';
import { routeOutbound, type OutboundRoute } from './route.js';
import { encodeReply, METHOD_NO_AUTH, METHOD_NONE_ACCEPTABLE, parseGreeting, parseRequest, SocksReply, SOCKS_VERSION } from './socks5.js';
import { socketBytes, type ConnectionRecord, type Telemetry } from './telemetry.js';
import type { WaypointMetrics } from './waypoint-metrics.js';

export interface OutboundDeps {
  state: ClusterState;
  pool: HbonePool;
  native: NativeBinding;
  telemetry: Telemetry;
  logger: Logger;
  packetMark: number;
  /** Relay passthrough legs with splice(). */
  splice: boolean;
  /** The enrolled pod's network namespace; undefined once it left the mesh. */
  netnsOf(w: LocalWorkload): NetnsRef | undefined;
  /** Bound on the time a client may take to finish the SOCKS handshake. */
  handshakeTimeoutMs?: number;
  /** Counts connections sent to, or refused for, a waypoint. */
  waypointMetrics?: WaypointMetrics;
  /** Per-pod cap on accepted-but-not-tunnelled connections; without it there is no cap. */
  pending?: PendingConnections;
}

export { PendingConnections } from './pending-connections.js';

/** Admits a new connection or resets it at once (logged at debug: a flood must not flood the log). */
function admitPending(client: Socket, src: LocalWorkload, d: OutboundDeps): (() => void) | undefined {
  if (!d.pending) return () => undefined;
  const release = d.pending.admit(src, client, 'outbound');
  if (release) return release;
  d.logger.debug({ src: `${src.namespace}/${src.name}`, max: d.pending.maxPerPod }, 'too many pending outbound connections for this pod; reset');
  client.resetAndDestroy();
  return undefined;
}

const MAX_SOCKS_HANDSHAKE_BYTES = 600;

export function handleSocksConnection(client: Socket, src: LocalWorkload, d: OutboundDeps): void {
  client.on('error', () => undefined);
  const release = admitPending(client, src, d);
  if (!release) return;
  let buf = Buffer.alloc(0);
  let phase: 'greeting' | 'request' | 'connecting' = 'greeting';
  const timer = setTimeout(() => client.destroy(), d.handshakeTimeoutMs ?? 10_000);
  const onData = (chunk: Buffer): void => {
    buf = Buffer.concat([buf, chunk]);
    if (buf.length > MAX_SOCKS_HANDSHAKE_BYTES && phase !== 'connecting') {
      client.destroy();
      return;
    }
    if (phase === 'greeting') {
      const g = parseGreeting(buf);
      if (g.kind === 'more') return;
      if (g.kind === 'error' || !g.value.methods.includes(METHOD_NO_AUTH)) {
        client.end(Buffer.from([SOCKS_VERSION, METHOD_NONE_ACCEPTABLE]));
        return;
      }
      client.write(Buffer.from([SOCKS_VERSION, METHOD_NO_AUTH]));
      buf = buf.subarray(g.consumed);
      phase = 'request';
    }
    if (phase === 'request') {
      const r = parseRequest(buf);
      if (r.kind === 'more') return;
      if (r.kind === 'error') {
        client.end(encodeReply(r.reply ?? SocksReply.GeneralFailure));
        return;
      }
      phase = 'connecting';
      clearTimeout(timer);
      client.off('data', onData);
      client.pause();
      const early = buf.subarray(r.consumed);
      const entry: OutboundEntry = {
        accepted: () => {
          release();
          client.write(encodeReply(SocksReply.Succeeded));
        },
        refused: (reply) => client.end(encodeReply(reply)),
      };
      void forwardOutbound(client, src, r.value.host, r.value.port, early, d, entry);
    }
  };
  client.on('data', onData);
  client.once('close', () => clearTimeout(timer));
}

function recordFor(client: Socket, src: LocalWorkload, route: OutboundRoute, d: OutboundDeps, host: string, port: number): ConnectionRecord {
  const base = {
    direction: 'outbound' as const,
    srcAddr: `${src.ip}:${client.remotePort ?? 0}`,
    srcWorkload: src,
    srcIdentity: d.state.identityOf(src),
    clusterId: 'Kubernetes',
  };
  if (route.kind === 'hbone') {
    return {
      ...base,
      dstAddr: `${route.hboneHost}:${route.hbonePort}`,
      dstHboneAddr: route.authority,
      dstWorkload: route.dstWorkload,
      dstIdentity: route.dstIdentity,
      ...(route.service ? { dstService: route.service } : {}),
      ...(route.waypoint ? { waypoint: route.waypoint } : {}),
      mtls: true,
    };
  }
  if (route.kind === 'passthrough') {
    return { ...base, dstAddr: `${route.host}:${route.port}`, ...(route.dstWorkload ? { dstWorkload: route.dstWorkload } : {}), ...(route.service ? { dstService: route.service } : {}), mtls: false };
  }
  if (route.waypoint === undefined) return { ...base, dstAddr: `${host}:${port}`, mtls: false };
  // Refused for its waypoint: the access log still names the service the client asked for.
  const svc = isIP(host) !== 0 ? d.state.serviceByVip(host) : d.state.serviceByName(host, src.namespace);
  return { ...base, dstAddr: `${host}:${port}`, ...(svc ? { dstService: svc } : {}), waypoint: route.waypoint, mtls: false };
}

/** Maps a tunnel failure to a SOCKS reply and an Istio response flag. */
function classify(err: Error): { reply: SocksReply; flag: string } {
  if (err instanceof HboneStatusError) return err.status === 401 ? { reply: SocksReply.NotAllowed, flag: 'DENY' } : { reply: SocksReply.ConnectionRefused, flag: 'CONNECT' };
  if (err instanceof HboneConnectTimeoutError) return { reply: SocksReply.HostUnreachable, flag: 'NETWORK_POLICY' };
  if (err instanceof HboneIdentityMismatchError) return { reply: SocksReply.NotAllowed, flag: 'IDENTITY_ERROR' };
  if (err instanceof HboneTlsError) return { reply: SocksReply.GeneralFailure, flag: 'TLS_FAILURE' };
  if (err instanceof HboneConnectError) return { reply: SocksReply.HostUnreachable, flag: 'CONNECT' };
  if (err instanceof HboneError) return { reply: SocksReply.GeneralFailure, flag: 'CONNECT' };
  return { reply: SocksReply.HostUnreachable, flag: 'CONNECT' };
}

/** How the entry (SOCKS or capture) tells the client the outcome. */
interface OutboundEntry {
  accepted(): void;
  refused(reply: SocksReply): void;
}

/**
 * A connection captured on 15001: the destination is where the app meant to
 * go. Calls to the agent's own ports are refused, so nothing can loop.
 */
export function handleCapturedOutbound(client: Socket, src: LocalWorkload, d: OutboundDeps): void {
  client.on('error', () => undefined);
  client.pause();
  const release = admitPending(client, src, d);
  if (!release) return;
  let dst: { address: string; port: number };
  try {
    dst = originalDst(d.native, client);
  } catch (err) {
    d.logger.warn({ err: (err as Error).message, src: src.ip }, 'no original destination for a captured connection');
    client.resetAndDestroy();
    return;
  }
  const reset: OutboundEntry = { accepted: release, refused: () => client.resetAndDestroy() };
  if (ILLEGAL_TARGET_PORTS.has(dst.port) && (dst.address === src.ip || dst.address.startsWith('127.'))) {
    d.logger.warn({ src: src.ip, dst: `${dst.address}:${dst.port}` }, 'refusing a call to the agent itself');
    client.resetAndDestroy();
    return;
  }
  void forwardOutbound(client, src, dst.address, dst.port, Buffer.alloc(0), d, reset);
}

async function forwardOutbound(client: Socket, src: LocalWorkload, host: string, port: number, early: Buffer, d: OutboundDeps, entry: OutboundEntry): Promise<void> {
  // From here an agent crash resets the app's connection instead of ending it (a refusal's end() disarms it).
  armAppSocket(d.native, client);
  const route = routeOutbound(d.state, src, host, port);
  const traceparent = route.kind === 'hbone' ? newTraceParent() : undefined;
  const rec = { ...recordFor(client, src, route, d, host, port), ...(traceparent ? { traceparent } : {}) };
  if (route.kind === 'refuse') {
    if (route.waypoint !== undefined) d.waypointMetrics?.refused('source', 'no_ready_endpoints', route.waypoint);
    d.telemetry.failed(rec, 'NO_HEALTHY_UPSTREAM', route.error.message);
    entry.refused(SocksReply.HostUnreachable);
    return;
  }
  const started = Date.now();
  let upstream: ClientHttp2Stream | Socket;
  try {
    upstream = route.kind === 'hbone' ? await openHbone(client, src, route, d, traceparent ?? newTraceParent()) : await openPassthrough(src, route.host, route.port, d);
  } catch (e) {
    const err = toError(e);
    const { reply, flag } = classify(err);
    d.telemetry.failed(rec, flag, err.message);
    if (!client.destroyed) entry.refused(reply);
    return;
  }
  if (client.destroyed) {
    upstream.destroy();
    return;
  }
  const conn = d.telemetry.opened(rec);
  if (route.kind === 'hbone' && route.waypoint !== undefined) d.waypointMetrics?.routed(route.waypoint);
  entry.accepted();
  // counted from here, after the SOCKS reply: what the client sends is "sent" (reporter=source)
  conn.trackBytes(socketBytes(client, 'sent'));
  if (early.length > 0) upstream.write(early);
  let result: BridgeResult & { relay: 'splice' | 'copy' | 'hbone' };
  if ('rstCode' in upstream) {
    client.resume();
    result = { ...(await bridge(tcpSide(client), h2Side(upstream))), relay: 'hbone' };
  } else {
    result = await relayTcp(client, upstream, d.native, d.splice);
  }
  d.telemetry.closed(rec, {
    bytesSent: result.bytesAtoB,
    bytesRecv: result.bytesBtoA,
    durationMs: Date.now() - started,
    responseFlags: '-',
    relay: result.relay,
    ...(result.error ? { error: result.error.message } : {}),
  }, conn);
}

function openHbone(client: Socket, src: LocalWorkload, route: Extract<OutboundRoute, { kind: 'hbone' }>, d: OutboundDeps, traceparent: string): Promise<ClientHttp2Stream> {
  return d.pool.openTunnel(
    { srcIdentity: d.state.identityOf(src), dstIdentities: [route.dstIdentity], dstHost: route.hboneHost, dstPort: route.hbonePort, srcIp: src.ip },
    route.authority,
    {
      forwarded: formatForwarded(src.ip, client.remotePort ?? 0, route.service?.hostname),
      baggage: formatBaggage({ cluster: 'Kubernetes', namespace: src.namespace, workloadKind: 'pod', workloadName: src.name, canonicalService: src.labels.app ?? src.name }),
      traceparent,
    },
  );
}

function openPassthrough(src: LocalWorkload, host: string, port: number, d: OutboundDeps): Promise<Socket> {
  const netns = d.netnsOf(src);
  if (netns === undefined) return Promise.reject(new Error(`workload ${src.namespace}/${src.name} is not enrolled on this node`));
  return dialPod(d.native, { netns, host, port, mark: d.packetMark });
}
