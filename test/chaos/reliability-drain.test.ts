/**
 * Drain: 200 transfers are open through an agent when it is restarted
 * gracefully (labRestartAgent: the new agent starts, the old one gets SIGTERM
 * and drains). Every one of the 200 completes intact through the old agent,
 * none fails, none is cut; the old agent exits by itself (no SIGKILL) once
 * they are done; connections opened after the restart are served by the new
 * agent. Done for the client's node (outbound relays, HBONE client side) and
 * then for the server's (inbound relays). Then the other half of the drain
 * contract: transfers that outlive the old agent's drain deadline are reset
 * (the app sees an error), never cut with a clean EOF. Needs root.
 *
 * The transfers are open-ended: the server app streams checksummed 4 KiB
 * frames until the test drops a stop file (after the old agent got SIGTERM),
 * then sends a trailer frame with the frame count and ends. The client checks
 * every frame and the trailer, so a clean EOF without the trailer (a silent
 * cut) is told apart from a complete transfer.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown, labRestartAgent, labStatus, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';
import { Tally } from '../security/lib/tally.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const name = `reld${randomBytes(3).toString('hex')}`;
const PORT = 9100;
const CONNECTIONS = 200;
let lab: LabHandle | undefined;
let server: ChildProcess | undefined;
let dir = '';
let script = '';
const tally = new Tally('chaos: graceful drain');

/**
 * Scores one batch: an intact transfer was served, an error is a clean
 * refusal, and a cut one (clean EOF without the trailer) lost at least a frame.
 */
function score(what: string, s: Summary): void {
  for (let i = 0; i < s.intact; i++) tally.case(what, { refused: false });
  for (const [code, count] of Object.entries(s.errors)) for (let i = 0; i < count; i++) tally.case(`${what} (${code})`, { refused: true });
  for (let i = 0; i < s.cut; i++) tally.case(`${what} (cut)`, { refused: false, bytesLost: 4096 });
}

//   serve <ip> <port>: per connection reads "<stopFile>\n", then sends frame i (4 KiB, a pattern of i)
//     every PACE ms until <stopFile> exists, then a trailer frame "AMBIT-END <count>" and ends.
//   many <ip> <port> <n> <stopFile>: opens n connections, prints "ready" once each got a frame,
//     then one JSON summary {intact, cut, errors, frames} when all have ended.
const SCRIPT = `
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
const [mode, host, portText, nText, stopFile] = process.argv.slice(2);
const port = Number(portText);
const FRAME = 4096;
const PACE = 100;
const cache = new Map();
const frame = (i) => {
  let b = cache.get(i);
  if (b) return b;
  const seed = createHash('sha256').update('ambit-drain-' + i).digest();
  b = Buffer.allocUnsafe(FRAME);
  for (let o = 0; o < FRAME; o += seed.length) seed.copy(b, o);
  b.write('AMBIT-CANARY', 64, 'latin1'); // the wire-audit marker: mesh traffic, never in clear on the bridge
  cache.set(i, b);
  return b;
};
const trailer = (count) => {
  const b = Buffer.alloc(FRAME, 0x20);
  b.write('AMBIT-END ' + count);
  return b;
};
if (mode === 'serve') {
  const srv = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    let head = '';
    let i = 0;
    const next = (stop) => {
      if (s.destroyed) return;
      if (existsSync(stop)) {
        s.end(trailer(i));
        return;
      }
      const ok = s.write(frame(i++));
      if (ok) setTimeout(() => next(stop), PACE);
      else s.once('drain', () => setTimeout(() => next(stop), PACE));
    };
    const onData = (d) => {
      head += d.toString('latin1');
      const nl = head.indexOf('\\n');
      if (nl < 0) return;
      s.off('data', onData);
      s.resume();
      next(head.slice(0, nl));
    };
    s.on('data', onData);
  });
  srv.listen(port, host, () => console.log('listening'));
} else if (mode === 'many') {
  const n = Number(nText);
  let started = 0, finished = 0, intact = 0, cut = 0, frames = 0;
  const errors = {};
  const one = () => {
    let buf = Buffer.alloc(0), i = 0, sawTrailer = false, bad = false, first = true, done = false;
    const end = (how) => {
      if (done) return;
      done = true;
      if (how === 'eof') { if (sawTrailer && !bad) intact++; else cut++; }
      else errors[how] = (errors[how] ?? 0) + 1;
      frames += i;
      if (++finished === n) {
        console.log(JSON.stringify({ intact, cut, errors, frames }));
        process.exit(0);
      }
    };
    const s = connect({ host, port, allowHalfOpen: true }, () => s.write(stopFile + '\\n'));
    s.on('data', (d) => {
      if (first) {
        first = false;
        if (++started === n) console.log('ready');
      }
      buf = Buffer.concat([buf, d]);
      while (buf.length >= FRAME) {
        const f = buf.subarray(0, FRAME);
        buf = buf.subarray(FRAME);
        if (sawTrailer) bad = true;
        else if (f.equals(frame(i))) i++;
        else if (f.equals(trailer(i))) sawTrailer = true;
        else bad = true;
      }
    });
    s.on('end', () => { if (buf.length > 0) bad = true; end('eof'); s.end(); });
    s.on('error', (e) => end(e.code ?? e.message));
    s.on('close', () => end('closed'));
  };
  for (let k = 0; k < n; k++) one();
}
`;

