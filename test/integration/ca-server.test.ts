/**
 * The Istio CA server and client over real gRPC with TLS on 127.0.0.1:
 * issuance, every refusal path, metrics, and root rotation.
 */
import { strict as assert } from 'node:assert';
import { X509Certificate, webcrypto } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { IstioCaClient } from '../../src/ca/ca-client.js';
import { CREATE_CERTIFICATE_PATH, decodeCertificateResponse, encodeCertificateRequest, type CertificateRequestMessage, type CertificateResponseMessage } from '../../src/ca/ca-proto.js';
import { CA_SERVER_CHANNEL_OPTIONS, IstioCaServer, nodeIdentityAuthorizer, type IstioCaServerOptions } from '../../src/ca/ca-server.js';
import { NodeTokenAuthenticator } from '../../src/ca/node-token-authenticator.js';
import { RotatingCa } from '../../src/ca/rotating-ca.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { spiffeId, type SpiffeId } from '../../src/identity/spiffe.js';
import { createCsr, createCsrWithSans, generateWorkloadKey } from '../../src/identity/x509.js';

const TD = 'cluster.local';
const TOKEN_A = 'node-a-token-0123456789';
const TOKEN_B = 'node-b-token-0123456789';
const WEB = spiffeId(TD, 'default', 'web'); // on node-a
const DB = spiffeId(TD, 'default', 'db'); // on node-b
const ISTIOD = spiffeId(TD, 'istio-system', 'istiod');
const MAX_TTL = 7200;

interface Harness {
  server: grpc.Server;
  address: string;
  signer: RotatingCa;
  registry: Registry;
  creds: () => grpc.ChannelCredentials;
  clients: Array<IstioCaClient | grpc.Client>;
}

/** The CA's own serving certificate: a leaf for istiod's SPIFFE id from a separate TLS root. */
async function servingCert(): Promise<{ root: string; key: string; chain: string }> {
  const tlsCa = await LocalCa.createEphemeral({ trustDomain: TD });
  const key = await generateWorkloadKey();
  const res = await tlsCa.sign({ csrPem: await createCsr(key, ISTIOD), identity: ISTIOD, ttlSeconds: 3600 });
  return { root: tlsCa.rootCertPem, key: key.privateKeyPem, chain: res.certChainPem.join('') };
}

async function startHarness(overrides: Partial<IstioCaServerOptions> = {}): Promise<Harness> {
  const signer = await RotatingCa.create({ trustDomain: TD });
  const registry = new Registry();
  const pods = new Map<string, SpiffeId[]>([
    ['node-a', [WEB]],
    ['node-b', [DB]],
  ]);
  const ca = new IstioCaServer({
    ca: signer,
    trustDomain: TD,
    authenticate: NodeTokenAuthenticator.fromEntries([
      [TOKEN_A, 'node-a'],
      [TOKEN_B, 'node-b'],
    ]),
    authorize: nodeIdentityAuthorizer((node) => pods.get(node) ?? []),
    maxTtlSeconds: MAX_TTL,
    registry,
    ...overrides,
  });
  const tls = await servingCert();
  const server = new grpc.Server(CA_SERVER_CHANNEL_OPTIONS);
  const svc = ca.service();
  server.addService(svc.definition, svc.implementation);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(Buffer.from(tls.root), [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.chain) }], false), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  const creds = (): grpc.ChannelCredentials =>
    grpc.credentials.createSsl(Buffer.from(tls.root), null, null, {
      // The CA is identified by its SPIFFE id, not by a host name.
      checkServerIdentity: (_host, cert) => (cert.subjectaltname === `URI:${ISTIOD.toString()}` ? undefined : new Error(`unexpected ca identity ${cert.subjectaltname}`)),
    });
  return { server, address: `127.0.0.1:${port}`, signer, registry, creds, clients: [] };
}

function stopHarness(h: Harness | undefined): void {
  if (h === undefined) return;
  for (const c of h.clients) c.close();
  h.server.forceShutdown();
}

function client(h: Harness, token: string): IstioCaClient {
  const c = new IstioCaClient({ address: h.address, credentials: h.creds(), tokenProvider: () => token, timeoutMs: 5000 });
  h.clients.push(c);
  return c;
}

