/**
 * `ambit control-plane --dashboard-listen ... --dashboard-netns ...` as a
 * real process in a netns of its own (`unshare -n`, no lab, no named
 * netns): it creates the dashboard's listening socket in THIS process's
 * netns, so the page answers on our 127.0.0.1 although the control plane
 * cannot reach it with a plain listen(). Proves the socket is the control
 * plane's (ss -ltnp, the server header), that a port in use or a netns that
 * is gone leaves the control plane serving with the error in /debug/status,
 * and that SIGTERM takes the dashboard down with the process. Needs root.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import type { DashboardStatus } from '../../src/dashboard/control-plane-dashboard.js';
import { fetchOk, nativeFetch } from '../../src/dashboard/netns-http.js';
import { loadNativeBinding } from '../../src/native/load.js';
import { cmdline, listenerPids, listening, netnsOf, servedBy } from '../helpers/dashboard-owner.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';

const ambit = fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ambit-dash-cp-'));
const procs: ChildProcess[] = [];

after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

interface RunningCp {
  pid: number;
  proc: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

/** Starts a control plane in a fresh netns (loopback up) with the given dashboard flags; resolves once its ready file is written. */
async function startCp(tag: string, dashboardArgs: string[]): Promise<RunningCp> {
  const d = join(dir, tag);
  mkdirSync(join(d, 'manifests'), { recursive: true });
  writeFileSync(join(d, 'tokens'), '0123456789abcdef0123456789abcdef node-a\n', { mode: 0o600 });
  const ready = join(d, 'ready');
  const log = join(d, 'log');
  const argv = [process.execPath, ambit, 'control-plane', '--manifests', join(d, 'manifests'), '--node-tokens', join(d, 'tokens'), '--ca-dir', join(d, 'ca'), '--address', '127.0.0.1', '--monitoring-port', '15014', '--ready-file', ready, ...dashboardArgs];
  const quoted = argv.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  // exec: the shell becomes the control plane, so the child's pid is the control plane's.
  const proc = spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec ${quoted} >${log} 2>&1`], { stdio: 'ignore' });
  procs.push(proc);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const deadline = Date.now() + 20_000;
  while (!existsSync(ready) || readFileSync(ready, 'utf8').trim() === '') {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`the control plane did not get ready: ${existsSync(log) ? readFileSync(log, 'utf8') : 'no log'}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const pid = Number(readFileSync(ready, 'utf8').trim());
  assert.equal(pid, proc.pid, 'the ready file names the process we started');
  return { pid, proc, log, exited };
}

/** The control plane's /debug/status, read from inside its netns (socket made there by the addon). */
async function debugStatus(cp: RunningCp): Promise<{ version: number; notes: string[]; dashboard?: DashboardStatus }> {
  const f = nativeFetch(loadNativeBinding());
  return JSON.parse(await fetchOk(f, { netns: `/proc/${cp.pid}/ns/net`, host: '127.0.0.1', port: 15014 }, '/debug/status')) as { version: number; notes: string[]; dashboard?: DashboardStatus };
}

describe('the control plane serves the dashboard in another netns', { ...requiresRoot(), ...requiresTool('unshare', 'ss', 'ip'), timeout: 90_000 }, () => {
  test('the page answers on this netns\'s 127.0.0.1 from the control plane process; SIGTERM takes it away', async (t) => {
    assertPrivileged(t);
    const t0 = Date.now();
    const cp = await startCp('ok', ['--dashboard-listen', '127.0.0.1:0', '--dashboard-netns', `/proc/${process.pid}/ns/net`, '--dashboard-interval', '500', '--dashboard-title', 'unit lab']);
    t.diagnostic(`control plane ready in ${Date.now() - t0} ms`);
    assert.notEqual(netnsOf(cp.pid), netnsOf('self'), 'the control plane runs in its own netns');
    assert.match(cmdline(cp.pid), / control-plane /);
    const st = await debugStatus(cp);
    assert.equal(st.dashboard?.state, 'serving', JSON.stringify(st.dashboard));
    assert.equal(st.dashboard?.pid, cp.pid);
    assert.equal(st.dashboard?.netns, `/proc/${process.pid}/ns/net`);
    const url = st.dashboard?.url as string;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const port = Number(new URL(url).port);
    assert.deepEqual(listenerPids(port), [cp.pid], 'ss -ltnp: the listener in this netns belongs to the control plane');
    for (const path of ['', 'api/health']) {
      const s = await servedBy(`${url}${path}`);
      assert.equal(s.status, 200);
      assert.equal(s.server, `ambit-control-plane/${cp.pid}`);
    }
    const health = (await (await fetch(`${url}api/health`)).json()) as { controlPlane: { up: boolean; version: number }; scrape: { servedBy: string } };
    assert.equal(health.controlPlane.up, true, 'the control plane read in process');
    assert.equal(health.scrape.servedBy, `ambit-control-plane/${cp.pid}`);
    const page = await (await fetch(url)).text();
    assert.match(page, /unit lab/);

    cp.proc.kill('SIGTERM');
    assert.equal(await cp.exited, 0, 'clean exit');
    assert.equal(listening(port), false, 'the dashboard socket went with the process');
  });

  test('a port in use: the control plane keeps serving, /debug/status reports AMBIT_ERR_DASHBOARD_BIND', async (t) => {
    assertPrivileged(t);
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const cp = await startCp('busy', ['--dashboard-listen', `127.0.0.1:${port}`, '--dashboard-netns', `/proc/${process.pid}/ns/net`]);
      const st = await debugStatus(cp);
      assert.equal(st.dashboard?.state, 'failed');
      assert.equal(st.dashboard?.error?.code, 'AMBIT_ERR_DASHBOARD_BIND');
      assert.match(st.dashboard?.error?.message ?? '', new RegExp(`^the dashboard cannot listen on 127\\.0\\.0\\.1:${port} in netns /proc/${process.pid}/ns/net \\(EADDRINUSE at bind\\)`));
      assert.ok(st.notes.some((n) => n.includes('AMBIT_ERR_DASHBOARD_BIND')), 'a note for `ambit control-plane status`');
      const f = nativeFetch(loadNativeBinding());
      assert.equal((await f({ netns: `/proc/${cp.pid}/ns/net`, host: '127.0.0.1', port: 15014 }, '/ready')).status, 200, 'still serving');
      assert.equal(cp.proc.exitCode, null, 'still running');
      assert.match(readFileSync(cp.log, 'utf8'), /dashboard not served; the control plane keeps serving xDS and the CA/);
      cp.proc.kill('SIGTERM');
      assert.equal(await cp.exited, 0);
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });

  test('a netns that is gone: AMBIT_ERR_DASHBOARD_NETNS, the control plane keeps serving', async (t) => {
    assertPrivileged(t);
    // A process that has exited: its /proc entry is gone.
    const gone = spawn('true');
    await new Promise((r) => gone.once('exit', r));
    const cp = await startCp('gone', ['--dashboard-listen', '127.0.0.1:0', '--dashboard-netns', `/proc/${gone.pid}/ns/net`]);
    const st = await debugStatus(cp);
    assert.equal(st.dashboard?.state, 'failed');
    assert.equal(st.dashboard?.error?.code, 'AMBIT_ERR_DASHBOARD_NETNS');
    assert.match(st.dashboard?.error?.message ?? '', /\(ENOENT at open\): it does not exist; if it is \/proc\/<pid>\/ns\/net, that process has exited/);
    cp.proc.kill('SIGTERM');
    assert.equal(await cp.exited, 0);
  });
});
