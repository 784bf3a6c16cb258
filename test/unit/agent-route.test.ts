/** Outbound routing decisions over a small cluster view: HBONE, passthrough or refuse. */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { NoHealthyUpstreamError, UnresolvableHostError } from '../../src/agent/errors.js';
import { routeOutbound, type OutboundRoute } from '../../src/agent/route.js';
import { parseAuthority } from '../../src/hbone/authority.js';
import { ClusterState } from '../../src/state/cluster-state.js';
import { parseLocalClusterConfig, type LocalWorkload } from '../../src/state/local-config.js';

const TD = 'td.example';

const state = new ClusterState(
  parseLocalClusterConfig({
    trustDomain: TD,
    nodes: [{ name: 'n1', ip: '172.18.0.2' }],
    workloads: [
      { name: 'client', namespace: 'shop', serviceAccount: 'client-sa', node: 'n1', ip: '10.0.1.10', labels: { app: 'client' } },
      { name: 'web-1', namespace: 'shop', serviceAccount: 'web', node: 'n1', ip: '10.0.1.11', labels: { app: 'web' } },
      { name: 'web-2', namespace: 'shop', serviceAccount: 'web', node: 'n2', ip: '10.0.2.12', labels: { app: 'web', extra: 'x' } },
      { name: 'legacy', namespace: 'shop', node: 'n1', ip: '10.0.1.20', labels: { app: 'legacy' }, tunnelProtocol: 'NONE' },
      { name: 'web-other', namespace: 'other', serviceAccount: 'web-o', node: 'n2', ip: '10.0.2.13', labels: { app: 'web' } },
      { name: 'v6', namespace: 'shop', node: 'n1', ip: 'fd00:10::b', labels: { app: 'v6' } },
    ],
    services: [
      { name: 'web', namespace: 'shop', vips: ['10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 8080 }], selector: { app: 'web' } },
      { name: 'web', namespace: 'other', vips: ['10.96.0.20'], ports: [{ port: 80 }], selector: { app: 'web' } },
      { name: 'legacy', namespace: 'shop', vips: ['10.96.0.30'], ports: [{ port: 9000, targetPort: 9001 }], selector: { app: 'legacy' } },
      { name: 'nomatch', namespace: 'shop', vips: ['10.96.0.40'], ports: [{ port: 80 }], selector: { app: 'nothing' } },
      { name: 'noselector', namespace: 'shop', vips: ['10.96.0.50'], ports: [{ port: 80 }] },
      { name: 'dns', namespace: 'shop', vips: ['10.96.0.60'], ports: [{ port: 53, protocol: 'UDP' }], selector: { app: 'web' } },
      { name: 'v6', namespace: 'shop', vips: ['fd00:96::10'], ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'v6' } },
    ],
  }),
);

function workload(name: string, namespace = 'shop'): LocalWorkload {
  const w = state.config.workloads.find((x) => x.name === name && x.namespace === namespace);
  assert.ok(w, `${namespace}/${name}`);
  return w;
}

const client = workload('client');
const never = (): number => assert.fail('random must not be called');

function hbone(r: OutboundRoute): Extract<OutboundRoute, { kind: 'hbone' }> {
  assert.equal(r.kind, 'hbone', JSON.stringify(r));
  if (r.kind !== 'hbone') throw new Error('unreachable');
  return r;
}

function refused(r: OutboundRoute): Error {
  assert.equal(r.kind, 'refuse', JSON.stringify(r));
  if (r.kind !== 'refuse') throw new Error('unreachable');
  return r.error;
}

describe('routeOutbound', () => {
  test('a mesh pod IP goes over HBONE to <pod ip>:15008 with the target in the authority', () => {
    const r = hbone(routeOutbound(state, client, '10.0.1.11', 8080, never));
    assert.equal(r.hboneHost, '10.0.1.11');
    assert.equal(r.hbonePort, 15008);
    assert.equal(r.authority, '10.0.1.11:8080');
    assert.equal(r.dstIdentity, `spiffe://${TD}/ns/shop/sa/web`);
    assert.equal(r.dstWorkload, workload('web-1'));
    assert.equal(r.service, undefined);
    assert.equal('service' in r, false);
  });

  test('the identity uses the destination namespace and service account (default sa when unset)', () => {
    assert.equal(hbone(routeOutbound(state, client, '10.0.2.13', 80, never)).dstIdentity, `spiffe://${TD}/ns/other/sa/web-o`);
    assert.equal(hbone(routeOutbound(state, client, '10.0.1.10', 80, never)).dstIdentity, `spiffe://${TD}/ns/shop/sa/client-sa`);
  });

  test('a service VIP picks an endpoint with random() and uses the targetPort', () => {
    const first = hbone(routeOutbound(state, client, '10.96.0.10', 80, () => 0));
    assert.equal(first.dstWorkload.name, 'web-1');
    assert.equal(first.hboneHost, '10.0.1.11');
    assert.equal(first.authority, '10.0.1.11:8080');
    assert.equal(first.service?.hostname, 'web.shop.svc.cluster.local');
    assert.equal(first.dstIdentity, `spiffe://${TD}/ns/shop/sa/web`);

    const last = hbone(routeOutbound(state, client, '10.96.0.10', 80, () => 0.99));
    assert.equal(last.dstWorkload.name, 'web-2');
    assert.equal(last.hboneHost, '10.0.2.12');
    assert.equal(last.hbonePort, 15008);
    assert.equal(last.authority, '10.0.2.12:8080');

    assert.equal(hbone(routeOutbound(state, client, '10.96.0.10', 80, () => 0.49)).dstWorkload.name, 'web-1');
    assert.equal(hbone(routeOutbound(state, client, '10.96.0.10', 80, () => 0.5)).dstWorkload.name, 'web-2');
    // An out-of-contract random() still picks a real endpoint.
    assert.equal(hbone(routeOutbound(state, client, '10.96.0.10', 80, () => 1)).dstWorkload.name, 'web-2');
  });

  test("a service's endpoints are only the selected pods of its own namespace", () => {
    const r = hbone(routeOutbound(state, client, '10.96.0.20', 80, () => 0));
    assert.equal(r.dstWorkload.name, 'web-other');
    assert.equal(r.authority, '10.0.2.13:80', 'targetPort defaults to the port');
    assert.equal(hbone(routeOutbound(state, client, '10.96.0.20', 80, () => 0.99)).dstWorkload.name, 'web-other');
  });

  test('service names resolve like DNS from the source namespace', () => {
    const shopWeb = state.config.services.find((s) => s.namespace === 'shop' && s.name === 'web');
    const otherWeb = state.config.services.find((s) => s.namespace === 'other' && s.name === 'web');
    const cases: Array<[string, typeof shopWeb]> = [
      ['web', shopWeb],
      ['WEB', shopWeb],
      ['web.shop', shopWeb],
      ['web.shop.svc', shopWeb],
      ['web.shop.svc.cluster.local', shopWeb],
      ['web.shop.svc.cluster.local.', shopWeb],
      ['web.other', otherWeb],
      ['web.other.svc', otherWeb],
      ['web.other.svc.cluster.local', otherWeb],
    ];
    for (const [name, svc] of cases) {
      const r = hbone(routeOutbound(state, client, name, 80, () => 0));
      assert.equal(r.service, svc, name);
      assert.equal(r.dstWorkload.namespace, svc?.namespace, name);
    }
    // From another namespace the short name is that namespace's service.
    const fromOther = hbone(routeOutbound(state, workload('web-other', 'other'), 'web', 80, () => 0));
    assert.equal(fromOther.service, otherWeb);
  });

  test('a workload name in the source namespace routes to that pod on the requested port', () => {
    const r = hbone(routeOutbound(state, client, 'web-2', 9090, never));
    assert.equal(r.dstWorkload.name, 'web-2');
    assert.equal(r.authority, '10.0.2.12:9090');
    assert.equal(r.service, undefined);
  });

  test('an unknown IP is passed through untouched', () => {
    assert.deepEqual(routeOutbound(state, client, '192.0.2.7', 443, never), { kind: 'passthrough', host: '192.0.2.7', port: 443 });
    assert.deepEqual(routeOutbound(state, client, '2001:db8::7', 443, never), { kind: 'passthrough', host: '2001:db8::7', port: 443 });
  });

  test('a workload outside the mesh (tunnelProtocol NONE) is passed through', () => {
    const direct = routeOutbound(state, client, '10.0.1.20', 5432, never);
    assert.deepEqual(direct, { kind: 'passthrough', host: '10.0.1.20', port: 5432, dstWorkload: workload('legacy') });
    const viaSvc = routeOutbound(state, client, '10.96.0.30', 9000, () => 0);
    assert.equal(viaSvc.kind, 'passthrough');
    if (viaSvc.kind !== 'passthrough') return;
    assert.equal(viaSvc.host, '10.0.1.20');
    assert.equal(viaSvc.port, 9001, 'the service targetPort is used for passthrough too');
    assert.equal(viaSvc.dstWorkload, workload('legacy'));
    assert.equal(viaSvc.service?.name, 'legacy');
  });

  test('a service port that is not defined is refused with NoHealthyUpstreamError', () => {
    for (const host of ['10.96.0.10', 'web']) {
      const err = refused(routeOutbound(state, client, host, 81, never));
      assert.ok(err instanceof NoHealthyUpstreamError, String(err));
      assert.equal(err.code, 'AMBIT_ERR_AGENT_NO_HEALTHY_UPSTREAM');
      assert.equal(err.service, 'web.shop.svc.cluster.local:81');
    }
    // A UDP-only port is not a TCP port.
    assert.ok(refused(routeOutbound(state, client, '10.96.0.60', 53, never)) instanceof NoHealthyUpstreamError);
  });

  test('a selector that matches nothing, or no selector, is refused', () => {
    for (const [host, name] of [
      ['10.96.0.40', 'nomatch'],
      ['nomatch', 'nomatch'],
      ['10.96.0.50', 'noselector'],
    ] as const) {
      const err = refused(routeOutbound(state, client, host, 80, never));
      assert.ok(err instanceof NoHealthyUpstreamError, `${host}: ${String(err)}`);
      assert.equal(err.service, `${name}.shop.svc.cluster.local:80`);
    }
  });

  test('an unknown hostname is refused with UnresolvableHostError', () => {
    for (const host of ['nope', 'web.nope', 'web.nope.svc', 'web.shop.svc.other.domain', 'example.com', 'web-other']) {
      const err = refused(routeOutbound(state, client, host, 80, never));
      assert.ok(err instanceof UnresolvableHostError, `${host}: ${String(err)}`);
      assert.equal(err.code, 'AMBIT_ERR_AGENT_UNRESOLVABLE_HOST');
      assert.equal(err.host, host);
    }
  });

  test('random defaults to Math.random and always picks a selected endpoint', () => {
    for (let i = 0; i < 20; i++) {
      const r = hbone(routeOutbound(state, client, '10.96.0.10', 80));
      assert.ok(['web-1', 'web-2'].includes(r.dstWorkload.name));
    }
  });

  test('an IPv6 pod gets a bracketed, parseable authority', () => {
    for (const host of ['fd00:10::b', 'fd00:96::10']) {
      const r = hbone(routeOutbound(state, client, host, 80, () => 0));
      assert.equal(r.hboneHost, 'fd00:10::b');
      const a = parseAuthority(r.authority);
      assert.ok(a.ok, `authority '${r.authority}' must parse: ${a.ok ? '' : a.reason}`);
    }
  });
});
