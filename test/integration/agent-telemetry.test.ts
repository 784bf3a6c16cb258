/**
 * Telemetry and the operator commands against real agents in the lab:
 * one long-lived pod→pod connection (client on node-a, server-b on
 * node-b) carries a known number of bytes in two phases; a scrape taken
 * while it is still open already shows the first phase's bytes, and after it
 * closes both agents report the exact totals under the full Istio label set.
 * The scrape is parsed by a parser written here. `ambit status` run in a
 * node's netns names the node's pods. Needs root: network namespaces.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const fixtures = `${root}test/fixtures/`;
const ambit = `${root}dist/src/cli/main.js`;
const name = `tm${randomBytes(2).toString('hex')}`;
const PHASE1 = 3 * 1024 * 1024 + 17;
const PHASE2 = 1024 * 1024 + 5;
let lab: LabHandle;
const children: ChildProcess[] = [];

/**
 * Runs in demo/client: SOCKS5 to host:port, sends PHASE1 bytes, prints
 * "phase1", waits for a line on stdin, sends PHASE2 bytes, half-closes,
 * reads the echo to its end and prints {head, recvLen}.
 */
const CLIENT = `
import { connect } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
const [host, port, n1, n2] = process.argv.slice(1);
const a = randomBytes(Number(n1)), b = randomBytes(Number(n2));
const s = connect(15080, '127.0.0.1');
let phase = 0, buf = Buffer.alloc(0);
const chunks = [];
s.on('data', (c) => {
  if (phase === 2) return void chunks.push(c);
  buf = Buffer.concat([buf, c]);
  if (phase === 0 && buf.length >= 2) {
    buf = buf.subarray(2); phase = 1;
    const p = Buffer.alloc(2); p.writeUInt16BE(Number(port));
    s.write(Buffer.concat([Buffer.from([5, 1, 0, 1, ...host.split('.').map(Number)]), p]));
  }
  if (phase === 1 && buf.length >= 10) {
    if (buf[1] !== 0) { console.log(JSON.stringify({ error: 'socks ' + buf[1] })); process.exit(1); }
    phase = 2;
    s.write(a, () => console.log('phase1'));
    process.stdin.once('data', () => s.end(b));
  }
});
s.on('end', () => {
  const all = Buffer.concat(chunks);
  const nl = all.indexOf(10);
  console.log(JSON.stringify({ head: all.subarray(0, nl).toString(), recvLen: all.length - nl - 1, sha: createHash('sha256').update(Buffer.concat([a, b])).digest('hex') }));
  process.exit(0);
});
s.on('error', (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });
s.write(Buffer.from([5, 1, 0]));
`;

// ---- a small Prometheus text parser, local to this test ----
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    const re = /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;
    let end = 0;
    for (let l = re.exec(body); l; l = re.exec(body)) {
      labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      end = re.lastIndex;
    }
    assert.equal(end, body.length, `labels of ${line}`);
    const value = Number(m[3]);
    assert.ok(!Number.isNaN(value), line);
    out.push({ name: m[1] as string, labels, value });
  }
  return out;
}

const CLIENT_ID = 'spiffe://cluster.local/ns/demo/sa/client';
const ECHO_ID = 'spiffe://cluster.local/ns/demo/sa/echo';
const FULL_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
].sort();

/** The value of the one series of `metric` between client and server-b as `reporter` sees it (0 when absent). */
function value(samples: Sample[], metric: string, reporter: 'source' | 'destination'): number {
  const s = samples.filter((x) => x.name === metric && x.labels.reporter === reporter && x.labels.source_workload === 'client' && x.labels.destination_workload === 'server-b');
  assert.ok(s.length <= 1, `${metric}/${reporter}: ${s.length} series`);
  return s[0]?.value ?? 0;
}

async function scrape(node: string, accept?: string): Promise<string> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', ...(accept ? ['-H', `Accept: ${accept}`] : []), 'http://127.0.0.1:15020/metrics']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

function ip(pod: string): string {
  const w = lab.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

function lines(child: ChildProcess): AsyncIterator<string> {
  let buf = '';
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  child.stdout?.on('data', (c: Buffer) => {
    buf += c.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      queue.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    wake?.();
  });
  child.once('exit', () => wake?.());
  return {
    async next() {
      const deadline = Date.now() + 30_000;
      while (queue.length === 0) {
        if (child.exitCode !== null || Date.now() > deadline) return { done: true, value: undefined };
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 500);
        });
      }
      return { done: false, value: queue.shift() as string };
    },
  };
}

