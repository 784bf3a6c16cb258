/**
 * HBONE between two lab nodes (root): the acceptance test "two HBONE
 * endpoints run in two lab node namespaces". One process, but every socket
 * lives in a lab namespace:
 *
 *   client pod netns (node-a)                     server pod netns (node-b)
 *   HbonePool ── TCP/TLS 1.3/HTTP/2 ── veth ─ node-a ─ br0 ─ node-b ─ veth ──► HboneServer :15008
 *                                                                              └─► target ports (pod IP)
 *
 * The pool dials with connectFromNetns from the client pod; the server's
 * listener and its upstream dials are made inside the server pod. The test
 * checks that the bytes really crossed the namespaces (ss inside the server
 * pod during a transfer, veth byte counters, the peer address the server saw).
 * Other lab users are untouched: the lab has its own random name and is
 * removed in t.after whatever happens. The loopback variant is hbone-loopback.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../src/common/logger.js';
import { HboneStatusError } from '../../src/hbone/errors.js';
import { HbonePool, type PoolKey } from '../../src/hbone/pool.js';
import { HboneServer, type InboundRequest } from '../../src/hbone/server.js';
import { HBONE_PORT } from '../../src/hbone/settings.js';
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';
import { labDown, labUp, type LabHandle } from '../../src/lab/index.js';
import { NETNS_DIR } from '../../src/lab/topology.js';
import { connectFromNetns, listenInNetns } from '../../src/native/sockets.js';
import type { LocalWorkload } from '../../src/state/local-config.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';
import { hashUntilEnd, payload, readAll, sha256 } from '../helpers/tcp.js';

const FIXTURE = join(fileURLToPath(new URL('../../../test/fixtures/bench/', import.meta.url)), 'two-pods.yaml');
const NS = 'bench';
const MIB = 1 << 20;
const BULK = 64 * MIB;
const CONCURRENT = 200;

/** Target ports inside the server pod (on its pod IP). */
const PORT = { duplex: 7001, echo: 7002, digest: 7003 } as const;

const log = silentLogger();
const digestReply = payload(MIB);

interface LinkBytes {
  rx: number;
  tx: number;
}

/** Byte counters of `dev` inside `netns` (read with `ip -n`, nothing is sent). */
function linkBytes(netns: string, dev = 'eth0'): LinkBytes {
  const out = execFileSync('ip', ['-n', netns, '-j', '-s', 'link', 'show', 'dev', dev], { encoding: 'utf8' });
  const [link] = JSON.parse(out) as Array<{ stats64?: { rx: { bytes: number }; tx: { bytes: number } } }>;
  assert.ok(link?.stats64, `no counters for ${dev} in ${netns}`);
  return { rx: link.stats64.rx.bytes, tx: link.stats64.tx.bytes };
}

function workload(lab: LabHandle, name: string): LocalWorkload {
  const w = lab.cluster.workloads.find((x) => x.namespace === NS && x.name === name);
  assert.ok(w, `lab has no pod ${NS}/${name}`);
  return w;
}

function closeServer(s: Server): Promise<void> {
  return new Promise((resolve) => s.close(() => resolve()));
}

interface Rig {
  lab: LabHandle;
  client: LocalWorkload;
  server: LocalWorkload;
  clientNetns: string;
  serverNetns: string;
  serverNodeNetns: string;
  clientId: TlsIdentity;
  serverId: TlsIdentity;
  requests: InboundRequest[];
  /** Digests of what the duplex target received, per connection. */
  duplexReceived: Array<{ digest: string; bytes: number }>;
  duplexReply: Buffer;
  newPool(): HbonePool;
  key(): PoolKey;
}

/**
 * Lab, HBONE server and targets. Teardown is registered before anything is
 * created: pools, server, targets and their sockets first (a socket keeps its
 * netns alive), then the lab.
 */
