/**
 * Chaos: the node link is cut and restored (issue 9, "Network").
 * With an HBONE connection from node-a's agent to node-b's established and
 * checksummed downloads running through it, node-b's uplink (eth0 in its
 * node netns) drops everything both ways (an nftables table; this kernel has
 * no sch_netem for `tc netem loss 100%`). Then:
 *   - node-a's pool drops the dead connection (ambit_hbone_pool_connections
 *     falls to 0) by PING: the agent pings every 10 s and gives up 20 s after
 *     an unanswered ping (src/hbone/settings.ts), so detection takes 20-30 s
 *     from the cut; the test allows interval + timeout + 2 s of polling (17 s);
 *   - every in-flight download ends with an error on the client app, never a
 *     clean EOF with bytes missing, and not by the client's own timeout;
 *   - after the link is restored, a new connection succeeds and is intact.
 * Node-a hosts the client pod, node-b the server pod. Needs root and nft.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PING_INTERVAL_MS, DEFAULT_PING_TIMEOUT_MS } from '../../src/hbone/settings.js';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.js';
import { assertPrivileged, requiresRoot, requiresTool } from '../helpers/privileged.js';
import { startInPod } from '../helpers/pod-process.js';
import { Tally } from '../security/lib/tally.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const streamScript = fileURLToPath(new URL('../../../test/chaos/stream.mjs', import.meta.url));
const name = `rznm${randomBytes(3).toString('hex')}`;
const PORT = 9100;
/** 64 KiB every 20 ms: ~3 MiB/s, so a 512 MiB download is still running when the link comes back. */
const BIG = 512 * 1024 * 1024;
const CHUNK_DELAY_MS = 20;
const IN_FLIGHT = 3;
const DETECT_BOUND_MS = DEFAULT_PING_INTERVAL_MS + DEFAULT_PING_TIMEOUT_MS + 2_000;
const CUT_TABLE = 'rzlinkcut';
const tally = new Tally('chaos-netem');
let lab: LabHandle | undefined;
let server: ChildProcess | undefined;
let cut = false;

interface Fetch {
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

async function fetch(bytes: number): Promise<Fetch> {
  const r = await lab!.exec('mesh/client', [process.execPath, streamScript, 'fetch', ip('server'), String(PORT), String(bytes)], { timeoutMs: 90_000 });
  assert.equal(r.code, 0, `fetch did not run: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Fetch;
}

async function nodeCmd(node: string, argv: readonly string[]): Promise<void> {
  const r = await lab!.exec({ node }, argv);
  assert.equal(r.code, 0, `${argv.join(' ')} in ${node}: ${r.stderr}`);
}

async function poolConnections(node: string): Promise<number> {
  const r = await lab!.exec({ node }, ['curl', '-sS', '--max-time', '2', 'http://127.0.0.1:15020/metrics'], { timeoutMs: 5_000 });
  const m = /^ambit_hbone_pool_connections (\d+)/m.exec(r.stdout);
  assert.ok(m, `no ambit_hbone_pool_connections in ${node}'s metrics: ${r.stderr}`);
  return Number(m[1]);
}

/**
 * Cuts a node's uplink both ways (100 % loss): a table of our own drops every
 * packet entering eth0 (prerouting) and leaving it (postrouting, so both
 * locally sent and forwarded), ahead of every other hook (priority -400).
 * nftables rather than `tc netem loss 100%`: this kernel has no sch_netem.
 */
async function cutLink(node: string): Promise<void> {
  await nodeCmd(node, ['nft', `table inet ${CUT_TABLE} { chain pre { type filter hook prerouting priority -400; iifname "eth0" drop; }; chain post { type filter hook postrouting priority -400; oifname "eth0" drop; }; }`]);
  cut = true;
}

async function restoreLink(node: string): Promise<void> {
  await nodeCmd(node, ['nft', 'delete', 'table', 'inet', CUT_TABLE]);
  cut = false;
}

describe('node link cut and restored', { ...requiresRoot(), ...requiresTool('nft', 'curl') }, () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    lab = await labUp({ manifests: `${fixtures}agent/capture.yaml`, name, mesh: true });
    server = await startInPod(lab, 'mesh/server', [process.execPath, streamScript, 'serve', ip('server'), String(PORT), String(BIG), String(CHUNK_DELAY_MS)]);
  });

