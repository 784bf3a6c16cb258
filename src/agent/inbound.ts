/**
 * Inbound, two entries per pod, both inside the pod's own netns:
 * - HBONE on 15008: the local address of an accepted connection is the pod
 *   IP, which selects the pod's certificate and bounds what the tunnel may
 *   reach: only that pod's own IP, never the agent's ports.
 * - plaintext on 15006 (captured by the redirection rules): traffic from
 *   outside the mesh, allowed (PERMISSIVE) and counted as not mTLS.
 * Where the pod's traffic is captured, the connection to the app keeps the
 * original client address as its source, as ztunnel does.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../common/logger.js';
import type { Registry } from 'prom-client';
import { HboneServer } from '../hbone/server.js';
import type { NativeBinding, NetnsRef } from '../native/binding.js';
import { originalDst } from '../native/sockets.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { LocalWorkload } from '../state/local-config.js';
import type { WorkloadCertificates } from './certs.js';
import { ILLEGAL_TARGET_PORTS } from './config.js';
import { dialPod, startPodDial } from './dial.js';
import { relayTcp } from './relay.js';
import type { ConnectionRecord, Telemetry } from './telemetry.js';

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
}

export function createInboundServer(d: InboundDeps): HboneServer {
  const local = (ip: string) => {
    const w = d.state.workloadByIp(ip.replace(/^::ffff:/, ''));
    return w && w.node === d.node ? w : undefined;
  };
  const record = (req: { peerIdentity: string; remoteAddress: string; remotePort: number; localAddress: string; authority: { host: string; port: number } }): ConnectionRecord => {
    const src = d.state.workloadByIp(req.remoteAddress.replace(/^::ffff:/, ''));
    const dst = local(req.localAddress);
    return {
      direction: 'inbound',
      srcAddr: `${req.remoteAddress}:${req.remotePort}`,
      ...(src ? { srcWorkload: src } : {}),
      srcIdentity: req.peerIdentity,
      dstAddr: `${req.authority.host}:${req.authority.port}`,
      dstHboneAddr: `${req.authority.host}:${req.authority.port}`,
      ...(dst ? { dstWorkload: dst, dstIdentity: d.state.identityOf(dst) } : {}),
      mtls: true,
      clusterId: 'Kubernetes',
    };
  };
  const started = new WeakMap<object, number>();
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
      if (req.authority.host !== w.ip) return { kind: 'bad_request', reason: `authority ${req.authority.host} is not this pod (${w.ip})` };
      if (ILLEGAL_TARGET_PORTS.has(req.authority.port)) return { kind: 'unavailable', reason: `port ${req.authority.port} belongs to the agent` };
      return { kind: 'allow', host: w.ip, port: req.authority.port };
    },
    dial: (target, req): Socket => {
      const w = local(req.localAddress);
      const netns = w ? d.netnsOf(w) : undefined;
      if (!w || netns === undefined) throw new Error(`workload at ${req.localAddress} is not enrolled on this node`);
      return startPodDial(d.native, { netns, host: target.host, port: target.port, mark: d.packetMark, ...(d.captured(w) ? { spoofSource: req.remoteAddress } : {}) });
    },
    onTunnelOpened: (req) => {
      started.set(req, Date.now());
      d.telemetry.opened(record(req));
    },
    onTunnelRefused: (req, status, reason) => {
      d.telemetry.failed(record(req), status === 401 ? 'DENY' : 'CONNECT', `${status}: ${reason}`);
    },
    onTunnelClosed: (r) => {
      d.telemetry.closed(record(r.request), {
        // reporter=destination: "sent" is toward the client (upstream → stream)
        bytesSent: r.bytesBtoA,
        bytesRecv: r.bytesAtoB,
        durationMs: r.durationMs,
        responseFlags: '-',
        ...(r.error ? { error: r.error.message } : {}),
      });
    },
  });
}

/** A plaintext connection captured on 15006 in pod `w`: deliver it to the app. */
export function handlePlaintextInbound(client: Socket, w: LocalWorkload, d: InboundDeps): void {
  client.on('error', () => undefined);
  client.pause();
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
  const started = Date.now();
  dialPod(d.native, { netns, host: w.ip, port: dst.port, mark: d.packetMark, ...(d.captured(w) ? { spoofSource: remote } : {}) }).then(
    async (upstream) => {
      if (client.destroyed) {
        upstream.destroy();
        return;
      }
      d.telemetry.opened(rec);
      const r = await relayTcp(client, upstream, d.native, d.splice);
      d.telemetry.closed(rec, { bytesSent: r.bytesBtoA, bytesRecv: r.bytesAtoB, durationMs: Date.now() - started, responseFlags: '-', relay: r.relay, ...(r.error ? { error: r.error.message } : {}) });
    },
    (err: Error) => {
      d.telemetry.failed(rec, 'CONNECT', err.message);
      client.resetAndDestroy();
    },
  );
}
