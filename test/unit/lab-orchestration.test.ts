/**
 * The lab's up/down orchestration against a fake `ip` that records every
 * command and keeps a model of netns and host routes. No root needed: the
 * state root and /etc/netns are temp dirs, and agents are local stub
 * processes started by an injected spawnAgent (no netns).
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { parseLocalClusterConfig } from '../../src/state/local-config.js';
import { agentArgv, defaultAgentCommand, processAlive, type AgentExit, type AgentLaunch, type SpawnAgent } from '../../src/lab/agents.js';
import { LabAgentError, LabCommandError, LabExistsError, LabRouteConflictError } from '../../src/lab/errors.js';
import type { CommandRunner, RunResult } from '../../src/lab/ip.js';
import { labDown, labDownAll, labStatus, labUp, openLab, resolveTarget, type LabEnvOptions } from '../../src/lab/lab.js';
import { parseManifests, type LabSpec } from '../../src/lab/manifests.js';
import { readLabState } from '../../src/lab/state.js';
import { labTag } from '../../src/lab/topology.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/lab/', import.meta.url));
const STUB = join(FIXTURES, 'stub-agent.mjs');

const SPEC_TEXT = `
kind: Pod
metadata: {name: client, namespace: demo}
spec: {nodeName: node-a}
---
kind: Pod
metadata: {name: server, namespace: demo}
spec: {nodeName: node-b}
---
kind: Service
metadata: {name: echo, namespace: demo}
spec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}
`;

function spec(): LabSpec {
  return parseManifests([{ file: 'm.yaml', text: SPEC_TEXT }]);
}

/** A model of the host as far as the lab can see it through `ip`. */
class FakeIp {
  readonly calls: string[] = [];
  readonly netns = new Set<string>();
  readonly routes = new Map<string, string>(); // dst -> type
  failOn: ((cmd: string) => boolean) | undefined;

  readonly runner: CommandRunner = (argv) => {
    const cmd = argv.join(' ');
    this.calls.push(cmd);
    const ok = (stdout = ''): Promise<RunResult> => Promise.resolve({ code: 0, stdout, stderr: '' });
    if (this.failOn?.(cmd)) return Promise.reject(new LabCommandError(argv, 2, 'RTNETLINK answers: injected failure'));
    const [, a1, a2, a3, a4, a5] = argv;
    if (a1 === '-j' && a2 === 'netns') return ok(JSON.stringify([...this.netns].map((name) => ({ name }))));
    if (a1 === '-j' && a2 === 'route' && a4 === 'exact') {
      const t = this.routes.get(a5 ?? '');
      return ok(JSON.stringify(t ? [{ type: t, dst: a5, flags: [] }] : []));
    }
    if (a1 === '-j' && a2 === 'route' && a4 === 'root') return ok('[]');
    if (a1 === 'netns' && a2 === 'add') {
      this.netns.add(a3 ?? '');
      return ok();
    }
    if (a1 === 'netns' && a2 === 'del') {
      if (!this.netns.delete(a3 ?? '')) return Promise.resolve({ code: 1, stdout: '', stderr: `Cannot remove namespace file "/run/netns/${a3}": No such file or directory` });
      return ok();
    }
    if (a1 === 'netns' && a2 === 'pids') return ok('');
    if (a1 === 'route' && a2 === 'replace' && a3 === 'blackhole') {
      this.routes.set(a4 ?? '', 'blackhole');
      return ok();
    }
    if (a1 === 'route' && a2 === 'del' && a3 === 'blackhole') {
      this.routes.delete(a4 ?? '');
      return ok();
    }
    return ok();
  };

  /** Mutating commands only (queries are noise for sequence checks). */
  mutations(): string[] {
    return this.calls.filter((c) => !c.startsWith('ip -j '));
  }
}

