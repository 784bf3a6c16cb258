/**
 * Waypoints in the node agent, over a cluster view built from workload-API
 * objects (as the control plane sends them): where outbound traffic goes
 * (routeOutbound), which inbound peers a destination accepts
 * (waypointRequirement / InboundAuthz), and who an inbound tunnel from a
 * waypoint is reported as coming from.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/common/logger.js';
import { WaypointUnavailableError } from '../../src/agent/errors.js';
import { InboundAuthz } from '../../src/agent/inbound-authz.js';
import { forwardedClient, reportedSource } from '../../src/agent/inbound.js';
import { routeOutbound, type OutboundRoute } from '../../src/agent/route.js';
import { WaypointMetrics } from '../../src/agent/waypoint-metrics.js';
import { ClusterState } from '../../src/state/cluster-state.js';
import { clusterConfigFromWorkloadApi } from '../../src/state/from-workload-api.js';
import { parseLocalClusterConfig, type LocalWorkload } from '../../src/state/local-config.js';
import { resolveWaypoint, waypointRequirement, waypointWorkloads } from '../../src/state/waypoint.js';
import { ipToBytes } from '../../src/workload-api/ip.js';
import type { GatewayAddress, Service, Workload } from '../../src/workload-api/types.js';

const ip = (s: string) => ipToBytes(s) as Uint8Array;
const host = (n: string) => `${n}.shop.svc.cluster.local`;
const WP_VIP = '10.96.0.50';
const byVip = (vip: string): GatewayAddress => ({ address: { network: '', address: ip(vip) }, hboneMtlsPort: 15008 });
const byHost = (name: string): GatewayAddress => ({ hostname: { namespace: 'shop', hostname: host(name) }, hboneMtlsPort: 15008 });

const wl = (name: string, addr: string, extra: Partial<Workload> = {}): Workload => ({
  uid: `Kubernetes//Pod/shop/${name}`,
  name,
  namespace: 'shop',
  addresses: [ip(addr)],
  serviceAccount: name,
  node: 'node-a',
  tunnelProtocol: 'HBONE',
  ...extra,
});
const svc = (name: string, vip: string, port: number, targetPort: number, extra: Partial<Service> = {}): Service => ({
  name,
  namespace: 'shop',
  hostname: host(name),
  addresses: [{ network: '', address: ip(vip) }],
  ports: [{ servicePort: port, targetPort }],
  ...extra,
});
const member = (name: string, port: number, targetPort = 0) => ({ [`shop/${host(name)}`]: { ports: [{ servicePort: port, targetPort }] } });

function build(opts: { wpHealthy?: boolean; cartWorkloadWaypoint?: boolean } = {}): ClusterState {
  const wpStatus = opts.wpHealthy === false ? 'UNHEALTHY' : 'HEALTHY';
  return new ClusterState(
    clusterConfigFromWorkloadApi(
      {
        workloads: [
          wl('client', '10.244.1.10'),
          // The waypoint's pods: not captured (tunnel NONE), SA = the Gateway name.
          wl('wp-0', '10.244.1.50', { serviceAccount: 'wp', tunnelProtocol: 'NONE', services: member('wp', 15008, 15008), status: wpStatus }),
          wl('wp-1', '10.244.2.51', { serviceAccount: 'wp', tunnelProtocol: 'NONE', services: member('wp', 15008, 15008), status: 'UNHEALTHY' }),
          wl('cart-1', '10.244.2.2', { services: member('cart', 80, 8080), ...(opts.cartWorkloadWaypoint ? { waypoint: byVip(WP_VIP) } : {}) }),
          wl('db', '10.244.2.3', { services: member('db', 5432, 5433), waypoint: byVip(WP_VIP) }),
          wl('api-1', '10.244.2.4', { services: member('api', 80, 8080) }),
          wl('plain', '10.244.2.9', { services: member('plain', 80, 8080) }),
        ],
        services: [
          // A namespace-wide use-waypoint label also lands on the waypoint's own service.
          svc('wp', WP_VIP, 15008, 15008, { waypoint: byVip(WP_VIP) }),
          svc('cart', '10.96.0.9', 80, 8080, { waypoint: byVip(WP_VIP) }),
          svc('db', '10.96.0.12', 5432, 5433),
          svc('api', '10.96.0.13', 80, 8080, { waypoint: byHost('wp') }),
          svc('ghost', '10.96.0.60', 15008, 15008),
          svc('lonely', '10.96.0.14', 80, 8080, { waypoint: byVip('10.96.0.60') }),
          svc('plain', '10.96.0.15', 80, 8080),
        ],
        policies: [],
      },
      { trustDomain: 'cluster.local', clusterDomain: 'cluster.local', nodes: [], netnsByPod: new Map() },
    ),
  );
}

const state = build();
function wk(s: ClusterState, name: string): LocalWorkload {
  const w = s.config.workloads.find((x) => x.name === name);
  assert.ok(w, name);
  return w;
}
function hbone(r: OutboundRoute): Extract<OutboundRoute, { kind: 'hbone' }> {
  assert.equal(r.kind, 'hbone', JSON.stringify(r, (_k, v: unknown) => (v instanceof Error ? v.message : v)));
  return r as Extract<OutboundRoute, { kind: 'hbone' }>;
}
const WP_ID = 'spiffe://cluster.local/ns/shop/sa/wp';
const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/client';

describe('outbound routing with waypoints', () => {
  test('a service VIP with a waypoint goes to a ready waypoint pod on 15008; authority stays VIP:port; the peer must be the waypoint', () => {
    for (const x of [0, 0.3, 0.6, 0.99]) {
      const r = hbone(routeOutbound(state, wk(state, 'client'), '10.96.0.9', 80, () => x));
      assert.equal(r.hboneHost, '10.244.1.50', 'only the healthy waypoint pod is dialled');
      assert.equal(r.hbonePort, 15008);
      assert.equal(r.authority, '10.96.0.9:80');
      assert.equal(r.dstIdentity, WP_ID);
      assert.equal(r.dstWorkload.name, 'wp-0');
      assert.equal(r.service?.name, 'cart', 'destination_service stays the original service');
      assert.equal(r.waypoint, 'shop/wp');
    }
  });

  test('a service name resolves to the same waypoint route with the VIP as authority', () => {
    const r = hbone(routeOutbound(state, wk(state, 'client'), 'cart', 80));
    assert.equal(r.authority, '10.96.0.9:80');
    assert.equal(r.hboneHost, '10.244.1.50');
  });

  test('a hostname waypoint reference (namespace/hostname) resolves through the waypoint service', () => {
    const r = hbone(routeOutbound(state, wk(state, 'client'), '10.96.0.13', 80));
    assert.equal(r.hboneHost, '10.244.1.50');
    assert.equal(r.authority, '10.96.0.13:80');
    assert.equal(r.waypoint, 'shop/wp');
  });

  test('pod-addressed traffic to a workload with a waypoint goes through it with authority podIP:port', () => {
    const r = hbone(routeOutbound(state, wk(state, 'client'), '10.244.2.3', 5433));
    assert.equal(r.hboneHost, '10.244.1.50');
    assert.equal(r.authority, '10.244.2.3:5433');
    assert.equal(r.dstIdentity, WP_ID);
    assert.equal(r.service, undefined);
  });

  test('a service without a waypoint whose picked endpoint has a workload waypoint goes through that waypoint (authority = endpoint)', () => {
    const r = hbone(routeOutbound(state, wk(state, 'client'), '10.96.0.12', 5432));
    assert.equal(r.hboneHost, '10.244.1.50');
    assert.equal(r.authority, '10.244.2.3:5433');
    assert.equal(r.service?.name, 'db');
  });

  test('pod-IP traffic to a workload whose only waypoint is its service waypoint goes direct', () => {
    const r = hbone(routeOutbound(state, wk(state, 'client'), '10.244.2.2', 8080));
    assert.equal(r.hboneHost, '10.244.2.2');
    assert.equal(r.authority, '10.244.2.2:8080');
    assert.equal(r.dstIdentity, 'spiffe://cluster.local/ns/shop/sa/cart-1');
    assert.equal(r.waypoint, undefined);
  });

  test('services without a waypoint are unchanged', () => {
    const r = hbone(routeOutbound(state, wk(state, 'client'), '10.96.0.15', 80));
    assert.equal(r.hboneHost, '10.244.2.9');
    assert.equal(r.authority, '10.244.2.9:8080');
  });

  test('traffic from a waypoint pod is never re-routed', () => {
    const r = hbone(routeOutbound(state, wk(state, 'wp-0'), '10.96.0.9', 80));
    assert.equal(r.hboneHost, '10.244.2.2');
    assert.equal(r.authority, '10.244.2.2:8080');
    const p = hbone(routeOutbound(state, wk(state, 'wp-0'), '10.244.2.3', 5433));
    assert.equal(p.hboneHost, '10.244.2.3');
  });

  test("traffic to the waypoint's own service or pods is never re-routed", () => {
    const r = routeOutbound(state, wk(state, 'client'), WP_VIP, 15008);
    assert.equal(r.kind, 'passthrough');
    assert.equal(r.kind === 'passthrough' ? r.host : '', '10.244.1.50');
    const p = routeOutbound(state, wk(state, 'client'), '10.244.1.50', 15008);
    assert.equal(p.kind, 'passthrough');
  });

  test('no ready waypoint pod refuses the connection, naming the waypoint', () => {
    const r = routeOutbound(state, wk(state, 'client'), '10.96.0.14', 80);
    assert.equal(r.kind, 'refuse');
    if (r.kind !== 'refuse') return;
    assert.ok(r.error instanceof WaypointUnavailableError);
    assert.equal((r.error as WaypointUnavailableError).code, 'AMBIT_ERR_AGENT_WAYPOINT_UNAVAILABLE');
    assert.match(r.error.message, /^waypoint shop\/ghost has no ready endpoints/);
    assert.equal(r.waypoint, 'shop/ghost');
    const down = build({ wpHealthy: false });
    for (const [h, p] of [['10.96.0.9', 80], ['10.244.2.3', 5433]] as const) {
      const d = routeOutbound(down, wk(down, 'client'), h, p);
      assert.equal(d.kind, 'refuse', `${h}: all waypoint pods unhealthy`);
      if (d.kind === 'refuse') assert.match(d.error.message, /^waypoint shop\/wp has no ready endpoints \(2 known, none healthy\)/);
    }
  });
});

describe('inbound: destinations that require a waypoint', () => {
  test('requirement: workload waypoint, or a service VIP authority whose service has one; not for a service-only waypoint by pod IP', () => {
    assert.equal(waypointRequirement(state, wk(state, 'db'))?.because, 'workload');
    assert.deepEqual([...(waypointRequirement(state, wk(state, 'db'))?.waypoint.identities ?? [])], [WP_ID]);
    assert.equal(waypointRequirement(state, wk(state, 'cart-1'), '10.244.2.2'), undefined);
    assert.equal(waypointRequirement(state, wk(state, 'cart-1')), undefined);
    assert.equal(waypointRequirement(state, wk(state, 'cart-1'), '10.96.0.9')?.because, 'service-authority');
    assert.equal(waypointRequirement(state, wk(state, 'plain'), '10.96.0.15'), undefined);
    assert.equal(waypointRequirement(state, wk(state, 'wp-0'), WP_VIP), undefined, "the waypoint's own service");
  });

  test('only the waypoint identity passes; other peers and plaintext are denied with a reason and counted', async () => {
    const registry = new Registry();
    const authz = new InboundAuthz(() => state, silentLogger(), new WaypointMetrics(registry));
    const db = wk(state, 'db');
    const base = { srcIp: '10.244.1.10', dstIp: db.ip, dstPort: 5433 };
    assert.equal(authz.check(db, { ...base, srcIp: '10.244.1.50', peerIdentity: WP_ID }).allowed, true);
    const denied = authz.check(db, { ...base, peerIdentity: CLIENT_ID });
    assert.equal(denied.allowed, false);
    assert.equal(denied.reason, `shop/db requires waypoint shop/wp; ${CLIENT_ID} is not the waypoint`);
    const plain = authz.check(db, base);
    assert.equal(plain.allowed, false);
    assert.match(plain.reason, /requires waypoint shop\/wp; plaintext from 10\.244\.1\.10/);
    const cart = wk(state, 'cart-1');
    assert.equal(authz.check(cart, { srcIp: '10.244.1.10', dstIp: cart.ip, dstPort: 8080, peerIdentity: CLIENT_ID }).allowed, true, 'service-only waypoint: pod IP allowed');
    assert.equal(authz.checkWaypoint(cart, { srcIp: '10.244.1.10', dstIp: cart.ip, dstPort: 80, peerIdentity: CLIENT_ID, authorityHost: '10.96.0.9' })?.allowed, false, 'crafted VIP authority');
    assert.equal(authz.checkWaypoint(cart, { srcIp: '10.244.1.50', dstIp: cart.ip, dstPort: 80, peerIdentity: WP_ID, authorityHost: '10.96.0.9' }), undefined);
    const m = await registry.metrics();
    assert.match(m, /ambit_waypoint_refused_total\{reporter="destination",reason="not_from_waypoint",waypoint="shop\/wp"\} 2/);
    assert.match(m, /ambit_waypoint_refused_total\{reporter="destination",reason="plaintext",waypoint="shop\/wp"\} 1/);
  });

  test('a view change that gives a destination a workload waypoint closes its open direct connections', () => {
    let current = build();
    const authz = new InboundAuthz(() => current, silentLogger());
    const cart = wk(current, 'cart-1');
    const closed: string[] = [];
    authz.track(cart, { srcIp: '10.244.1.10', dstIp: cart.ip, dstPort: 8080, peerIdentity: CLIENT_ID }, (r) => closed.push(`client: ${r}`));
    authz.track(cart, { srcIp: '10.244.1.50', dstIp: cart.ip, dstPort: 8080, peerIdentity: WP_ID }, (r) => closed.push(`wp: ${r}`));
    assert.equal(authz.reevaluate(), 0);
    current = build({ cartWorkloadWaypoint: true });
    assert.equal(authz.reevaluate(), 1);
    assert.deepEqual(closed, [`client: shop/cart-1 requires waypoint shop/wp; ${CLIENT_ID} is not the waypoint`]);
    assert.equal(authz.openConnections, 1, "the waypoint's own connection stays");
  });

  test('a tunnel from the waypoint is reported as from the client it forwarded for; from anyone else the header is ignored', () => {
    const fwd = { for: '10.244.1.10:40000' };
    const fromWp = reportedSource(state, '10.244.1.50', 5555, WP_ID, fwd);
    assert.equal(fromWp.addr, '10.244.1.10:40000');
    assert.equal(fromWp.workload?.name, 'client');
    assert.equal(fromWp.waypoint, 'shop/wp');
    assert.deepEqual(reportedSource(state, '10.244.1.50', 5555, WP_ID, {}).addr, '10.244.1.50:5555', 'no header: the waypoint itself');
    const spoof = reportedSource(state, '10.244.1.10', 1234, CLIENT_ID, { for: '10.244.2.9:1' });
    assert.equal(spoof.addr, '10.244.1.10:1234');
    assert.equal(spoof.workload?.name, 'client');
    assert.equal(spoof.waypoint, undefined);
    const wrongId = reportedSource(state, '10.244.1.50', 5555, CLIENT_ID, fwd);
    assert.equal(wrongId.addr, '10.244.1.50:5555', 'a waypoint address with another identity is not trusted');
    assert.deepEqual(forwardedClient({ for: '[fd00::1]:80' }), { ip: 'fd00::1', port: 80 });
    assert.deepEqual(forwardedClient({ for: '10.0.0.1' }), { ip: '10.0.0.1', port: 0 });
    assert.equal(forwardedClient({ for: 'unknown' }), undefined);
    assert.equal(forwardedClient({ for: '_hidden:1' }), undefined);
  });

  test('waypoint pods are known to the view; resolution lists all pods with health and the identities', () => {
    assert.deepEqual([...waypointWorkloads(state)].sort(), [
      ['Kubernetes//Pod/shop/wp-0', 'shop/wp'],
      ['Kubernetes//Pod/shop/wp-1', 'shop/wp'],
    ]);
    const wp = resolveWaypoint(state, { kind: 'address', ip: WP_VIP, hboneMtlsPort: 15008 });
    assert.deepEqual(
      wp.endpoints.map((e) => [e.workload.name, e.healthy, e.port]),
      [
        ['wp-0', true, 15008],
        ['wp-1', false, 15008],
      ],
    );
    assert.ok(wp.addresses.has(WP_VIP) && wp.addresses.has('10.244.2.51'));
  });
});

describe('waypoint references in the cluster view', () => {
  test('GatewayAddress from xDS: address and hostname forms, default HBONE port', () => {
    assert.deepEqual(wk(state, 'db').waypoint, { kind: 'address', ip: WP_VIP, hboneMtlsPort: 15008 });
    assert.deepEqual(state.serviceByVip('10.96.0.13')?.waypoint, { kind: 'hostname', namespace: 'shop', hostname: host('wp'), hboneMtlsPort: 15008 });
    assert.equal(wk(state, 'cart-1').waypoint, undefined);
  });

  test('the local cluster file accepts waypoint references and rejects malformed ones', () => {
    const cfg = parseLocalClusterConfig({
      workloads: [{ name: 'a', namespace: 'ns', node: 'n', ip: '10.0.0.1', waypoint: { address: '10.96.0.1' } }],
      services: [{ name: 's', namespace: 'ns', vips: ['10.96.0.2'], ports: [{ port: 80 }], waypoint: { namespace: 'ns', hostname: 'wp.ns.svc.cluster.local', hboneMtlsPort: 15009 } }],
    });
    assert.deepEqual(cfg.workloads[0]?.waypoint, { kind: 'address', ip: '10.96.0.1', hboneMtlsPort: 15008 });
    assert.deepEqual(cfg.services[0]?.waypoint, { kind: 'hostname', namespace: 'ns', hostname: 'wp.ns.svc.cluster.local', hboneMtlsPort: 15009 });
    assert.throws(() => parseLocalClusterConfig({ workloads: [{ name: 'a', namespace: 'ns', node: 'n', ip: '10.0.0.1', waypoint: { address: 'nope' } }] }), /workloads\[0\]\.waypoint\.address must be an IP address/);
    assert.throws(() => parseLocalClusterConfig({ workloads: [{ name: 'a', namespace: 'ns', node: 'n', ip: '10.0.0.1', waypoint: 'wp' }] }), /workloads\[0\]\.waypoint must be a mapping/);
  });
});
