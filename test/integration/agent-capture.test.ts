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
import { startInPod } from '../helpers/pod-process.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `cp${randomBytes(2).toString('hex')}`;
let lab: LabHandle;
let server: ChildProcess | undefined;

function ip(pod: string): string {
  const w = lab.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

async function curl(pod: string, args: string[], input?: string): Promise<{ client: string; bodySha: string }> {
  const r = await lab.exec(pod, ['curl', '-sS', '--max-time', '10', ...args], { timeoutMs: 15_000, ...(input !== undefined ? { input } : {}) });
  assert.equal(r.code, 0, `curl in ${pod} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { client: string; bodySha: string };
}

async function metrics(node: string): Promise<string[]> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n');
}

describe('transparent in-pod capture between two agents', { ...requiresRoot(), ...requiresTool('tcpdump', 'curl', 'iperf3') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    await labDown(name);
    // The full system: control plane (xDS + CA) and agents in remote mode.
    lab = await labUp({ manifests: `${fixtures}agent/capture.yaml`, name, mesh: true, controlPlane: true });
    server = await startInPod(lab, 'mesh/server', [process.execPath, `${fixtures}agent/whoami-server.mjs`, ip('server'), '8080']);
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
      const marker = `AMBIT-CANARY-${randomBytes(8).toString('hex')}`;
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

  test('an unmodified iperf3 run of 5 s passes through the mesh, and the agents count its bytes', async (t) => {
    assertPrivileged(t);
    const sum = (lines: string[], metric: string): number =>
      lines
        .filter((l) => l.startsWith(`${metric}{`) && l.includes('reporter="destination"') && l.includes('destination_workload="server"'))
        .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    const before = sum(await metrics('node-b'), 'istio_tcp_received_bytes_total');
    const srv = lab.spawn('mesh/server', ['iperf3', '-s', '-1', '-B', ip('server'), '-p', '5201'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 500));
      const r = await lab.exec('mesh/client', ['iperf3', '-c', ip('server'), '-p', '5201', '-t', '5', '-J'], { timeoutMs: 30_000 });
      assert.equal(r.code, 0, `iperf3 failed: ${r.stdout.slice(0, 500)} ${r.stderr}`);
      const report = JSON.parse(r.stdout) as { end: { sum_received: { bytes: number; bits_per_second: number } } };
      const got = report.end.sum_received.bytes;
      assert.ok(got > 1_000_000, `iperf3 moved ${got} bytes`);
      await new Promise((res) => setTimeout(res, 300));
      const after = sum(await metrics('node-b'), 'istio_tcp_received_bytes_total');
      assert.ok(after - before >= got, `the server-side agent counted ${after - before} bytes for an iperf3 run of ${got}`);
      t.diagnostic(`iperf3 through the mesh: ${(report.end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s`);
    } finally {
      srv.kill();
    }
  });

  test('a mesh pod reaches a pod outside the mesh by plain passthrough (spliced), bytes intact', async (t) => {
    assertPrivileged(t);
    const legacy = lab.spawn('outside/legacy', [process.execPath, `${fixtures}agent/whoami-server.mjs`, ip('legacy'), '9090'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      await new Promise<void>((resolve) => legacy.stdout?.once('data', () => resolve()));
      const body = randomBytes(3 << 20).toString('base64');
      const r = await curl('mesh/client', ['--data-binary', '@-', `http://${ip('legacy')}:9090/`], body);
      assert.equal(r.client, ip('client'));
      assert.equal(r.bodySha, createHash('sha256').update(body).digest('hex'));
      const a = await metrics('node-a');
      assert.ok(
        a.some((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="source"') && l.includes('destination_workload="legacy"') && l.includes('connection_security_policy="unknown"')),
        'passthrough is counted on the source side as not mTLS',
      );
      const log = await readFile(`${lab.stateDir}/agent-node-a.log`, 'utf8');
      const line = log.split('\n').find((l) => l.includes('"connection complete"') && l.includes(`"dst.addr":"${ip('legacy')}:9090"`));
      assert.ok(line, 'access log line for the passthrough');
      assert.match(line, /"relay":"splice"/, 'the passthrough leg used kernel splice');
    } finally {
      legacy.kill();
    }
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
