/**
 * Inbound, two entries per pod, both inside the pod's own netns:
 * - HBONE on 15008: the local address of an accepted connection is the pod
 *   IP, which selects the pod's certificate and bounds what the tunnel may
 *   reach: only that pod's own IP, never the agent's ports.
 * - plaintext on 15006 (captured by the redirection rules): traffic from
 *   outside the mesh, allowed (PERMISSIVE) and counted as not mTLS.
 * Where the pod's traffic is captured, the connection to the app keeps the
 * original client address as its source, as ztunnel does.
 * Waypoints: a destination that requires one (state/waypoint.ts) accepts
 * only the waypoint's identities (InboundAuthz); a crafted service-VIP
 * authority is refused as a deny (401) when that service has a waypoint.
 * A tunnel from a waypoint pod carrying `forwarded: for=<client>` is
 * reported with that client as its source (telemetry and access log only;
 * the app still sees the waypoint's address).
 * Plaintext floods: each pod may have at most `pending.maxPerPod` plaintext
 * connections accepted on its 15006 whose dial to the app has not completed
 * (PendingConnections, direction "inbound"); more are reset at accept, so a
 * client flooding one pod cannot tie up the agent's dials for the others.
 */
import { isIP, type Socket } from 'node:net';
import type { Logger } from '../common/logger.js';
import type { Registry } from 'prom-client';
import type { ForwardedInfo, TraceParent } from '../hbone/headers.js';
import { HboneServer } from '../hbone/server.js';
import type { NativeBinding, NetnsRef } from '../native/binding.js';
import { originalDst } from '../native/sockets.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { LocalWorkload } from '../state/local-config.js';
import { waypointWorkloads } from '../state/waypoint.js';
import type { WorkloadCertificates } from './certs.js';
import { ILLEGAL_TARGET_PORTS } from './config.js';
import { dialPod, startPodDial } from './dial.js';
import type { InboundAuthz } from './inbound-authz.js';
import type { PendingConnections } from './pending-connections.js';
import { armAppSocket, relayTcp } from './relay.js';
import { socketBytes, type ConnectionRecord, type OpenConnection, type Telemetry } from './telemetry.js';

export interface InboundDeps {
  state: ClusterState;
  node: string;
  certs: WorkloadCertificates;
  native: NativeBinding;
  telemetry: Telemetry;
  logger: Logger;
  registry: Registry;
  packetMark: number;
  /** Relay plaintext inbound legs with splice(). */
  splice: boolean;
  /** True when the pod's traffic is captured (its rules route spoofed-source replies back). */
  captured(w: LocalWorkload): boolean;
  /** The enrolled pod's network namespace; undefined once it left the mesh. */
  netnsOf(w: LocalWorkload): NetnsRef | undefined;
  /** L4 authorization of inbound connections (and their re-evaluation on policy change). */
  authz: InboundAuthz;
  /** Per-pod cap on plaintext (15006) connections not yet connected to the app; without it there is no cap. */
  pending?: PendingConnections;
}

/** The address in a `forwarded: for=` value: `ip`, `ip:port` or `[v6]:port`; undefined when it is not an IP. */
export function forwardedClient(f: ForwardedInfo): { ip: string; port: number } | undefined {
  const v = f.for?.trim();
  if (!v) return undefined;
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(v) ?? /^([^:]+)(?::(\d+))?$/.exec(v);
  const ip = m ? m[1] : v;
  const port = m?.[2] !== undefined ? Number(m[2]) : 0;
  if (ip === undefined || isIP(ip) === 0) return undefined;
  return { ip, port: port <= 65535 ? port : 0 };
}

/**
 * The source to report for a tunnel: the peer itself, or, when the peer is a
 * waypoint pod authenticated as itself, the client it forwarded for.
 */
export function reportedSource(state: ClusterState, remoteIp: string, remotePort: number, peerIdentity: string, forwarded: ForwardedInfo): { addr: string; workload?: LocalWorkload; waypoint?: string } {
  const peer = state.workloadByIp(remoteIp);
  const direct = { addr: `${remoteIp}:${remotePort}`, ...(peer ? { workload: peer } : {}) };
  if (!peer) return direct;
  const waypoint = waypointWorkloads(state).get(peer.uid);
  if (waypoint === undefined || state.identityOf(peer) !== peerIdentity) return direct;
  const client = forwardedClient(forwarded);
  if (!client) return { ...direct, waypoint };
  const w = state.workloadByIp(client.ip);
  return { addr: isIP(client.ip) === 6 ? `[${client.ip}]:${client.port}` : `${client.ip}:${client.port}`, ...(w ? { workload: w } : {}), waypoint };
}

