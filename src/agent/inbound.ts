/**
 * Inbound: the HBONE server for the node's pods. Each pod gets its own
 * listener on 15008 inside its own netns (created natively), so the local
 * address of an accepted connection is the pod IP, which selects the pod's
 * certificate and bounds what the tunnel may reach: only that pod's own IP,
 * never the agent's ports.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../common/logger.js';
import type { Registry } from 'prom-client';
import { HboneServer } from '../hbone/server.js';
import type { NativeBinding } from '../native/binding.js';
import { connectFromNetns } from '../native/sockets.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { WorkloadCertificates } from './certs.js';
import { ILLEGAL_TARGET_PORTS } from './config.js';
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
      if (!w?.netns) throw new Error(`workload at ${req.localAddress} has no network namespace`);
      return connectFromNetns(d.native, { netns: w.netns, host: target.host, port: target.port, mark: d.packetMark, allowHalfOpen: true });
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