  after(async () => {
    tally.print();
    if (cut) await restoreLink('node-b').catch(() => undefined);
    server?.kill();
    if (process.getuid?.() === 0) await labDown(name);
  });

  test('the dead HBONE connection is dropped by PING, in-flight transfers fail with an error, new connections work after the restore', { timeout: 120_000 }, async (t) => {
    assertPrivileged(t);
    const warm = await fetch(1024 * 1024);
    assert.deepEqual([warm.outcome, warm.intact], ['eof', true], `before the cut: ${JSON.stringify(warm)}`);
    assert.ok((await poolConnections('node-a')) >= 1, 'node-a holds no pooled HBONE connection before the cut');

    const transfers = Array.from({ length: IN_FLIGHT }, () => fetch(BIG));
    await new Promise((r) => setTimeout(r, 1500));
    try {
      await cutLink('node-b');
      const cutAt = Date.now();
      t.diagnostic('node-b uplink cut (every packet in and out of eth0 dropped)');
      let detectedMs = -1;
      while (Date.now() - cutAt < DETECT_BOUND_MS + 3_000) {
        if ((await poolConnections('node-a')) === 0) {
          detectedMs = Date.now() - cutAt;
          break;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      t.diagnostic(`pool connection dropped ${detectedMs} ms after the cut (bound ${DETECT_BOUND_MS} ms)`);
      tally.case('link cut: dead HBONE connection detected', { refused: detectedMs >= 0 });
      assert.ok(detectedMs >= 0, `node-a still pooled the dead connection ${DETECT_BOUND_MS + 3_000} ms after the cut`);
      assert.ok(detectedMs <= DETECT_BOUND_MS, `detection took ${detectedMs} ms > ${DETECT_BOUND_MS} ms`);
      // PING, not something faster and unrelated, dropped it: never before one unanswered ping could time out.
      assert.ok(detectedMs >= DEFAULT_PING_TIMEOUT_MS - 1_000, `dropped after only ${detectedMs} ms: not by the PING timeout`);

      const results = await Promise.all(transfers);
      t.diagnostic(`in-flight transfers: ${JSON.stringify(results)}`);
      for (const r of results) {
        const truncated = r.outcome === 'eof' && !r.intact;
        tally.case(`link cut: in-flight download ${r.outcome}${r.code ? ` (${r.code})` : ''} after ${r.bytes} bytes`, { refused: r.outcome === 'error', bytesLost: truncated ? BIG - r.bytes : 0 });
        assert.ok(!truncated, `silent truncation: ${JSON.stringify(r)}`);
        assert.equal(r.outcome, 'error', `an in-flight transfer did not fail: ${JSON.stringify(r)}`);
        assert.notEqual(r.code, 'timeout', `the client app hung until its own timeout instead of being reset: ${JSON.stringify(r)}`);
        assert.ok(r.bytes < BIG, 'the transfer cannot have completed across the cut');
      }
    } finally {
      if (cut) await restoreLink('node-b');
    }
    t.diagnostic('node-b uplink restored');

    let again: Fetch | undefined;
    const restoredAt = Date.now();
    for (let i = 0; i < 20; i++) {
      again = await fetch(4 * 1024 * 1024);
      if (again.outcome === 'eof' && again.intact) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    t.diagnostic(`first intact transfer ${Date.now() - restoredAt} ms after the restore: ${JSON.stringify(again)}`);
    tally.case('link restored: new transfer', { refused: false, crashed: !(again?.outcome === 'eof' && again.intact) });
    assert.deepEqual([again?.outcome, again?.intact], ['eof', true], `after the restore: ${JSON.stringify(again)}`);
    assert.ok((await poolConnections('node-a')) >= 1, 'node-a did not pool a new HBONE connection after the restore');
  });
});
