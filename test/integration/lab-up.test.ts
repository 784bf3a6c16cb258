/**
 * The lab on a real kernel (root): namespaces, veths, bridge, routes, hosts
 * files and host blackholes; agents replaced by a stub launched through the
 * real `ip netns exec` path. Every test uses its own lab name and tears down
 * in t.after, whatever happens. All traffic stays inside lab namespaces
 * (the host-side connect attempt is refused locally by the blackhole route).
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';
import { LabAgentError } from '../../src/lab/errors.js';
import { labDown, labDownAll, labList, labStatus, labUp, type LabHandle, type LabTarget } from '../../src/lab/lab.js';
import { labTag } from '../../src/lab/topology.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/lab/', import.meta.url));
const FIXTURE = join(FIXTURES, 'two-nodes.yaml');
const STUB = join(FIXTURES, 'stub-agent.mjs');
const BIN = fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url));
const RANGES = ['10.244.0.0/16', '10.96.0.0/16', '10.243.0.0/24'];

function uniqueName(): string {
  return `t${randomBytes(2).toString('hex')}`;
}

function netnsList(): string[] {
  const out = execFileSync('ip', ['-j', 'netns', 'list'], { encoding: 'utf8' }).trim();
  return out === '' ? [] : (JSON.parse(out) as Array<{ name: string }>).map((e) => e.name);
}

function hostRouteTypes(cidr: string): string[] {
  const out = execFileSync('ip', ['-j', 'route', 'show', 'exact', cidr], { encoding: 'utf8' }).trim();
  return out === '' ? [] : (JSON.parse(out) as Array<{ type?: string }>).map((r) => r.type ?? 'unicast');
}

/** Registers teardown before anything is created, so a failing test still cleans up. */
function cleanupAfter(t: TestContext, name: string): void {
  t.after(async () => {
    await labDown(name).catch((err: unknown) => console.error(`cleanup of lab ${name} failed:`, err));
  });
}

const ECHO_SERVER = `
const net = require('net');
const srv = net.createServer({ allowHalfOpen: true }, (s) => { console.log('conn ' + s.remoteAddress); s.pipe(s); });
srv.listen(Number(process.argv[1]), '0.0.0.0', () => console.log('listening'));
`;

const ECHO_CLIENT = `
const net = require('net'), crypto = require('crypto');
const [host, port, size] = process.argv.slice(1);
const data = crypto.randomBytes(Number(size));
const h = crypto.createHash('sha256');
let bytes = 0;
const s = net.connect(Number(port), host, () => s.end(data));
s.on('data', (d) => { h.update(d); bytes += d.length; });
s.on('end', () => console.log(JSON.stringify({ sent: crypto.createHash('sha256').update(data).digest('hex'), received: h.digest('hex'), bytes, local: s.localAddress })));
s.on('error', (e) => { console.error(e.code); process.exit(2); });
setTimeout(() => { console.error('timeout after ' + bytes + ' bytes'); process.exit(3); }, 10000).unref();
`;

/** Starts the echo server in a pod/node and resolves once it listens; the process is killed in t.after. */
async function startEchoServer(t: TestContext, lab: LabHandle, target: LabTarget, port: number): Promise<{ proc: ChildProcess; output: () => string }> {
  const proc = lab.spawn(target, [process.execPath, '-e', ECHO_SERVER, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    proc.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`echo server in ${JSON.stringify(target)} did not start: ${err}`)), 10_000);
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`echo server in ${JSON.stringify(target)} exited (${code}): ${err}`));
    });
  });
  return { proc, output: () => out };
}

async function echoRoundTrip(lab: LabHandle, from: LabTarget, host: string, port: number, size = 1 << 20): Promise<{ local: string }> {
  const r = await lab.exec(from, [process.execPath, '-e', ECHO_CLIENT, host, String(port), String(size)], { timeoutMs: 15_000 });
  assert.equal(r.code, 0, `client in ${JSON.stringify(from)} -> ${host}:${port} failed: ${r.stderr}`);
  const res = JSON.parse(r.stdout) as { sent: string; received: string; bytes: number; local: string };
  assert.equal(res.bytes, size);
  assert.equal(res.received, res.sent, 'echoed bytes differ from the bytes sent');
  return res;
}