async function setUp(t: TestContext): Promise<Rig> {
  const name = `hb${randomBytes(2).toString('hex')}`;
  const pools: HbonePool[] = [];
  const listeners: Server[] = [];
  const sockets = new Set<Socket>();
  const hbones: HboneServer[] = [];
  t.after(async () => {
    for (const p of pools) p.destroy();
    for (const h of hbones) h.destroy();
    for (const s of sockets) s.destroy();
    await Promise.all(listeners.map(closeServer));
    await labDown(name).catch((err: unknown) => console.error(`cleanup of lab ${name} failed:`, err));
  });

  const lab = await labUp({ manifests: FIXTURE, name, mesh: false });
  const client = workload(lab, 'client');
  const server = workload(lab, 'server');
  assert.notEqual(client.node, server.node, 'client and server must be on different nodes');
  const clientNetns = lab.podNetns(NS, 'client');
  const serverNetns = lab.podNetns(NS, 'server');
  const serverNodeNetns = lab.nodeNetns(server.node);
  const nsPath = (n: string): string => join(NETNS_DIR, n);

  const td = lab.cluster.trustDomain;
  const ca = await ephemeralCa(td);
  const serverId = await issueIdentity(ca, td, NS, server.serviceAccount);
  const clientId = await issueIdentity(ca, td, NS, client.serviceAccount);

  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => sockets.delete(s));
  };
  const target = async (port: number, onConnection: (s: Socket) => void): Promise<void> => {
    const srv = await listenInNetns(undefined, { netns: nsPath(serverNetns), address: server.ip, port, server: { allowHalfOpen: true } });
    listeners.push(srv);
    srv.on('connection', (s: Socket) => {
      track(s);
      onConnection(s);
    });
  };

  // duplex: sends its own 64 MiB at once while hashing what it receives
  const duplexReceived: Array<{ digest: string; bytes: number }> = [];
  const duplexReply = payload(BULK);
  await target(PORT.duplex, (s) => {
    void hashUntilEnd(s).then((r) => duplexReceived.push(r));
    s.end(duplexReply);
  });
  // echo: writes back everything, ends when the client ends
  await target(PORT.echo, (s) => s.pipe(s));
  // digest: reads to the client's FIN, then answers "<sha256> <bytes>\n" + 1 MiB and ends
  await target(PORT.digest, (s) => {
    void hashUntilEnd(s).then(({ digest, bytes }) => {
      s.write(`${digest} ${bytes}\n`);
      s.end(digestReply);
    });
  });

  const requests: InboundRequest[] = [];
  const allowed = new Set<number>(Object.values(PORT));
  const hbone = new HboneServer({
    identityFor: (local) => (local === server.ip ? serverId : undefined),
    resolveTarget: (req) => {
      requests.push(req);
      if (req.authority.host !== server.ip || !allowed.has(req.authority.port)) return { kind: 'deny', reason: 'not a test target' };
      return { kind: 'allow', host: req.authority.host, port: req.authority.port };
    },
    dial: (dst) => {
      const s = connectFromNetns(undefined, { netns: nsPath(serverNetns), host: dst.host, port: dst.port, allowHalfOpen: true });
      track(s);
      return s;
    },
    logger: log,
  });
  hbones.push(hbone);
  const listener = await listenInNetns(undefined, { netns: nsPath(serverNetns), address: '0.0.0.0', port: HBONE_PORT });
  listeners.push(listener);
  hbone.serve(listener);

  const key = (): PoolKey => ({ srcIdentity: clientId.identity, dstIdentities: [serverId.identity], dstHost: server.ip, dstPort: HBONE_PORT });
  const newPool = (): HbonePool => {
    const pool = new HbonePool({
      identityFor: () => Promise.resolve(clientId),
      // The outer HBONE connection is not half-open: a FIN there ends every stream.
      dial: (dst) => connectFromNetns(undefined, { netns: nsPath(clientNetns), host: dst.host, port: dst.port }),
      logger: log,
    });
    pools.push(pool);
    return pool;
  };
  return { lab, client, server, clientNetns, serverNetns, serverNodeNetns, clientId, serverId, requests, duplexReceived, duplexReply, newPool, key };
}

