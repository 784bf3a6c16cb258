/**
 * The control plane's root-rotation endpoint over real sockets (loopback):
 * GET /debug/ca, POST /debug/ca/rotate guarded by <ca-dir>/admin-token, and
 * the serving certificate swapped live after activate, verifiable both by a
 * client that trusts only the old root (through the cross-certificate) and by
 * one that trusts only the new root.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, type PeerCertificate } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import type { CaAuthenticator } from '../../src/ca/authenticator.js';
import { splitPemCertificates } from '../../src/ca/ca-client.js';
import type { RotationStatus } from '../../src/ca/ca-roots.js';
import { silentLogger } from '../../src/common/logger.js';
import { ControlPlane } from '../../src/control-plane/server.js';

const denyAll: CaAuthenticator = { authenticate: () => Promise.resolve({ ok: false, kind: 'unauthenticated', reason: 'test' }) };
let dir = '';
let cp: ControlPlane | undefined;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-ca-rotate-'));
  cp = await ControlPlane.start(
    { manifests: dir, caDir: join(dir, 'ca'), trustDomain: 'cluster.local', clusterDomain: 'cluster.local', address: '127.0.0.1', grpcPort: 0, monitoringPort: 0, debounceMs: 20 },
    { logger: silentLogger(), registry: new Registry(), caAuthenticator: denyAll },
  );
});

after(async () => {
  await cp?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function http(path: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${cp?.ports.monitoring}${path}`, init);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The serving leaf the gRPC port presents to a client trusting `ca` (or the handshake error). */
function servingLeaf(ca: string[]): Promise<X509Certificate | Error> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port: cp?.ports.grpc as number, ca, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }, () => {
      const peer: PeerCertificate = s.getPeerCertificate(false);
      resolve(new X509Certificate(peer.raw));
      s.destroy();
    });
    s.on('error', (err) => resolve(err));
  });
}

test('rotation over the monitoring endpoint: token required, serving certificate follows the active root', async () => {
  const token = (await readFile(join(dir, 'ca', 'admin-token'), 'utf8')).trim();
  assert.match(token, /^[0-9a-f]{48}$/);
  const before = (await http('/debug/ca')).body as unknown as RotationStatus;
  assert.equal(before.stage, 'stable');
  const oldRoot = splitPemCertificates(await readFile(join(dir, 'ca', 'root-cert.pem'), 'utf8'))[0] as string;
  const first = await servingLeaf([oldRoot]);
  assert.ok(first instanceof X509Certificate, `handshake with the old root: ${String(first)}`);
  assert.ok(first.checkIssued(new X509Certificate(oldRoot)));

  assert.equal((await http('/debug/ca/rotate?phase=add', { method: 'POST' })).status, 401);
  assert.equal((await http('/debug/ca/rotate?phase=add', { method: 'POST', headers: { authorization: 'Bearer nope' } })).status, 401);
  assert.equal((await http('/debug/ca/rotate?phase=add')).status, 405);
  const auth = { authorization: `Bearer ${token}` };
  assert.equal((await http('/debug/ca/rotate?phase=bogus', { method: 'POST', headers: auth })).status, 400);
  const outOfOrder = await http('/debug/ca/rotate?phase=retire', { method: 'POST', headers: auth });
  assert.equal(outOfOrder.status, 409);
  assert.equal(outOfOrder.body.code, 'AMBIT_ERR_CA_ROOT_ROTATION');

  const added = await http('/debug/ca/rotate?phase=add', { method: 'POST', headers: auth });
  assert.equal(added.status, 200, JSON.stringify(added.body));
  assert.equal(added.body.stage, 'added');
  // No workload leaf was issued: activating is safe at once.
  const activated = await http('/debug/ca/rotate?phase=activate', { method: 'POST', headers: auth });
  assert.equal(activated.status, 200, JSON.stringify(activated.body));
  const newRoot = cp?.rootCertPem as string;
  assert.notEqual(newRoot, oldRoot);

  // The serving certificate is re-issued asynchronously after the phase.
  let leaf: X509Certificate | Error = first;
  for (let i = 0; i < 50; i++) {
    leaf = await servingLeaf([oldRoot]);
    if (leaf instanceof X509Certificate && leaf.checkIssued(new X509Certificate(newRoot))) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(leaf instanceof X509Certificate && leaf.checkIssued(new X509Certificate(newRoot)), 'the serving certificate comes from the new root');
  assert.ok(leaf.verify(new X509Certificate(newRoot).publicKey));
  const viaNew = await servingLeaf([newRoot]);
  assert.ok(viaNew instanceof X509Certificate, `a client trusting only the new root: ${String(viaNew)}`);

  const retired = await http('/debug/ca/rotate?phase=retire', { method: 'POST', headers: auth });
  assert.equal(retired.status, 200, JSON.stringify(retired.body));
  assert.deepEqual(splitPemCertificates(await readFile(join(dir, 'ca', 'root-cert.pem'), 'utf8')), [newRoot]);
  const afterRetire = await servingLeaf([oldRoot]);
  assert.ok(afterRetire instanceof X509Certificate, `a client that still trusts only the old root after retire: ${String(afterRetire)}`);
  assert.ok((await servingLeaf([])) instanceof Error, 'a client trusting neither root is refused');
});