void test('lab up --no-mesh: pods talk across and within nodes, service names resolve, the host is sealed off, down removes everything', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const name = uniqueName();
  cleanupAfter(t, name);
  const lab = await labUp({ manifests: FIXTURE, name, mesh: false });
  const ip = (uid: string): string => lab.cluster.workloads.find((w) => w.uid === uid)?.ip ?? assert.fail(`no workload ${uid}`);
  const [clientIp, serverAIp, serverBIp] = [ip('demo/client'), ip('demo/server-a'), ip('demo/server-b')];
  assert.deepEqual([clientIp, serverAIp, serverBIp], ['10.244.1.2', '10.244.1.3', '10.244.2.7']);
  const nodeB = lab.cluster.nodes.find((n) => n.name === 'node-b');
  assert.equal(nodeB?.ip, '10.243.0.2');
  assert.equal(nodeB?.netns, `/var/run/netns/${name}-n-node-b`);

  // Topology as planned.
  const names = netnsList();
  for (const ns of [`${name}-br`, `${name}-n-node-a`, `${name}-n-node-b`, `${name}-p-demo-client`, `${name}-p-demo-server-a`, `${name}-p-demo-server-b`]) {
    assert.ok(names.includes(ns), `netns ${ns} missing`);
  }
  const podAddr = await lab.exec('demo/client', ['ip', '-j', 'addr', 'show', 'dev', 'eth0']);
  assert.match(podAddr.stdout, /"local":"10\.244\.1\.2","prefixlen":32/);

  // Pod -> pod on the other node and on the same node; node -> pod; pod -> node. Bytes intact, no NAT.
  const serverB = await startEchoServer(t, lab, 'demo/server-b', 8080);
  const serverA = await startEchoServer(t, lab, 'demo/server-a', 8080);
  const nodeServer = await startEchoServer(t, lab, { node: 'node-b' }, 9090);
  assert.equal((await echoRoundTrip(lab, 'demo/client', serverBIp, 8080)).local, clientIp);
  assert.equal((await echoRoundTrip(lab, 'demo/client', serverAIp, 8080)).local, clientIp);
  assert.equal((await echoRoundTrip(lab, { node: 'node-a' }, serverBIp, 8080, 4096)).local, '10.243.0.1');
  assert.equal((await echoRoundTrip(lab, 'demo/server-b', '10.243.0.2', 9090, 4096)).local, serverBIp);
  assert.match(serverB.output(), new RegExp(`conn ${clientIp.replace(/\./g, '\\.')}`));
  assert.match(serverA.output(), new RegExp(`conn ${clientIp.replace(/\./g, '\\.')}`));
  assert.match(nodeServer.output(), /conn 10\.244\.2\.7/);

  // Service names resolve to the cluster IP from the pod's own /etc/hosts.
  for (const host of ['echo', 'echo.demo', 'echo.demo.svc', 'echo.demo.svc.cluster.local']) {
    const r = await lab.exec('demo/client', ['getent', 'hosts', host]);
    assert.equal(r.code, 0, `getent hosts ${host}: ${r.stderr}`);
    assert.match(r.stdout, /^10\.96\.0\.20\s/, `getent hosts ${host} -> ${r.stdout}`);
  }
  assert.equal(existsSync(`/etc/netns/${name}-p-demo-client/hosts`), true);

  // The host netns: blackholes for all ranges; a connect to a pod IP fails locally.
  for (const cidr of RANGES) assert.ok(hostRouteTypes(cidr).includes('blackhole'), `no blackhole for ${cidr}`);
  const routeGet = spawnSync('ip', ['-j', 'route', 'get', serverAIp], { encoding: 'utf8' });
  assert.ok(routeGet.status !== 0 || routeGet.stdout.includes('blackhole'), `host routes ${serverAIp} somewhere: ${routeGet.stdout}`);
  const code = await new Promise<string>((resolve) => {
    const s = connect({ host: serverAIp, port: 8080 });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'unknown'));
  });
  assert.ok(['EINVAL', 'ENETUNREACH', 'EHOSTUNREACH'].includes(code), `host connect to a pod IP gave ${code}`);

  // Status sees it all.
  const status = await labStatus(name);
  assert.equal(status.phase, 'up');
  assert.ok(status.pods.every((p) => p.netnsExists));

  // Down: every process in the lab's netns, every netns, interface, hosts dir and (when no other lab is up) route goes.
  const exits = [serverA, serverB, nodeServer].map((s) => new Promise((resolve) => (s.proc.exitCode !== null || s.proc.signalCode !== null ? resolve(s.proc.signalCode) : s.proc.once('exit', (_c, sig) => resolve(sig)))));
  const report = await lab.down();
  assert.equal(report.found, true);
  assert.equal(report.processes.length, 3, 'down should stop the servers running in the pods and the node');
  assert.deepEqual(await Promise.all(exits), ['SIGTERM', 'SIGTERM', 'SIGTERM']);
  assert.deepEqual(
    netnsList().filter((n) => n.startsWith(`${name}-`)),
    [],
  );
  assert.equal(existsSync(`/etc/netns/${name}-p-demo-client`), false);
  const hostLinks = execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' });
  assert.ok(!hostLinks.includes(labTag(name)), 'a lab interface is left in the host netns');
  if (labList().length === 0) for (const cidr of RANGES) assert.ok(!hostRouteTypes(cidr).includes('blackhole'), `blackhole ${cidr} left behind`);
  const again = await labDown(name);
  assert.equal(again.found, false);
});

