/**
 * Hostile input against the real delta xDS server and the real Istio CA
 * server over loopback gRPC: undecodable requests, oversized requests,
 * unknown type URLs, a flood of subscriptions and nonces; CSRs with the
 * wrong key type (P-384, P-521, Ed25519, RSA 1024, RSA-PSS) and tokens for
 * the wrong audience. After each case a good client must still be served.
 * (The CA's SAN, size and signature cases are in ca-server.test.ts.)
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { IstioCaClient } from '../../src/ca/ca-client.js';
import { CREATE_CERTIFICATE_PATH, decodeCertificateResponse, encodeCertificateRequest, type CertificateRequestMessage } from '../../src/ca/ca-proto.js';
import { CA_SERVER_CHANNEL_OPTIONS, IstioCaServer, nodeIdentityAuthorizer } from '../../src/ca/ca-server.js';
import { KubeTokenReviewAuthenticator, type KubeAuthClient, type TokenReviewResult, EXTRA_NODE_NAME, EXTRA_POD_NAME, EXTRA_POD_UID } from '../../src/ca/kube-token-authenticator.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { spiffeId } from '../../src/identity/spiffe.js';
import { createCsr, generateWorkloadKey } from '../../src/identity/x509.js';
import * as x509 from '@peculiar/x509';
import { DeltaXdsClient, type XdsTypeHandler, type XdsTypeUpdate } from '../../src/xds/delta-client.js';
import { DELTA_ADS_PATH, encodeDeltaRequest } from '../../src/xds/codec.js';
import { DeltaXdsServer, MAX_XDS_REQUEST_BYTES } from '../../src/xds/delta-server.js';
import { buildNode } from '../../src/xds/node.js';
import { Tally } from '../security/lib/tally.js';

const tally = new Tally('xds-ca');
after(() => tally.print());

const ADDR = 'type.googleapis.com/istio.workload.Address';
const NODE = buildNode({ instanceIp: '127.0.0.1', podName: 'ambit-sec', podNamespace: 'istio-system', nodeName: 'node-1' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('delta xDS server under hostile requests', () => {
  let server: DeltaXdsServer;
  let grpcServer: grpc.Server;
  let port: number;
  const clients: grpc.Client[] = [];

  const registry = new Registry();
  const refusedCount = async (reason: string): Promise<number> =>
    (await registry.getSingleMetric('ambit_xds_requests_refused_total')?.get())?.values.find((v) => v.labels['reason'] === reason)?.value ?? 0;

  before(async () => {
    server = new DeltaXdsServer({ typeUrls: [ADDR], debounceMs: 10, registry });
    server.replaceAll(ADDR, [{ name: 'a', version: '1', body: Buffer.from('a@1') }]);
    grpcServer = new grpc.Server();
    const svc = server.service();
    grpcServer.addService(svc.definition, svc.implementation);
    port = await new Promise<number>((resolve, reject) => grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  });

  after(() => {
    for (const c of clients) c.close();
    server.close();
    grpcServer.forceShutdown();
  });

  /** Opens a raw stream, writes these messages (already serialized), and reports how it ended. */
  async function rawStream(messages: Buffer[], waitMs = 1500): Promise<{ code: number | 'open'; responses: number }> {
    const c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    clients.push(c);
    const call = c.makeBidiStreamRequest(DELTA_ADS_PATH, (b: Buffer) => b, (b: Buffer) => b);
    let responses = 0;
    const ended = new Promise<number>((resolve) => {
      call.on('data', () => responses++);
      call.on('error', (e: grpc.ServiceError) => resolve(e.code));
      call.on('status', (s: grpc.StatusObject) => resolve(s.code));
    });
    for (const m of messages) call.write(m);
    const code = await Promise.race([ended, sleep(waitMs).then(() => 'open' as const)]);
    call.cancel();
    return { code, responses };
  }

  async function goodClientSynced(name: string): Promise<void> {
    const updates: string[] = [];
    const handler: XdsTypeHandler = {
      typeUrl: ADDR,
      apply: (u: XdsTypeUpdate) => {
        updates.push(...u.upserts.map((r) => r.name));
        return { rejected: [] };
      },
    };
    const client = new DeltaXdsClient({ address: `127.0.0.1:${port}`, credentials: grpc.credentials.createInsecure(), node: NODE, handlers: [handler] });
    let timer: NodeJS.Timeout | undefined;
    try {
      const synced = new Promise<void>((resolve, reject) => {
        client.once('synced', () => resolve());
        timer = setTimeout(() => reject(new Error(`${name}: good client not synced`)), 5000);
      });
      void client.start();
      await synced;
      assert.ok(updates.includes('a'), `${name}: good client did not get its resource`);
    } catch (err) {
      tally.case(`${name} (good client after)`, { refused: false, crashed: true });
      throw err;
    } finally {
      clearTimeout(timer);
      void client.close();
    }
  }

  const req = (typeUrl: string, extra: Partial<Parameters<typeof encodeDeltaRequest>[0]> = {}): Buffer =>
    encodeDeltaRequest({ typeUrl, resourceNamesSubscribe: ['*'], resourceNamesUnsubscribe: [], initialResourceVersions: {}, responseNonce: '', node: NODE, ...extra });

  test('undecodable request bytes end the stream with an error', async () => {
    for (const [name, bytes] of [
      ['truncated varint', Buffer.from([0x0a, 0xff])],
      ['length past the end', Buffer.from([0x12, 0x7f, 0x41])],
      ['wire type 7', Buffer.from([0x0f, 0x01])],
      ['random', Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 131 + 7) % 256))],
    ] as const) {
      const before = await refusedCount('undecodable');
      const r = await rawStream([bytes]);
      tally.case(`xds ${name}`, { refused: r.code !== 'open' && r.code !== grpc.status.OK });
      assert.equal(r.code, grpc.status.INVALID_ARGUMENT, `${name}: ended with ${String(r.code)}`);
      assert.equal((await refusedCount('undecodable')) - before, 1, `${name}: refusal counted`);
    }
    await goodClientSynced('undecodable');
  });

  test('an unknown type URL gets no resources and does not disturb others', async () => {
    const r = await rawStream([req('type.googleapis.com/envoy.config.cluster.v3.Cluster'), req('type.googleapis.com/../../etc/passwd')], 800);
    tally.case('xds unknown type url', { refused: r.responses === 0 || r.code !== 'open' });
    assert.ok(r.responses === 0 || r.code !== 'open', `got ${r.responses} responses for unknown types`);
    await goodClientSynced('unknown type url');
  });

  test(`a request above the server's ${MAX_XDS_REQUEST_BYTES}-byte limit is refused with RESOURCE_EXHAUSTED and counted`, async () => {
    const names = Array.from({ length: 25_000 }, (_, i) => `${'n'.repeat(90)}${i}`);
    const big = req(ADDR, { resourceNamesSubscribe: names });
    assert.ok(big.length > MAX_XDS_REQUEST_BYTES && big.length < 4 * 1024 * 1024, `request of ${big.length} bytes`);
    const before = await refusedCount('too_large');
    const r = await rawStream([big]);
    tally.case('xds 2.5 MB request', { refused: r.code === grpc.status.RESOURCE_EXHAUSTED });
    assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal((await refusedCount('too_large')) - before, 1, 'the refusal is counted');
    await goodClientSynced('request over the server limit');
  });

  test('a request above the gRPC transport limit is refused with RESOURCE_EXHAUSTED', async () => {
    const names = Array.from({ length: 50_000 }, (_, i) => `${'n'.repeat(90)}${i}`);
    const r = await rawStream([req(ADDR, { resourceNamesSubscribe: names })]);
    tally.case('xds 4.5 MB request', { refused: r.code === grpc.status.RESOURCE_EXHAUSTED });
    assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED);
    await goodClientSynced('oversized request');
  });

  test('1.5 MB of subscriptions to names that do not exist, and 10,000 bogus ACK nonces, are absorbed', async () => {
    const names = Array.from({ length: 15_000 }, (_, i) => `${'m'.repeat(90)}${i}`);
    const acks = Array.from({ length: 10_000 }, (_, i) => req(ADDR, { resourceNamesSubscribe: [], responseNonce: `bogus-${i}` }));
    const t0 = Date.now();
    const r = await rawStream([req(ADDR, { resourceNamesSubscribe: names }), ...acks], 1500);
    tally.case('xds subscription + nonce flood', { refused: r.code !== grpc.status.INTERNAL && r.code !== grpc.status.UNKNOWN });
    assert.ok(r.code !== grpc.status.INTERNAL && r.code !== grpc.status.UNKNOWN, `server failed: ${String(r.code)}`);
    assert.ok(Date.now() - t0 < 10_000);
    await goodClientSynced('subscription flood');
  });
});

