// Istio L4 authorization semantics (ztunnel src/rbac.rs): DENY first, then
// ALLOW-if-any, rule/clause/match combination, not_* forms, plaintext.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { authorize, policyMatches, type AuthzConnection } from '../../src/authz/evaluate.js';
import type { Authorization, Match } from '../../src/workload-api/types.js';

const ip = (s: string): Uint8Array => Uint8Array.from(s.split('.').map(Number));
const conn = (o: Partial<AuthzConnection> & { ns?: string; sa?: string } = {}): AuthzConnection => ({
  srcIp: o.srcIp ?? ip('10.244.1.2'),
  dstIp: o.dstIp ?? ip('10.244.2.2'),
  dstPort: o.dstPort ?? 8080,
  ...(o.ns === undefined ? {} : { srcIdentity: { trustDomain: 'cluster.local', namespace: o.ns, serviceAccount: o.sa ?? 'default' } }),
});
const policy = (name: string, action: 'ALLOW' | 'DENY', matches: Match[][], extra: Partial<Authorization> = {}): Authorization => ({
  name,
  namespace: 'app',
  scope: 'NAMESPACE',
  action,
  rules: [{ clauses: matches.map((m) => ({ matches: m })) }],
  ...extra,
});

void test('no policies, or only DENY policies that do not match: allowed', () => {
  assert.equal(authorize([], conn({ ns: 'a' })).allowed, true);
  assert.equal(authorize([policy('d', 'DENY', [[{ namespaces: [{ exact: 'evil' }] }]])], conn({ ns: 'a' })).allowed, true);
});

void test('a matching DENY wins over a matching ALLOW', () => {
  const d = authorize([policy('allow-all-a', 'ALLOW', [[{ namespaces: [{ exact: 'a' }] }]]), policy('deny-port', 'DENY', [[{ destinationPorts: [8080] }]])], conn({ ns: 'a' }));
  assert.deepEqual([d.allowed, d.policy], [false, 'app/deny-port']);
  assert.match(d.reason, /denied by DENY policy app\/deny-port/);
});

void test('with an ALLOW policy in scope, only matching connections are allowed', () => {
  const ps = [policy('from-a', 'ALLOW', [[{ principals: [{ exact: 'cluster.local/ns/a/sa/client' }] }]])];
  assert.equal(authorize(ps, conn({ ns: 'a', sa: 'client' })).allowed, true);
  const other = authorize(ps, conn({ ns: 'b', sa: 'client' }));
  assert.equal(other.allowed, false);
  assert.match(other.reason, /no ALLOW policy matched/);
  assert.equal(authorize(ps, conn()).allowed, false, 'plaintext has no principal');
});

void test('string matches: exact, prefix, suffix, presence', () => {
  const m = (s: Match['principals']) => policy('p', 'ALLOW', [[{ principals: s ?? [] }]]);
  const c = conn({ ns: 'a', sa: 'client' });
  assert.equal(policyMatches(m([{ prefix: 'cluster.local/ns/a/' }]), c), true);
  assert.equal(policyMatches(m([{ suffix: '/sa/client' }]), c), true);
  assert.equal(policyMatches(m([{ suffix: '/sa/other' }]), c), false);
  assert.equal(policyMatches(m([{ presence: {} }]), c), true);
  assert.equal(policyMatches(m([{ presence: {} }]), conn()), false, 'presence needs an identity');
});

void test('not_* forms: a hit fails the match; plaintext passes identity not_* lists', () => {
  const p = policy('not-b', 'ALLOW', [[{ notNamespaces: [{ exact: 'b' }] }]]);
  assert.equal(policyMatches(p, conn({ ns: 'a' })), true);
  assert.equal(policyMatches(p, conn({ ns: 'b' })), false);
  assert.equal(policyMatches(p, conn()), true);
  const ports = policy('not-9090', 'ALLOW', [[{ notDestinationPorts: [9090] }]]);
  assert.equal(policyMatches(ports, conn({ dstPort: 9090 })), false);
  assert.equal(policyMatches(ports, conn({ dstPort: 8080 })), true);
});

