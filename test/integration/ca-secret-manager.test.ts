/**
 * The secret manager, unchanged, with IstioCaClient as its certificate
 * source, against the CA server over gRPC+TLS on 127.0.0.1: issuance, a CA
 * outage (the old certificate keeps being served while renewals retry), and
 * recovery once the CA is back.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { IstioCaClient } from '../../src/ca/ca-client.js';
import { CA_SERVER_CHANNEL_OPTIONS, IstioCaServer, nodeIdentityAuthorizer } from '../../src/ca/ca-server.js';
import { NodeTokenAuthenticator } from '../../src/ca/node-token-authenticator.js';
import { RotatingCa } from '../../src/ca/rotating-ca.js';
import { FakeClock } from '../../src/common/clock.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { SecretManager } from '../../src/identity/secret-manager.js';
import { spiffeId } from '../../src/identity/spiffe.js';
import { createCsr, generateWorkloadKey } from '../../src/identity/x509.js';

const TD = 'cluster.local';
const TOKEN = 'node-a-token-0123456789';
const WEB = spiffeId(TD, 'default', 'web');
const ISTIOD = spiffeId(TD, 'istio-system', 'istiod');

void describe('SecretManager with IstioCaClient', () => {
  const clock = new FakeClock(Date.now());
  let signer: RotatingCa;
  let tls: { root: string; key: string; chain: string };
  let ca: IstioCaServer;
  let server: grpc.Server | undefined;
  let client: IstioCaClient | undefined;
  let sm: SecretManager | undefined;

  async function serve(port: number): Promise<number> {
    const s = new grpc.Server(CA_SERVER_CHANNEL_OPTIONS);
    const svc = ca.service();
    s.addService(svc.definition, svc.implementation);
    const creds = grpc.ServerCredentials.createSsl(Buffer.from(tls.root), [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.chain) }], false);
    const bound = await new Promise<number>((resolve, reject) => s.bindAsync(`127.0.0.1:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))));
    server = s;
    return bound;
  }

  before(async () => {
    signer = await RotatingCa.create({ trustDomain: TD, clock });
    const tlsCa = await LocalCa.createEphemeral({ trustDomain: TD });
    const key = await generateWorkloadKey();
    const res = await tlsCa.sign({ csrPem: await createCsr(key, ISTIOD), identity: ISTIOD, ttlSeconds: 3600 });
    tls = { root: tlsCa.rootCertPem, key: key.privateKeyPem, chain: res.certChainPem.join('') };
    ca = new IstioCaServer({
      ca: signer,
      trustDomain: TD,
      authenticate: NodeTokenAuthenticator.fromEntries([[TOKEN, 'node-a']]),
      authorize: nodeIdentityAuthorizer((node) => (node === 'node-a' ? [WEB] : [])),
      clock,
    });
  });

  after(() => {
    sm?.close();
    client?.close();
    server?.forceShutdown();
  });

  void it('gets a certificate, keeps serving it through a CA outage while retrying, and renews once the CA is back', async () => {
    const port = await serve(0);
    client = new IstioCaClient({
      address: `127.0.0.1:${port}`,
      credentials: grpc.credentials.createSsl(Buffer.from(tls.root), null, null, {
        checkServerIdentity: (_h, cert) => (cert.subjectaltname === `URI:${ISTIOD.toString()}` ? undefined : new Error('unexpected ca identity')),
      }),
      tokenProvider: async () => Promise.resolve(TOKEN),
      timeoutMs: 3000,
      // Reconnect quickly once the CA is back (real time).
      channelOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 200 },
    });
    sm = new SecretManager({ source: client, clock, ttlSeconds: 3600, backoff: { initialMs: 500, maxMs: 4000 } });
    const rotations: string[] = [];
    sm.onRotate((cur) => rotations.push(cur.serialNumber));

    const first = await sm.getCertificate(WEB);
    assert.equal(first.identity.toString(), WEB.toString());
    assert.deepEqual(first.rootsPem, signer.trustBundle());
    assert.equal(first.notAfter - first.notBefore, 3600_000 + 60_000, 'the requested ttl plus the clock-skew backdating');
    assert.equal(sm.state(WEB), 'Available');

    // Outage: the renewal at half-life fails, the old certificate is still served.
    (server as grpc.Server).forceShutdown();
    server = undefined;
    clock.advance((first.notAfter - first.notBefore) / 2 + 1000); // just past half-life, long before expiry
    await sm.settled();
    assert.equal(sm.state(WEB), 'Available');
    assert.equal((await sm.getCertificate(WEB)).serialNumber, first.serialNumber, 'the old certificate keeps being served');
    clock.advance(500);
    await sm.settled();
    assert.equal((await sm.getCertificate(WEB)).serialNumber, first.serialNumber);

    // Still down when the certificate expires: now it is unavailable, with the CA error as the reason.
    clock.advance(first.notAfter - clock.now());
    await sm.settled();
    assert.match(String(sm.state(WEB)), /^Unavailable: the ca at 127\.0\.0\.1:\d+ is unavailable for spiffe:\/\/cluster.local\/ns\/default\/sa\/web: unavailable/);
    await assert.rejects(sm.getCertificate(WEB), { code: 'AMBIT_ERR_IDENTITY_CERT_UNAVAILABLE', message: /a retry is scheduled, check that the ca is reachable/ });

    // The CA comes back on the same port; the scheduled retries succeed.
    await serve(port);
    let renewed;
    for (let i = 0; i < 60 && renewed === undefined; i++) {
      clock.advance(4000);
      await sm.settled();
      if (sm.state(WEB) === 'Available') renewed = await sm.getCertificate(WEB);
      else await sleep(100);
    }
    assert.ok(renewed, `renewed after the outage (state ${String(sm.state(WEB))})`);
    assert.notEqual(renewed.serialNumber, first.serialNumber);
    assert.ok(renewed.notAfter > clock.now());
    assert.deepEqual(rotations, [renewed.serialNumber]);
  });
});