function ip(pod: string): string {
  const w = lab?.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

interface Summary {
  intact: number;
  cut: number;
  errors: Record<string, number>;
  frames: number;
}

// Four restarts with two 5 s drain deadlines: longer than the runner's default per-test timeout on a busy machine.
describe(`graceful agent restart with ${CONNECTIONS} open transfers`, { ...requiresRoot(), timeout: 300_000 }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    dir = await mkdtemp(join(tmpdir(), 'ambit-drain-'));
    script = join(dir, 'drain.mjs');
    await writeFile(script, SCRIPT);
    lab = await labUp({ manifests: `${fixtures}agent/capture.yaml`, name, mesh: true });
    server = await startInPod(lab, 'mesh/server', [process.execPath, script, 'serve', ip('server'), String(PORT)]);
  });

  after(async () => {
    if (tally.tried > 0) tally.print();
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Starts `n` open-ended transfers from the client pod and resolves once every one is receiving. */
  async function openTransfers(n: number, stop: string): Promise<{ client: ChildProcess; out: () => string; exited: Promise<number | null> }> {
    const client = lab!.spawn('mesh/client', [process.execPath, script, 'many', ip('server'), String(PORT), String(n), stop], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    client.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    client.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => client.once('exit', (code) => r(code)));
    const readyBy = Date.now() + 60_000;
    while (!out.includes('ready')) {
      if (Date.now() > readyBy || client.exitCode !== null) {
        client.kill('SIGKILL');
        assert.fail(`the ${n} transfers did not all start: ${out} ${err}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return { client, out: () => `${out}${err ? ` stderr: ${err}` : ''}`, exited };
  }

  /** The new agent needs its own admin ports: both share the node's netns during the overlap. */
  function restartArgs(node: string, round: number): string[] {
    const base = 16300 + (node === 'node-a' ? 0 : 100) + round * 30;
    return ['--admin-port', String(base), '--metrics-port', String(base + 20), '--readiness-port', String(base + 21)];
  }

  for (const node of ['node-a', 'node-b'] as const) {
    test(`restarting ${node}'s agent: all ${CONNECTIONS} transfers complete intact, the old agent drains and exits by itself`, async (t) => {
      assertPrivileged(t);
      const l = lab!;
      const stop = join(dir, `stop-${node}`);
      const { client, out, exited } = await openTransfers(CONNECTIONS, stop);
      try {
        const oldPid = (await labStatus(name)).nodes.find((n) => n.name === node)?.agent?.pid;
        const restart = await labRestartAgent(name, node, { drainTimeoutMs: 30_000, extraArgs: restartArgs(node, 0) });
        // The old agent has its SIGTERM and is draining with all 200 transfers open; let it run a moment.
        await new Promise((r) => setTimeout(r, 500));
        assert.ok(!out().includes('{'), `transfers ended before the stop signal: ${out()}`);
        const stopAt = Date.now();
        await writeFile(stop, 'stop');
        const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000))]);
        assert.equal(code, 0, `the client did not finish: ${code} ${out()}`);
        const summary = JSON.parse(out().split('\n').find((x) => x.startsWith('{')) ?? '{}') as Summary;
        score(`drain ${node}`, summary);
        const how = await restart.oldExited;
        const drainMs = Date.now() - stopAt;
        t.diagnostic(`${node}: old agent ${oldPid ?? restart.oldPid} ${how} within ${drainMs} ms of the stop signal, new agent ${restart.newPid}; transfers ${JSON.stringify(summary)}`);
        assert.deepEqual({ intact: summary.intact, cut: summary.cut, errors: summary.errors }, { intact: CONNECTIONS, cut: 0, errors: {} });
        assert.equal(how, 'terminated', 'the old agent had to be SIGKILLed: it did not finish draining');

        // The old agent's log shows it drained rather than hitting its deadline.
        const logFile = (await labStatus(name)).nodes.find((n) => n.name === node)?.agent?.logFile;
        if (logFile) {
          const log = await readFile(logFile, 'utf8').catch(() => '');
          const oldLines = log.split('\n').filter((x) => x.includes(`"pid":${restart.oldPid}`));
          assert.ok(!oldLines.some((x) => x.includes('drain deadline reached')), 'the old agent hit its drain deadline');
        }

        // New connections go through the new agent.
        const stopNow = join(dir, `stop-${node}-after`);
        await writeFile(stopNow, 'stop');
        const r = await l.exec('mesh/client', [process.execPath, script, 'many', ip('server'), String(PORT), '20', stopNow], { timeoutMs: 30_000 });
        const fresh = JSON.parse(r.stdout.trim().split('\n').find((x) => x.startsWith('{')) ?? '{}') as Summary;
        score(`after restart ${node}`, fresh);
        assert.deepEqual({ intact: fresh.intact, cut: fresh.cut, errors: fresh.errors }, { intact: 20, cut: 0, errors: {} }, `after the restart: ${r.stdout} ${r.stderr}`);
      } finally {
        if (client.exitCode === null) client.kill('SIGKILL');
      }
    });
  }

  for (const node of ['node-a', 'node-b'] as const) {
    test(`restarting ${node}'s agent with transfers that outlive the drain deadline: each one is reset, none is cut`, async (t) => {
      assertPrivileged(t);
      const n = 50;
      const stop = join(dir, `stop-${node}-late`);
      const { client, out, exited } = await openTransfers(n, stop);
      try {
        const restart = await labRestartAgent(name, node, { drainTimeoutMs: 30_000, extraArgs: restartArgs(node, 1) });
        const how = await restart.oldExited;
        // Only now may the transfers finish; the old agent gave up on them at its deadline.
        await writeFile(stop, 'stop');
        const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000))]);
        assert.equal(code, 0, `the client did not finish: ${code} ${out()}`);
        const summary = JSON.parse(out().split('\n').find((x) => x.startsWith('{')) ?? '{}') as Summary;
        t.diagnostic(`${node}: old agent ${restart.oldPid} ${how}; transfers ${JSON.stringify(summary)}`);
        score(`past deadline ${node}`, summary);
        assert.equal(summary.cut, 0, `transfers were cut without an error: ${JSON.stringify(summary)}`);
        assert.equal(summary.intact, 0, `a transfer survived its agent's exit: ${JSON.stringify(summary)}`);
        assert.equal(Object.values(summary.errors).reduce((a, b) => a + b, 0), n);
      } finally {
        if (client.exitCode === null) client.kill('SIGKILL');
      }
    });
  }
});
