import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import type { AuthResult } from '../../src/ca/authenticator.js';
import {
  EXTRA_NODE_NAME,
  EXTRA_POD_NAME,
  EXTRA_POD_UID,
  KubeTokenReviewAuthenticator,
  type KubeAuthClient,
  type PodPlacement,
  type TokenReviewResult,
} from '../../src/ca/kube-token-authenticator.js';
import { FakeClock } from '../../src/common/clock.js';

const SA = 'system:serviceaccount:istio-system:ambit';

class FakeKube implements KubeAuthClient {
  reviews: Array<{ token: string; audiences: readonly string[] }> = [];
  podReads = 0;
  tokens = new Map<string, TokenReviewResult>();
  pods = new Map<string, PodPlacement>();
  failReview = false;
  failPods = false;
  reviewToken(token: string, audiences: readonly string[]): Promise<TokenReviewResult> {
    this.reviews.push({ token, audiences });
    if (this.failReview) return Promise.reject(new Error('connect ECONNREFUSED'));
    return Promise.resolve(this.tokens.get(token) ?? { authenticated: false, error: 'invalid bearer token' });
  }
  getPod(namespace: string, name: string): Promise<PodPlacement | undefined> {
    this.podReads++;
    if (this.failPods) return Promise.reject(new Error('503'));
    return Promise.resolve(this.pods.get(`${namespace}/${name}`));
  }
}

function md(token?: string): Metadata {
  const m = new Metadata();
  if (token !== undefined) m.set('authorization', `Bearer ${token}`);
  return m;
}

function podToken(pod: string, uid: string, extra: Record<string, string[]> = {}): TokenReviewResult {
  return { authenticated: true, audiences: ['istio-ca'], user: { username: SA, extra: { [EXTRA_POD_NAME]: [pod], [EXTRA_POD_UID]: [uid], ...extra } } };
}

function setup(cacheTtlMs = 0): { kube: FakeKube; auth: (t?: string) => Promise<AuthResult>; clock: FakeClock } {
  const kube = new FakeKube();
  const clock = new FakeClock(0);
  const a = new KubeTokenReviewAuthenticator({ client: kube, trustedServiceAccounts: ['istio-system/ambit'], clock, cacheTtlMs });
  return { kube, clock, auth: (t) => a.authenticate({ metadata: md(t), peer: 'p' }) };
}

function reason(r: AuthResult): string {
  assert.equal(r.ok, false);
  return r.ok ? '' : `${r.kind}: ${r.reason}`;
}

void describe('KubeTokenReviewAuthenticator', () => {
  void it('maps the node agent pod token to the pod node, reviewing with audience istio-ca', async () => {
    const { kube, auth } = setup();
    kube.tokens.set('t1', podToken('ambit-x1', 'uid-1'));
    kube.pods.set('istio-system/ambit-x1', { uid: 'uid-1', nodeName: 'node-a' });
    const r = await auth('t1');
    assert.deepEqual(r, { ok: true, caller: { node: 'node-a', method: 'kube-token-review', subject: `${SA} pod istio-system/ambit-x1` } });
    assert.deepEqual(kube.reviews, [{ token: 't1', audiences: ['istio-ca'] }]);
  });

  void it('uses the node-name claim when the api server provides it, without reading the pod', async () => {
    const { kube, auth } = setup();
    kube.tokens.set('t1', podToken('ambit-x1', 'uid-1', { [EXTRA_NODE_NAME]: ['node-b'] }));
    const r = await auth('t1');
    assert.ok(r.ok && r.caller.node === 'node-b');
    assert.equal(kube.podReads, 0);
  });

  void it('refuses unauthenticated, wrong audience, untrusted account, unbound and stale tokens', async () => {
    const { kube, auth } = setup();
    assert.match(reason(await auth()), /^unauthenticated: no authorization header/);
    assert.match(reason(await auth('nope')), /^unauthenticated: kubernetes did not authenticate the token \(invalid bearer token\)/);
    kube.tokens.set('aud', { ...podToken('p', 'u'), audiences: ['kubernetes'] });
    assert.match(reason(await auth('aud')), /not for audience istio-ca/);
    kube.tokens.set('user', { authenticated: true, user: { username: 'alice' } });
    assert.match(reason(await auth('user')), /not a service account/);
    kube.tokens.set('other', { authenticated: true, user: { username: 'system:serviceaccount:default:web', extra: { [EXTRA_POD_NAME]: ['w'] } } });
    assert.match(reason(await auth('other')), /default\/web is not a trusted node agent account \(istio-system\/ambit\)/);
    kube.tokens.set('unbound', { authenticated: true, user: { username: SA } });
    assert.match(reason(await auth('unbound')), /not bound to a pod/);
    kube.tokens.set('gone', podToken('ambit-gone', 'u'));
    assert.match(reason(await auth('gone')), /ambit-gone no longer exists/);
    kube.tokens.set('stale', podToken('ambit-x1', 'old-uid'));
    kube.pods.set('istio-system/ambit-x1', { uid: 'new-uid', nodeName: 'node-c' });
    assert.match(reason(await auth('stale')), /issued to an earlier pod/);
    kube.tokens.set('pending', podToken('ambit-p', 'u'));
    kube.pods.set('istio-system/ambit-p', { uid: 'u' });
    assert.match(reason(await auth('pending')), /not scheduled on a node/);
  });

  void it('reports kubernetes api failures as unavailable, not as a denial', async () => {
    const { kube, auth } = setup();
    kube.failReview = true;
    assert.match(reason(await auth('t')), /^unavailable: the ca could not review the token .*ECONNREFUSED/);
    kube.failReview = false;
    kube.failPods = true;
    kube.tokens.set('t', podToken('ambit-x1', 'u'));
    assert.match(reason(await auth('t')), /^unavailable: the ca could not read pod istio-system\/ambit-x1/);
  });

  void it('caches successful reviews for cacheTtlMs', async () => {
    const { kube, auth, clock } = setup(60_000);
    kube.tokens.set('t1', podToken('ambit-x1', 'uid-1'));
    kube.pods.set('istio-system/ambit-x1', { uid: 'uid-1', nodeName: 'node-a' });
    assert.equal((await auth('t1')).ok, true);
    assert.equal((await auth('t1')).ok, true);
    assert.equal(kube.reviews.length, 1);
    clock.advance(60_000);
    kube.tokens.delete('t1');
    assert.equal((await auth('t1')).ok, false, 'after the ttl the token is reviewed again');
    assert.equal(kube.reviews.length, 2);
  });
});