/** A call with full control over headers, metadata and bytes. */
function rawCall(h: Harness, req: CertificateRequestMessage | Buffer, headers: Record<string, string>): Promise<{ code: number; details: string } | CertificateResponseMessage> {
  const c = new grpc.Client(h.address, h.creds());
  h.clients.push(c);
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  const ser = (m: CertificateRequestMessage | Buffer): Buffer => (Buffer.isBuffer(m) ? m : encodeCertificateRequest(m));
  return new Promise((resolve) => {
    c.makeUnaryRequest(CREATE_CERTIFICATE_PATH, ser, decodeCertificateResponse, req, md, { deadline: Date.now() + 5000 }, (err, value) => {
      resolve(err ? { code: err.code, details: err.details } : (value as CertificateResponseMessage));
    });
  });
}

async function csrFor(sans: { uris?: string[]; dns?: string[] }): Promise<string> {
  return createCsrWithSans(await generateWorkloadKey(), sans);
}

async function metric(registry: Registry, result: string): Promise<number> {
  const m = (await registry.getSingleMetric('ambit_ca_requests_total')?.get())?.values ?? [];
  return m.find((v) => v.labels.result === result)?.value ?? 0;
}

function verifiesTo(leafPem: string, rootsPem: readonly string[]): boolean {
  const leaf = new X509Certificate(leafPem);
  return rootsPem.some((p) => {
    const r = new X509Certificate(p);
    return leaf.checkIssued(r) && leaf.verify(r.publicKey);
  });
}

/** Flips a bit in the signature at the end of the CSR's DER, keeping the PEM well-formed. */
function tamper(csrPem: string): string {
  const b64 = csrPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const der = Buffer.from(b64, 'base64');
  der[der.length - 1] = (der[der.length - 1] as number) ^ 0x01;
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE REQUEST-----\n${lines.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

async function rsaCsr(bits: number, uri: string): Promise<string> {
  // x509.ts (imported above) has already loaded reflect-metadata and set the crypto provider.
  const px = await import('@peculiar/x509');
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]) };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const csr = await px.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: alg, extensions: [new px.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true)] });
  return csr.toString('pem');
}

