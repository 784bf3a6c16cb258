/** Waypoint proxy pieces: config applier (NACK keeps the old config), HBONE dialer headers, CLI flag parsing. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWaypointRunConfig } from '../../src/cli/waypoint-run-command.js';
import { silentLogger } from '../../src/common/logger.js';
import type { L7Config } from '../../src/waypoint/config.js';
import { encodeL7Config } from '../../src/waypoint/l7-codec.js';
import { l7ConfigApplier } from '../../src/waypoint-proxy/config-applier.js';
import { baggageOf, expectedIdentity, forwardedFor } from '../../src/waypoint-proxy/hbone-dialer.js';
import { parseForwarded } from '../../src/hbone/headers.js';

const good = { version: 'g', clusters: [{ name: 'c', endpoints: [{ address: '10.0.0.1', port: 80 }] }], services: [{ hostname: 'a.default.svc', port: 80, routes: [{ backends: [{ cluster: 'c' }] }] }] };

test('config applier: applies good configs, rejects bad ones with the reason, removal empties', () => {
  let current: L7Config | undefined;
  const apply = l7ConfigApplier({ updateConfig: (c) => (current = c) }, silentLogger());
  assert.equal(apply({ kind: 'upsert', version: '1', body: Buffer.from(encodeL7Config(good)) }), undefined);
  assert.equal(current?.version, 'g');
  const bad = { ...good, version: 'b', services: [{ hostname: 'a.default.svc', port: 80, routes: [{ backends: [{ cluster: 'zz' }] }] }] };
  assert.match(apply({ kind: 'upsert', version: '2', body: Buffer.from(encodeL7Config(bad)) }) ?? '', /unknown cluster 'zz'/);
  assert.equal(current?.version, 'g', 'the previous config stays');
  assert.match(apply({ kind: 'upsert', version: '3', body: Buffer.from([0xff, 0xff, 0xff]) }) ?? '', /AMBIT|not a valid|config/);
  assert.equal(current?.version, 'g');
  assert.equal(apply({ kind: 'remove' }), undefined);
  assert.equal(current?.services.length, 0);
});

test('hbone dialer: expected peer identity, forwarded and baggage', () => {
  assert.equal(expectedIdentity('spiffe://cluster.local/ns/a/sa/b'), 'spiffe://cluster.local/ns/a/sa/b');
  assert.equal(expectedIdentity('cluster.local/ns/a/sa/b'), 'spiffe://cluster.local/ns/a/sa/b');
  assert.equal(expectedIdentity('unknown'), undefined);
  assert.deepEqual(parseForwarded(forwardedFor({ sourceAddress: '::ffff:10.1.2.3', serviceHost: 'db.ns.svc.cluster.local' })), { for: '10.1.2.3', host: 'db.ns.svc.cluster.local' });
  assert.deepEqual(parseForwarded(forwardedFor({ sourceAddress: 'fd00::1' })), { for: '[fd00::1]' });
  assert.equal(baggageOf(new Map([['k8s.namespace.name', 'default'], ['service.name', 'a b']])), 'k8s.namespace.name=default,service.name=a%20b');
});

test('waypoint run flags: required ones, defaults, and bad values', () => {
  const args = (values: Record<string, string>) => ({ values, positionals: ['run'], rest: [] });
  const base = { name: 'wp', namespace: 'ns', 'xds-address': 'istiod.istio-system.svc:15012', 'root-cert': '/r.pem', 'token-file': '/t', 'pod-ip': '10.0.0.9' };
  const c = parseWaypointRunConfig(args(base));
  assert.equal(c.hbonePort, 15008);
  assert.equal(c.metricsPort, 15020);
  assert.equal(c.statusPort, 15021);
  assert.equal(c.trustDomain, 'cluster.local');
  assert.equal(c.clusterId, 'Kubernetes');
  assert.equal(c.podIp, '10.0.0.9');
  assert.throws(() => parseWaypointRunConfig(args({ ...base, name: '' })), /--name is required/);
  assert.throws(() => parseWaypointRunConfig(args({ ...base, 'xds-address': 'nohost' })), /host:port/);
  assert.throws(() => parseWaypointRunConfig(args({ ...base, 'hbone-port': '70000' })), /hbone-port/);
});