void test('source and destination CIDRs, including /0 and partial bytes', () => {
  const src = (address: string, length: number) => policy('src', 'ALLOW', [[{ sourceIps: [{ address: ip(address), length }] }]]);
  assert.equal(policyMatches(src('10.244.1.0', 24), conn()), true);
  assert.equal(policyMatches(src('10.244.0.0', 23), conn()), true, '10.244.1.2 is in 10.244.0.0/23');
  assert.equal(policyMatches(src('10.244.2.0', 23), conn()), false);
  assert.equal(policyMatches(src('10.244.1.2', 32), conn()), true);
  assert.equal(policyMatches(src('0.0.0.0', 0), conn()), true);
  const notDst = policy('nd', 'ALLOW', [[{ notDestinationIps: [{ address: ip('10.244.2.2'), length: 32 }] }]]);
  assert.equal(policyMatches(notDst, conn()), false);
  const v6 = policy('v6', 'ALLOW', [[{ sourceIps: [{ address: new Uint8Array(16), length: 0 }] }]]);
  assert.equal(policyMatches(v6, conn()), false, 'an IPv6 range never matches an IPv4 source');
});

void test('rules OR, clauses AND, matches OR, fields AND', () => {
  // One rule, two clauses: (ns a OR ns b) AND (port 8080).
  const p = policy('combo', 'ALLOW', [[{ namespaces: [{ exact: 'a' }] }, { namespaces: [{ exact: 'b' }] }], [{ destinationPorts: [8080] }]]);
  assert.equal(policyMatches(p, conn({ ns: 'b' })), true);
  assert.equal(policyMatches(p, conn({ ns: 'b', dstPort: 80 })), false);
  assert.equal(policyMatches(p, conn({ ns: 'c' })), false);
  // Fields within one match are ANDed.
  const both = policy('both', 'ALLOW', [[{ namespaces: [{ exact: 'a' }], destinationPorts: [80] }]]);
  assert.equal(policyMatches(both, conn({ ns: 'a', dstPort: 8080 })), false);
  // A second rule ORs.
  const twoRules: Authorization = { ...both, rules: [...(both.rules ?? []), { clauses: [{ matches: [{ destinationPorts: [8080] }] }] }] };
  assert.equal(policyMatches(twoRules, conn({ ns: 'a', dstPort: 8080 })), true);
});

void test('service accounts match namespace and name exactly', () => {
  const p = policy('sa', 'ALLOW', [[{ serviceAccounts: [{ namespace: 'a', serviceAccount: 'client' }] }]]);
  assert.equal(policyMatches(p, conn({ ns: 'a', sa: 'client' })), true);
  assert.equal(policyMatches(p, conn({ ns: 'a', sa: 'other' })), false);
  assert.equal(policyMatches(p, conn({ ns: 'b', sa: 'client' })), false);
});

void test('a policy without rules never matches; an empty clause is true', () => {
  assert.equal(policyMatches({ name: 'x', namespace: 'app', action: 'ALLOW', rules: [] }, conn()), false);
  assert.equal(authorize([{ name: 'x', namespace: 'app', action: 'ALLOW', rules: [] }], conn()).allowed, false, 'an ALLOW policy with no rules allows nothing');
  assert.equal(policyMatches({ name: 'y', namespace: 'app', action: 'ALLOW', rules: [{ clauses: [] }] }, conn()), true);
  assert.equal(policyMatches({ name: 'z', namespace: 'app', action: 'ALLOW', rules: [{ clauses: [{ matches: [{}] }] }] }, conn()), true);
});

void test('dry-run policies are reported but do not decide', () => {
  const d = authorize([policy('dry-deny', 'DENY', [[{ destinationPorts: [8080] }]], { dryRun: true }), policy('dry-allow', 'ALLOW', [[{ destinationPorts: [1] }]], { dryRun: true })], conn());
  assert.equal(d.allowed, true);
  assert.deepEqual(d.dryRun, [
    { policy: 'app/dry-deny', action: 'DENY', matched: true },
    { policy: 'app/dry-allow', action: 'ALLOW', matched: false },
  ]);
});

void test('1,000 policies in scope: the one that matches decides (cost is measured in npm run bench)', () => {
  const ps = Array.from({ length: 1000 }, (_, i) => policy(`p${i}`, 'ALLOW', [[{ principals: [{ exact: `cluster.local/ns/n${i}/sa/s` }], destinationPorts: [i] }]]));
  assert.deepEqual(authorize(ps, conn({ ns: 'n999', sa: 's', dstPort: 999 })).policy, 'app/p999');
  assert.equal(authorize(ps, conn({ ns: 'n999', sa: 's', dstPort: 998 })).allowed, false);
});
