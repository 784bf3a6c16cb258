/**
 * bridge() over real loopback TCP: two socket pairs, the bridge joining the
 * inner ends. Counts bytes exactly, forwards half-closes while the other
 * direction keeps flowing, and turns a reset on one side into a reset on the other.
 *
 *   peerA ══ sideA ─┐ bridge ┌─ sideB ══ peerB
 */
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { bridge, tcpSide, type BridgeResult } from '../../src/hbone/bridge.js';

let server: Server;
let port = 0;
const accepted: Socket[] = [];
const waiting: Array<(s: Socket) => void> = [];
const all: Socket[] = [];

before(async () => {
  server = createServer({ allowHalfOpen: true }, (s) => {
    const w = waiting.shift();
    if (w) w(s);
    else accepted.push(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  for (const s of all) s.destroy();
  server.close();
  await once(server, 'close');
});

/** A connected loopback pair [client, server-side], both allowHalfOpen. */
async function socketPair(): Promise<[Socket, Socket]> {
  const serverSide = new Promise<Socket>((resolve) => {
    const s = accepted.shift();
    if (s) resolve(s);
    else waiting.push(resolve);
  });
  const client = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await once(client, 'connect');
  const s = await serverSide;
  all.push(client, s);
  return [client, s];
}

interface Rig {
  peerA: Socket;
  peerB: Socket;
  sideA: Socket;
  sideB: Socket;
  done: Promise<BridgeResult>;
}

async function rig(): Promise<Rig> {
  const [peerA, sideA] = await socketPair();
  const [sideB, peerB] = await socketPair();
  return { peerA, peerB, sideA, sideB, done: bridge(tcpSide(sideA), tcpSide(sideB)) };
}

/** Collects what a socket reads and how it ends. */
function watch(s: Socket): { data: () => Buffer; ended: Promise<void>; closed: Promise<{ hadError: boolean; error: NodeJS.ErrnoException | undefined }> } {
  const chunks: Buffer[] = [];
  let error: NodeJS.ErrnoException | undefined;
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('error', (e: NodeJS.ErrnoException) => (error = e));
  const ended = once(s, 'end').then(() => undefined);
  ended.catch(() => undefined);
  const closed = new Promise<{ hadError: boolean; error: NodeJS.ErrnoException | undefined }>((resolve) => s.once('close', (hadError: boolean) => resolve({ hadError, error })));
  return { data: () => Buffer.concat(chunks), ended, closed };
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('bridge over loopback TCP', { timeout: 10_000 }, () => {
  test('copies both ways at once and counts every byte exactly', async () => {
    const r = await rig();
    const a = watch(r.peerA);
    const b = watch(r.peerB);
    const aToB = pattern(3 * 1024 * 1024 + 17, 1);
    const bToA = pattern(700 * 1024 + 3, 2);
    r.peerA.end(aToB);
    r.peerB.end(bToA);
    const result = await r.done;
    await Promise.all([a.closed, b.closed]);
    assert.equal(result.bytesAtoB, aToB.length);
    assert.equal(result.bytesBtoA, bToA.length);
    assert.equal(result.error, undefined);
    assert.ok(b.data().equals(aToB), 'peerB got exactly what peerA sent');
    assert.ok(a.data().equals(bToA), 'peerA got exactly what peerB sent');
    assert.equal((await a.closed).hadError, false);
    assert.equal((await b.closed).hadError, false);
  });

  test('zero bytes in both directions is a clean bridge', async () => {
    const r = await rig();
    const a = watch(r.peerA);
    const b = watch(r.peerB);
    r.peerA.end();
    r.peerB.end();
    const result = await r.done;
    await Promise.all([a.closed, b.closed]);
    assert.deepEqual(result, { bytesAtoB: 0, bytesBtoA: 0 });
  });

  test('an end from A reaches B while B keeps sending to A (half-close)', async () => {
    const r = await rig();
    const a = watch(r.peerA);
    const b = watch(r.peerB);
    r.peerA.end('request');
    await b.ended;
    assert.equal(b.data().toString(), 'request');
    // A has only half-closed: it has not seen an end and can still read.
    assert.equal(r.peerA.readableEnded, false);
    assert.equal(r.peerA.destroyed, false);
    assert.equal(r.sideA.destroyed, false);

    const part1 = 'response part 1, ';
    r.peerB.write(part1);
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (a.data().length >= part1.length) resolve();
        else r.peerA.once('data', check);
      };
      check();
    });
    r.peerB.end('part 2');
    await a.ended;
    assert.equal(a.data().toString(), 'response part 1, part 2');
    const result = await r.done;
    assert.deepEqual(result, { bytesAtoB: 'request'.length, bytesBtoA: 'response part 1, part 2'.length });
    assert.equal((await a.closed).hadError, false);
    assert.equal((await b.closed).hadError, false);
  });

  test('an end from B reaches A while A keeps sending to B (half-close the other way)', async () => {
    const r = await rig();
    const a = watch(r.peerA);
    const b = watch(r.peerB);
    r.peerB.end('bye');
    await a.ended;
    assert.equal(a.data().toString(), 'bye');
    assert.equal(r.peerB.readableEnded, false);
    r.peerA.end('late data');
    await b.ended;
    assert.equal(b.data().toString(), 'late data');
    assert.deepEqual(await r.done, { bytesAtoB: 'late data'.length, bytesBtoA: 'bye'.length });
  });

  test('a reset from peer A resets B: peer B sees ECONNRESET and the result has the error', async () => {
    const r = await rig();
    const a = watch(r.peerA);
    const b = watch(r.peerB);
    r.peerA.write('some data');
    await new Promise<void>((resolve) => r.peerB.once('data', () => resolve()));
    r.peerA.resetAndDestroy();
    const result = await r.done;
    const bClose = await b.closed;
    assert.ok(result.error instanceof Error, 'the bridge reports the reset');
    assert.equal(bClose.hadError, true, 'peer B closed with an error, not a clean end');
    assert.equal(bClose.error?.code, 'ECONNRESET');
    assert.equal(r.peerB.readableEnded, false, 'peer B never saw a FIN');
    assert.equal(result.bytesAtoB, 'some data'.length);
    await a.closed;
  });

  test('a reset from peer B resets A, even after A half-closed', async () => {
    const r = await rig();
    const a = watch(r.peerA);
    const b = watch(r.peerB);
    r.peerA.end('request');
    await b.ended;
    r.peerB.write('partial');
    await new Promise<void>((resolve) => r.peerA.once('data', () => resolve()));
    r.peerB.resetAndDestroy();
    const result = await r.done;
    const aClose = await a.closed;
    assert.ok(result.error instanceof Error);
    assert.equal(aClose.hadError, true);
    assert.equal(aClose.error?.code, 'ECONNRESET');
    assert.equal(r.peerA.readableEnded, false);
    assert.equal(a.data().toString(), 'partial');
    assert.deepEqual([result.bytesAtoB, result.bytesBtoA], ['request'.length, 'partial'.length]);
    await b.closed;
  });

  test('a local error on one side (destroy with an error) resets the far peer', async () => {
    const r = await rig();
    const b = watch(r.peerB);
    watch(r.peerA);
    const boom = new Error('boom');
    r.sideA.destroy(boom);
    const result = await r.done;
    assert.equal(result.error, boom);
    const bClose = await b.closed;
    assert.equal(bClose.hadError, true);
    assert.equal(bClose.error?.code, 'ECONNRESET');
  });
});
