/**
 * The classic peer: stunnel4, a per-connection mutual-TLS tunnel. A client
 * stunnel in the source pod listens on the pod's loopback and opens one TLS
 * connection to the server stunnel in the destination pod for every TCP
 * connection it accepts; the server stunnel dials the application. Nothing
 * is multiplexed, so every application connection costs a TLS handshake:
 * the design HBONE's pooled HTTP/2 CONNECT is meant to beat.
 *
 * Certificates are the HBONE benchmark's style (bench/lib/certs.ts): ECDSA
 * P-256 SPIFFE workload certificates from one LocalCa, TLS 1.3 only, the same
 * AES-GCM suites as Ambit. Both ends require and verify the peer's chain
 * against the trust anchors (`verifyChain`); stunnel has no URI SAN check,
 * so the SPIFFE id itself is not compared (Ambit checks it).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';
import { TLS13_CIPHERSUITES } from '../../src/hbone/settings.js';

/** One tunnelled service: client listens on 127.0.0.1:localPort, server on its pod IP:tlsPort, dials target. */
export interface StunnelService {
  readonly name: string;
  readonly localPort: number;
  readonly tlsPort: number;
  readonly targetHost: string;
  readonly targetPort: number;
}

export interface StunnelPlan {
  readonly clientConf: string;
  readonly serverConf: string;
  /** argv for each end (a shell that raises the open-file limit, then execs stunnel: the pid stays stunnel's). */
  readonly clientArgv: readonly string[];
  readonly serverArgv: readonly string[];
}

function writeIdentity(dir: string, who: string, id: TlsIdentity): { key: string; cert: string; roots: string } {
  const f = { key: join(dir, `stunnel-${who}-key.pem`), cert: join(dir, `stunnel-${who}-cert.pem`), roots: join(dir, `stunnel-${who}-roots.pem`) };
  writeFileSync(f.key, id.privateKeyPem, { mode: 0o600 });
  writeFileSync(f.cert, id.certChainPem.join(''));
  writeFileSync(f.roots, id.rootsPem.join(''));
  return f;
}

/** The text of one stunnel configuration (exported for the unit test of its shape). */
export function stunnelConfig(role: 'client' | 'server', files: { key: string; cert: string; roots: string }, serverIp: string, services: readonly StunnelService[]): string {
  const global = [
    'foreground = yes',
    'pid =',
    'debug = 3',
    'syslog = no',
    `cert = ${files.cert}`,
    `key = ${files.key}`,
    `CAfile = ${files.roots}`,
    'verifyChain = yes',
    'requireCert = yes',
    'sslVersionMin = TLSv1.3',
    'sslVersionMax = TLSv1.3',
    `ciphersuites = ${TLS13_CIPHERSUITES}`,
    'socket = l:TCP_NODELAY=1',
    'socket = r:TCP_NODELAY=1',
  ];
  const sections = services.map((s) =>
    role === 'client'
      ? [`[${s.name}]`, 'client = yes', `accept = 127.0.0.1:${s.localPort}`, `connect = ${serverIp}:${s.tlsPort}`].join('\n')
      : [`[${s.name}]`, `accept = ${serverIp}:${s.tlsPort}`, `connect = ${s.targetHost}:${s.targetPort}`].join('\n'),
  );
  return `${global.join('\n')}\n\n${sections.join('\n\n')}\n`;
}

/** Writes keys, certificates and both configurations into `dir`. */
export function planStunnel(dir: string, clientId: TlsIdentity, serverId: TlsIdentity, serverIp: string, services: readonly StunnelService[], binary = 'stunnel4'): StunnelPlan {
  const clientConf = join(dir, 'stunnel-client.conf');
  const serverConf = join(dir, 'stunnel-server.conf');
  writeFileSync(clientConf, stunnelConfig('client', writeIdentity(dir, 'client', clientId), serverIp, services));
  writeFileSync(serverConf, stunnelConfig('server', writeIdentity(dir, 'server', serverId), serverIp, services));
  const argv = (conf: string): string[] => ['sh', '-c', `ulimit -n 65536 2>/dev/null; exec ${binary} ${conf}`];
  return { clientConf, serverConf, clientArgv: argv(clientConf), serverArgv: argv(serverConf) };
}