test('two HBONE endpoints in two lab nodes carry bulk, concurrent and half-closed tunnels', { ...requiresRoot(), timeout: 120_000 }, async (t) => {
  assertPrivileged(t);
  const rig = await setUp(t);
  const { lab, client, server } = rig;
  const authority = (port: number): string => `${server.ip}:${port}`;

  await t.test(`${BULK / MIB} MiB cross one tunnel in each direction at once, through the namespaces`, async () => {
    const pool = rig.newPool();
    const up = payload(BULK);
    const clientLinkBefore = linkBytes(rig.clientNetns);
    const serverNodeLinkBefore = linkBytes(rig.serverNodeNetns);

    const stream = await pool.openTunnel(rig.key(), authority(PORT.duplex));
    let received = 0;
    let ssDuringTransfer: Promise<{ server: string; client: string }> | undefined;
    stream.on('data', (c: Buffer) => {
      received += c.length;
      // Once bytes flow, look at the sockets from inside both pods (while the transfer runs).
      ssDuringTransfer ??= Promise.all([
        lab.exec({ namespace: NS, pod: 'server' }, ['ss', '-Htn', 'state', 'established', `( sport = :${HBONE_PORT} )`], { timeoutMs: 10_000 }),
        lab.exec({ namespace: NS, pod: 'client' }, ['ss', '-Htn', 'state', 'established', `( dport = :${HBONE_PORT} )`], { timeoutMs: 10_000 }),
      ]).then(([s, c]) => ({ server: s.stdout, client: c.stdout }));
    });
    const got = readAll(stream);
    let receivedWhenUploadFlushed = -1;
    stream.end(up, () => (receivedWhenUploadFlushed = received));
    const back = await got;
    assert.ok(ssDuringTransfer, 'no data arrived');
    const ss = await ssDuringTransfer;

    // intact both ways
    assert.equal(back.length, BULK);
    assert.equal(sha256(back), sha256(rig.duplexReply));
    for (let i = 0; i < 200 && rig.duplexReceived.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(rig.duplexReceived, [{ digest: sha256(up), bytes: BULK }]);
    // at once: the download was flowing before the upload had been handed off completely
    assert.ok(receivedWhenUploadFlushed > 0, `download had not started when the upload was flushed (${receivedWhenUploadFlushed})`);

    // through the namespaces: the HBONE socket in the server pod is from the client pod IP ...
    assert.match(ss.server, new RegExp(`${server.ip.replaceAll('.', '\\.')}:${HBONE_PORT}\\s+${client.ip.replaceAll('.', '\\.')}:\\d+`), `ss in the server pod:\n${ss.server}`);
    assert.match(ss.client, new RegExp(`${client.ip.replaceAll('.', '\\.')}:\\d+\\s+${server.ip.replaceAll('.', '\\.')}:${HBONE_PORT}`), `ss in the client pod:\n${ss.client}`);
    // ... the server saw the tunnel arrive from the client pod at its pod IP ...
    const req = rig.requests.at(-1);
    assert.ok(req);
    assert.equal(req.remoteAddress, client.ip);
    assert.equal(req.localAddress, server.ip);
    assert.equal(req.peerIdentity, rig.clientId.identity);
    // ... and the bytes went over the client pod's veth and node-b's uplink, both ways
    const clientLink = linkBytes(rig.clientNetns);
    const serverNodeLink = linkBytes(rig.serverNodeNetns);
    assert.ok(clientLink.tx - clientLinkBefore.tx >= BULK, `client pod eth0 sent only ${clientLink.tx - clientLinkBefore.tx} bytes`);
    assert.ok(clientLink.rx - clientLinkBefore.rx >= BULK, `client pod eth0 received only ${clientLink.rx - clientLinkBefore.rx} bytes`);
    assert.ok(serverNodeLink.rx - serverNodeLinkBefore.rx >= BULK, `node-b eth0 received only ${serverNodeLink.rx - serverNodeLinkBefore.rx} bytes`);
    assert.ok(serverNodeLink.tx - serverNodeLinkBefore.tx >= BULK, `node-b eth0 sent only ${serverNodeLink.tx - serverNodeLinkBefore.tx} bytes`);
    pool.destroy();
  });

  await t.test(`${CONCURRENT} concurrent tunnels carry checksummed payloads over exactly ${Math.ceil(CONCURRENT / 100)} connections`, async () => {
    const pool = rig.newPool();
    const results = await Promise.all(
      Array.from({ length: CONCURRENT }, async (_, i) => {
        const stream = await pool.openTunnel(rig.key(), authority(PORT.echo));
        const data = payload(64 * 1024 + i);
        const got = readAll(stream);
        stream.end(data);
        const back = await got;
        return back.length === data.length && sha256(back) === sha256(data);
      }),
    );
    assert.equal(results.filter(Boolean).length, CONCURRENT);
    assert.equal(pool.connectionCount(rig.key()), Math.ceil(CONCURRENT / 100));
    pool.destroy();
  });

  await t.test('half-close across the namespaces: the client sends, ends, and receives the whole reply', async () => {
    const pool = rig.newPool();
    const stream = await pool.openTunnel(rig.key(), authority(PORT.digest));
    const sent = payload(300_000);
    const got = readAll(stream);
    stream.end(sent);
    const back = await got;
    const nl = back.indexOf('\n');
    assert.ok(nl > 0, 'no digest line');
    // the target answered only after it saw our FIN, and we still got every reply byte
    assert.equal(back.subarray(0, nl).toString(), `${sha256(sent)} ${sent.length}`);
    assert.equal(back.length - nl - 1, digestReply.length);
    assert.equal(sha256(back.subarray(nl + 1)), sha256(digestReply));
    pool.destroy();
  });

  await t.test('a CONNECT to a port the server does not allow is refused (401)', async () => {
    const pool = rig.newPool();
    await assert.rejects(pool.openTunnel(rig.key(), authority(9)), (err: unknown) => err instanceof HboneStatusError && err.status === 401);
    pool.destroy();
  });
});
