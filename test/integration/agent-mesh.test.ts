/**
 * Two real agents (`ambit agent`, one per lab node, started by `lab up`)
 * tunnel TCP between pods over HBONE. Needs root: network namespaces.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const fixtures = `${root}test/fixtures/`;
const name = `ag${randomBytes(2).toString('hex')}`;
let lab: LabHandle;
const servers: ChildProcess[] = [];

interface Transfer {
  socksReply: number;
  sentSha: string;
  sentLen: number;
  recvSha: string;
  recvLen: number;
  head: string;
  error?: string;
}

async function transfer(host: string, port: number, bytes: number): Promise<Transfer> {
  const r = await lab.exec('demo/client', [process.execPath, `${fixtures}agent/socks-transfer.mjs`, '15080', host, String(port), String(bytes)], { timeoutMs: 40_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  assert.ok(line.startsWith('{'), `socks client printed no result (exit ${r.code}): ${r.stdout} ${r.stderr}`);
  return JSON.parse(line) as Transfer;
}

async function startServer(pod: string, ip: string, port: number): Promise<void> {
  const child = await startInPod(lab, `demo/${pod}`, [process.execPath, `${fixtures}agent/digest-echo-server.mjs`, ip, String(port), pod]);
  servers.push(child);
}

async function metrics(node: string): Promise<string> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

function ip(pod: string): string {
  const w = lab.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

describe('two agents tunnel TCP over HBONE between lab nodes', requiresRoot(), () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    await labDown(name);
    lab = await labUp({ manifests: `${fixtures}lab/two-nodes.yaml`, name, mesh: true });
    await startServer('server-a', ip('server-a'), 8080);
    await startServer('server-b', ip('server-b'), 8080);
  });

  after(async () => {
    for (const s of servers) s.kill();
    if (process.getuid?.() === 0) await labDown(name);
  });

  test('agents report ready on 15021', async (t) => {
    assertPrivileged(t);
    for (const node of ['node-a', 'node-b']) {
      const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15021/healthz/ready']);
      assert.equal(r.stdout, 'ready\n', `${node}: ${r.stdout}${r.stderr}`);
    }
  });

  test('4 MiB from a pod on node-a to a pod on node-b arrive intact, and come back intact after a half-close', async (t) => {
    assertPrivileged(t);
    const r = await transfer(ip('server-b'), 8080, 4 << 20);
    assert.equal(r.socksReply, 0, JSON.stringify(r));
    assert.equal(r.head, `${r.sentSha} ${r.sentLen} server-b`, 'server digest of what the client sent');
    assert.equal(r.recvSha, r.sentSha, 'echo after half-close');
    assert.equal(r.recvLen, 4 << 20);
  });

  test('the hop between the nodes is HBONE with both SPIFFE identities, in logs and Istio metrics', async (t) => {
    assertPrivileged(t);
    const before = await metrics('node-b');
    const r = await transfer(ip('server-b'), 8080, 1000);
    assert.equal(r.head, `${r.sentSha} 1000 server-b`);
    const m = await metrics('node-b');
    const line = m.split('\n').find((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="destination"') && l.includes('source_principal="spiffe://cluster.local/ns/demo/sa/client"'));
    assert.ok(line, `no destination-side opened counter for the client identity:\n${m}`);
    assert.match(line, /connection_security_policy="mutual_tls"/);
    assert.match(line, /destination_principal="spiffe:\/\/cluster.local\/ns\/demo\/sa\/echo"/);
    assert.notEqual(before, m);
    const logA = await readFile(`${lab.stateDir}/agent-node-a.log`, 'utf8');
    const out = logA.split('\n').filter((l) => l.includes('"direction":"outbound"') && l.includes('connection complete')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const last = out.find((l) => l['dst.hbone_addr'] === `${ip('server-b')}:8080`);
    assert.ok(last, 'outbound access log line');
    assert.equal(last['dst.addr'], `${ip('server-b')}:15008`);
    assert.equal(last['src.identity'], 'spiffe://cluster.local/ns/demo/sa/client');
    assert.equal(last['dst.identity'], 'spiffe://cluster.local/ns/demo/sa/echo');
    // The same traceparent is logged on both ends, so one connection can be followed across nodes.
    assert.match(String(last.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
    const logB = await readFile(`${lab.stateDir}/agent-node-b.log`, 'utf8');
    assert.ok(logB.includes(`"traceparent":"${String(last.traceparent)}"`), 'the destination agent logged the same traceparent');
  });

  test('a service name resolves to an endpoint and the service port maps to targetPort', async (t) => {
    assertPrivileged(t);
    const seen = new Set<string>();
    for (let i = 0; i < 12 && seen.size < 2; i++) {
      const r = await transfer('echo.demo.svc.cluster.local', 80, 2000);
      assert.equal(r.socksReply, 0, JSON.stringify(r));
      assert.equal(r.recvSha, r.sentSha);
      seen.add(r.head.split(' ')[2] ?? '');
    }
    assert.ok(seen.size >= 1 && [...seen].every((s) => s === 'server-a' || s === 'server-b'), [...seen].join(','));
  });

  test('a closed destination port is refused cleanly, logged and counted, and the agent keeps serving', async (t) => {
    assertPrivileged(t);
    const r = await transfer(ip('server-b'), 9999, 10);
    assert.equal(r.socksReply, 5, `expected SOCKS "connection refused", got ${JSON.stringify(r)}`);
    const m = await metrics('node-a');
    assert.match(m, /istio_tcp_connections_failed_total\{[^}]*response_flags="CONNECT"[^}]*\} [1-9]/);
    const logA = await readFile(`${lab.stateDir}/agent-node-a.log`, 'utf8');
    assert.match(logA, /"msg":"connection failed"/);
    assert.match(logA, /answered 503/);
    const ok = await transfer(ip('server-b'), 8080, 5000);
    assert.equal(ok.recvSha, ok.sentSha);
  });
});
