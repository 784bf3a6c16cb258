/**
 * The node agents and a waypoint in a live control-plane lab. The waypoint
 * is a FAKE: an HboneServer listening on the waypoint pod's 15008 (in that
 * pod's netns) with a certificate for spiffe://cluster.local/ns/mesh/sa/wp
 * signed by the lab's mesh CA. It records each CONNECT (authority, peer
 * identity, forwarded) and relays it to the destination pod over HBONE
 * itself, as a real waypoint re-originates (authority podIP:targetPort,
 * `forwarded: for=<client>`). Asserted through traffic:
 * - a captured client → Service VIP (service waypoint) goes through the
 *   waypoint: authority VIP:port, peer = the client's identity, bytes intact;
 * - pod-IP traffic to a workload with a workload waypoint goes through it;
 *   pod-IP traffic to a pod whose only waypoint is its service's goes direct;
 * - bypasses are refused: a raw HBONE client with a mesh-signed non-waypoint
 *   identity (pod authority and a crafted VIP authority), and plaintext from
 *   an uncaptured pod; the waypoint's own connections are accepted.
 * Needs root (network namespaces, nftables).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../src/common/logger.js';
import { bridge, h2Side, tcpSide } from '../../src/hbone/bridge.js';
import { HboneStatusError } from '../../src/hbone/errors.js';
import { HbonePool } from '../../src/hbone/pool.js';
import { HboneServer, type InboundRequest } from '../../src/hbone/server.js';
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { connectFromNetns, listenInNetns } from '../../src/native/sockets.js';
import { issueIdentity } from '../helpers/mesh-certs.js';
import { startInPod } from '../helpers/pod-process.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `wpc${randomBytes(2).toString('hex')}`;
const TD = 'cluster.local';
const SERVER_VIP = '10.96.0.40';
const WP_VIP = '10.96.0.41';
const WP_ID = `spiffe://${TD}/ns/mesh/sa/wp`;
const CLIENT_ID = `spiffe://${TD}/ns/mesh/sa/client`;

// The fake waypoint pod has no gateway-name label, so the lab never starts a real waypoint in it.
const MANIFESTS = `
apiVersion: v1
kind: Namespace
metadata: { name: mesh, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: plain }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: mesh, labels: { app: client } }
spec: { nodeName: node-a, serviceAccountName: client }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: mesh, labels: { app: server } }
spec: { nodeName: node-b, serviceAccountName: server }
---
apiVersion: v1
kind: Pod
metadata: { name: direct, namespace: mesh, labels: { app: direct, istio.io/use-waypoint: wp } }
spec: { nodeName: node-b, serviceAccountName: direct }
---
apiVersion: v1
kind: Pod
metadata: { name: waypoint, namespace: mesh, labels: { app: fake-wp, istio.io/dataplane-mode: none } }
spec: { nodeName: node-a, serviceAccountName: wp }
---
apiVersion: v1
kind: Pod
metadata: { name: outsider, namespace: plain, labels: { app: outsider } }
spec: { nodeName: node-a, serviceAccountName: outsider }
---
apiVersion: v1
kind: Service
metadata: { name: server, namespace: mesh, labels: { istio.io/use-waypoint: wp } }
spec:
  clusterIP: ${SERVER_VIP}
  selector: { app: server }
  ports: [{ name: tcp, port: 80, targetPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: wp, namespace: mesh }
spec:
  clusterIP: ${WP_VIP}
  selector: { app: fake-wp }
  ports: [{ name: mesh, port: 15008, targetPort: 15008 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: wp, namespace: mesh, labels: { istio.io/waypoint-for: all } }
spec:
  gatewayClassName: istio-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
`;

// Runs in a pod: sends <size> random bytes to host:port, half-closes, prints what came back as JSON.
const CLIENT_SCRIPT = `
const net = require('net'), c = require('crypto');
const [host, port, size] = process.argv.slice(1);
const sha = (b) => c.createHash('sha256').update(b).digest('hex');
const buf = c.randomBytes(Number(size));
const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
const chunks = [];
const timer = setTimeout(() => { console.log(JSON.stringify({ error: 'timeout' })); process.exit(0); }, 8000);
s.on('data', (d) => chunks.push(d));
s.on('end', () => {
  clearTimeout(timer);
  const all = Buffer.concat(chunks);
  const nl = all.indexOf(10);
  console.log(JSON.stringify({ sent: sha(buf), line: nl < 0 ? all.toString() : all.subarray(0, nl).toString(), back: nl < 0 ? '' : sha(all.subarray(nl + 1)), bytes: all.length }));
  process.exit(0);
});
s.on('error', (e) => { clearTimeout(timer); console.log(JSON.stringify({ error: e.code || e.message })); process.exit(0); });
s.end(buf);
`;

interface Recorded {
  authority: string;
  peer: string;
  forwardedFor?: string;
  remote: string;
}

let lab: LabHandle;
let dir: string;
const servers: ChildProcess[] = [];
const closers: Array<() => void> = [];
const recorded: Recorded[] = [];
let wpId: TlsIdentity;
let rogueId: TlsIdentity;
let wpPool: HbonePool;
let roguePool: HbonePool;

function pod(n: string): { ip: string; netns: string; serviceAccount: string; namespace: string } {
  const w = lab.cluster.workloads.find((x) => x.name === n);
  assert.ok(w?.netns, `no pod ${n}`);
  return { ip: w.ip, netns: w.netns, serviceAccount: w.serviceAccount, namespace: w.namespace };
}

function identityOf(ip: string): string {
  const w = lab.cluster.workloads.find((x) => x.ip === ip);
  assert.ok(w, `no pod at ${ip}`);
  return `spiffe://${TD}/ns/${w.namespace}/sa/${w.serviceAccount}`;
}

async function send(from: string, host: string, port: number, size = 256 * 1024): Promise<{ sent?: string; line?: string; back?: string; bytes?: number; error?: string }> {
  const r = await lab.exec(from, [process.execPath, '-e', CLIENT_SCRIPT, host, String(port), String(size)], { timeoutMs: 15_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { sent?: string; line?: string; back?: string; bytes?: number; error?: string };
}

async function counter(node: string, metric: string, ...fragments: string[]): Promise<number> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith(`${metric}{`) && fragments.every((f) => l.includes(f)))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

/**
 * The fake waypoint: HboneServer on <waypoint pod>:15008. Each allowed
 * CONNECT is handed to a loopback relay (in this process) that opens the
 * onward HBONE tunnel from the waypoint pod's netns with the waypoint's
 * identity, authority <pod ip>:<port>, forwarding the client address.
 */