void test('agents are launched in their node netns through ip netns exec, recorded, and stopped by down', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const name = uniqueName();
  cleanupAfter(t, name);
  const lab = await labUp({ manifests: FIXTURE, name, agentCommand: [process.execPath, STUB], readyTimeoutMs: 10_000, stopGraceMs: 1000 });
  const status = await labStatus(name);
  const pids: number[] = [];
  for (const node of status.nodes) {
    assert.ok(node.agent, `no agent recorded for ${node.name}`);
    assert.equal(node.agent.alive, true);
    pids.push(node.agent.pid);
    // The pid is the agent itself (ip netns exec execs it), inside the node's netns.
    assert.equal(execFileSync('ip', ['netns', 'identify', String(node.agent.pid)], { encoding: 'utf8' }).trim(), node.netns);
    assert.ok(existsSync(join(lab.stateDir, `agent-${node.name}.ready`)));
    assert.match(readFileSync(node.agent.logFile, 'utf8'), new RegExp(`stub agent for node ${node.name} starting[\\s\\S]*sees 3 workloads`));
  }
  const cmdline = readFileSync(`/proc/${pids[0]}/cmdline`, 'utf8').split('\0');
  assert.deepEqual(cmdline.slice(2, 5), ['agent', '--node', 'node-a']);
  const report = await lab.down();
  assert.equal(report.processes.length, 2);
  for (const p of report.processes) assert.equal(p.result, 'terminated');
  for (const pid of pids) assert.equal(existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z '), false, `agent ${pid} still running`);
});

void test('an agent that exits early fails lab up with its log tail and leaves nothing behind', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const name = uniqueName();
  cleanupAfter(t, name);
  await assert.rejects(labUp({ manifests: FIXTURE, name, agentCommand: [process.execPath, STUB, '--stub-exit'], readyTimeoutMs: 10_000 }), (err: Error) => {
    assert.ok(err instanceof LabAgentError, err.message);
    assert.match(err.message, /exited with code 3/);
    assert.match(err.message, /failing on purpose/);
    return true;
  });
  assert.deepEqual(
    netnsList().filter((n) => n.startsWith(`${name}-`)),
    [],
  );
  assert.deepEqual(await labDown(name).then((r) => r.found), false);
});

