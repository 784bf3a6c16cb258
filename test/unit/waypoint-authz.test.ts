/** L7 AuthorizationPolicy semantics (pure): DENY first, ALLOW needed when present, dry-run/AUDIT never decide. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluateAuthz, type AuthzRequest } from '../../src/waypoint/authz.js';
import { compileL7Config, type AuthzPolicy } from '../../src/waypoint/config.js';

function policies(list: unknown[]): readonly AuthzPolicy[] {
  return compileL7Config({ services: [{ hostname: 'a.ns.svc', port: 80, authorization: list }] }).services[0]?.authorization ?? [];
}
const r = (over: Partial<AuthzRequest> = {}): AuthzRequest => ({ host: 'a.ns.svc', method: 'GET', path: '/', headers: {}, sourceIp: '10.0.0.1', destinationPort: 80, ...over });

test('no policies: allowed; DENY match denies; ALLOW present but unmatched denies', () => {
  assert.equal(evaluateAuthz([], r()).allowed, true);
  const p = policies([
    { name: 'deny-post-admin', action: 'DENY', rules: [{ to: [{ operation: { methods: ['post'], paths: ['/admin*'] } }] }] },
    { name: 'allow-ns', action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['frontend'] } }] }] },
  ]);
  assert.deepEqual([evaluateAuthz(p, r({ method: 'POST', path: '/admin/x', namespace: 'frontend' })).allowed, evaluateAuthz(p, r({ method: 'POST', path: '/admin/x', namespace: 'frontend' })).policy], [false, 'deny-post-admin']);
  assert.equal(evaluateAuthz(p, r({ namespace: 'frontend' })).allowed, true);
  assert.equal(evaluateAuthz(p, r({ namespace: 'other' })).allowed, false);
  assert.equal(evaluateAuthz(p, r()).allowed, false, 'no identity: positive namespace list fails');
});

test('string forms: exact, prefix*, *suffix, *; not-lists; hosts', () => {
  const p = policies([{ name: 'a', rules: [{ from: [{ source: { principals: ['*/sa/web'], notPrincipals: ['cluster.local/ns/bad/*'] } }], to: [{ operation: { hosts: ['a.ns.svc*'], notPaths: ['/private*'] } }] }] }]);
  assert.equal(evaluateAuthz(p, r({ principal: 'cluster.local/ns/x/sa/web' })).allowed, true);
  assert.equal(evaluateAuthz(p, r({ principal: 'cluster.local/ns/bad/sa/web' })).allowed, false);
  assert.equal(evaluateAuthz(p, r({ principal: 'cluster.local/ns/x/sa/web', path: '/private/1' })).allowed, false);
  assert.equal(evaluateAuthz(p, r({ principal: 'cluster.local/ns/x/sa/web', host: 'b.ns.svc' })).allowed, false);
});

test('when conditions: headers, claims (nested), request principal', () => {
  const p = policies([{ name: 'a', rules: [{
    from: [{ source: { requestPrincipals: ['https://idp/*'] } }],
    when: [{ key: 'request.headers[x-tenant]', values: ['acme'] }, { key: 'request.auth.claims[realm][role]', values: ['admin', 'ops'] }],
  }] }]);
  const ok = r({ headers: { 'x-tenant': 'acme' }, requestPrincipal: 'https://idp/alice', claims: { realm: { role: 'ops' } } });
  assert.equal(evaluateAuthz(p, ok).allowed, true);
  assert.equal(evaluateAuthz(p, { ...ok, claims: { realm: { role: 'dev' } } }).allowed, false);
  assert.equal(evaluateAuthz(p, { ...ok, headers: {} }).allowed, false);
  assert.equal(evaluateAuthz(p, { ...ok, requestPrincipal: undefined }).allowed, false);
});

test('dry-run and AUDIT policies are reported but never decide; an ALLOW with no rules allows nothing', () => {
  const p = policies([
    { name: 'dry-deny', action: 'DENY', dryRun: true, rules: [{}] },
    { name: 'audit', action: 'AUDIT', rules: [{}] },
  ]);
  const v = evaluateAuthz(p, r());
  assert.equal(v.allowed, true);
  assert.deepEqual(v.dryRun, [{ policy: 'dry-deny', action: 'DENY', matched: true }, { policy: 'audit', action: 'AUDIT', matched: true }]);
  assert.equal(evaluateAuthz(policies([{ name: 'empty', action: 'ALLOW' }]), r()).allowed, false);
});
