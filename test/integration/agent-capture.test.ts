/**
 * Transparent in-pod capture with real agents: unmodified programs in an
 * ambient pod are tunnelled over HBONE without knowing it. Needs root
 * (network namespaces, nftables) and tcpdump.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `cp${randomBytes(2).toString('hex')}`;
let lab: LabHandle;
let server: ChildProcess | undefined;

function ip(pod: string): string {
  const w = lab.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

async function curl(pod: string, args: string[]): Promise<{ client: string; bodySha: string }> {
  const r = await lab.exec(pod, ['curl', '-sS', '--max-time', '10', ...args], { timeoutMs: 15_000 });
  assert.equal(r.code, 0, `curl in ${pod} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { client: string; bodySha: string };
}

async function metrics(node: string): Promise<string[]> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n');
}

describe('transparent in-pod capture between two agents', { ...requiresRoot(), ...requiresTool('tcpdump', 'curl') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    await labDown(name);
    lab = await labUp({ manifests: `${fixtures}agent/capture.yaml`, name, mesh: true });
    server = lab.spawn('mesh/server', [process.execPath, `${fixtures}agent/whoami-server.mjs`, ip('server'), '8080'], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('server did not start')), 10_000);
      server?.stdout?.once('data', () => {
        clearTimeout(t);
        resolve();
      });
    });
  });

  after(async () => {
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
  });

  test('unmodified curl reaches the server by pod IP, cluster IP and service name, and the server sees the client pod IP', async (t) => {
    assertPrivileged(t);
    for (const url of [`http://${ip('server')}:8080/`, 'http://10.96.0.30/', 'http://server/', 'http://server.mesh.svc.cluster.local/']) {
      const r = await curl('mesh/client', [url]);
      assert.equal(r.client, ip('client'), `${url}: the server should see the client pod's own address`);
    }
  });

  test('node-b sees only HBONE on 15008 between the pods, and the payload never in clear', async (t) => {
    assertPrivileged(t);
    const dir = await mkdtemp(join(tmpdir(), 'ambit-pcap-'));
    const pcap = join(dir, 'node-b.pcap');
    try {
      // Every interface of node-b's netns: its uplink to the bridge and its veth to the server pod.
      const dump = spawn('ip', ['netns', 'exec', lab.nodeNetns('node-b'), 'tcpdump', '--immediate-mode', '-i', 'any', '-nn', '-U', '-w', pcap, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('tcpdump did not start')), 10_000);
        dump.stderr.on('data', (d: Buffer) => {
          if (d.toString().includes('listening on')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const marker = `AMBIT-MARKER-${randomBytes(8).toString('hex')}`;
      const body = marker.repeat(2000);
      const r = await curl('mesh/client', ['--data-binary', body, `http://${ip('server')}:8080/`]);
      assert.equal(r.bodySha, createHash('sha256').update(body).digest('hex'), 'the request body arrived intact');
      await new Promise((res) => setTimeout(res, 300));
      dump.kill('SIGINT');
      await new Promise((res) => dump.once('exit', res));
      const raw = await readFile(pcap);
      assert.ok(raw.length > 10_000, `the capture saw the transfer (${raw.length} bytes)`);
      assert.equal(raw.includes(Buffer.from(marker)), false, 'the marker must never cross the node link in clear');
      const text = await lab.exec({ node: 'node-b' }, ['tcpdump', '-nn', '-r', pcap]);
      const between = text.stdout.split('\n').filter((l) => l.includes(ip('client')) && l.includes(ip('server')));
      assert.ok(between.length > 0, 'packets between the pods were captured');
      for (const l of between) assert.match(l, /\.15008[ :]/, `a packet between the pods not on 15008: ${l}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the agents count it as mutual TLS with both identities', async (t) => {
    assertPrivileged(t);
    const b = await metrics('node-b');
    const line = b.find((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="destination"') && l.includes('source_principal="spiffe://cluster.local/ns/mesh/sa/client"'));
    assert.ok(line, 'destination-side counter for the client identity');
    assert.match(line, /connection_security_policy="mutual_tls"/);
    assert.match(line, /destination_principal="spiffe:\/\/cluster.local\/ns\/mesh\/sa\/server"/);
    const a = await metrics('node-a');
    assert.ok(a.some((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="source"') && l.includes('destination_workload="server"')));
  });

  test('a pod outside the mesh still reaches the server, in plaintext through 15006, with its own address kept', async (t) => {
    assertPrivileged(t);
    const r = await curl('outside/legacy', [`http://${ip('server')}:8080/`]);
    assert.equal(r.client, ip('legacy'));
    const b = await metrics('node-b');
    assert.ok(
      b.some((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="destination"') && l.includes('connection_security_policy="unknown"') && l.includes('destination_workload="server"')),
      'plaintext inbound is counted as not mTLS',
    );
  });
});
