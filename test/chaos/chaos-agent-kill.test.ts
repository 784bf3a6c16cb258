/**
 * Chaos: an agent is SIGKILLed in the middle of checksummed transfers.
 * - Every in-flight transfer fails with an error on BOTH apps: the client
 *   (which reads a download or sends an upload) and the server. A clean EOF
 *   with missing bytes (silent truncation) fails the test. The agent's relayed
 *   app sockets carry SO_LINGER {on, 0}, so the kernel resets them when the
 *   agent dies (src/native/linger.ts), and the surviving agent resets its app
 *   when the tunnel dies.
 * - A transfer that completed before the kill is intact (sha256).
 * - While the agent is down, the pod's rules stay in place: new connections
 *   fail, and a payload marker never crosses the node link in clear (tcpdump).
 * - The agent is relaunched (labRestartAgent) and new transfers are intact.
 * Node-a hosts the client pod, node-b the server pod. Needs root and tcpdump.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labRestartAgent, labStatus, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { Tally } from '../security/lib/tally.js';
import { startInPod } from '../helpers/pod-process.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const streamScript = fileURLToPath(new URL('../../../test/chaos/stream.mjs', import.meta.url));
const name = `relk${randomBytes(3).toString('hex')}`;
const TOTAL = 25 * 1024 * 1024;
/** 64 KiB per 8 ms: a 25 MiB transfer takes at least 3.2 s, so a kill 1 s in lands mid-way. */
const PACE_MS = 8;
const PORT = 9000;
const DOWNLOADS = 4;
const UPLOADS = 2;
const tally = new Tally('chaos');
let lab: LabHandle | undefined;
let server: ChildProcess | undefined;
let dir = '';
let xferScript = '';
const serverLog = new Map<string, ServerOutcome>();
const serverStarted = new Set<string>();

// Both ends of a checksummed transfer, run inside the lab pods.
//   serve <ip> <port>: per connection reads "<down|up> <bytes> <paceMs> <id>\n";
//     down: sends the pattern (paced), then ends; up: checks the pattern, answers "ok\n" and ends.
//     Prints one JSON line per connection on its first terminal event (end, error or close).
//   get|put <ip> <port> <bytes> <id>: the client side; prints {id, outcome: 'eof'|'error', bytes, intact, code}.
const XFER = `
import { createHash } from 'node:crypto';
import { connect, createServer } from 'node:net';
const [mode, host, portText, bytesText, id] = process.argv.slice(2);
const port = Number(portText);
const CHUNK = 65536;
const chunk = (i) => {
  const seed = createHash('sha256').update('ambit-chaos-' + i).digest();
  const b = Buffer.allocUnsafe(CHUNK);
  for (let o = 0; o < CHUNK; o += seed.length) seed.copy(b, o);
  // The wire-audit marker every 4 KiB: mesh traffic that must never cross the bridge in clear.
  for (let o = 0; o < CHUNK; o += 4096) b.write('AMBIT-CANARY', o, 'latin1');
  return b;
};
const digest = (total) => {
  const h = createHash('sha256');
  for (let i = 0, sent = 0; sent < total; i++, sent += CHUNK) h.update(chunk(i).subarray(0, Math.min(CHUNK, total - sent)));
  return h.digest('hex');
};
const pump = (s, total, pace, done) => {
  let i = 0, sent = 0;
  const next = () => {
    if (s.destroyed) return;
    if (sent >= total) return done();
    const c = chunk(i++).subarray(0, Math.min(CHUNK, total - sent));
    sent += c.length;
    if (s.write(c)) setTimeout(next, pace);
    else s.once('drain', () => setTimeout(next, pace));
  };
  next();
  return () => sent;
};
if (mode === 'serve') {
  const srv = createServer({ allowHalfOpen: true }, (s) => {
    let head = '', req, received = 0, sentOf = () => 0, logged = false;
    const h = createHash('sha256');
    const log = (first, code) => {
      if (logged || !req) return;
      logged = true;
      const intact = req.mode === 'up' ? received === req.n && h.digest('hex') === digest(req.n) : undefined;
      console.log(JSON.stringify({ id: req.id, mode: req.mode, first, code, sent: sentOf(), received, intact }));
    };
    s.on('error', (e) => log('error', e.code ?? e.message));
    s.on('close', () => log('error', 'closed'));
    s.on('end', () => {
      if (req?.mode === 'up' && received === req.n) s.end('ok\\n');
      log('eof');
    });
    s.on('data', (d) => {
      if (req) {
        received += d.length;
        h.update(d);
        return;
      }
      head += d.toString('latin1');
      const nl = head.indexOf('\\n');
      if (nl < 0) return;
      const [m, n, pace, rid] = head.slice(0, nl).split(' ');
      req = { mode: m, n: Number(n), id: rid };
      console.log(JSON.stringify({ id: rid, start: true }));
      const rest = Buffer.from(head.slice(nl + 1), 'latin1');
      if (rest.length > 0) { received += rest.length; h.update(rest); }
      if (m === 'down') sentOf = pump(s, req.n, Number(pace), () => s.end());
    });
  });
  srv.listen(port, host, () => console.log('listening'));
} else {
  const total = Number(bytesText);
  const pace = Number(process.env.PACE_MS ?? '8');
  const h = createHash('sha256');
  let bytes = 0, done = false, reply = '';
  const finish = (outcome, code) => {
    if (done) return;
    done = true;
    const intact = mode === 'get' ? bytes === total && h.digest('hex') === digest(total) : reply === 'ok\\n';
    console.log(JSON.stringify({ id, outcome, bytes, intact, code }));
    process.exit(0);
  };
  const s = connect({ host, port }, () => {
    s.write((mode === 'get' ? 'down' : 'up') + ' ' + total + ' ' + pace + ' ' + id + '\\n');
    if (mode === 'put') pump(s, total, pace, () => s.end());
  });
  s.on('data', (d) => {
    if (mode === 'put') { reply += d.toString(); return; }
    bytes += d.length;
    h.update(d);
  });
  s.on('end', () => finish('eof'));
  s.on('error', (e) => finish('error', e.code ?? e.message));
  s.on('close', () => finish('error', 'closed'));
  setTimeout(() => finish('error', 'timeout'), 90000).unref();
}
`;

