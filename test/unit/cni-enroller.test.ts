// PodEnroller ordering with a scripted ZDS server and rule installer: rules
// only after the agent acked, removed before the del, NACKed pods retried,
// a new netns re-enrolls. test/integration/agent-lifecycle.test.ts runs it
// for real inside the agent.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { PodEnroller } from '../../src/cni/enroller.js';
import type { CniPodWithNetns, ZdsDelivery, ZdsServer } from '../../src/cni/zds-server.js';
import { silentLogger } from '../../src/common/logger.js';

class ScriptedServer extends EventEmitter {
  readonly log: string[] = [];
  nack = new Set<string>();
  async addPod(pod: CniPodWithNetns): Promise<ZdsDelivery> {
    this.log.push(`add ${pod.uid} ${pod.netnsPath}`);
    return { connectionId: 1, request: `add '${pod.uid}'`, outcome: this.nack.has(pod.uid) ? 'nack' : 'ack' };
  }
  async removePod(uid: string): Promise<ZdsDelivery[]> {
    this.log.push(`del ${uid}`);
    return [{ connectionId: 1, request: `del '${uid}'`, outcome: 'ack' }];
  }
}

function setup(retryMs = 20) {
  const server = new ScriptedServer();
  const rules = {
    install: async (netns: string) => void server.log.push(`install ${netns}`),
    remove: async (netns: string) => void server.log.push(`remove ${netns}`),
  };
  const enroller = new PodEnroller({ server: server as unknown as ZdsServer, rules, logger: silentLogger(), retryMs });
  return { server, enroller };
}

const pod = (uid: string, netnsPath: string): CniPodWithNetns => ({ uid, name: uid, namespace: 'ns', serviceAccount: 'sa', netnsPath });

void test('enroll: ZDS add acked, then rules; leave: rules removed, then del', async () => {
  const { server, enroller } = setup();
  await enroller.setDesired([pod('a', '/n/a')]);
  assert.equal(enroller.synced, true);
  await enroller.setDesired([]);
  assert.deepEqual(server.log, ['add a /n/a', 'install /n/a', 'remove /n/a', 'del a']);
  assert.equal(enroller.synced, true);
  enroller.close();
});

void test('a NACKed add installs no rules and is retried until acked', async () => {
  const { server, enroller } = setup();
  server.nack.add('a');
  await enroller.setDesired([pod('a', '/n/a'), pod('b', '/n/b')]);
  assert.equal(enroller.synced, false);
  assert.deepEqual(server.log, ['add a /n/a', 'add b /n/b', 'install /n/b']);
  assert.match(enroller.status().find((s) => s.uid === 'a')?.lastError ?? '', /did not ack.*nack/);
  server.nack.clear();
  // The retry timer is unref'd (it must not keep an agent alive); hold the loop open meanwhile.
  const hold = setTimeout(() => undefined, 5_000);
  await new Promise<void>((resolve) => enroller.once('synced', resolve));
  clearTimeout(hold);
  assert.deepEqual(server.log.slice(3), ['add a /n/a', 'install /n/a']);
  enroller.close();
});

void test('a pod re-created in a new netns is unenrolled from the old one and enrolled in the new', async () => {
  const { server, enroller } = setup();
  await enroller.setDesired([pod('a', '/n/a1')]);
  await enroller.setDesired([pod('a', '/n/a2')]);
  assert.deepEqual(server.log, ['add a /n/a1', 'install /n/a1', 'remove /n/a1', 'del a', 'add a /n/a2', 'install /n/a2']);
  assert.deepEqual(
    enroller.status().map((s) => [s.uid, s.netns, s.phase]),
    [['a', '/n/a2', 'enrolled']],
  );
  enroller.close();
});

void test('a failing rule install leaves the pod pending and the others enrolled', async () => {
  const server = new ScriptedServer();
  const rules = {
    install: async (netns: string) => {
      if (netns === '/n/bad') throw new Error('nft: netns /n/bad vanished');
      server.log.push(`install ${netns}`);
    },
    remove: async () => undefined,
  };
  const enroller = new PodEnroller({ server: server as unknown as ZdsServer, rules, logger: silentLogger(), retryMs: 60_000 });
  await enroller.setDesired([pod('bad', '/n/bad'), pod('good', '/n/good')]);
  assert.deepEqual(
    enroller.status().map((s) => [s.uid, s.phase]),
    [
      ['bad', 'pending'],
      ['good', 'enrolled'],
    ],
  );
  assert.match(enroller.status()[0]?.lastError ?? '', /vanished/);
  enroller.close();
});