export function createInboundServer(d: InboundDeps): HboneServer {
  const local = (ip: string) => {
    const w = d.state.workloadByIp(ip.replace(/^::ffff:/, ''));
    return w && w.node === d.node ? w : undefined;
  };
  const record = (req: {
    peerIdentity: string;
    remoteAddress: string;
    remotePort: number;
    localAddress: string;
    authority: { host: string; port: number };
    forwarded: ForwardedInfo;
    traceparent?: TraceParent;
  }): ConnectionRecord => {
    const src = reportedSource(d.state, req.remoteAddress.replace(/^::ffff:/, ''), req.remotePort, req.peerIdentity, req.forwarded);
    const dst = local(req.localAddress);
    return {
      direction: 'inbound',
      srcAddr: src.addr,
      ...(src.workload ? { srcWorkload: src.workload } : {}),
      ...(src.waypoint ? { waypoint: src.waypoint } : {}),
      srcIdentity: req.peerIdentity,
      dstAddr: `${req.authority.host}:${req.authority.port}`,
      dstHboneAddr: `${req.authority.host}:${req.authority.port}`,
      ...(dst ? { dstWorkload: dst, dstIdentity: d.state.identityOf(dst) } : {}),
      mtls: true,
      clusterId: 'Kubernetes',
      ...(req.traceparent ? { traceparent: `00-${req.traceparent.traceId}-${req.traceparent.parentId}-${req.traceparent.flags}` } : {}),
    };
  };
  // Per tunnel: the app-side socket (its counters give live byte counts) and the telemetry handle.
  const upstreams = new WeakMap<object, Socket>();
  const conns = new WeakMap<object, OpenConnection>();
  const untracks = new WeakMap<object, () => void>();
  return new HboneServer({
    logger: d.logger,
    registry: d.registry,
    identityFor: (localAddress) => {
      const w = local(localAddress);
      return w ? d.certs.current(d.state.identityOf(w)) : undefined;
    },
    resolveTarget: (req) => {
      const w = local(req.localAddress);
      if (!w) return { kind: 'unavailable', reason: `no local workload at ${req.localAddress}` };
      if (req.authority.host !== w.ip) {
        // A service VIP whose service has a waypoint: a client trying to skip the waypoint is a deny, not a typo.
        const skipped = d.authz.checkWaypoint(w, { srcIp: req.remoteAddress, dstIp: w.ip, dstPort: req.authority.port, peerIdentity: req.peerIdentity, authorityHost: req.authority.host });
        if (skipped) return { kind: 'deny', reason: skipped.reason };
        return { kind: 'bad_request', reason: `authority ${req.authority.host} is not this pod (${w.ip})` };
      }
      if (ILLEGAL_TARGET_PORTS.has(req.authority.port)) return { kind: 'unavailable', reason: `port ${req.authority.port} belongs to the agent` };
      const decision = d.authz.check(w, { srcIp: req.remoteAddress, dstIp: w.ip, dstPort: req.authority.port, peerIdentity: req.peerIdentity });
      if (!decision.allowed) return { kind: 'deny', reason: decision.reason };
      return { kind: 'allow', host: w.ip, port: req.authority.port };
    },
    dial: (target, req): Socket => {
      const w = local(req.localAddress);
      const netns = w ? d.netnsOf(w) : undefined;
      if (!w || netns === undefined) throw new Error(`workload at ${req.localAddress} is not enrolled on this node`);
      const upstream = startPodDial(d.native, { netns, host: target.host, port: target.port, mark: d.packetMark, ...(d.captured(w) ? { spoofSource: req.remoteAddress } : {}) });
      upstreams.set(req, upstream);
      return upstream;
    },
    onTunnelOpened: (req) => {
      const upstream = upstreams.get(req);
      const w = local(req.localAddress);
      if (w && upstream) {
        // Closing the app side resets the tunnel's stream (RST_STREAM) through the bridge.
        const untrack = d.authz.track(w, { srcIp: req.remoteAddress, dstIp: w.ip, dstPort: req.authority.port, peerIdentity: req.peerIdentity }, () => upstream.destroy());
        untracks.set(req, untrack);
      }
      // reporter=destination: what the app answers (read from its socket) is "sent"
      conns.set(req, d.telemetry.opened(record(req), upstream ? socketBytes(upstream, 'sent') : undefined));
    },
    onTunnelRefused: (req, status, reason) => {
      d.telemetry.failed(record(req), status === 401 ? 'DENY' : 'CONNECT', `${status}: ${reason}`);
    },
    onTunnelClosed: (r) => {
      untracks.get(r.request)?.();
      d.telemetry.closed(record(r.request), {
        // reporter=destination: "sent" is toward the client (upstream → stream)
        bytesSent: r.bytesBtoA,
        bytesRecv: r.bytesAtoB,
        durationMs: r.durationMs,
        responseFlags: '-',
        ...(r.error ? { error: r.error.message } : {}),
      }, conns.get(r.request));
    },
  });
}