let dir: string;
let fake: FakeIp;
let env: LabEnvOptions;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lab-orch-'));
  fake = new FakeIp();
  env = { stateRoot: join(dir, 'state'), etcNetnsDir: join(dir, 'etc-netns'), runner: fake.runner, stopGraceMs: 300 };
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the stub agent as a plain local process (the fake has no real netns). */
function localSpawn(extra: string[] = []): SpawnAgent & { launches: AgentLaunch[] } {
  const launches: AgentLaunch[] = [];
  const fn = (launch: AgentLaunch) => {
    launches.push(launch);
    const fd = openSync(launch.logFile, 'a');
    const [, , ...rest] = launch.argv; // drop the default program + script
    const child = spawn(process.execPath, [STUB, ...extra, ...rest], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const exited = new Promise<AgentExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    return { pid: child.pid ?? -1, exited };
  };
  return Object.assign(fn, { launches });
}

void describe('lab up (fake ip)', () => {
  void it('builds bridge, nodes, pods and routes in order, writes hosts files, state and cluster.json', async () => {
    const lab = await labUp({ ...env, spec: spec(), name: 'tu', mesh: false });
    const tag = labTag('tu');
    const m = fake.mutations();
    const expectPrefix = [
      'ip route replace blackhole 10.244.0.0/16',
      'ip route replace blackhole 10.96.0.0/16',
      'ip route replace blackhole 10.243.0.0/24',
      'ip netns add tu-br',
      'ip -n tu-br link set lo up',
      'ip -n tu-br link add br0 type bridge',
      'ip -n tu-br link set br0 up',
      'ip netns add tu-n-node-a',
      'ip -n tu-n-node-a link set lo up',
      `ip link add eth0 netns tu-n-node-a type veth peer name b${tag}n0 netns tu-br`,
      `ip -n tu-br link set b${tag}n0 master br0`,
      `ip -n tu-br link set b${tag}n0 up`,
      'ip -n tu-n-node-a addr add 10.243.0.1/24 dev eth0',
      'ip -n tu-n-node-a link set eth0 up',
      'ip netns exec tu-n-node-a sysctl -q -w net.ipv4.ip_forward=1',
    ];
    assert.deepEqual(m.slice(0, expectPrefix.length), expectPrefix);
    const podCmds = [
      'ip netns add tu-p-demo-client',
      'ip -n tu-p-demo-client link set lo up',
      `ip link add eth0 netns tu-p-demo-client type veth peer name v${tag}p0 netns tu-n-node-a address ee:ee:ee:ee:ee:ee`,
      `ip -n tu-n-node-a link set v${tag}p0 up`,
      'ip -n tu-p-demo-client addr add 10.244.1.2/32 dev eth0',
      'ip -n tu-p-demo-client link set eth0 up',
      'ip -n tu-p-demo-client route add 169.254.1.1 dev eth0 scope link',
      'ip -n tu-p-demo-client neigh replace 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent',
      'ip -n tu-p-demo-client route add default via 169.254.1.1 dev eth0',
    ];
    const at = m.indexOf(podCmds[0] as string);
    assert.ok(at > 0);
    assert.deepEqual(m.slice(at, at + podCmds.length), podCmds);
    assert.deepEqual(m.slice(-4), [
      `ip -n tu-n-node-a route add 10.244.1.2/32 dev v${tag}p0 scope link src 10.243.0.1`,
      'ip -n tu-n-node-a route add 10.244.2.0/24 via 10.243.0.2 dev eth0',
      `ip -n tu-n-node-b route add 10.244.2.2/32 dev v${tag}p1 scope link src 10.243.0.2`,
      'ip -n tu-n-node-b route add 10.244.1.0/24 via 10.243.0.1 dev eth0',
    ]);
    for (const c of m.filter((x) => x.startsWith('ip link add'))) assert.match(c, / netns \S+ type veth peer name \S+ netns /, `interface created in the host netns: ${c}`);

    const hosts = readFileSync(join(dir, 'etc-netns', 'tu-p-demo-client', 'hosts'), 'utf8');
    assert.match(hosts, /^10\.96\.0\.20\techo\.demo\.svc\.cluster\.local echo\.demo\.svc echo\.demo echo$/m);
    assert.equal(existsSync(join(dir, 'etc-netns', 'tu-p-demo-client', 'resolv.conf')), existsSync('/etc/resolv.conf'));

    const state = readLabState(env.stateRoot as string, 'tu');
    assert.equal(state?.phase, 'up');
    assert.deepEqual(state?.netns, ['tu-br', 'tu-n-node-a', 'tu-n-node-b', 'tu-p-demo-client', 'tu-p-demo-server']);
    assert.deepEqual(
      state?.hostRoutes.map((r) => [r.dst, r.owned]),
      [
        ['10.244.0.0/16', true],
        ['10.96.0.0/16', true],
        ['10.243.0.0/24', true],
      ],
    );
    assert.equal(lab.stateDir, join(env.stateRoot as string, 'tu'));
    const cfg = parseLocalClusterConfig(JSON.parse(readFileSync(join(lab.stateDir, 'cluster.json'), 'utf8')) as unknown);
    assert.deepEqual(cfg, lab.cluster);
    assert.equal(lab.podNetns('demo', 'client'), 'tu-p-demo-client');
    assert.equal(lab.nodeNetns('node-b'), 'tu-n-node-b');
    assert.throws(() => lab.podNetns('demo', 'nope'), /no pod demo\/nope/);

    const status = await labStatus('tu', env);
    assert.deepEqual(
      status.pods.map((p) => [p.uid, p.ip, p.netnsExists]),
      [
        ['demo/client', '10.244.1.2', true],
        ['demo/server', '10.244.2.2', true],
      ],
    );
    assert.equal(openLab('tu', env).cluster.workloads.length, 2);
  });

  void it('down removes exactly what up recorded, in reverse, and a second down is a no-op', async () => {
    const lab = await labUp({ ...env, spec: spec(), name: 'tu', mesh: false });
    fake.calls.length = 0;
    const report = await lab.down();
    assert.equal(report.found, true);
    assert.deepEqual(report.netns, ['tu-p-demo-server', 'tu-p-demo-client', 'tu-n-node-b', 'tu-n-node-a', 'tu-br']);
    assert.deepEqual(report.routes, ['10.244.0.0/16', '10.96.0.0/16', '10.243.0.0/24']);
    assert.equal(report.hostsDirs.length, 2);
    assert.equal(fake.netns.size, 0);
    assert.equal(fake.routes.size, 0);
    assert.ok(!existsSync(join(dir, 'etc-netns', 'tu-p-demo-client')));
    assert.ok(!existsSync(join(env.stateRoot as string, 'tu')));
    fake.calls.length = 0;
    const again = await labDown('tu', env);
    assert.equal(again.found, false);
    assert.deepEqual(fake.mutations(), []);
  });

  void it('tears down everything when a step fails halfway, and reports the failing command', async () => {
    fake.failOn = (c) => c.startsWith('ip -n tu-p-demo-server addr add');
    await assert.rejects(labUp({ ...env, spec: spec(), name: 'tu', mesh: false }), (err: Error) => err instanceof LabCommandError && err.message.includes('injected failure'));
    assert.equal(fake.netns.size, 0);
    assert.equal(fake.routes.size, 0);
    assert.ok(!existsSync(join(env.stateRoot as string, 'tu')));
    assert.ok(!existsSync(join(dir, 'etc-netns', 'tu-p-demo-client')));
  });

  void it('down after a crashed up (record left in phase creating) removes what the record lists', async () => {
    fake.failOn = (c) => c.startsWith('ip -n tu-n-node-b addr add');
    // Simulate a crash: keep the record by making teardown impossible the first time.
    const realRunner = fake.runner;
    let crashing = true;
    env.runner = (argv, opts) => (crashing && argv[1] === 'netns' && argv[2] === 'del' ? Promise.reject(new Error('crash')) : realRunner(argv, opts));
    await assert.rejects(labUp({ ...env, spec: spec(), name: 'tu', mesh: false }));
    assert.equal(readLabState(env.stateRoot as string, 'tu')?.phase, 'tearing-down');
    assert.ok(fake.netns.has('tu-n-node-b'));
    crashing = false;
    fake.failOn = undefined;
    const report = await labDown('tu', env);
    assert.deepEqual(report.netns, ['tu-n-node-b', 'tu-n-node-a', 'tu-br']);
    assert.equal(fake.netns.size, 0);
    assert.equal(fake.routes.size, 0);
  });

  void it('refuses a second up of the same lab and leftover netns of that name', async () => {
    await labUp({ ...env, spec: spec(), name: 'tu', mesh: false });
    await assert.rejects(labUp({ ...env, spec: spec(), name: 'tu', mesh: false }), LabExistsError);
    await labDown('tu', env);
    fake.netns.add('tu-p-demo-client');
    await assert.rejects(labUp({ ...env, spec: spec(), name: 'tu', mesh: false }), (err: Error) => err instanceof LabExistsError && err.message.includes('lab down --all'));
  });

  void it('refuses to replace a real host route for a lab range and creates nothing', async () => {
    fake.routes.set('10.96.0.0/16', 'unicast');
    await assert.rejects(labUp({ ...env, spec: spec(), name: 'tu', mesh: false }), (err: Error) => err instanceof LabRouteConflictError && err.message.includes('10.96.0.0/16'));
    assert.equal(fake.netns.size, 0);
    assert.deepEqual([...fake.routes.keys()], ['10.96.0.0/16']);
  });

  void it('shares blackhole routes between labs and never removes an administrator-owned one', async () => {
    fake.routes.set('10.243.0.0/24', 'blackhole'); // there before any lab
    await labUp({ ...env, spec: spec(), name: 'one', mesh: false });
    await labUp({ ...env, spec: spec(), name: 'two', mesh: false });
    const r1 = await labDown('one', env);
    assert.deepEqual(r1.routes, []);
    assert.equal(fake.routes.size, 3);
    const r2 = await labDown('two', env);
    assert.deepEqual(r2.routes, ['10.244.0.0/16', '10.96.0.0/16']);
    assert.deepEqual([...fake.routes.keys()], ['10.243.0.0/24']);
  });
});

void describe('lab agents (stub processes)', () => {
  void it('builds the agent argv from the default command', () => {
    const [node, script] = defaultAgentCommand();
    assert.equal(node, process.execPath);
    assert.match(script ?? '', /bin\/ambit\.js$/);
    assert.deepEqual(agentArgv(['x'], { node: 'n1', clusterFile: '/s/cluster.json', caDir: '/s/ca', readyFile: '/s/agent-n1.ready' }), [
      'x', 'agent', '--node', 'n1', '--cluster', '/s/cluster.json', '--ca-dir', '/s/ca', '--ready-file', '/s/agent-n1.ready', '--log-format', 'json',
    ]);
  });

  void it('starts one agent per node, waits for the ready files, records pids, and down stops them', async () => {
    const spawnAgent = localSpawn();
    const lab = await labUp({ ...env, spec: spec(), name: 'ta', spawnAgent });
    assert.deepEqual(
      spawnAgent.launches.map((l) => [l.node, l.netns]),
      [
        ['node-a', 'ta-n-node-a'],
        ['node-b', 'ta-n-node-b'],
      ],
    );
    const launch = spawnAgent.launches[0] as AgentLaunch;
    assert.equal(launch.logFile, join(lab.stateDir, 'agent-node-a.log'));
    assert.equal(launch.readyFile, join(lab.stateDir, 'agent-node-a.ready'));
    assert.deepEqual(launch.argv.slice(2, 9), ['agent', '--node', 'node-a', '--cluster', join(lab.stateDir, 'cluster.json'), '--ca-dir', join(lab.stateDir, 'ca')]);
    const state = readLabState(env.stateRoot as string, 'ta');
    assert.equal(state?.agents.length, 2);
    for (const a of state?.agents ?? []) assert.ok(processAlive(a.pid, a.startTime), `agent ${a.pid} should be running`);
    assert.match(readFileSync(launch.logFile, 'utf8'), /sees 2 workloads/);
    const status = await labStatus('ta', env);
    assert.equal(status.nodes[0]?.agent?.alive, true);
    const report = await lab.down();
    assert.deepEqual(
      report.processes.map((p) => p.result),
      ['terminated', 'terminated'],
    );
    for (const a of state?.agents ?? []) assert.equal(processAlive(a.pid, a.startTime), false);
  });

  void it('fails with the log tail when an agent exits early, and tears down', async () => {
    await assert.rejects(labUp({ ...env, spec: spec(), name: 'ta', spawnAgent: localSpawn(['--stub-exit']) }), (err: Error) => {
      assert.ok(err instanceof LabAgentError, err.message);
      assert.match(err.message, /node-a exited with code 3 before it was ready/);
      assert.match(err.message, /failing on purpose/);
      return true;
    });
    assert.equal(fake.netns.size, 0);
    assert.ok(!existsSync(join(env.stateRoot as string, 'ta')));
  });

  void it('times out an agent that never becomes ready and SIGKILLs one that ignores SIGTERM', async () => {
    const spawnAgent = localSpawn(['--stub-never-ready', '--stub-ignore-term']);
    const t0 = Date.now();
    await assert.rejects(labUp({ ...env, spec: spec(), name: 'ta', spawnAgent, readyTimeoutMs: 500 }), (err: Error) => {
      assert.ok(err instanceof LabAgentError, err.message);
      assert.match(err.message, /did not write its ready file .* within 0\.5s/);
      assert.match(err.message, /stub agent for node node-a starting/);
      return true;
    });
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(fake.netns.size, 0);
  });

  void it('ignores a stale ready file from an earlier run', async () => {
    const stateDir = join(dir, 'custom-state');
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(join(stateDir, 'agent-node-a.ready'), 'old\n');
    await assert.rejects(labUp({ ...env, spec: spec(), name: 'ta', stateDir, spawnAgent: localSpawn(['--stub-never-ready']), readyTimeoutMs: 300 }), LabAgentError);
    // A custom state dir is the user's: down leaves it (and its logs) in place.
    assert.ok(existsSync(join(stateDir, 'agent-node-a.log')));
  });
});

void describe('lab down --all (fake ip)', () => {
  void it('succeeds when there is nothing to clean', async () => {
    assert.deepEqual(await labDownAll(env), []);
  });

  void it('removes every recorded lab, a half-created one, and leftover ambit-* netns and hosts dirs', async () => {
    await labUp({ ...env, spec: spec(), name: 'tu', mesh: false });
    // Half-created: a record with one netns, as a crashed `up` leaves it.
    mkdirSync(join(env.stateRoot as string, 'half'), { recursive: true });
    writeFileSync(
      join(env.stateRoot as string, 'half', 'state.json'),
      JSON.stringify({ version: 1, name: 'half', phase: 'creating', netns: ['half-br'], stateDir: join(env.stateRoot as string, 'half'), ownsStateDir: true }),
    );
    fake.netns.add('half-br');
    fake.netns.add('half-n-orphan'); // created but never recorded
    fake.netns.add('ambit-p-default-x');
    fake.netns.add('unrelated');
    mkdirSync(join(dir, 'etc-netns', 'ambit-p-default-x'), { recursive: true });
    mkdirSync(join(dir, 'etc-netns', 'unrelated'), { recursive: true });
    const reports = await labDownAll(env);
    assert.deepEqual(
      reports.map((r) => r.name),
      ['half', 'tu', '(leftovers)'],
    );
    assert.deepEqual([...fake.netns], ['unrelated']);
    assert.ok(existsSync(join(dir, 'etc-netns', 'unrelated')));
    assert.ok(!existsSync(join(dir, 'etc-netns', 'ambit-p-default-x')));
    assert.equal(fake.routes.size, 0);
    assert.deepEqual(await labDownAll(env), []);
  });
});

void describe('lab targets', () => {
  void it('resolves <ns>/<pod>, <pod> (namespace default) and nodes', () => {
    const state = {
      name: 'x',
      nodes: [{ name: 'n1', netns: 'x-n-n1', ip: '10.243.0.1', podCidr: '10.244.1.0/24' }],
      pods: [
        { uid: 'default/a', namespace: 'default', name: 'a', node: 'n1', ip: '10.244.1.2', netns: 'x-p-default-a' },
        { uid: 'demo/a', namespace: 'demo', name: 'a', node: 'n1', ip: '10.244.1.3', netns: 'x-p-demo-a' },
      ],
    } as unknown as Parameters<typeof resolveTarget>[0];
    assert.equal(resolveTarget(state, 'a'), 'x-p-default-a');
    assert.equal(resolveTarget(state, 'demo/a'), 'x-p-demo-a');
    assert.equal(resolveTarget(state, { pod: 'a', namespace: 'demo' }), 'x-p-demo-a');
    assert.equal(resolveTarget(state, { node: 'n1' }), 'x-n-n1');
    assert.throws(() => resolveTarget(state, { node: 'n9' }), /no node 'n9'/);
    assert.throws(() => resolveTarget(state, 'demo/b'), /no pod demo\/b/);
  });
});