interface ServerOutcome {
  id: string;
  mode: 'down' | 'up';
  first: 'eof' | 'error';
  code?: string;
  sent: number;
  received: number;
  intact?: boolean;
}

interface ClientOutcome {
  id: string;
  outcome: 'eof' | 'error';
  bytes: number;
  intact: boolean;
  code?: string;
}

function ip(pod: string): string {
  const w = lab?.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

async function transfer(kind: 'get' | 'put', total: number, id = randomBytes(4).toString('hex')): Promise<ClientOutcome> {
  const r = await lab!.exec('mesh/client', ['env', `PACE_MS=${PACE_MS}`, process.execPath, xferScript, kind, ip('server'), String(PORT), String(total), id], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, `${kind} failed to run: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as ClientOutcome;
}

/** What the server app saw on connection `id` (it logs when the connection ends). */
async function serverSaw(id: string): Promise<ServerOutcome | undefined> {
  for (let i = 0; i < 100 && !serverLog.has(id); i++) await new Promise((r) => setTimeout(r, 100));
  return serverLog.get(id);
}

async function startCapture(node: string, file: string): Promise<ChildProcess> {
  const dump = spawn('ip', ['netns', 'exec', lab!.nodeNetns(node), 'tcpdump', '--immediate-mode', '-i', 'any', '-nn', '-U', '-w', file, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tcpdump did not start')), 10_000);
    dump.stderr?.on('data', (d: Buffer) => {
      if (d.toString().includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return dump;
}

describe('agent SIGKILL mid-transfer', { ...requiresRoot(), ...requiresTool('tcpdump') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = await mkdtemp(join(tmpdir(), 'ambit-chaos-'));
    xferScript = join(dir, 'xfer.mjs');
    await writeFile(xferScript, XFER);
    lab = await labUp({ manifests: `${fixtures}agent/capture.yaml`, name, mesh: true });
    server = await startInPod(lab, 'mesh/server', [process.execPath, xferScript, 'serve', ip('server'), String(PORT)]);
    let buf = '';
    server.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line.startsWith('{')) continue;
        const o = JSON.parse(line) as ServerOutcome | { id: string; start: true };
        if ('start' in o) serverStarted.add(o.id);
        else serverLog.set(o.id, o);
      }
    });
  });

  after(async () => {
    tally.print();
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const node of ['node-a', 'node-b'] as const) {
    const side = node === 'node-a' ? 'client-side' : 'server-side';
    test(`killing the ${side} agent (${node}): both apps of every in-flight transfer see an error, no plaintext leaks while it is down, the relaunched agent serves`, async (t) => {
      assertPrivileged(t);
      const l = lab!;
      const baseline = await transfer('get', 4 * 1024 * 1024);
      assert.deepEqual([baseline.outcome, baseline.intact], ['eof', true], `baseline transfer: ${JSON.stringify(baseline)}`);
      const baseServer = await serverSaw(baseline.id);
      assert.equal(baseServer?.first, 'eof', `baseline, server side: ${JSON.stringify(baseServer)}`);

      const pcap = join(dir, `link-${node}.pcap`);
      let killed = false;
      try {
        const ids = Array.from({ length: DOWNLOADS + UPLOADS }, () => randomBytes(4).toString('hex'));
        const transfers = ids.map((id, k) => transfer(k < DOWNLOADS ? 'get' : 'put', TOTAL, id));
        // Kill once the server app has every transfer (all tunnels are up), a moment into the streams.
        for (let i = 0; i < 300 && !ids.every((id) => serverStarted.has(id)); i++) await new Promise((r) => setTimeout(r, 100));
        assert.ok(ids.every((id) => serverStarted.has(id)), 'not every transfer reached the server app');
        await new Promise((r) => setTimeout(r, 1000));
        const dump = await startCapture(node, pcap);
        const pid = (await labStatus(name)).nodes.find((n) => n.name === node)?.agent?.pid;
        assert.ok(pid, `no agent pid for ${node}`);
        process.kill(pid, 'SIGKILL');
        killed = true;
        t.diagnostic(`SIGKILL ${node} agent pid ${pid}`);

        const results = await Promise.all(transfers);
        // While the agent is down: a new connection carrying a marker must not go out in clear.
        const marker = `AMBIT-CANARY-CHAOS-${randomBytes(8).toString('hex')}`;
        const probe = await l.exec('mesh/client', [process.execPath, streamScript, 'send', ip('server'), String(PORT), marker.repeat(200)], { timeoutMs: 10_000 });
        await new Promise((r) => setTimeout(r, 300));
        dump.kill('SIGINT');
        await new Promise((r) => dump.once('exit', r));

        const servers = await Promise.all(results.map((r) => serverSaw(r.id)));
        const rows = results.map((c, k) => ({ client: c, server: servers[k] }));
        t.diagnostic(`transfers (client, server): ${JSON.stringify(rows)}; probe while down: ${probe.stdout.trim()}`);
        for (const [k, { client: c, server: s }] of rows.entries()) {
          const kind = k < DOWNLOADS ? 'download' : 'upload';
          const clientCut = c.outcome === 'eof' && !c.intact;
          const serverCut = s?.mode === 'up' && s.first === 'eof' && s.intact === false;
          const lost = clientCut ? TOTAL - c.bytes : serverCut ? TOTAL - s.received : 0;
          tally.case(`${node} kill: ${kind} client ${c.outcome}${c.code ? ` (${c.code})` : ''} ${c.bytes} bytes, server ${s?.first ?? '?'}${s?.code ? ` (${s.code})` : ''}`, { refused: c.outcome === 'error', bytesLost: lost });
        }
        const raw = await readFile(pcap);
        const leaked = raw.includes(Buffer.from(marker));
        tally.case(`${node} down: plaintext probe`, { refused: !leaked });

        for (const [k, { client: c, server: s }] of rows.entries()) {
          const kind = k < DOWNLOADS ? 'download' : 'upload';
          // Never a silent truncation, on either end.
          assert.ok(!(c.outcome === 'eof' && !c.intact), `${kind} ${c.id}: the client app saw a clean EOF with bytes missing: ${JSON.stringify(c)}`);
          assert.ok(s, `${kind} ${c.id}: the server app never reported the connection`);
          assert.ok(!(s.mode === 'up' && s.first === 'eof' && !s.intact), `${kind} ${c.id}: the server app saw a clean EOF with bytes missing: ${JSON.stringify(s)}`);
          // Every transfer was in flight when the agent died: both apps must see an error.
          assert.equal(c.outcome, 'error', `${kind} ${c.id}: the client app did not see an error: ${JSON.stringify(c)}`);
          assert.equal(s.first, 'error', `${kind} ${c.id}: the server app did not see an error: ${JSON.stringify(s)}`);
        }
        assert.equal(leaked, false, 'a connection made while the agent was down crossed the node link in clear');
        assert.notEqual((JSON.parse(probe.stdout.trim() || '{}') as { outcome?: string }).outcome, 'timeout', 'a connection made while the agent was down hung instead of failing');

        const restart = await labRestartAgent(name, node);
        killed = false;
        t.diagnostic(`${node}: relaunched agent ${restart.newPid} (old ${await restart.oldExited})`);
        let again: ClientOutcome | undefined;
        for (let i = 0; i < 20; i++) {
          again = await transfer('get', 4 * 1024 * 1024);
          if (again.outcome === 'eof' && again.intact) break;
          await new Promise((r) => setTimeout(r, 250));
        }
        tally.case(`${node} relaunched: transfer`, { refused: false, crashed: !(again?.outcome === 'eof' && again.intact) });
        assert.deepEqual([again?.outcome, again?.intact], ['eof', true], `after the relaunch: ${JSON.stringify(again)}`);
        const up = await transfer('put', 4 * 1024 * 1024);
        assert.deepEqual([up.outcome, up.intact], ['eof', true], `upload after the relaunch: ${JSON.stringify(up)}`);
      } finally {
        if (killed) await labRestartAgent(name, node).catch(() => undefined);
      }
    });
  }
});
