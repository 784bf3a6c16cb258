// InPodManager logic with injected proxies and fds: repeated adds, a pod
// re-created in a new netns, del while starting, failed starts, snapshots.
// test/integration/agent-zds.test.ts drives the real agent over real ZDS.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InPodManager, type EnrolledPod } from '../../src/agent/inpod-manager.js';
import { silentLogger } from '../../src/common/logger.js';
import type { LocalWorkload } from '../../src/state/local-config.js';

function workload(uid: string): LocalWorkload {
  const [namespace = '', name = ''] = uid.split('/');
  return { uid, name, namespace, serviceAccount: 'sa', node: 'n', ip: '10.0.0.1', labels: {} };
}

function harness(opts: { known?: string[]; fail?: Set<string>; gate?: Promise<void> } = {}) {
  const netnsOfFd = new Map<number, string>();
  const closedFds: number[] = [];
  const started: EnrolledPod[] = [];
  const stopped: EnrolledPod[] = [];
  const known = new Set(opts.known ?? ['ns/a', 'ns/b']);
  const m = new InPodManager({
    logger: silentLogger(),
    resolve: (uid) => (known.has(uid) ? workload(uid) : undefined),
    netnsKey: (fd) => {
      const k = netnsOfFd.get(fd);
      if (k === undefined) throw new Error(`fd ${fd} is not open`);
      return k;
    },
    closeFd: (fd) => {
      assert.ok(!closedFds.includes(fd), `fd ${fd} closed twice`);
      closedFds.push(fd);
    },
    startProxy: async (pod) => {
      await opts.gate;
      if (opts.fail?.has(pod.uid)) throw new Error(`cannot listen in ${pod.uid}`);
      started.push(pod);
      return { close: () => stopped.push(pod) };
    },
  });
  let nextFd = 100;
  const fd = (netns: string): number => {
    const f = nextFd++;
    netnsOfFd.set(f, netns);
    return f;
  };
  return { m, fd, closedFds, started, stopped };
}

void test('a repeated add in the same netns is a no-op and its duplicate fd is closed', async () => {
  const h = harness();
  const first = h.fd('ns1');
  await h.m.add('ns/a', first);
  const dup = h.fd('ns1');
  await h.m.add('ns/a', dup);
  assert.equal(h.started.length, 1);
  assert.deepEqual(h.closedFds, [dup]);
  assert.equal(h.m.netnsOf('ns/a'), first);
});

void test('an add with a new netns for the same uid replaces the proxy', async () => {
  const h = harness();
  const old = h.fd('ns1');
  await h.m.add('ns/a', old);
  const fresh = h.fd('ns2');
  await h.m.add('ns/a', fresh);
  assert.equal(h.started.length, 2);
  assert.deepEqual(
    h.stopped.map((p) => p.netnsFd),
    [old],
  );
  assert.deepEqual(h.closedFds, [old]);
  assert.equal(h.m.netnsOf('ns/a'), fresh);
  assert.deepEqual(
    h.m.dump().map((d) => [d.uid, d.state, d.netns]),
    [['ns/a', 'up', 'ns2']],
  );
});

void test('del closes listeners and the fd once; a second del is a no-op', async () => {
  const h = harness();
  const f = h.fd('ns1');
  await h.m.add('ns/a', f);
  assert.equal(h.m.del('ns/a'), true);
  assert.equal(h.m.del('ns/a'), false);
  assert.equal(h.stopped.length, 1);
  assert.deepEqual(h.closedFds, [f]);
  assert.equal(h.m.netnsOf('ns/a'), undefined);
});

void test('a del while the proxy starts wins: the proxy is closed when its start completes', async () => {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const h = harness({ gate });
  const f = h.fd('ns1');
  const adding = h.m.add('ns/a', f);
  assert.equal(h.m.del('ns/a'), true);
  open();
  await assert.rejects(adding, /removed while its proxy started/);
  assert.equal(h.started.length, 1);
  assert.equal(h.stopped.length, 1);
  assert.deepEqual(h.closedFds, [f]);
  assert.deepEqual(h.m.uids(), []);
});

void test('a failed start rejects (for the NACK), forgets the pod and closes its fd', async () => {
  const h = harness({ fail: new Set(['ns/a']) });
  const f = h.fd('ns1');
  await assert.rejects(h.m.add('ns/a', f), /cannot listen in ns\/a/);
  assert.deepEqual(h.m.uids(), []);
  assert.deepEqual(h.closedFds, [f]);
});

void test('an unknown pod is refused with a reason and its fd closed', async () => {
  const h = harness();
  const f = h.fd('ns1');
  await assert.rejects(h.m.add('ns/zzz', f), /not in the agent's cluster view/);
  assert.deepEqual(h.closedFds, [f]);
});

void test('a snapshot keeps the listed pods and removes the others', async () => {
  const h = harness();
  await h.m.add('ns/a', h.fd('ns1'));
  await h.m.add('ns/b', h.fd('ns2'));
  assert.deepEqual(h.m.reconcile(new Set(['ns/b'])), ['ns/a']);
  assert.deepEqual(h.m.uids(), ['ns/b']);
});

void test('close removes every pod and refuses later adds', async () => {
  const h = harness();
  await h.m.add('ns/a', h.fd('ns1'));
  h.m.close();
  assert.equal(h.stopped.length, 1);
  const f = h.fd('ns2');
  await assert.rejects(h.m.add('ns/b', f), /shutting down/);
  assert.ok(h.closedFds.includes(f));
});
