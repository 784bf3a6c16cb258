/**
 * Regression: two Node HTTP/2 peers pushing bulk data both ways at once used
 * to deadlock. Node's session stops reading its socket while a socket write is
 * pending, so when both sides' TCP send buffers were full neither read again
 * (and PINGs went unanswered until the 20 s timeout dropped the connection).
 * Small TCP buffers in the two pod namespaces make the condition certain
 * instead of occasional. Needs root: network namespaces and per-netns sysctls.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Server, Socket } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../src/common/logger.js';
import { HbonePool } from '../../src/hbone/pool.js';
import { HboneServer } from '../../src/hbone/server.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import { connectFromNetns, listenInNetns } from '../../src/native/sockets.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';
import { payload, readAll, sha256 } from '../helpers/tcp.js';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/bench/two-pods.yaml', import.meta.url));
const BYTES = 8 << 20;

test('bulk data both ways at once over small TCP buffers completes intact (no HTTP/2 write/read deadlock)', { ...requiresRoot(), timeout: 60_000 }, async (t) => {
  assertPrivileged(t);
  const name = `dl${randomBytes(2).toString('hex')}`;
  const closers: Array<() => void> = [];
  t.after(async () => {
    for (const c of closers.reverse()) c();
    await labDown(name);
  });
  const lab = await labUp({ manifests: FIXTURE, name, mesh: false });
  for (const pod of ['client', 'server']) {
    execFileSync('ip', ['netns', 'exec', lab.podNetns('bench', pod), 'sysctl', '-q', '-w', 'net.ipv4.tcp_wmem=4096 16384 16384', 'net.ipv4.tcp_rmem=4096 16384 16384']);
  }
  const client = lab.cluster.workloads.find((w) => w.name === 'client');
  const server = lab.cluster.workloads.find((w) => w.name === 'server');
  assert.ok(client?.netns && server?.netns);
  const ca = await ephemeralCa();
  const serverId = await issueIdentity(ca, 'cluster.local', 'bench', server.serviceAccount);
  const clientId = await issueIdentity(ca, 'cluster.local', 'bench', client.serviceAccount);

  const down = payload(BYTES);
  const up = payload(BYTES);
  let targetGot: Promise<string> | undefined;
  const target: Server = await listenInNetns(undefined, { netns: server.netns, address: server.ip, port: 7001, server: { allowHalfOpen: true } });
  closers.push(() => target.close());
  target.on('connection', (s: Socket) => {
    s.on('error', () => undefined);
    closers.push(() => s.destroy());
    targetGot = readAll(s).then(sha256);
    s.end(down); // sends while the client is still sending
  });
  const hbone = new HboneServer({
    identityFor: () => serverId,
    resolveTarget: (r) => ({ kind: 'allow', host: r.authority.host, port: r.authority.port }),
    dial: (d) => connectFromNetns(undefined, { netns: server.netns as string, host: d.host, port: d.port, allowHalfOpen: true }),
    logger: silentLogger(),
  });
  closers.push(() => hbone.destroy());
  const listener = await listenInNetns(undefined, { netns: server.netns, address: '0.0.0.0', port: 15008 });
  closers.push(() => listener.close());
  hbone.serve(listener);
  const pool = new HbonePool({
    identityFor: () => Promise.resolve(clientId),
    dial: (d) => connectFromNetns(undefined, { netns: client.netns as string, host: d.host, port: d.port }),
    logger: silentLogger(),
  });
  closers.push(() => pool.destroy());

  for (let round = 0; round < 3; round++) {
    const stream = await pool.openTunnel({ srcIdentity: clientId.identity, dstIdentities: [serverId.identity], dstHost: server.ip, dstPort: 15008 }, `${server.ip}:7001`);
    const back = readAll(stream);
    stream.end(up);
    const deadline = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`round ${round}: no completion in 15 s (deadlock)`)), 15_000).unref());
    assert.equal(sha256(await Promise.race([back, deadline])), sha256(down), `round ${round}: download intact`);
    assert.ok(targetGot);
    assert.equal(await Promise.race([targetGot, deadline]), sha256(up), `round ${round}: upload intact`);
  }
});
