/** Route matching, weighted choice, header ops, rewrite and redirect (pure). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileL7Config, type RouteConfig, type ServiceConfig } from '../../src/waypoint/config.js';
import { applyHeaderOps, applyRewrite, pickBackend, prefixMatch, redirectLocation, selectRoute } from '../../src/waypoint/match.js';

function service(routes: unknown[]): ServiceConfig {
  return compileL7Config({ clusters: [{ name: 'a' }, { name: 'b' }], services: [{ hostname: 'svc.ns.svc.cluster.local', port: 80, routes }] }).services[0] as ServiceConfig;
}
const req = (path: string, headers: Record<string, string> = {}, method = 'GET'): { method: string; path: string; headers: Record<string, string> } => ({ method, path, headers });

test('first matching route wins; matches are OR, fields within a match are AND', () => {
  const svc = service([
    { name: 'h', matches: [{ headers: [{ name: 'End-User', exact: 'jason' }], method: 'GET' }], backends: [{ cluster: 'b' }] },
    { name: 'q', matches: [{ queryParams: [{ name: 'v', regex: '[0-9]+' }] }, { headers: [{ name: 'x-canary', present: true }] }], backends: [{ cluster: 'b' }] },
    { name: 'not-bot', matches: [{ headers: [{ name: 'user-agent', prefix: 'bot', invert: true }], path: { prefix: '/api' } }], backends: [{ cluster: 'a' }] },
    { name: 'rest', backends: [{ cluster: 'a' }] },
  ]);
  assert.equal(selectRoute(svc, req('/', { 'end-user': 'jason' }))?.name, 'h');
  assert.equal(selectRoute(svc, req('/', { 'end-user': 'jason' }, 'POST'))?.name, 'rest');
  assert.equal(selectRoute(svc, req('/?v=12'))?.name, 'q');
  assert.equal(selectRoute(svc, req('/?v=1x'))?.name, 'rest', 'regex is a full match');
  assert.equal(selectRoute(svc, req('/', { 'x-canary': '' }))?.name, 'q');
  assert.equal(selectRoute(svc, req('/api/x', { 'user-agent': 'curl' }))?.name, 'not-bot');
  assert.equal(selectRoute(svc, req('/api/x', { 'user-agent': 'bot/1' }))?.name, 'rest');
  assert.equal(selectRoute(service([{ matches: [{ path: { exact: '/x' } }], backends: [{ cluster: 'a' }] }]), req('/y')), undefined);
});

test('path prefix is element-wise, as Gateway API PathPrefix', () => {
  assert.ok(prefixMatch('/api', '/api'));
  assert.ok(prefixMatch('/api/v1', '/api'));
  assert.ok(!prefixMatch('/apix', '/api'));
  assert.ok(prefixMatch('/anything', '/'));
  assert.ok(prefixMatch('/api/v1', '/api/'));
});

test('weighted choice follows the weights and skips weight 0', () => {
  const svc = service([{ backends: [{ cluster: 'a', weight: 90 }, { cluster: 'b', weight: 10 }, { cluster: 'a', weight: 0 }] }]);
  const backends = (svc.routes[0] as RouteConfig).backends;
  assert.equal(pickBackend(backends, 0)?.cluster, 'a');
  assert.equal(pickBackend(backends, 0.8999)?.cluster, 'a');
  assert.equal(pickBackend(backends, 0.9)?.cluster, 'b');
  assert.equal(pickBackend(backends, 0.99999)?.cluster, 'b');
  let b = 0;
  for (let i = 0; i < 1000; i++) if (pickBackend(backends, i / 1000)?.cluster === 'b') b++;
  assert.equal(b, 100);
});

test('header ops: remove, then set, then add', () => {
  const svc = service([{ backends: [{ cluster: 'a' }], requestHeaders: { remove: ['x-drop'], set: { 'X-Set': 'v' }, add: { 'x-add': '2', 'set-cookie': 'b=2' } } }]);
  const h: Record<string, string | string[] | undefined> = { 'x-drop': '1', 'x-set': 'old', 'x-add': '1', 'set-cookie': 'a=1' };
  applyHeaderOps(h, (svc.routes[0] as RouteConfig).requestHeaders);
  assert.deepEqual(h, { 'x-set': 'v', 'x-add': '1,2', 'set-cookie': ['a=1', 'b=2'] });
});

test('rewrite: prefix replaces the matched prefix, regex substitutes, authority changes', () => {
  const svc = service([
    { matches: [{ path: { prefix: '/old' } }], rewrite: { uriPrefix: '/new', authority: 'other:8080' }, backends: [{ cluster: 'a' }] },
    { matches: [{ path: { prefix: '/' } }], rewrite: { uriRegex: { pattern: '^/v(\\d+)/(.*)$', substitution: '/$2?version=$1' } }, backends: [{ cluster: 'a' }] },
  ]);
  const r0 = svc.routes[0] as RouteConfig;
  assert.deepEqual(applyRewrite(r0.rewrite!, r0, req('/old/x?q=1'), 'svc'), { path: '/new/x?q=1', authority: 'other:8080' });
  assert.deepEqual(applyRewrite(r0.rewrite!, r0, req('/old'), 'svc'), { path: '/new', authority: 'other:8080' });
  const r1 = svc.routes[1] as RouteConfig;
  assert.equal(applyRewrite(r1.rewrite!, r1, req('/v2/items'), 'svc').path, '/items?version=2');
});

test('redirect location', () => {
  const svc = service([
    { matches: [{ path: { prefix: '/a' } }], redirect: { scheme: 'https', host: 'example.com', prefix: '/b', status: 308 } },
    { redirect: { port: 8080, path: '/here' } },
  ]);
  const r0 = svc.routes[0] as RouteConfig;
  assert.equal(redirectLocation(r0.redirect!, r0, req('/a/x?y=1'), 'svc:80'), 'https://example.com/b/x?y=1');
  assert.equal(r0.redirect?.status, 308);
  const r1 = svc.routes[1] as RouteConfig;
  assert.equal(redirectLocation(r1.redirect!, r1, req('/p'), 'svc'), 'http://svc:8080/here');
  assert.equal(r1.redirect?.status, 301);
});