describe('Istio CA server under hostile CSRs and tokens', () => {
  const TD = 'cluster.local';
  const WEB = spiffeId(TD, 'default', 'web');
  let server: grpc.Server;
  let address: string;
  let creds: () => grpc.ChannelCredentials;
  const clients: Array<grpc.Client | IstioCaClient> = [];

  // A fake TokenReview API: 'good' is for istio-ca on node-a; 'aud' is a valid token for another audience.
  const kube: KubeAuthClient = {
    reviewToken: (token: string, audiences: readonly string[]): Promise<TokenReviewResult> => {
      const user = { username: 'system:serviceaccount:istio-system:ambit', extra: { [EXTRA_POD_NAME]: ['ambit-a'], [EXTRA_POD_UID]: ['uid-a'], [EXTRA_NODE_NAME]: ['node-a'] } };
      if (token === 'good') return Promise.resolve({ authenticated: true, audiences: [...audiences], user });
      if (token === 'aud') return Promise.resolve({ authenticated: true, audiences: ['kubernetes.default.svc'], user });
      return Promise.resolve({ authenticated: false, audiences: [], error: 'invalid bearer token' } as TokenReviewResult);
    },
    getPod: () => Promise.resolve(undefined),
  } as unknown as KubeAuthClient;

  before(async () => {
    const signer = await LocalCa.createEphemeral({ trustDomain: TD });
    const ca = new IstioCaServer({
      ca: signer,
      trustDomain: TD,
      authenticate: new KubeTokenReviewAuthenticator({ client: kube, trustedServiceAccounts: ['istio-system/ambit'] }),
      authorize: nodeIdentityAuthorizer((node) => (node === 'node-a' ? [WEB] : [])),
      registry: new Registry(),
    });
    const tlsCa = await LocalCa.createEphemeral({ trustDomain: TD });
    const istiod = spiffeId(TD, 'istio-system', 'istiod');
    const key = await generateWorkloadKey();
    const leaf = await tlsCa.sign({ csrPem: await createCsr(key, istiod), identity: istiod, ttlSeconds: 3600 });
    server = new grpc.Server(CA_SERVER_CHANNEL_OPTIONS);
    const svc = ca.service();
    server.addService(svc.definition, svc.implementation);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(Buffer.from(tlsCa.rootCertPem), [{ private_key: Buffer.from(key.privateKeyPem), cert_chain: Buffer.from(leaf.certChainPem.join('')) }], false), (e, p) => (e ? reject(e) : resolve(p))),
    );
    address = `127.0.0.1:${port}`;
    creds = () => grpc.credentials.createSsl(Buffer.from(tlsCa.rootCertPem), null, null, { checkServerIdentity: () => undefined });
  });

  after(() => {
    for (const c of clients) c.close();
    server.forceShutdown();
  });

  function call(req: CertificateRequestMessage, token: string): Promise<{ code: number; details: string } | { ok: true }> {
    const c = new grpc.Client(address, creds());
    clients.push(c);
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    return new Promise((resolve) => {
      c.makeUnaryRequest(CREATE_CERTIFICATE_PATH, encodeCertificateRequest, decodeCertificateResponse, req, md, { deadline: Date.now() + 5000 }, (err) => resolve(err ? { code: err.code, details: err.details } : { ok: true }));
    });
  }

  async function goodClientSigned(name: string): Promise<void> {
    const c = new IstioCaClient({ address, credentials: creds(), tokenProvider: () => 'good', timeoutMs: 5000 });
    clients.push(c);
    try {
      const r = await c.sign({ csrPem: await createCsr(await generateWorkloadKey(), WEB), identity: WEB, ttlSeconds: 600 });
      assert.ok(r.certChainPem.length > 0);
    } catch (err) {
      tally.case(`${name} (good client after)`, { refused: false, crashed: true });
      throw err;
    }
  }

  /** A CSR for WEB signed with an arbitrary key algorithm. */
  async function csrWith(alg: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams | { name: 'Ed25519' }, signing: object): Promise<string> {
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: signing, extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: WEB.toString() }], true)] });
    return csr.toString('pem');
  }

  test('CSRs with the wrong key type or size are INVALID_ARGUMENT', async () => {
    const rsa = (bits: number): webcrypto.RsaHashedKeyGenParams => ({ name: 'RSASSA-PKCS1-v1_5', modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' });
    const cases: Array<[string, () => Promise<string>]> = [
      ['ecdsa p-384', () => csrWith({ name: 'ECDSA', namedCurve: 'P-384' }, { name: 'ECDSA', hash: 'SHA-384' })],
      ['ecdsa p-521', () => csrWith({ name: 'ECDSA', namedCurve: 'P-521' }, { name: 'ECDSA', hash: 'SHA-512' })],
      ['ed25519', () => csrWith({ name: 'Ed25519' }, { name: 'Ed25519' })],
      ['rsa 1024 (rsa not enabled)', () => csrWith(rsa(1024), rsa(1024))],
      ['rsa 2048 (rsa not enabled)', () => csrWith(rsa(2048), rsa(2048))],
    ];
    for (const [name, make] of cases) {
      let pem: string;
      try {
        pem = await make();
      } catch (err) {
        assert.fail(`${name}: could not build the csr: ${(err as Error).message}`);
      }
      const r = await call({ csr: pem, validityDuration: 600, metadata: {} }, 'good');
      tally.case(`csr ${name}`, { refused: 'code' in r && r.code === grpc.status.INVALID_ARGUMENT });
      assert.ok('code' in r, `${name}: signed`);
      assert.equal(r.code, grpc.status.INVALID_ARGUMENT, `${name}: ${r.details}`);
      assert.match(r.details, /csr key|ecdsa p-256/, name);
    }
    await goodClientSigned('wrong key types');
  });

  test('a token for another audience, an unknown token and no token are UNAUTHENTICATED', async () => {
    const csr = await createCsr(await generateWorkloadKey(), WEB);
    for (const [name, token] of [
      ['wrong audience', 'aud'],
      ['unknown token', 'nope'],
      ['empty token', ''],
      ['8 KiB token', 'x'.repeat(8192)],
    ] as const) {
      const r = await call({ csr, validityDuration: 600, metadata: {} }, token);
      tally.case(`ca ${name}`, { refused: 'code' in r && r.code === grpc.status.UNAUTHENTICATED });
      assert.ok('code' in r, `${name}: signed`);
      assert.equal(r.code, grpc.status.UNAUTHENTICATED, `${name}: ${r.details}`);
    }
    await goodClientSigned('bad tokens');
  });
});
