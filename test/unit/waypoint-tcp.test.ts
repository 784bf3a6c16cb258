/** Opaque TCP in the waypoint: protocol sniffing, L4 authorization, TCP metric labels. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ISTIO_TCP_LABELS as AGENT_TCP_LABELS } from '../../src/agent/telemetry.js';
import { compileL7Config } from '../../src/waypoint/config.js';
import { evaluateL4Authz } from '../../src/waypoint/l4-authz.js';
import { sniff } from '../../src/waypoint/sniff.js';
import { ISTIO_TCP_LABELS, tcpLabels } from '../../src/waypoint/tcp-telemetry.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

test('sniff: HTTP/1.x request lines, the h2 preface, and everything else', () => {
  assert.equal(sniff(b('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), 'h1');
  assert.equal(sniff(b('M-SEARCH * HTTP/1.0\r\n')), 'h1');
  assert.equal(sniff(b('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'h2');
  assert.equal(sniff(b('PRI * HTTP/2.0\r\n')), 'more', 'a partial preface waits');
  assert.equal(sniff(b('GET /long/path')), 'more', 'a partial request line waits');
  assert.equal(sniff(b('GE')), 'more');
  assert.equal(sniff(Buffer.from([0x16, 0x03, 0x01, 0x02])), 'tcp', 'a TLS ClientHello is not HTTP');
  assert.equal(sniff(Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])), 'tcp', 'postgres startup is not HTTP');
  assert.equal(sniff(b('hello world\r\n')), 'tcp');
  assert.equal(sniff(b('get / HTTP/1.1\r\n')), 'tcp', 'methods are upper case');
  assert.equal(sniff(b('GET / HTTP/3\r\n')), 'tcp');
  assert.equal(sniff(b('GET /a\nb')), 'tcp');
  assert.equal(sniff(Buffer.alloc(9000, 0x41)), 'tcp', 'no request line within 8 KiB');
});

const policies = (p: unknown[]): ReturnType<typeof compileL7Config>['services'][number]['authorization'] =>
  compileL7Config({ services: [{ hostname: 'db.default.svc', port: 5432, authorization: p }] }).services[0]!.authorization;
const alice = 'spiffe://cluster.local/ns/default/sa/alice';
const bob = 'spiffe://cluster.local/ns/other/sa/bob';
const l4 = (p: unknown[], principal: string, port = 5432): boolean => evaluateL4Authz(policies(p), { principal, sourceIp: '10.0.0.1', destinationPort: port }).allowed;

test('L4 authz: principals and namespaces decide', () => {
  const allowAlice = [{ name: 'a', action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/alice'] } }] }] }];
  assert.equal(l4(allowAlice, alice), true);
  assert.equal(l4(allowAlice, bob), false);
  const denyOther = [{ name: 'd', action: 'DENY', rules: [{ from: [{ source: { namespaces: ['other'] } }] }] }];
  assert.equal(l4(denyOther, bob), false);
  assert.equal(l4(denyOther, alice), true);
  assert.equal(l4([], bob), true, 'no policy allows');
  const byPort = [{ name: 'p', action: 'ALLOW', rules: [{ when: [{ key: 'destination.port', values: ['5432'] }] }] }];
  assert.equal(l4(byPort, bob, 5432), true);
  assert.equal(l4(byPort, bob, 5433), false);
});

test('L4 authz: an ALLOW rule with HTTP-only fields never matches; a DENY rule drops them (more denial)', () => {
  const allowGet = [{ name: 'get', action: 'ALLOW', rules: [{ from: [{ source: { principals: ['*'] } }], to: [{ operation: { methods: ['GET'] } }] }] }];
  assert.equal(l4(allowGet, alice), false, 'an ALLOW policy made only of L7 rules denies TCP');
  const mixed = [{ name: 'm', action: 'ALLOW', rules: [{ to: [{ operation: { paths: ['/x'] } }] }, { from: [{ source: { namespaces: ['default'] } }] }] }];
  assert.equal(l4(mixed, alice), true, 'the L4 rule still allows');
  assert.equal(l4(mixed, bob), false);
  const denyPost = [{ name: 'np', action: 'DENY', rules: [{ from: [{ source: { namespaces: ['other'] } }], to: [{ operation: { methods: ['POST'] } }] }] }];
  assert.equal(l4(denyPost, bob), false, 'DENY with an HTTP field applies on its L4 part');
  assert.equal(l4(denyPost, alice), true);
  const denyHeader = [{ name: 'h', action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-a]', values: ['1'] }] }] }];
  assert.equal(l4(denyHeader, alice), false, 'a DENY rule with only L7 conditions denies every TCP connection');
});

test('TCP labels match the node agent names and carry reporter="waypoint"', () => {
  assert.deepEqual([...ISTIO_TCP_LABELS], [...AGENT_TCP_LABELS]);
  const l = tcpLabels({ sourcePrincipal: alice, clusterId: 'Kubernetes', responseFlags: '-' });
  assert.equal(l.reporter, 'waypoint');
  assert.equal(l.source_workload_namespace, 'default');
  assert.equal(l.request_protocol, 'tcp');
  assert.equal(l.connection_security_policy, 'mutual_tls');
  assert.equal(l.destination_service, 'unknown');
});
