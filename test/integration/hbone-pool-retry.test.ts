/**
 * Pool invariant 7: a CONNECT refused with REFUSED_STREAM (what a draining
 * agent answers for a stream that arrived after its GOAWAY) is retried once
 * on a fresh connection, and the tunnel works; other resets are not retried.
 * A real TLS 1.3 + HTTP/2 server on loopback that refuses on demand.
 */
import assert from 'node:assert/strict';
import { constants as h2c, createSecureServer, type Http2SecureServer, type ServerHttp2Stream } from 'node:http2';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { silentLogger } from '../../src/common/logger.js';
import { HboneStreamResetError } from '../../src/hbone/errors.js';
import { HbonePool } from '../../src/hbone/pool.js';
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';

let server: Http2SecureServer;
let port: number;
let serverId: TlsIdentity;
let clientId: TlsIdentity;
/** What the server does with each new stream, in order; then it echoes. */
const plan: Array<'refuse' | 'cancel' | 'echo'> = [];
let sessions = 0;

before(async () => {
  const ca = await ephemeralCa('cluster.local');
  serverId = await issueIdentity(ca, 'cluster.local', 'default', 'server');
  clientId = await issueIdentity(ca, 'cluster.local', 'default', 'client');
  server = createSecureServer({ key: serverId.privateKeyPem, cert: serverId.certChainPem.join('\n'), ca: [...serverId.rootsPem], requestCert: true, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] });
  server.on('session', () => sessions++);
  server.on('stream', (stream: ServerHttp2Stream) => {
    stream.on('error', () => undefined); // closing with a code reports it on our own side too
    const what = plan.shift() ?? 'echo';
    if (what === 'refuse') return stream.close(h2c.NGHTTP2_REFUSED_STREAM);
    if (what === 'cancel') return stream.close(h2c.NGHTTP2_CANCEL);
    stream.respond({ ':status': 200 });
    stream.pipe(stream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

after(() => new Promise<void>((r) => server.close(() => r())));

function pool(): HbonePool {
  return new HbonePool({ identityFor: () => Promise.resolve(clientId), dial: (d) => netConnect({ host: d.host, port: d.port }), logger: silentLogger() });
}
const key = () => ({ srcIdentity: clientId.identity, dstIdentities: [serverId.identity], dstHost: '127.0.0.1', dstPort: port });

test('a refused CONNECT is retried once and the tunnel carries bytes', async () => {
  const p = pool();
  try {
    plan.push('refuse');
    const t = await p.openTunnel(key(), '10.0.0.1:80');
    const echoed = new Promise<string>((resolve) => t.once('data', (d: Buffer) => resolve(d.toString())));
    t.write('ping');
    assert.equal(await echoed, 'ping');
    t.destroy();
  } finally {
    p.destroy();
  }
});

test('a refused retry, or any other reset, goes back to the caller', async () => {
  const p = pool();
  try {
    plan.push('refuse', 'refuse');
    await assert.rejects(p.openTunnel(key(), '10.0.0.1:80'), (e: unknown) => e instanceof HboneStreamResetError && e.rstCode === h2c.NGHTTP2_REFUSED_STREAM);
    plan.push('cancel', 'echo');
    await assert.rejects(p.openTunnel(key(), '10.0.0.1:80'), (e: unknown) => e instanceof HboneStreamResetError && e.rstCode === h2c.NGHTTP2_CANCEL);
    assert.deepEqual(plan, ['echo'], 'the cancelled CONNECT was not retried');
    plan.length = 0;
  } finally {
    p.destroy();
  }
  assert.ok(sessions >= 1);
});
