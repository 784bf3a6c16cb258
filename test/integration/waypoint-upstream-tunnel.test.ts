/**
 * HTTP/1.1 upstream over a non-socket byte stream (what an HBONE tunnel is):
 * keep-alive reuse must not pile up listeners on the connection (a leak once
 * showed as "MaxListenersExceededWarning: 11 error listeners added to
 * [Duplex]"), and request heads and bodies must arrive intact.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { Endpoint } from '../../src/waypoint/config.js';
import { tcpDialer, type UpstreamDialer } from '../../src/waypoint/upstream.js';
import { backend, closeBackends, httpGet, simpleConfig, startWaypoint, type Backend, type Harness } from '../fixtures/waypoint/harness.js';

/** A plain Duplex over a TCP socket: not a net.Socket, like an Http2Stream tunnel. */
function tunnel(inner: Duplex): Duplex {
  const d = new Duplex({
    read() {
      inner.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      inner.write(chunk, cb);
    },
    final(cb) {
      inner.end();
      cb();
    },
    destroy(err, cb) {
      inner.destroy(err ?? undefined);
      cb(err);
    },
  });
  inner.on('data', (c: Buffer) => {
    if (!d.push(c)) inner.pause();
  });
  inner.once('end', () => d.push(null));
  inner.once('close', () => d.destroy());
  inner.on('error', (e: Error) => d.destroy(e));
  return d;
}

describe('waypoint HTTP/1.1 upstream over a tunnel stream', () => {
  let b: Backend;
  let h: Harness;
  let dials = 0;
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(`${w.name}: ${w.message}`);
  };

  before(async () => {
    process.on('warning', onWarning);
    b = await backend('a');
    const tcp = tcpDialer();
    const dialer: UpstreamDialer = async (ep: Endpoint, protocol) => {
      dials++;
      return tunnel(await tcp(ep, protocol));
    };
    h = await startWaypoint(simpleConfig([{ name: 'a', ports: [b.port] }]), { dialer });
  });

  after(async () => {
    process.off('warning', onWarning);
    await h?.close();
    if (b) await closeBackends(b);
  });

  test('30 keep-alive requests share one tunnel without leaking listeners', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 30; i++) {
        const body = `payload-${i}-`.repeat(50);
        const r = await httpGet(h.port, `/n/${i}`, { method: 'POST', body, agent, headers: { 'content-type': 'text/plain' } });
        assert.equal(r.status, 200);
        assert.equal(b.seen[i]?.body, body);
        assert.equal(b.seen[i]?.url, `/n/${i}`);
      }
    } finally {
      agent.destroy();
    }
    assert.equal(dials, 1, 'the upstream connection is reused');
    // warnings are emitted on the next tick
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(warnings.filter((w) => w.includes('MaxListeners')), []);
  });
});