void test('the ambit lab CLI: up --no-mesh, exec with exit code passthrough, status --json, down twice', requiresRoot(), (t) => {
  assertPrivileged(t);
  const name = uniqueName();
  cleanupAfter(t, name);
  const ambit = (...args: string[]) => spawnSync(process.execPath, [BIN, 'lab', ...args], { encoding: 'utf8', timeout: 30_000 });
  const up = ambit('up', FIXTURE, '--name', name, '--no-mesh', '--quiet');
  assert.equal(up.status, 0, up.stderr);
  const exit7 = ambit('exec', 'demo/client', '--name', name, '--', 'sh', '-c', 'exit 7');
  assert.equal(exit7.status, 7);
  const hosts = ambit('exec', 'demo/server-b', '--name', name, '--', 'getent', 'hosts', 'echo.demo');
  assert.equal(hosts.status, 0, hosts.stderr);
  assert.match(hosts.stdout, /^10\.96\.0\.20\s/);
  const addr = ambit('exec', '--node', 'node-b', '--name', name, '--', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0');
  assert.match(addr.stdout, /10\.243\.0\.2\/24/);
  const missing = ambit('exec', 'demo/nope', '--name', name, '--', 'true');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /no pod demo\/nope/);
  const status = ambit('status', '--name', name, '--json');
  assert.equal(status.status, 0, status.stderr);
  const s = JSON.parse(status.stdout) as { pods: Array<{ uid: string; ip: string; netns: string }> };
  assert.deepEqual(
    s.pods.map((p) => [p.uid, p.ip, p.netns]),
    [
      ['demo/client', '10.244.1.2', `${name}-p-demo-client`],
      ['demo/server-a', '10.244.1.3', `${name}-p-demo-server-a`],
      ['demo/server-b', '10.244.2.7', `${name}-p-demo-server-b`],
    ],
  );
  assert.match(ambit('status', '--name', name).stdout, /node-b\s+10\.243\.0\.2\s+10\.244\.2\.0\/24/);
  assert.equal(ambit('down', '--name', name, '--quiet').status, 0);
  assert.equal(ambit('down', '--name', name).status, 0);
  assert.deepEqual(
    netnsList().filter((n) => n.startsWith(`${name}-`)),
    [],
  );
});

void test('labDownAll cleans a half-created lab: recorded and unrecorded netns, hosts dirs, the record', requiresRoot(), async (t) => {
  assertPrivileged(t);
  const name = uniqueName();
  // A private state root and no prefix sweep: this test must not touch other labs.
  const root = mkdtempSync(join(tmpdir(), 'lab-downall-'));
  const hostsDir = `/etc/netns/${name}-p-demo-client`;
  t.after(() => {
    for (const ns of [`${name}-br`, `${name}-p-orphan`]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    rmSync(hostsDir, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  });
  mkdirSync(join(root, name), { recursive: true });
  writeFileSync(
    join(root, name, 'state.json'),
    JSON.stringify({ version: 1, name, phase: 'creating', createdAt: new Date().toISOString(), stateDir: join(root, name), ownsStateDir: true, netns: [`${name}-br`], hostsDirs: [hostsDir] }),
  );
  execFileSync('ip', ['netns', 'add', `${name}-br`]);
  execFileSync('ip', ['netns', 'add', `${name}-p-orphan`]); // created, crash before it was recorded
  mkdirSync(hostsDir, { recursive: true });
  writeFileSync(join(hostsDir, 'hosts'), '127.0.0.1 localhost\n');

  const reports = await labDownAll({ stateRoot: root, leftoverPrefixes: [] });
  assert.equal(reports[0]?.name, name);
  assert.deepEqual([...(reports[0]?.netns ?? [])].sort(), [`${name}-br`, `${name}-p-orphan`]);
  assert.deepEqual(
    netnsList().filter((n) => n.startsWith(`${name}-`)),
    [],
  );
  assert.equal(existsSync(hostsDir), false);
  assert.equal(existsSync(join(root, name)), false);
  assert.deepEqual(await labDownAll({ stateRoot: root, leftoverPrefixes: [] }), []);
});
