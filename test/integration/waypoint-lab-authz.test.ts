/**
 * Waypoint end to end, L7 authorization (issue must-show 5): Istio
 * AuthorizationPolicies attached with targetRefs (the Service, or the
 * waypoint Gateway) and a RequestAuthentication with an inline JWKS (keys
 * made with jose in the test), in a lab with the control plane:
 * - DENY POST /admin blocks only that (GET /admin, POST elsewhere pass);
 * - ALLOW for the `trusted` service account: the other client gets 403;
 * - RequestAuthentication + ALLOW requestPrincipals: no token 403, a token
 *   with a bad signature 401, a valid token 200.
 * Policies change through the watched manifest folder. Needs root.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { curl, downWaypointLab, eventually, HTTP_PORT, NS, setManifest, startBackend, upWaypointLab, VIP, waitServed, waypointLog, type WaypointLab } from '../helpers/waypoint-lab.js';

const name = `wpda${randomBytes(2).toString('hex')}`;
let w: WaypointLab | undefined;
const url = `http://${VIP.reviews}:${HTTP_PORT}`;
const ISSUER = 'https://issuer.ambit.test';

const DENY_ADMIN_POST = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-admin-post
  namespace: ${NS}
spec:
  targetRefs:
    - group: ""
      kind: Service
      name: reviews
  action: DENY
  rules:
    - to:
        - operation:
            methods: ["POST"]
            paths: ["/admin", "/admin/*"]`;

const ALLOW_TRUSTED = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-trusted
  namespace: ${NS}
spec:
  targetRefs:
    - group: gateway.networking.k8s.io
      kind: Gateway
      name: wp
  action: ALLOW
  rules:
    - from:
        - source:
            principals: ["cluster.local/ns/${NS}/sa/trusted"]`;

function jwtPolicies(jwks: string): string {
  return `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt
  namespace: ${NS}
spec:
  targetRefs:
    - group: ""
      kind: Service
      name: reviews
  jwtRules:
    - issuer: ${ISSUER}
      jwks: '${jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: require-jwt
  namespace: ${NS}
spec:
  targetRefs:
    - group: ""
      kind: Service
      name: reviews
  action: ALLOW
  rules:
    - from:
        - source:
            requestPrincipals: ["${ISSUER}/alice"]`;
}

async function status(from: string, args: readonly string[]): Promise<string> {
  const r = await curl(w as WaypointLab, from, ['-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', ...args], 15_000);
  return r.code === 0 ? r.stdout : `curl exit ${r.code}: ${r.stderr.trim()}`;
}

describe('waypoint lab: L7 authorization and request authentication', { ...requiresRoot(), ...requiresTool('curl', 'nft') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    w = await upWaypointLab(name, { 'authz.yaml': DENY_ADMIN_POST });
    await startBackend(w, 'reviews-v1');
    await startBackend(w, 'reviews-v2');
    try {
      await waitServed(w, `${NS}/client`, `${url}/ready`, 30_000);
      await eventually('DENY policy in force', 15_000, async () => (await status(`${NS}/client`, ['-X', 'POST', `${url}/admin`])) === '403');
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- waypoint log ---\n${waypointLog(w)}`);
    }
  });

  after(() => downWaypointLab(w, name));

  test('DENY POST /admin blocks only that request (HTTP/1.1 and h2c)', async (t) => {
    assertPrivileged(t);
    const c = `${NS}/client`;
    const got = {
      postAdmin: await status(c, ['-X', 'POST', '-d', 'x', `${url}/admin`]),
      postAdminSub: await status(c, ['--http2-prior-knowledge', '-X', 'POST', `${url}/admin/users`]),
      getAdmin: await status(c, [`${url}/admin`]),
      postOther: await status(c, ['-X', 'POST', '-d', 'x', `${url}/orders`]),
      getOtherH2: await status(c, ['--http2-prior-knowledge', `${url}/orders`]),
    };
    t.diagnostic(JSON.stringify(got));
    assert.deepEqual(got, { postAdmin: '403', postAdminSub: '403', getAdmin: '200', postOther: '200', getOtherH2: '200' });
  });

  test('ALLOW for principal trusted (targetRefs the waypoint Gateway): everyone else gets 403', async (t) => {
    assertPrivileged(t);
    await setManifest(w as WaypointLab, 'authz.yaml', ALLOW_TRUSTED);
    await eventually('ALLOW policy in force', 15_000, async () => (await status(`${NS}/client`, [`${url}/x`])) === '403');
    const got = {
      trusted: await status(`${NS}/trusted`, [`${url}/x`]),
      trustedPost: await status(`${NS}/trusted`, ['-X', 'POST', `${url}/admin`]),
      client: await status(`${NS}/client`, [`${url}/x`]),
      clientH2: await status(`${NS}/client`, ['--http2-prior-knowledge', `${url}/x`]),
    };
    t.diagnostic(JSON.stringify(got));
    assert.deepEqual(got, { trusted: '200', trustedPost: '200', client: '403', clientH2: '403' });
  });

  test('RequestAuthentication + requestPrincipals: no token 403, bad signature 401, valid token 200', async (t) => {
    assertPrivileged(t);
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const other = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    const sign = (key: Parameters<SignJWT['sign']>[0], sub: string): Promise<string> => new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setIssuer(ISSUER).setSubject(sub).setIssuedAt().setExpirationTime('10m').sign(key);
    const valid = await sign(privateKey, 'alice');
    const forged = await sign(other.privateKey, 'alice');
    const bob = await sign(privateKey, 'bob');
    await setManifest(w as WaypointLab, 'authz.yaml', jwtPolicies(JSON.stringify({ keys: [jwk] })));
    await eventually('JWT policies in force', 15_000, async () => (await status(`${NS}/client`, ['-H', `authorization: Bearer ${forged}`, `${url}/j`])) === '401');
    const c = `${NS}/client`;
    const got = {
      noToken: await status(c, [`${url}/j`]),
      badSignature: await status(c, ['-H', `authorization: Bearer ${forged}`, `${url}/j`]),
      valid: await status(c, ['-H', `authorization: Bearer ${valid}`, `${url}/j`]),
      validH2: await status(c, ['--http2-prior-knowledge', '-H', `authorization: Bearer ${valid}`, `${url}/j`]),
      otherSubject: await status(c, ['-H', `authorization: Bearer ${bob}`, `${url}/j`]),
      trustedNoToken: await status(`${NS}/trusted`, [`${url}/j`]),
    };
    t.diagnostic(JSON.stringify(got));
    assert.deepEqual(got, { noToken: '403', badSignature: '401', valid: '200', validH2: '200', otherSubject: '403', trustedNoToken: '403' });
  });
});
