/**
 * Outbound entry through SOCKS5 on 127.0.0.1:15080 inside each pod (the
 * explicit-proxy path ztunnel also offers). For one client connection:
 *   greeting ─► request ─► route (state) ─► HBONE tunnel from the pod's own
 *   address, or plain TCP passthrough ─► SOCKS reply ─► bridge bytes.
 * Until SOCKS succeeds nothing is sent to the destination, and every refusal
 * carries a SOCKS reply code plus an access-log line saying why.
 */
import type { ClientHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { bridge, h2Side, tcpSide } from '../hbone/bridge.js';
import { HboneConnectError, HboneConnectTimeoutError, HboneError, HboneIdentityMismatchError, HboneStatusError, HboneTlsError } from '../hbone/errors.js';
import { formatBaggage, formatForwarded, newTraceParent } from '../hbone/headers.js';
import type { HbonePool } from '../hbone/pool.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../hbone/settings.js';
import type { NativeBinding } from '../native/binding.js';
import { connectFromNetns } from '../native/sockets.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { LocalWorkload } from '../state/local-config.js';
import { routeOutbound, type OutboundRoute } from './route.js';
import { encodeReply, METHOD_NO_AUTH, METHOD_NONE_ACCEPTABLE, parseGreeting, parseRequest, SocksReply, SOCKS_VERSION } from './socks5.js';
import type { ConnectionRecord, Telemetry } from './telemetry.js';

export interface OutboundDeps {
  state: ClusterState;
  pool: HbonePool;
  native: NativeBinding;
  telemetry: Telemetry;
  logger: Logger;
  packetMark: number;
  /** Bound on the time a client may take to finish the SOCKS handshake. */
  handshakeTimeoutMs?: number;
}

const MAX_SOCKS_HANDSHAKE_BYTES = 600;
const PASSTHROUGH_CONNECT_TIMEOUT_MS = DEFAULT_CONNECT_TIMEOUT_MS;

export function handleSocksConnection(client: Socket, src: LocalWorkload, d: OutboundDeps): void {
  client.on('error', () => undefined);
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
      void connectRoute(client, src, r.value.host, r.value.port, early, d);
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
    return { ...base, dstAddr: `${route.hboneHost}:${route.hbonePort}`, dstHboneAddr: route.authority, dstWorkload: route.dstWorkload, dstIdentity: route.dstIdentity, ...(route.service ? { dstService: route.service } : {}), mtls: true };
  }
  if (route.kind === 'passthrough') {
    return { ...base, dstAddr: `${route.host}:${route.port}`, ...(route.dstWorkload ? { dstWorkload: route.dstWorkload } : {}), ...(route.service ? { dstService: route.service } : {}), mtls: false };
  }
  return { ...base, dstAddr: `${host}:${port}`, mtls: false };
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

async function connectRoute(client: Socket, src: LocalWorkload, host: string, port: number, early: Buffer, d: OutboundDeps): Promise<void> {
  const route = routeOutbound(d.state, src, host, port);
  const rec = recordFor(client, src, route, d, host, port);
  if (route.kind === 'refuse') {
    d.telemetry.failed(rec, 'NO_HEALTHY_UPSTREAM', route.error.message);
    client.end(encodeReply(SocksReply.HostUnreachable));
    return;
  }
  const started = Date.now();
  let upstream: ClientHttp2Stream | Socket;
  try {
    upstream = route.kind === 'hbone' ? await openHbone(client, src, route, d) : await openPassthrough(src, route.host, route.port, d);
  } catch (e) {
    const err = toError(e);
    const { reply, flag } = classify(err);
    d.telemetry.failed(rec, flag, err.message);
    if (!client.destroyed) client.end(encodeReply(reply));
    return;
  }
  if (client.destroyed) {
    upstream.destroy();
    return;
  }
  d.telemetry.opened(rec);
  client.write(encodeReply(SocksReply.Succeeded));
  if (early.length > 0) upstream.write(early);
  client.resume();
  const result = await bridge(tcpSide(client), 'rstCode' in upstream ? h2Side(upstream) : tcpSide(upstream));
  d.telemetry.closed(rec, {
    bytesSent: result.bytesAtoB,
    bytesRecv: result.bytesBtoA,
    durationMs: Date.now() - started,
    responseFlags: '-',
    ...(result.error ? { error: result.error.message } : {}),
  });
}

function openHbone(client: Socket, src: LocalWorkload, route: Extract<OutboundRoute, { kind: 'hbone' }>, d: OutboundDeps): Promise<ClientHttp2Stream> {
  return d.pool.openTunnel(
    { srcIdentity: d.state.identityOf(src), dstIdentities: [route.dstIdentity], dstHost: route.hboneHost, dstPort: route.hbonePort, srcIp: src.ip },
    route.authority,
    {
      forwarded: formatForwarded(src.ip, client.remotePort ?? 0, route.service?.hostname),
      baggage: formatBaggage({ cluster: 'Kubernetes', namespace: src.namespace, workloadKind: 'pod', workloadName: src.name, canonicalService: src.labels.app ?? src.name }),
      traceparent: newTraceParent(),
    },
  );
}

function openPassthrough(src: LocalWorkload, host: string, port: number, d: OutboundDeps): Promise<Socket> {
  return new Promise((resolve, reject) => {
    if (!src.netns) {
      reject(new Error(`workload ${src.namespace}/${src.name} has no network namespace`));
      return;
    }
    const s = connectFromNetns(d.native, { netns: src.netns, host, port, mark: d.packetMark, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`passthrough connect to ${host}:${port} timed out after ${PASSTHROUGH_CONNECT_TIMEOUT_MS}ms`));
    }, PASSTHROUGH_CONNECT_TIMEOUT_MS);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    s.once('error', onError);
  });
}