async function startFakeWaypoint(): Promise<void> {
  const wp = pod('waypoint');
  const relay: Server = createServer({ allowHalfOpen: true }, (sock: Socket) => {
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf(10);
      if (nl < 0) return;
      sock.off('data', onData);
      sock.pause();
      const hdr = JSON.parse(buf.subarray(0, nl).toString()) as { host: string; port: number; forwardedFor?: string };
      const rest = buf.subarray(nl + 1);
      wpPool
        .openTunnel({ srcIdentity: wpId.identity, dstIdentities: [identityOf(hdr.host)], dstHost: hdr.host, dstPort: 15008, srcIp: wp.ip }, `${hdr.host}:${hdr.port}`, hdr.forwardedFor ? { forwarded: `for="${hdr.forwardedFor}"` } : {})
        .then(
          async (stream) => {
            if (rest.length > 0) sock.unshift(rest);
            await bridge(tcpSide(sock), h2Side(stream));
          },
          () => sock.destroy(),
        );
    };
    sock.on('data', onData);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  closers.push(() => relay.close());
  const relayPort = (relay.address() as AddressInfo).port;
  const server = pod('server');
  const hbone = new HboneServer({
    identityFor: () => wpId,
    resolveTarget: (req: InboundRequest) => {
      recorded.push({ authority: `${req.authority.host}:${req.authority.port}`, peer: req.peerIdentity, remote: req.remoteAddress, ...(req.forwarded.for ? { forwardedFor: req.forwarded.for } : {}) });
      // The waypoint's "routing": the service VIP to its endpoint, a pod address as is.
      if (req.authority.host === SERVER_VIP && req.authority.port === 80) return { kind: 'allow', host: server.ip, port: 8080 };
      if (lab.cluster.workloads.some((w) => w.ip === req.authority.host)) return { kind: 'allow', host: req.authority.host, port: req.authority.port };
      return { kind: 'unavailable', reason: 'unknown target' };
    },
    dial: (target, req) => {
      const s = connect({ host: '127.0.0.1', port: relayPort, allowHalfOpen: true });
      s.write(`${JSON.stringify({ host: target.host, port: target.port, ...(req.forwarded.for ? { forwardedFor: req.forwarded.for } : {}) })}\n`);
      return s;
    },
    logger: silentLogger(),
  });
  closers.push(() => hbone.destroy());
  const listener = await listenInNetns(undefined, { netns: wp.netns, address: '0.0.0.0', port: 15008 });
  closers.push(() => listener.close());
  hbone.serve(listener);
}

describe('agents and a waypoint in a live control-plane lab', { ...requiresRoot(), ...requiresTool('curl', 'nft') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = mkdtempSync(join(tmpdir(), 'ambit-wp-lab-'));
    writeFileSync(join(dir, 'mesh.yaml'), MANIFESTS);
    await labDown(name);
    lab = await labUp({ manifests: dir, name, mesh: true, controlPlane: true });
    // The lab's mesh CA (the control plane's): a waypoint identity, and a legitimate non-waypoint one for the bypass attempts.
    const ca = await LocalCa.openOrCreate(join(lab.stateDir, 'ca'), { trustDomain: TD });
    wpId = await issueIdentity(ca, TD, 'mesh', 'wp');
    rogueId = await issueIdentity(ca, TD, 'mesh', 'client');
    const wp = pod('waypoint');
    const outsider = pod('outsider');
    wpPool = new HbonePool({ identityFor: () => Promise.resolve(wpId), dial: (d) => connectFromNetns(undefined, { netns: wp.netns, host: d.host, port: d.port }), logger: silentLogger() });
    roguePool = new HbonePool({ identityFor: () => Promise.resolve(rogueId), dial: (d) => connectFromNetns(undefined, { netns: outsider.netns, host: d.host, port: d.port }), logger: silentLogger() });
    closers.push(() => wpPool.destroy(), () => roguePool.destroy());
    await startFakeWaypoint();
    for (const p of ['server', 'direct']) servers.push(await startInPod(lab, `mesh/${p}`, [process.execPath, `${fixtures}agent/digest-echo-server.mjs`, pod(p).ip, '8080', p]));
  });

  after(async () => {
    for (const p of servers) p.kill();
    for (const c of closers.reverse()) c();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('captured client → Service VIP goes through the waypoint: authority VIP:port, peer = client identity, bytes intact', async (t) => {
    assertPrivileged(t);
    const before = recorded.length;
    const routed = await counter('node-a', 'ambit_waypoint_connections_total', 'waypoint="mesh/wp"');
    const r = await send('mesh/client', SERVER_VIP, 80);
    assert.equal(r.error, undefined, JSON.stringify(r));
    assert.equal(r.line?.split(' ')[0], r.sent, 'the server got exactly what the client sent');
    assert.equal(r.line?.split(' ')[2], 'server');
    assert.equal(r.back, r.sent, 'the echo came back intact');
    const mine = recorded.slice(before);
    assert.equal(mine.length, 1, JSON.stringify(mine));
    assert.equal(mine[0]?.authority, `${SERVER_VIP}:80`);
    assert.equal(mine[0]?.peer, CLIENT_ID);
    assert.equal(mine[0]?.remote, pod('client').ip);
    assert.match(mine[0]?.forwardedFor ?? '', new RegExp(`^${pod('client').ip.replace(/\./g, '\\.')}:\\d+$`));
    assert.equal(await counter('node-a', 'ambit_waypoint_connections_total', 'waypoint="mesh/wp"'), routed + 1);
    // The destination agent saw the waypoint as the peer and reports the client it forwarded for.
    assert.ok(
      (await counter('node-b', 'istio_tcp_connections_opened_total', 'reporter="destination"', 'destination_workload="server"', `source_principal="${WP_ID}"`, 'source_workload="client"')) >= 1,
      'destination reported source_workload=client via the waypoint',
    );
  });

  test('pod-IP traffic to a workload with a waypoint (waypoint-for all) goes through it; a pod with only a service waypoint is reached directly', async (t) => {
    assertPrivileged(t);
    const direct = pod('direct');
    let before = recorded.length;
    const r = await send('mesh/client', direct.ip, 8080);
    assert.equal(r.error, undefined, JSON.stringify(r));
    assert.equal(r.back, r.sent);
    assert.equal(r.line?.split(' ')[2], 'direct');
    assert.deepEqual(
      recorded.slice(before).map((x) => [x.authority, x.peer]),
      [[`${direct.ip}:8080`, CLIENT_ID]],
    );
    before = recorded.length;
    const s = await send('mesh/client', pod('server').ip, 8080);
    assert.equal(s.back, s.sent);
    assert.equal(recorded.length, before, 'no waypoint for pod-IP traffic to a pod whose only waypoint is its service');
  });

  test("bypass over HBONE with a mesh-signed non-waypoint identity is refused (401); the waypoint's own connection is accepted", async (t) => {
    assertPrivileged(t);
    const direct = pod('direct');
    const server = pod('server');
    const refusedBefore = await counter('node-b', 'ambit_waypoint_refused_total', 'reporter="destination"', 'reason="not_from_waypoint"', 'waypoint="mesh/wp"');
    const attempt = (p: HbonePool, id: TlsIdentity, dst: { ip: string }, dstId: string, authority: string) =>
      p.openTunnel({ srcIdentity: id.identity, dstIdentities: [dstId], dstHost: dst.ip, dstPort: 15008 }, authority);
    await assert.rejects(attempt(roguePool, rogueId, direct, identityOf(direct.ip), `${direct.ip}:8080`), (e: unknown) => e instanceof HboneStatusError && e.status === 401, 'pod authority to a workload-waypoint pod');
    await assert.rejects(attempt(roguePool, rogueId, server, identityOf(server.ip), `${SERVER_VIP}:80`), (e: unknown) => e instanceof HboneStatusError && e.status === 401, 'crafted service VIP authority');
    // Control: the same identity by pod IP to a pod with only a service waypoint is allowed (as in Istio).
    const ok = await attempt(roguePool, rogueId, server, identityOf(server.ip), `${server.ip}:8080`);
    ok.destroy();
    // The waypoint's own connection to the protected pod is accepted.
    const stream = await attempt(wpPool, wpId, direct, identityOf(direct.ip), `${direct.ip}:8080`);
    const payload = randomBytes(4096);
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    const done = new Promise<void>((r) => stream.once('end', () => r()));
    stream.end(payload);
    await done;
    const all = Buffer.concat(chunks);
    assert.equal(all.subarray(0, all.indexOf(10)).toString().split(' ')[0], createHash('sha256').update(payload).digest('hex'));
    assert.equal(await counter('node-b', 'ambit_waypoint_refused_total', 'reporter="destination"', 'reason="not_from_waypoint"', 'waypoint="mesh/wp"'), refusedBefore + 2);
  });

  test('plaintext from an uncaptured pod to a destination that requires a waypoint is refused; to one that does not, delivered', async (t) => {
    assertPrivileged(t);
    const before = await counter('node-b', 'ambit_waypoint_refused_total', 'reporter="destination"', 'reason="plaintext"');
    const r = await send('plain/outsider', pod('direct').ip, 8080);
    t.diagnostic(`plaintext to the waypoint-protected pod: ${JSON.stringify(r)}`);
    assert.ok(r.error !== undefined || (r.bytes ?? 0) === 0, `refused: ${JSON.stringify(r)}`);
    assert.equal(await counter('node-b', 'ambit_waypoint_refused_total', 'reporter="destination"', 'reason="plaintext"'), before + 1);
    const ok = await send('plain/outsider', pod('server').ip, 8080);
    assert.equal(ok.back, ok.sent, 'plaintext to a pod with only a service waypoint is delivered');
  });
});