describe('Istio telemetry and operator commands with real agents', requiresRoot(), () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    lab = await labUp({ manifests: `${fixtures}lab/two-nodes.yaml`, name, mesh: true });
    const server = await startInPod(lab, 'demo/server-b', [process.execPath, `${fixtures}agent/digest-echo-server.mjs`, ip('server-b'), '8080', 'server-b']);
    children.push(server);
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    if (process.getuid?.() === 0) await labDown(name);
  });

  test('a long-lived connection: bytes counted while open, exact totals and labels after close, on both agents', async (t) => {
    assertPrivileged(t);
    const beforeA = parseProm(await scrape('node-a'));
    const beforeB = parseProm(await scrape('node-b'));
    const base = (s: Sample[], m: string, r: 'source' | 'destination'): number => value(s, m, r);

    const client = lab.spawn('demo/client', [process.execPath, '--input-type=module', '-e', CLIENT, ip('server-b'), '8080', String(PHASE1), String(PHASE2)], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(client);
    let stderr = '';
    client.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const out = lines(client);
    const first = await out.next();
    assert.equal(first.value, 'phase1', `client: ${String(first.value)} ${stderr}`);

    // While the connection is open: the periodic flush (5 s) shows the first phase, byte-exact, before any close.
    let mid: Sample[] = [];
    const deadline = Date.now() + 20_000;
    for (;;) {
      mid = parseProm(await scrape('node-a'));
      if (value(mid, 'istio_tcp_sent_bytes_total', 'source') - base(beforeA, 'istio_tcp_sent_bytes_total', 'source') === PHASE1) break;
      assert.ok(Date.now() < deadline, `phase-1 bytes never showed while open: sent=${value(mid, 'istio_tcp_sent_bytes_total', 'source')}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.equal(value(mid, 'istio_tcp_connections_opened_total', 'source') - base(beforeA, 'istio_tcp_connections_opened_total', 'source'), 1);
    assert.equal(value(mid, 'istio_tcp_connections_closed_total', 'source') - base(beforeA, 'istio_tcp_connections_closed_total', 'source'), 0, 'still open');
    const midB = parseProm(await scrape('node-b'));
    assert.ok(value(midB, 'istio_tcp_received_bytes_total', 'destination') - base(beforeB, 'istio_tcp_received_bytes_total', 'destination') <= PHASE1);

    // The operator view during the transfer.
    const st = await lab.exec({ node: 'node-a' }, [process.execPath, ambit, 'status'], { timeoutMs: 15_000 });
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /^agent on node node-a: ready/m);
    assert.match(st.stdout, /^demo +client +\S+ +client +Up$/m);
    assert.match(st.stdout, /^demo +server-a +\S+ +echo +Up$/m);
    assert.doesNotMatch(st.stdout, /server-b +\S+ +echo +Up/, 'server-b is not on node-a');
    assert.match(st.stdout, /^spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client +Available/m);
    assert.match(st.stdout, /^source +demo\/client +demo\/server-b +1 +0 +1 +0 /m, 'one active connection to server-b');

    client.stdin?.write('go\n');
    const res = JSON.parse((await out.next()).value ?? '{}') as { head?: string; recvLen?: number; sha?: string; error?: string };
    assert.equal(res.error, undefined, JSON.stringify(res));
    const total = PHASE1 + PHASE2;
    assert.equal(res.head, `${res.sha} ${total} server-b`);
    assert.equal(res.recvLen, total);
    const replyBytes = Buffer.byteLength(`${res.head}\n`) + total;

    // After close: exact totals on both ends (the close settles; poll briefly for the close to be processed).
    const settle = async (node: string, reporter: 'source' | 'destination', beforeS: Sample[]): Promise<Sample[]> => {
      const until = Date.now() + 10_000;
      for (;;) {
        const s = parseProm(await scrape(node));
        if (value(s, 'istio_tcp_connections_closed_total', reporter) - base(beforeS, 'istio_tcp_connections_closed_total', reporter) === 1) return s;
        assert.ok(Date.now() < until, `${node}: the connection never closed in the metrics`);
        await new Promise((r) => setTimeout(r, 300));
      }
    };
    const a = await settle('node-a', 'source', beforeA);
    const b = await settle('node-b', 'destination', beforeB);
    const d = (s: Sample[], bs: Sample[], m: string, r: 'source' | 'destination'): number => value(s, m, r) - base(bs, m, r);
    assert.deepEqual(
      {
        opened: d(a, beforeA, 'istio_tcp_connections_opened_total', 'source'),
        sent: d(a, beforeA, 'istio_tcp_sent_bytes_total', 'source'),
        recv: d(a, beforeA, 'istio_tcp_received_bytes_total', 'source'),
        failed: d(a, beforeA, 'istio_tcp_connections_failed_total', 'source'),
      },
      { opened: 1, sent: total, recv: replyBytes, failed: 0 },
      'node-a, reporter=source',
    );
    assert.deepEqual(
      {
        opened: d(b, beforeB, 'istio_tcp_connections_opened_total', 'destination'),
        sent: d(b, beforeB, 'istio_tcp_sent_bytes_total', 'destination'),
        recv: d(b, beforeB, 'istio_tcp_received_bytes_total', 'destination'),
      },
      { opened: 1, sent: replyBytes, recv: total },
      'node-b, reporter=destination',
    );

    const series = a.find((s) => s.name === 'istio_tcp_sent_bytes_total' && s.labels.reporter === 'source' && s.labels.destination_workload === 'server-b');
    assert.ok(series);
    assert.deepEqual(Object.keys(series.labels).sort(), FULL_LABELS);
    assert.deepEqual(
      { ...series.labels },
      {
        reporter: 'source',
        source_workload: 'client',
        source_canonical_service: 'client',
        source_canonical_revision: 'latest',
        source_workload_namespace: 'demo',
        source_principal: CLIENT_ID,
        source_app: 'client',
        source_version: 'unknown',
        source_cluster: 'Kubernetes',
        destination_service: 'unknown',
        destination_service_namespace: 'unknown',
        destination_service_name: 'unknown',
        destination_workload: 'server-b',
        destination_canonical_service: 'echo',
        destination_canonical_revision: 'latest',
        destination_workload_namespace: 'demo',
        destination_principal: ECHO_ID,
        destination_app: 'echo',
        destination_version: 'unknown',
        destination_cluster: 'Kubernetes',
        request_protocol: 'tcp',
        response_flags: '-',
        connection_security_policy: 'mutual_tls',
      },
    );
    const inb = b.find((s) => s.name === 'istio_tcp_received_bytes_total' && s.labels.reporter === 'destination' && s.labels.source_workload === 'client');
    assert.equal(inb?.labels.source_principal, CLIENT_ID);
    assert.equal(inb?.labels.destination_principal, ECHO_ID);
    assert.equal(inb?.labels.connection_security_policy, 'mutual_tls');
  });

  test('OpenMetrics on request, Prometheus text otherwise', async (t) => {
    assertPrivileged(t);
    const om = await scrape('node-a', 'application/openmetrics-text; version=1.0.0');
    assert.ok(om.endsWith('# EOF\n'), om.slice(-200));
    assert.match(om, /^# TYPE istio_tcp_connections_opened counter$/m);
    const samples = parseProm(om.replace(/# EOF\n$/, ''));
    assert.ok(samples.some((s) => s.name === 'istio_tcp_connections_opened_total'));
    assert.match(await scrape('node-a'), /^# TYPE istio_tcp_connections_opened_total counter$/m);
  });

  test('ambit status, metrics and config-dump in each node netns', async (t) => {
    assertPrivileged(t);
    const b = await lab.exec({ node: 'node-b' }, [process.execPath, ambit, 'status'], { timeoutMs: 15_000 });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /^agent on node node-b: ready/m);
    assert.match(b.stdout, /^demo +server-b +\S+ +echo +Up$/m);
    assert.match(b.stdout, /^destination +demo\/client +demo\/server-b +1 +1 +0 +0 /m);
    const m = await lab.exec({ node: 'node-a' }, [process.execPath, ambit, 'metrics'], { timeoutMs: 15_000 });
    assert.equal(m.code, 0, m.stderr);
    assert.match(m.stdout, /^source +demo\/client +demo\/server-b +1 +1 +0 +0 /m);
    const dump = await lab.exec({ node: 'node-a' }, [process.execPath, ambit, 'config-dump', '--json'], { timeoutMs: 15_000 });
    assert.equal(dump.code, 0, dump.stderr);
    assert.equal((JSON.parse(dump.stdout) as { node: string }).node, 'node-a');
    // The admin port is localhost-only in the agent's netns: from a pod it is not reachable.
    const fromPod = await lab.exec('demo/client', [process.execPath, ambit, 'status', '--address', `${lab.cluster.nodes.find((n) => n.name === 'node-a')?.ip ?? ''}:15000`], { timeoutMs: 15_000 });
    assert.equal(fromPod.code, 1);
    assert.match(fromPod.stderr, /cannot reach the agent admin endpoint at .*; is the agent running on this node\?/);
  });
});