/** A plaintext connection captured on 15006 in pod `w`: deliver it to the app. */
export function handlePlaintextInbound(client: Socket, w: LocalWorkload, d: InboundDeps): void {
  client.on('error', () => undefined);
  client.pause();
  // Pending from accept until the dial to the app completes (released on close too).
  const release = d.pending ? d.pending.admit(w, client, 'inbound') : () => undefined;
  if (!release) {
    d.logger.debug({ dst: `${w.namespace}/${w.name}`, src: client.remoteAddress, max: d.pending?.maxPerPod }, 'too many pending plaintext inbound connections for this pod; reset');
    client.resetAndDestroy();
    return;
  }
  // Armed before the dial: an agent crash in between resets the client instead of ending it cleanly.
  armAppSocket(d.native, client);
  const remote = (client.remoteAddress ?? '').replace(/^::ffff:/, '');
  let dst: { address: string; port: number };
  try {
    dst = originalDst(d.native, client);
  } catch {
    client.resetAndDestroy();
    return;
  }
  const src = d.state.workloadByIp(remote);
  const rec = {
    direction: 'inbound' as const,
    srcAddr: `${remote}:${client.remotePort ?? 0}`,
    ...(src ? { srcWorkload: src } : {}),
    dstAddr: `${dst.address}:${dst.port}`,
    dstWorkload: w,
    dstIdentity: d.state.identityOf(w),
    mtls: false,
    clusterId: 'Kubernetes',
  };
  const netns = d.netnsOf(w);
  if (dst.address !== w.ip || ILLEGAL_TARGET_PORTS.has(dst.port) || netns === undefined) {
    d.telemetry.failed(rec, 'CONNECT', `plaintext inbound to ${dst.address}:${dst.port} is not this pod's application`);
    client.resetAndDestroy();
    return;
  }
  const decision = d.authz.check(w, { srcIp: remote, dstIp: w.ip, dstPort: dst.port });
  if (!decision.allowed) {
    d.telemetry.failed(rec, 'DENY', decision.reason);
    client.resetAndDestroy();
    return;
  }
  const started = Date.now();
  dialPod(d.native, { netns, host: w.ip, port: dst.port, mark: d.packetMark, ...(d.captured(w) ? { spoofSource: remote } : {}) }).then(
    async (upstream) => {
      release();
      if (client.destroyed) {
        upstream.destroy();
        return;
      }
      const conn = d.telemetry.opened(rec, socketBytes(client, 'recv'));
      const untrack = d.authz.track(w, { srcIp: remote, dstIp: w.ip, dstPort: dst.port }, () => {
        client.resetAndDestroy();
        upstream.destroy();
      });
      const r = await relayTcp(client, upstream, d.native, d.splice);
      untrack();
      d.telemetry.closed(rec, { bytesSent: r.bytesBtoA, bytesRecv: r.bytesAtoB, durationMs: Date.now() - started, responseFlags: '-', relay: r.relay, ...(r.error ? { error: r.error.message } : {}) }, conn);
    },
    (err: Error) => {
      release();
      d.telemetry.failed(rec, 'CONNECT', err.message);
      client.resetAndDestroy();
    },
  );
}
