// Mutual TLS 1.3 over loopback with certificates from the local CA: the
// material must work as-is with node:tls, and a leaf from another root must
// be refused on both sides.
import { strict as assert } from 'node:assert';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect, createSecureContext, createServer, type PeerCertificate, type Server, type TLSSocket } from 'node:tls';
import { systemClock } from '../../src/common/clock.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { SecretManager, type WorkloadCertificate } from '../../src/identity/secret-manager.js';
import { spiffeId, spiffeUrisOf, type SpiffeId } from '../../src/identity/spiffe.js';

const TD = 'cluster.local';
const serverId = spiffeId(TD, 'default', 'server');
const clientId = spiffeId(TD, 'default', 'client');

/** Exactly the shape the brief promises node:tls accepts: key, joined chain, roots. */
function tlsOptions(c: WorkloadCertificate, roots: string[]) {
  return { key: c.privateKeyPem, cert: c.certChainPem.join(''), ca: roots, minVersion: 'TLSv1.3' as const };
}

interface Outcome {
  /** The server accepted the client and saw these identities. */
  serverSaw?: string[];
  serverError?: Error;
  /** The client read the server's reply after verifying these identities. */
  clientSaw?: string[];
  clientError?: Error;
  protocol?: string | null;
}

/**
 * One handshake: a server presenting `server`, a client presenting `client`
 * and expecting `expect`. Both sides trust only the mesh roots, so a foreign
 * leaf is judged by its peer, not refused by its own side first.
 */
async function handshake(server: WorkloadCertificate, client: WorkloadCertificate, expect: SpiffeId, meshRoots: string[]): Promise<Outcome> {
  const out: Outcome = {};
  const srv: Server = createServer({ ...tlsOptions(server, meshRoots), requestCert: true, rejectUnauthorized: true }, (s) => {
    out.serverSaw = spiffeUrisOf(s.getPeerX509Certificate() ?? { subjectaltname: undefined });
    s.end('hello');
  });
  srv.on('tlsClientError', (err) => (out.serverError = err));
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  try {
    await new Promise<void>((resolve) => {
      const sock: TLSSocket = connect({
        host: '127.0.0.1',
        port,
        secureContext: createSecureContext(tlsOptions(client, meshRoots)),
        // No hostname check: the peer is identified by its SPIFFE URI SAN.
        checkServerIdentity: (_host: string, cert: PeerCertificate) =>
          spiffeUrisOf(cert).includes(expect.toString()) ? undefined : new Error(`server is not ${expect.toString()}`),
      });
      let data = '';
      sock.on('secureConnect', () => {
        out.protocol = sock.getProtocol();
        out.clientSaw = spiffeUrisOf(sock.getPeerX509Certificate() ?? { subjectaltname: undefined });
      });
      sock.on('data', (d: Buffer) => (data += d.toString()));
      sock.on('error', (err) => (out.clientError = err));
      sock.on('close', () => {
        if (data !== 'hello') out.clientSaw = undefined;
        resolve();
      });
    });
  } finally {
    await new Promise((resolve) => srv.close(resolve));
  }
  return out;
}

void describe('mTLS with local CA certificates', () => {
  let mesh: SecretManager;
  let foreign: SecretManager;
  let roots: string[];
  before(async () => {
    // Same trust domain, different roots: only the root decides trust.
    const meshCa = await LocalCa.createEphemeral({ trustDomain: TD });
    roots = [meshCa.rootCertPem];
    mesh = new SecretManager({ source: meshCa, clock: systemClock, ttlSeconds: 3600 });
    foreign = new SecretManager({ source: await LocalCa.createEphemeral({ trustDomain: TD }), clock: systemClock, ttlSeconds: 3600 });
  });
  after(() => [mesh, foreign].forEach((m) => m.close()));

  void it('succeeds between two leaves of the same CA and each side sees the other identity', async () => {
    const client = await mesh.getCertificate(clientId);
    assert.deepEqual(client.rootsPem, roots);
    // The certificate's own roots, as the data plane will use them.
    const out = await handshake(await mesh.getCertificate(serverId), client, serverId, client.rootsPem);
    assert.equal(out.clientError, undefined);
    assert.equal(out.serverError, undefined);
    assert.equal(out.protocol, 'TLSv1.3');
    assert.deepEqual(out.clientSaw, [serverId.toString()]);
    assert.deepEqual(out.serverSaw, [clientId.toString()]);
  });

  void it('fails when the client presents a leaf from another CA', async () => {
    const out = await handshake(await mesh.getCertificate(serverId), await foreign.getCertificate(clientId), serverId, roots);
    assert.equal(out.serverSaw, undefined, 'the server must not accept the client');
    assert.ok(out.serverError, 'the server reports the bad client certificate');
    assert.equal(out.clientSaw, undefined);
  });

  void it('fails when the server presents a leaf from another CA', async () => {
    const out = await handshake(await foreign.getCertificate(serverId), await mesh.getCertificate(clientId), serverId, roots);
    assert.equal(out.clientSaw, undefined);
    assert.ok(out.clientError, 'the client reports the bad server certificate');
    assert.equal(out.serverSaw, undefined);
  });

  void it('fails when the server has a valid leaf for an unexpected identity', async () => {
    const out = await handshake(await mesh.getCertificate(clientId), await mesh.getCertificate(clientId), serverId, roots);
    assert.match(out.clientError?.message ?? '', /server is not spiffe:\/\/cluster\.local\/ns\/default\/sa\/server/);
    assert.equal(out.clientSaw, undefined);
  });
});
