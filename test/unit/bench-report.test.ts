/**
 * The merged benchmark report (bench/lib/report-model.ts, bench/report.ts):
 * fixture *-latest.json files (test/fixtures/bench/report/) with round
 * numbers -> the expected table rows, ratios to direct and to the best peer,
 * the published reference rows, the Markdown, and the README markers. Plus
 * the small pure helpers the benchmarks use: the h2load parse, the stunnel
 * configuration and the flame graph's call tree.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readInputs, readmeSection, replaceBetweenMarkers, README_BEGIN, README_END } from '../../bench/report.js';
import { buildReport, formatCell, ratio, reportMarkdown, type MergedReport, type Table } from '../../bench/lib/report-model.js';
import { parseH2load, h2loadArgv } from '../../bench/lib/h2load.js';
import { stunnelConfig } from '../../bench/lib/stunnel.js';
import { buildTree, flameHtml, topSelf, withoutIdle, type CpuProfile } from '../../bench/lib/flamegraph.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/bench/report/', import.meta.url));
const MESH = 'Ambit L4 mesh (agent → HBONE → agent)';
const STUNNEL = 'peer: stunnel4 (mTLS per connection)';
const DIRECT = 'direct (no proxy)';

function report(): MergedReport {
  return buildReport(readInputs(FIXTURES), new Date('2026-01-02T00:00:00Z'));
}

function table(r: MergedReport, id: string): Table {
  const t = r.tables.find((x) => x.id === id);
  assert.ok(t, `table ${id} exists`);
  return t;
}

function row(t: Table, first: string, second?: unknown): readonly unknown[] {
  const r = t.rows.find((x) => x.cells[0] === first && (second === undefined || x.cells[1] === second));
  assert.ok(r, `row ${first} ${String(second ?? '')} in ${t.id}`);
  return r.cells;
}

test('ratio: 3 significant digits, null when a side is missing or the base is 0', () => {
  assert.equal(ratio(2, 10), 0.2);
  assert.equal(ratio(1, 3), 0.333);
  assert.equal(ratio(0.848, 171), 0.00496);
  assert.equal(ratio(null, 1), null);
  assert.equal(ratio(1, 0), null);
  assert.equal(formatCell(0.00496), '0.00496');
  assert.equal(formatCell(15740.4), '15740');
  assert.equal(formatCell(null), '–');
});

test('throughput: Gbit/s per stream count, × direct and × best peer (stunnel4)', () => {
  const t = table(report(), 'throughput');
  assert.deepEqual(t.headers, ['path', '1 stream', '8 streams', '× direct (1)', '× direct (8)', '× best peer (1)', '× best peer (8)']);
  assert.deepEqual(row(t, MESH), [MESH, 2, 5, 0.2, 0.25, 0.5, 2]);
  assert.deepEqual(row(t, STUNNEL), [STUNNEL, 4, 2.5, 0.4, 0.125, 1, 1]);
  assert.deepEqual(row(t, DIRECT), [DIRECT, 10, 20, 1, 1, 2.5, 8]);
});

test('latency: keep-alive rows only, added p90 against direct at the same rate, ztunnel as a published row', () => {
  const t = table(report(), 'latency');
  assert.deepEqual(row(t, MESH, 1000), [MESH, 1000, 999, 0.5, 0.9, 2, 0.5, 2.25, 1.5]);
  assert.equal(t.rows.filter((r) => r.kind === 'measured').length, 3, 'the new-connection direct row is not a keep-alive row');
  const ref = t.rows.find((r) => r.kind === 'reference');
  assert.ok(ref);
  assert.match(String(ref.cells[0]), /ztunnel.*published, not measured here/);
  assert.equal(ref.cells[6], 0.17);
});

test('saturation: the L4 suite against stunnel4 and the L7 suite against nginx', () => {
  const t = table(report(), 'saturation');
  assert.deepEqual(row(t, MESH), [MESH, 'HTTP/1.1 (L4 suite)', 5000, 0.25, 0.625]);
  assert.deepEqual(row(t, 'Ambit waypoint (L7)'), ['Ambit waypoint (L7)', 'http1 (L7 suite)', 1000, 0.1, 0.25]);
});

test('new connections and idle memory: higher rate and lower memory are better', () => {
  const r = report();
  const c = table(r, 'connections');
  assert.deepEqual(row(c, MESH), [MESH, 600, 5, 20, 'node-a 0.500, node-b 0.600', 0.2, 1.5]);
  const m = table(r, 'idle');
  assert.deepEqual(row(m, MESH), [MESH, 1000, 16, 'node-a 10.00, node-b 6.00', 0.1]);
  assert.deepEqual(row(m, STUNNEL), [STUNNEL, 1000, 160, 'stunnel-client 70.00, stunnel-server 90.00', 1]);
});

test('idle memory: a path whose process shrank during the measurement (garbage collection) gets no total and no headline', () => {
  const inputs = readInputs(FIXTURES);
  const inpod = structuredClone(inputs.inpod) as { idle: Array<{ path: string; rssMiBPer1kConnections: Record<string, number> }> };
  const mesh = inpod.idle.find((s) => s.path === 'mesh');
  assert.ok(mesh, 'the fixture has a mesh idle sample');
  mesh.rssMiBPer1kConnections = { 'node-a': 3.57, 'node-b': -3.27 };
  const r = buildReport({ ...inputs, inpod }, new Date('2026-01-02T00:00:00Z'));
  const cells = row(table(r, 'idle'), MESH);
  assert.equal(cells[2], null, 'no total');
  assert.equal(cells[4], null, 'no ratio');
  assert.equal(r.headline.find((h) => h.what.startsWith('L4 mesh idle memory'))?.value, null);
});

test('CPU per 1,000 requests: summed over the proxies, against the best peer and two ztunnels; anchors as reference rows', () => {
  const t = table(report(), 'cpu');
  assert.deepEqual(row(t, MESH, 'L4 keep-alive @1000/s'), [MESH, 'L4 keep-alive @1000/s', 0.18, 'node-a 0.100, node-b 0.080', 1.8, 1.5]);
  assert.deepEqual(row(t, MESH, 'L4 saturation').slice(2), [0.12, 'node-a 0.060, node-b 0.060', 1.5, 1]);
  assert.deepEqual(row(t, 'Ambit L4 mesh (agent benchmark)').slice(2), [0.36, 'node-a 0.200, node-b 0.160', null, 3]);
  assert.deepEqual(row(t, 'Ambit waypoint (L7)').slice(2, 5), [0.8, 'agent node-a 0.200, agent node-b 0.200, waypoint 0.400', 8]);
  const refs = t.rows.filter((r) => r.kind === 'reference');
  assert.equal(refs.length, 2);
  assert.deepEqual(refs.map((r) => r.cells[2]), [0.06, 0.25]);
  assert.ok(refs.every((r) => String(r.cells[0]).includes('published, not measured here')));
  assert.match(String(refs[1]?.cells[3]), /60 MB/);
});

test('HBONE micro-benchmark and control plane tables', () => {
  const r = report();
  const h = table(r, 'hbone');
  assert.deepEqual(row(h, 'Ambit HBONE endpoint'), ['Ambit HBONE endpoint', 3, 0.375, 1.5]);
  assert.deepEqual(row(h, 'iperf3 direct (C, reference)'), ['iperf3 direct (C, reference)', 12, 1.5, 6]);
  const cp = table(r, 'control-plane');
  assert.deepEqual(row(cp, 'change propagation p99 (ms)'), ['change propagation p99 (ms)', 1700]);
  assert.deepEqual(row(cp, 'control plane RSS peak (MB)'), ['control plane RSS peak (MB)', 500]);
});

test('headline, machine line and Markdown: reference rows in italics, tables in order', () => {
  const r = report();
  assert.equal(r.headline.find((h) => h.what.startsWith('L4 mesh throughput, 1 stream'))?.value, 0.2);
  assert.equal(r.headline.find((h) => h.what.startsWith('L4 mesh added p90'))?.value, 0.5);
  assert.match(r.machine ?? '', /^2 vCPU \(Test CPU\), 4\.0 GiB RAM, Linux 6\.1\.0 x64, Node v20\.0\.0/);
  const md = reportMarkdown(r);
  assert.match(md, /\| \*ztunnel, two hops \(published, not measured here\)\* \|/);
  assert.match(md, /\| \*Istio waypoint \(published, not measured here\)\* \| HTTP \| 0\.25 \|/);
  assert.match(md, /\| L4 mesh throughput, 8 streams, × best peer \| 2× \|/);
  assert.match(md, /\| L4 mesh added p90 at 1,000 rps vs direct \(ztunnel published: \+0\.17 ms\) \| \+0\.5 ms \|/);
  assert.match(md, new RegExp(`\\| ${MESH.replace(/[()]/g, '\\$&')} \\| 2 \\| 5 \\| 0\\.2 \\| 0\\.25 \\| 0\\.5 \\| 2 \\|`));
  const order = ['Throughput', 'Latency', 'Saturation', 'New connections', 'Memory per 1,000', 'CPU seconds', 'L7:', 'HBONE endpoint', 'Control plane'].map((x) => md.indexOf(`### ${x}`));
  assert.ok(order.every((i, k) => i > 0 && (k === 0 || i > (order[k - 1] as number))), `sections in order: ${order.join(',')}`);
});

test('missing result files leave their tables out instead of failing', () => {
  const warnings: string[] = [];
  const r = buildReport(readInputs('/nonexistent-ambit-bench-dir', (m) => warnings.push(m)), new Date());
  assert.equal(warnings.length, 5);
  assert.deepEqual(r.tables.map((t) => t.id), []);
  assert.ok(r.headline.every((h) => h.value === null));
  assert.equal(r.machine, null);
});

test('README: the section replaces only the text between the markers', () => {
  const section = readmeSection(report());
  assert.match(section, /^\n## Performance\n/);
  const before = `# Title\n\nintro\n${README_BEGIN}\nold table\n${README_END}\n\nafter\n`;
  const next = replaceBetweenMarkers(before, section);
  assert.ok(next);
  assert.ok(next.startsWith(`# Title\n\nintro\n${README_BEGIN}\n## Performance`));
  assert.ok(next.endsWith(`${README_END}\n\nafter\n`));
  assert.ok(!next.includes('old table'));
  assert.equal(replaceBetweenMarkers('# no markers\n', section), null);
  assert.equal(replaceBetweenMarkers(`${README_END}\n${README_BEGIN}`, section), null);
});

test('h2load: argv and summary parse', () => {
  assert.deepEqual(h2loadArgv({ url: 'http://10.0.0.1:8080/', clients: 16, seconds: 5, warmupSeconds: 1 }), ['h2load', '--h1', '-c', '16', '-m', '1', '-D', '5', '--warm-up-time=1', 'http://10.0.0.1:8080/']);
  const out = [
    'finished in 5.00s, 12345.60 req/s, 13.50MB/s',
    'requests: 61728 total, 61744 started, 61728 done, 61700 succeeded, 28 failed, 3 errored, 0 timeout',
    '                     min         max         mean         sd        +/- sd',
    'time for request:      210us     12.04ms      1.29ms       403us    88.12%',
  ].join('\n');
  assert.deepEqual(parseH2load(out), { rps: 12345.6, done: 61728, succeeded: 61700, failed: 28, errored: 3, meanMs: 1.29, maxMs: 12.04 });
  assert.throws(() => parseH2load('connect failed'), /unparsable h2load output/);
});

test('stunnel: both ends require and verify the peer chain, TLS 1.3 only; the client listens on loopback', () => {
  const files = { key: '/k.pem', cert: '/c.pem', roots: '/r.pem' };
  const svc = [{ name: 'http', localPort: 18080, tlsPort: 16080, targetHost: '10.0.0.2', targetPort: 8080 }];
  const client = stunnelConfig('client', files, '10.0.0.2', svc);
  const server = stunnelConfig('server', files, '10.0.0.2', svc);
  for (const c of [client, server]) {
    assert.match(c, /^verifyChain = yes$/m);
    assert.match(c, /^requireCert = yes$/m);
    assert.match(c, /^sslVersionMin = TLSv1\.3$/m);
    assert.match(c, /^CAfile = \/r\.pem$/m);
  }
  assert.match(client, /\[http\]\nclient = yes\naccept = 127\.0\.0\.1:18080\nconnect = 10\.0\.0\.2:16080/);
  assert.match(server, /\[http\]\naccept = 10\.0\.0\.2:16080\nconnect = 10\.0\.0\.2:8080/);
});

test('flame graph: self and total samples from the samples array, top self time, self-contained HTML', () => {
  const profile: CpuProfile = {
    startTime: 0,
    endTime: 2_000_000,
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [2, 3, 5] },
      { id: 2, callFrame: { functionName: 'relay', url: 'file:///repo/dist/src/agent/relay.js', lineNumber: 9 }, children: [4] },
      { id: 3, callFrame: { functionName: '(garbage collector)', url: '', lineNumber: -1 } },
      { id: 4, callFrame: { functionName: 'encrypt', url: 'node:internal/tls', lineNumber: 0 } },
      { id: 5, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
    ],
    samples: [2, 4, 4, 4, 3, 2, 5, 5],
  };
  const root = buildTree(profile);
  assert.equal(root.total, 8);
  const relay = root.children.find((c) => c.name.startsWith('relay'));
  assert.equal(relay?.name, 'relay dist/src/agent/relay.js:10');
  assert.equal(relay?.self, 2);
  assert.equal(relay?.total, 5);
  assert.equal(withoutIdle(root).idle, 2);
  assert.deepEqual(topSelf(withoutIdle(root).root, 2), [{ name: 'encrypt node:internal/tls:1', self: 3 }, { name: 'relay dist/src/agent/relay.js:10', self: 2 }]);
  const html = flameHtml('agent <node-a>', profile);
  assert.match(html, /<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(html, /agent &lt;node-a&gt;/);
  assert.match(html, /6 busy samples over 2\.0 s \(2 idle samples/);
  assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/);
});