void describe('IstioCaServer over gRPC+TLS', () => {
  let h: Harness | undefined;
  before(async () => {
    h = await startHarness();
  });
  after(() => stopHarness(h));
  const hh = (): Harness => h as Harness;

  void it('issues a certificate for an identity on the caller node: leaf first, verifies to the root, only the SPIFFE SAN, ttl cut to the max', async () => {
    const c = client(hh(), TOKEN_A);
    const key = await generateWorkloadKey();
    const t0 = Date.now();
    const res = await c.sign({ csrPem: await createCsr(key, WEB), identity: WEB, ttlSeconds: 86_400 });
    assert.equal(res.certChainPem.length, 1);
    assert.deepEqual(res.rootsPem, hh().signer.trustBundle());
    const leaf = new X509Certificate(res.certChainPem[0] as string);
    assert.equal(leaf.subjectAltName, `URI:${WEB.toString()}`);
    assert.ok(verifiesTo(res.certChainPem[0] as string, res.rootsPem));
    const lifetime = (Date.parse(leaf.validTo) - t0) / 1000;
    assert.ok(lifetime <= MAX_TTL + 2 && lifetime >= MAX_TTL - 5, `lifetime ${lifetime}s is cut to ${MAX_TTL}s`);
    assert.equal(await metric(hh().registry, 'ok'), 1);
  });

  void it('honours shorter ttls and treats 0 or negative validity_duration as the maximum', async () => {
    const c = client(hh(), TOKEN_A);
    const short = await c.sign({ csrPem: await createCsr(await generateWorkloadKey(), WEB), identity: WEB, ttlSeconds: 600 });
    const t = Date.parse(new X509Certificate(short.certChainPem[0] as string).validTo) - Date.now();
    assert.ok(t <= 600_000 && t > 590_000, `ttl ${t}`);
    for (const validityDuration of [0, -5]) {
      const r = await rawCall(hh(), { csr: await csrFor({ uris: [WEB.toString()] }), validityDuration, metadata: {} }, { authorization: `Bearer ${TOKEN_A}` });
      assert.ok('certChain' in r, JSON.stringify(r));
      const ttl = Date.parse(new X509Certificate(r.certChain[0] as string).validTo) - Date.now();
      assert.ok(ttl > (MAX_TTL - 10) * 1000 && ttl <= MAX_TTL * 1000, `ttl ${ttl} for ${validityDuration}`);
      assert.equal(r.certChain.length, 2, 'leaf then the root bundle');
    }
  });

  void it('refuses an identity on another node with PERMISSION_DENIED, with and without ImpersonatedIdentity', async () => {
    const c = client(hh(), TOKEN_A);
    await assert.rejects(c.sign({ csrPem: await createCsr(await generateWorkloadKey(), DB), identity: DB, ttlSeconds: 600 }), (err: Error & { code?: string; grpcCode?: number }) => {
      assert.equal(err.code, 'AMBIT_ERR_CA_PERMISSION_DENIED');
      assert.equal(err.grpcCode, grpc.status.PERMISSION_DENIED);
      assert.match(err.message, new RegExp(`^the ca at ${hh().address} refused the request for spiffe://cluster.local/ns/default/sa/db: permission denied \\(node node-a may not request`));
      assert.match(err.message, /is the agent's token for this node/);
      return true;
    });
    const raw = await rawCall(hh(), { csr: await csrFor({ uris: [DB.toString()] }), validityDuration: 600, metadata: {} }, { authorization: `Bearer ${TOKEN_A}` });
    assert.deepEqual('code' in raw && raw.code, grpc.status.PERMISSION_DENIED, 'the CSR SAN is authorized the same way');
    const own = await rawCall(hh(), { csr: await csrFor({ uris: [WEB.toString()] }), validityDuration: 600, metadata: {} }, { authorization: `Bearer ${TOKEN_A}` });
    assert.ok('certChain' in own, 'without metadata the CSR SAN is the requested identity');
  });

  void it('refuses missing, malformed and unknown tokens with UNAUTHENTICATED', async () => {
    const csr = await csrFor({ uris: [WEB.toString()] });
    const meta = { ImpersonatedIdentity: WEB.toString() };
    for (const headers of [{}, { authorization: TOKEN_A }, { authorization: 'Bearer unknown-token-0123456789' }] as Array<Record<string, string>>) {
      const r = await rawCall(hh(), { csr, validityDuration: 600, metadata: meta }, headers);
      assert.ok('code' in r);
      assert.equal(r.code, grpc.status.UNAUTHENTICATED, JSON.stringify(headers));
      assert.match(r.details, /^(no authorization header|the authorization header is not|the bearer token is not a known node token)/);
    }
    await assert.rejects(client(hh(), 'unknown-token-0123456789').sign({ csrPem: csr, identity: WEB, ttlSeconds: 600 }), { code: 'AMBIT_ERR_CA_UNAUTHENTICATED', message: /unauthenticated \(the bearer token is not a known node token; give the agent its node's token\); check the agent's token/ });
  });

  void it('refuses bad requests and CSRs with INVALID_ARGUMENT and an actionable message', async () => {
    const auth = { authorization: `Bearer ${TOKEN_A}` };
    const meta = { ImpersonatedIdentity: WEB.toString() };
    const good = await csrFor({ uris: [WEB.toString()] });
    const cases: Array<[string, CertificateRequestMessage | Buffer, RegExp]> = [
      ['extra dns san', { csr: await csrFor({ uris: [WEB.toString()], dns: ['web.default.svc'] }), validityDuration: 600, metadata: meta }, /the csr has 2 subject alternative names \(uri:spiffe:\/\/cluster.local\/ns\/default\/sa\/web, dns:web.default.svc\); it must carry exactly one uri san/],
      ['second uri san', { csr: await csrFor({ uris: [WEB.toString(), DB.toString()] }), validityDuration: 600, metadata: meta }, /the csr has 2 subject alternative names/],
      ['no san', { csr: await csrFor({}), validityDuration: 600, metadata: meta }, /the csr has no subject alternative name/],
      ['non-spiffe uri', { csr: await csrFor({ uris: ['https://web.example.com/'] }), validityDuration: 600, metadata: {} }, /the csr uri san is not a spiffe id/],
      ['foreign trust domain', { csr: await csrFor({ uris: ['spiffe://evil.org/ns/default/sa/web'] }), validityDuration: 600, metadata: {} }, /outside trust domain cluster.local/],
      ['impersonation mismatch', { csr: good, validityDuration: 600, metadata: { ImpersonatedIdentity: spiffeId(TD, 'default', 'other').toString() } }, /the csr asks for spiffe:\/\/cluster.local\/ns\/default\/sa\/web but ImpersonatedIdentity is/],
      ['impersonated not a string', { csr: good, validityDuration: 600, metadata: { ImpersonatedIdentity: 5 } }, /metadata ImpersonatedIdentity must be a string/],
      ['impersonated garbage', { csr: good, validityDuration: 600, metadata: { ImpersonatedIdentity: 'web' } }, /metadata ImpersonatedIdentity: invalid spiffe id/],
      ['empty csr', { csr: '', validityDuration: 600, metadata: meta }, /the request has no csr/],
      ['garbage csr', { csr: 'hello, i am a csr', validityDuration: 600, metadata: meta }, /the csr is not a valid pem pkcs#10 request/],
      ['bad signature', { csr: tamper(good), validityDuration: 600, metadata: meta }, /the csr signature (does not verify|could not be checked)/],
      ['oversized csr', { csr: good + 'x'.repeat(70 * 1024), validityDuration: 600, metadata: meta }, /the csr is \d+ bytes; the limit is 65536/],
      ['rsa 1024', { csr: await rsaCsr(1024, WEB.toString()), validityDuration: 600, metadata: meta }, /the csr key is rsa with 1024 bits; use at least 2048/],
      ['undecodable bytes', Buffer.from([0x0a, 0x50, 0x01]), /the request is not a valid IstioCertificateRequest/],
      ['oversized request', { csr: good, validityDuration: 600, metadata: { ...meta, pad: 'x'.repeat(100 * 1024) } }, /the request is \d+ bytes; the limit is 81920/],
    ];
    const before = await metric(hh().registry, 'invalid_argument');
    for (const [name, req, re] of cases) {
      const r = await rawCall(hh(), req, auth);
      assert.ok('code' in r, `${name}: expected a refusal`);
      assert.equal(r.code, grpc.status.INVALID_ARGUMENT, `${name}: ${r.details}`);
      assert.match(r.details, re, name);
      assert.equal(r.details[0], r.details[0]?.toLowerCase(), `${name}: lowercase message`);
    }
    assert.equal((await metric(hh().registry, 'invalid_argument')) - before, cases.length);

    const huge = await rawCall(hh(), { csr: 'x'.repeat(2 * 1024 * 1024), validityDuration: 600, metadata: meta }, auth);
    assert.ok('code' in huge);
    assert.equal(huge.code, grpc.status.RESOURCE_EXHAUSTED, 'grpc-js refuses messages above CA_SERVER_CHANNEL_OPTIONS before parsing');

    await assert.rejects(client(hh(), TOKEN_A).sign({ csrPem: 'garbage', identity: WEB, ttlSeconds: 600 }), {
      code: 'AMBIT_ERR_CA_INVALID_REQUEST',
      message: /refused the request for spiffe:\/\/cluster.local\/ns\/default\/sa\/web: invalid request \(the csr is not a valid pem/,
    });
  });

  void it('accepts an RSA 2048 CSR and still serves good requests after all the bad ones, counting every result', async () => {
    const rsa = await rawCall(hh(), { csr: await rsaCsr(2048, WEB.toString()), validityDuration: 600, metadata: { ImpersonatedIdentity: WEB.toString() } }, { authorization: `Bearer ${TOKEN_A}` });
    assert.ok('certChain' in rsa, JSON.stringify(rsa));
    assert.equal(new X509Certificate(rsa.certChain[0] as string).publicKey.asymmetricKeyType, 'rsa');
    const res = await client(hh(), TOKEN_B).sign({ csrPem: await createCsr(await generateWorkloadKey(), DB), identity: DB, ttlSeconds: 600 });
    assert.equal(new X509Certificate(res.certChainPem[0] as string).subjectAltName, `URI:${DB.toString()}`);
    const text = await hh().registry.metrics();
    for (const r of ['ok', 'unauthenticated', 'permission_denied', 'invalid_argument']) assert.match(text, new RegExp(`ambit_ca_requests_total\\{result="${r}"\\} [1-9]`), r);
  });
});

void describe('root rotation through the CA server', () => {
  let h: Harness | undefined;
  before(async () => {
    h = await startHarness();
  });
  after(() => stopHarness(h));

  void it('publishes the new root before signing with it; old leaves verify until the old root is retired', async () => {
    const hh = h as Harness;
    const c = client(hh, TOKEN_A);
    const get = async () => c.sign({ csrPem: await createCsr(await generateWorkloadKey(), WEB), identity: WEB, ttlSeconds: 600 });
    const oldRoot = hh.signer.activeRootPem;
    const first = await get();
    assert.deepEqual(first.rootsPem, [oldRoot]);

    const next = await hh.signer.newRoot();
    await hh.signer.addRoot(next);
    const during = await get();
    assert.deepEqual(during.rootsPem, [oldRoot, next.certPem], 'the bundle carries both roots before the new one signs');
    assert.ok(verifiesTo(during.certChainPem[0] as string, [oldRoot]), 'still signed by the old root');

    hh.signer.activate(next.certPem);
    const rotated = await get();
    assert.ok(verifiesTo(rotated.certChainPem[0] as string, [next.certPem]) && !verifiesTo(rotated.certChainPem[0] as string, [oldRoot]));
    assert.ok(verifiesTo(rotated.certChainPem[0] as string, during.rootsPem), 'a peer holding the bundle from before activation trusts the new leaf');
    assert.ok(verifiesTo(first.certChainPem[0] as string, rotated.rootsPem), 'old leaves verify against the current bundle');

    hh.signer.retire(oldRoot);
    const last = await get();
    assert.deepEqual(last.rootsPem, [next.certPem]);
    assert.ok(!verifiesTo(first.certChainPem[0] as string, last.rootsPem), 'after retire the old leaf is no longer trusted');
  });
});

void describe('IstioCaServer failures of its collaborators', () => {
  let h: Harness | undefined;
  after(() => stopHarness(h));

  void it('maps an unavailable authenticator to UNAVAILABLE, and a throwing authorizer or signer to INTERNAL without details', async () => {
    let authMode: 'down' | 'ok' = 'down';
    let authzThrows = true;
    h = await startHarness({
      authenticate: {
        authenticate: () =>
          Promise.resolve(
            authMode === 'down'
              ? { ok: false as const, kind: 'unavailable' as const, reason: 'the ca could not review the token with the kubernetes api (boom); retry later' }
              : { ok: true as const, caller: { node: 'node-a', method: 'node-token' as const, subject: 't' } },
          ),
      },
      authorize: () => {
        if (authzThrows) throw new Error('pod list not synced');
        return true;
      },
      ca: { sign: () => Promise.reject(new Error('hsm on fire')) },
    });
    const c = client(h, TOKEN_A);
    const sign = async () => c.sign({ csrPem: await createCsr(await generateWorkloadKey(), WEB), identity: WEB, ttlSeconds: 600 });
    await assert.rejects(sign(), { code: 'AMBIT_ERR_CA_UNAVAILABLE', message: /unavailable \(the ca could not review the token with the kubernetes api \(boom\); retry later\)/ });
    authMode = 'ok';
    await assert.rejects(sign(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'AMBIT_ERR_CA_REQUEST_FAILED');
      assert.match(err.message, /internal \(the ca could not check whether the caller may hold the identity; see the ca log\)/);
      assert.doesNotMatch(err.message, /pod list not synced/, 'internal details stay in the ca log');
      return true;
    });
    authzThrows = false;
    await assert.rejects(sign(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'AMBIT_ERR_CA_REQUEST_FAILED');
      assert.match(err.message, /internal \(the ca could not sign the certificate; see the ca log\)/);
      assert.doesNotMatch(err.message, /hsm/);
      return true;
    });
    assert.equal(await metric(h.registry, 'unavailable'), 1);
    assert.equal(await metric(h.registry, 'internal'), 2);
  });
});
