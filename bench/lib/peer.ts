/**
 * The peer: a C HTTP/2 CONNECT proxy standing where Ambit's HboneServer
 * stands, so our HBONE client can be measured against another server
 * implementation on the same path. It is nghttpx (nghttp2's proxy) in
 * `--http2-proxy` mode with mutual TLS 1.3 and the same flow-control windows
 * as Ambit (4 MiB per stream, 16 MiB per connection), forwarding each CONNECT
 * to tinyproxy on the pod's loopback, which dials the sink. It is NOT ztunnel
 * (ztunnel cannot be built here); it is a peer of the same protocol shape
 * with one extra hop (nghttpx -> tinyproxy) that ztunnel would not have.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';
import { DEFAULT_CONNECTION_WINDOW_BYTES, DEFAULT_STREAM_WINDOW_BYTES, TLS13_CIPHERSUITES } from '../../src/hbone/settings.js';

export interface PeerPlan {
  readonly nghttpxArgv: readonly string[];
  readonly tinyproxyArgv: readonly string[];
  readonly files: PeerFiles;
}

export interface PeerFiles {
  readonly key: string;
  readonly cert: string;
  readonly roots: string;
  readonly tinyproxyConf: string;
  readonly nghttpxConf: string;
  readonly nghttpxLog: string;
}

/** Writes the peer's key, chain, trust anchors and configs into `dir` and returns the command lines. */
export function planPeer(dir: string, id: TlsIdentity, port: number, backendPort: number): PeerPlan {
  const files: PeerFiles = {
    key: join(dir, 'peer-key.pem'),
    cert: join(dir, 'peer-cert.pem'),
    roots: join(dir, 'peer-roots.pem'),
    tinyproxyConf: join(dir, 'tinyproxy.conf'),
    nghttpxConf: join(dir, 'nghttpx.conf'),
    nghttpxLog: join(dir, 'nghttpx.log'),
  };
  writeFileSync(files.key, id.privateKeyPem, { mode: 0o600 });
  writeFileSync(files.cert, id.certChainPem.join(''));
  writeFileSync(files.roots, id.rootsPem.join(''));
  // No ConnectPort lines: tinyproxy then allows CONNECT to any port.
  writeFileSync(
    files.tinyproxyConf,
    [`Port ${backendPort}`, 'Listen 127.0.0.1', 'Allow 127.0.0.1', 'Timeout 600', 'MaxClients 512', 'LogLevel Error', 'DisableViaHeader Yes', ''].join('\n'),
  );
  // An empty config file, so /etc/nghttpx/nghttpx.conf (if any) is not read.
  writeFileSync(files.nghttpxConf, '');
  const nghttpxArgv = [
    'nghttpx',
    `--conf=${files.nghttpxConf}`,
    '--http2-proxy',
    `--frontend=0.0.0.0,${port}`,
    `--backend=127.0.0.1,${backendPort}`,
    '--workers=1',
    '--tls-min-proto-version=TLSv1.3',
    '--tls-max-proto-version=TLSv1.3',
    `--tls13-ciphers=${TLS13_CIPHERSUITES}`,
    '--verify-client',
    `--verify-client-cacert=${files.roots}`,
    `--frontend-http2-window-size=${DEFAULT_STREAM_WINDOW_BYTES}`,
    `--frontend-http2-connection-window-size=${DEFAULT_CONNECTION_WINDOW_BYTES}`,
    '--frontend-http2-max-concurrent-streams=200',
    '--backend-connections-per-host=1024',
    '--no-ocsp',
    '--no-via',
    '--log-level=WARN',
    `--errorlog-file=${files.nghttpxLog}`,
    files.key,
    files.cert,
  ];
  const tinyproxyArgv = ['tinyproxy', '-d', '-c', files.tinyproxyConf];
  return { nghttpxArgv, tinyproxyArgv, files };
}
