/**
 * The soak in CI (issue 9, "Load"): 60 s of 1,000 rps keep-alive HTTP plus
 * 200 long-lived checksummed echo streams from a pod on node-a to a pod on
 * node-b through both agents (bench/lib/soak.ts; `npm run soak` is the
 * 10-minute version). Fails on: any stream integrity error or HTTP error, an
 * agent RSS growth over 20 % after the warm-up interval, an agent fd count
 * not back within ± 10 of its pre-load value, the last interval's p99 at or
 * above 3x the first (floor 25 ms), or under 90 % of the target rate.
 * Needs root.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { runSoak } from '../../bench/lib/soak.js';
import { assertPrivileged, requiresRoot } from '../helpers/privileged.js';
import { Tally } from '../security/lib/tally.js';

const tally = new Tally('chaos-soak');

describe('soak (60 s)', { ...requiresRoot() }, () => {
  test('1,000 rps + 200 streams for 60 s: no integrity error, RSS and fds flat, p99 steady', { timeout: 150_000 }, async (t) => {
    assertPrivileged(t);
    const r = await runSoak({
      name: `rzsk${randomBytes(3).toString('hex')}`,
      seconds: 60,
      intervalSeconds: 10,
      rps: 1000,
      streams: 200,
      warmupIntervals: 1,
      log: (l) => t.diagnostic(l),
    });
    const lost = r.done.integrityErrors > 0 ? 1 : 0;
    tally.case(`soak: ${r.done.requests} requests, ${r.done.streamsOpened} streams`, { refused: false, crashed: r.after.length !== r.before.length, bytesLost: lost });
    tally.print();
    t.diagnostic(`achieved ${r.achievedRps} rps; ${r.done.streamBytes} stream bytes verified; failures: ${JSON.stringify(r.failures)}`);
    assert.equal(r.done.integrityErrors, 0, r.done.integrityNotes.join('; '));
    assert.equal(r.done.streamsIntact, 200);
    assert.ok(r.done.streamBytes > 0, 'no stream bytes were verified');
    assert.ok(r.intervals.length >= 5, `only ${r.intervals.length} intervals`);
    assert.deepEqual(r.failures, []);
    assert.equal(r.pass, true);
  });
});
