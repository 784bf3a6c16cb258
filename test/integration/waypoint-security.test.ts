/**
 * Waypoint L7 security over real loopback HTTP: AuthorizationPolicy (DENY on
 * POST /admin, ALLOW by principal, dry-run) and RequestAuthentication with
 * JWTs signed in the test (JWKS from a file and from an HTTP URL).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import type { Waypoint } from '../../src/waypoint/server.js';
import { backend, closeBackends, counterSum, httpGet, simpleConfig, startWaypoint, type Backend } from '../fixtures/waypoint/harness.js';

let b: Backend;
before(async () => {
  b = await backend('b');
});
after(async () => {
  await closeBackends(b);
});

/** A listener whose connections the waypoint sees as coming from `identity` over HBONE. */
async function asPeer(wp: Waypoint, identity: string): Promise<{ port: number; server: Server }> {
  const server = createServer((s) => wp.handleConnection(s, { sourceAddress: s.remoteAddress ?? '', peerIdentity: identity }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, server };
}

describe('waypoint L7 authorization', () => {
  test('DENY on POST /admin blocks only that', async () => {
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [b.port] }], {}, {
      authorization: [{ name: 'deny-admin-post', action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'], paths: ['/admin', '/admin/*'] } }] }] }],
    }));
    try {
      assert.equal((await httpGet(h.port, '/admin', { method: 'POST', body: 'x' })).status, 403);
      assert.equal((await httpGet(h.port, '/admin/users', { method: 'POST', body: 'x' })).status, 403);
      assert.equal((await httpGet(h.port, '/admin')).status, 200);
      assert.equal((await httpGet(h.port, '/other', { method: 'POST', body: 'x' })).status, 200);
      const denied = await httpGet(h.port, '/admin', { method: 'POST' });
      assert.equal(denied.body, 'RBAC: access denied');
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { response_code: '403', response_flags: 'RBAC' }), 3);
    } finally {
      await h.close();
    }
  });

  test('ALLOW for principal X: X gets 200, everyone else 403; a dry-run DENY decides nothing', async () => {
    const X = 'spiffe://cluster.local/ns/default/sa/productpage';
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [b.port] }], {}, {
      authorization: [
        { name: 'allow-productpage', action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/productpage'] } }] }] },
        { name: 'would-deny-all', action: 'DENY', dryRun: true, rules: [{}] },
      ],
    }));
    const x = await asPeer(h.wp, X);
    const y = await asPeer(h.wp, 'spiffe://cluster.local/ns/other/sa/sleep');
    try {
      assert.equal((await httpGet(x.port, '/')).status, 200);
      assert.equal((await httpGet(y.port, '/')).status, 403);
      assert.equal((await httpGet(h.port, '/')).status, 403, 'no peer identity');
      const seen = b.seen.at(-1);
      assert.equal(seen?.headers['x-forwarded-client-cert'], `URI=${X}`);
      assert.equal(await counterSum(h.registry, 'istio_requests_total', { source_principal: X, response_code: '200', connection_security_policy: 'mutual_tls' }), 1);
    } finally {
      x.server.close();
      y.server.close();
      await h.close();
    }
  });
});

describe('waypoint RequestAuthentication (JWT)', () => {
  let dir: string;
  let key: CryptoKey;
  let otherKey: CryptoKey;
  let jwk: JWK;
  const ISS = 'https://issuer.test';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ambit-wp-jwt-'));
    const kp = await generateKeyPair('RS256');
    key = kp.privateKey;
    otherKey = (await generateKeyPair('RS256')).privateKey;
    jwk = { ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk] }));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const token = (k: CryptoKey, claims: Record<string, unknown> = {}, opts: { aud?: string; iss?: string; exp?: string } = {}): Promise<string> =>
    new SignJWT({ groups: ['dev'], ...claims }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setIssuer(opts.iss ?? ISS).setSubject('alice')
      .setAudience(opts.aud ?? 'reviews').setIssuedAt().setExpirationTime(opts.exp ?? '5m').sign(k);

  test('requestPrincipals rule: no token 403, bad signature 401, valid 200; claims reach policy', async () => {
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [b.port] }], {}, {
      requestAuthentication: [{ issuer: ISS, audiences: ['reviews'], jwksFile: join(dir, 'jwks.json') }],
      authorization: [
        { name: 'require-jwt', action: 'ALLOW', rules: [{ from: [{ source: { requestPrincipals: [`${ISS}/*`] } }] }] },
        { name: 'admins-only-admin', action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }], when: [{ key: 'request.auth.claims[groups]', notValues: ['admin'] }] }] },
      ],
    }));
    try {
      assert.equal((await httpGet(h.port, '/')).status, 403, 'no token');
      const bad = await httpGet(h.port, '/', { headers: { authorization: `Bearer ${await token(otherKey)}` } });
      assert.equal(bad.status, 401, 'bad signature');
      assert.equal(bad.body, 'Jwt verification fails');
      assert.equal((await httpGet(h.port, '/', { headers: { authorization: `Bearer ${await token(key, {}, { aud: 'other' })}` } })).status, 401, 'wrong audience');
      assert.equal((await httpGet(h.port, '/', { headers: { authorization: `Bearer ${await token(key, {}, { iss: 'https://evil.test' })}` } })).status, 401, 'untrusted issuer');
      assert.equal((await httpGet(h.port, '/', { headers: { authorization: 'Bearer not.a.jwt' } })).status, 401, 'garbage');
      const good = await httpGet(h.port, '/', { headers: { authorization: `Bearer ${await token(key)}` } });
      assert.equal(good.status, 200);
      assert.equal(b.seen.at(-1)?.headers.authorization, undefined, 'token not forwarded by default');
      assert.equal((await httpGet(h.port, '/admin', { headers: { authorization: `Bearer ${await token(key)}` } })).status, 403, 'dev is not admin');
      assert.equal((await httpGet(h.port, '/admin', { headers: { authorization: `Bearer ${await token(key, { groups: ['admin'] })}` } })).status, 200);
    } finally {
      await h.close();
    }
  });

  test('JWKS from an HTTP URL is fetched once and cached', async () => {
    let fetches = 0;
    const jwksServer = createHttpServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks`;
    const h = await startWaypoint(simpleConfig([{ name: 'c', ports: [b.port] }], {}, {
      requestAuthentication: [{ issuer: ISS, audiences: ['reviews'], jwksUri: url }],
    }));
    try {
      for (let i = 0; i < 5; i++) assert.equal((await httpGet(h.port, '/', { headers: { authorization: `Bearer ${await token(key)}` } })).status, 200);
      assert.equal((await httpGet(h.port, '/')).status, 200, 'no token and no policy: allowed');
      assert.equal(fetches, 1);
    } finally {
      await h.close();
      jwksServer.closeAllConnections();
      jwksServer.close();
    }
  });
});
