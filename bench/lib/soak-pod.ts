/**
 * The in-pod side of the soak (bench/lib/soak.ts), one script with two modes,
 * each run inside a lab pod with `ip netns exec`:
 *
 *   node soak-pod.js server <ip> <httpPort> <echoPort>
 *     An HTTP/1.1 server (1 KiB answers) and a TCP echo server (long-lived
 *     streams). Prints {"ev":"ready"} once both listen; exits on SIGTERM or
 *     when stdin closes.
 *
 *   node soak-pod.js client '<SoakClientArgs as JSON>'
 *     Open-loop keep-alive HTTP at `rps` plus `streams` long-lived echo
 *     connections that each send a deterministic byte pattern (one chunk
 *     every `streamPaceMs`) and verify every echoed byte against it. Prints
 *     one JSON line per interval (SoakClientInterval) and a final SoakClientDone
 *     after ending every stream and waiting for its full echo.
 *
 * A stream's integrity error is: an echoed byte that differs from what was
 * sent, an error or close before the stream was ended, or an end with bytes
 * missing. Each is counted; the soak requires zero.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { answer1KiB, readyAfter, stopOnStdinEnd } from './pod-server.js';

export interface SoakClientArgs {
  readonly host: string;
  readonly httpPort: number;
  readonly echoPort: number;
  readonly rps: number;
  readonly seconds: number;
  readonly intervalSeconds: number;
  readonly streams: number;
  readonly streamChunkBytes: number;
  readonly streamPaceMs: number;
  readonly maxInFlight?: number;
  readonly timeoutMs?: number;
}

export interface SoakClientInterval {
  readonly ev: 'interval';
  readonly index: number;
  readonly completed: number;
  readonly errors: number;
  readonly skipped: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly streamsOpen: number;
  /** Echoed stream bytes verified in this interval. */
  readonly streamBytes: number;
  readonly integrityErrors: number;
  readonly firstErrors: readonly string[];
}

export interface SoakClientDone {
  readonly ev: 'done';
  readonly requests: number;
  readonly httpErrors: number;
  readonly skipped: number;
  readonly connections: number;
  readonly streamsOpened: number;
  readonly streamsIntact: number;
  readonly streamBytes: number;
  readonly integrityErrors: number;
  readonly integrityNotes: readonly string[];
}

const RESPONSE_BYTES = 1024;
const PATTERN_BYTES = 64 * 1024;

/** The deterministic stream content: byte k of stream s is PATTERN[(k + s * 7919) % PATTERN_BYTES]. */
function pattern(): Buffer {
  const out = Buffer.allocUnsafe(PATTERN_BYTES);
  let seed = createHash('sha256').update('ambit-soak').digest();
  for (let o = 0; o < PATTERN_BYTES; o += seed.length) {
    seed.copy(out, o);
    seed = createHash('sha256').update(seed).digest();
  }
  return out;
}

const PATTERN = pattern();

/** Bytes [offset, offset+len) of stream `id`, as a fresh buffer. */
function slice(id: number, offset: number, len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  let filled = 0;
  while (filled < len) {
    const p = (offset + filled + id * 7919) % PATTERN_BYTES;
    const n = Math.min(len - filled, PATTERN_BYTES - p);
    PATTERN.copy(out, filled, p, p + n);
    filled += n;
  }
  return out;
}

function runServer(host: string, httpPort: number, echoPort: number): void {
  const web = http.createServer(answer1KiB);
  web.keepAliveTimeout = 30_000;
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  const ready = readyAfter(2);
  web.listen(httpPort, host, ready);
  echo.listen(echoPort, host, ready);
  stopOnStdinEnd(() => {
    web.close();
    web.closeAllConnections();
    echo.close();
  });
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

interface Stream {
  readonly id: number;
  sent: number;
  received: number;
  ended: boolean;
  finished: boolean;
  intact: boolean;
  socket: net.Socket;
  timer?: NodeJS.Timeout;
  done: Promise<void>;
}

async function runClient(a: SoakClientArgs): Promise<void> {
  const body = Buffer.alloc(128, 0x62);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const maxInFlight = a.maxInFlight ?? 512;
  const timeoutMs = a.timeoutMs ?? 5000;
  let connections = 0;
  let inFlight = 0;
  let lat: number[] = [];
  let errors = 0;
  let skipped = 0;
  let firstErrors: string[] = [];
  let streamBytes = 0;
  let integrityErrors = 0;
  const totals = { requests: 0, httpErrors: 0, skipped: 0, streamBytes: 0, integrityErrors: 0 };
  const integrityNotes: string[] = [];
  const noteIntegrity = (text: string): void => {
    integrityErrors++;
    totals.integrityErrors++;
    if (integrityNotes.length < 10) integrityNotes.push(text);
  };

  const request = (): void => {
    const t0 = performance.now();
    let done = false;
    inFlight++;
    totals.requests++;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      inFlight--;
      if (err) {
        errors++;
        totals.httpErrors++;
        if (firstErrors.length < 5) firstErrors.push(err.message);
      } else {
        lat.push(performance.now() - t0);
      }
    };
    const req = http.request(
      { host: a.host, port: a.httpPort, method: 'POST', path: '/', agent, headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) } },
      (res) => {
        let n = 0;
        res.on('data', (d: Buffer) => (n += d.length));
        res.on('end', () => finish(res.statusCode === 200 && n === RESPONSE_BYTES ? undefined : new Error(`status ${res.statusCode}, ${n} bytes`)));
        res.on('error', finish);
      },
    );
    req.on('socket', (s) => {
      const m = s as { __soakCounted?: boolean };
      if (!m.__soakCounted) {
        m.__soakCounted = true;
        connections++;
      }
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', finish);
    req.end(body);
  };

  const streams: Stream[] = [];
  const openStream = (id: number): Stream => {
    const socket = net.connect({ host: a.host, port: a.echoPort, allowHalfOpen: true });
    let resolveDone: () => void = () => undefined;
    const st: Stream = { id, sent: 0, received: 0, ended: false, finished: false, intact: true, socket, done: new Promise<void>((r) => (resolveDone = r)) };
    const fail = (why: string): void => {
      if (st.finished) return;
      st.finished = true;
      st.intact = false;
      clearInterval(st.timer);
      noteIntegrity(`stream ${id}: ${why} (sent ${st.sent}, echoed ${st.received})`);
      socket.destroy();
      resolveDone();
    };
    socket.on('data', (d: Buffer) => {
      if (st.finished) return;
      if (!d.equals(slice(id, st.received, d.length))) return fail(`echoed bytes differ at offset ${st.received}`);
      st.received += d.length;
      streamBytes += d.length;
      totals.streamBytes += d.length;
      if (st.received > st.sent) fail('more bytes echoed than sent');
    });
    socket.on('end', () => {
      if (st.finished) return;
      if (!st.ended) return fail('clean EOF before the stream was ended');
      if (st.received !== st.sent) return fail('clean EOF with bytes missing');
      st.finished = true;
      socket.end();
      resolveDone();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => fail(`error ${e.code ?? e.message}`));
    socket.on('close', () => fail('closed'));
    socket.on('connect', () => {
      st.timer = setInterval(() => {
        if (st.ended || st.finished) return;
        // Backpressure: skip a beat instead of buffering without bound.
        if (socket.writableLength > 4 * a.streamChunkBytes) return;
        socket.write(slice(id, st.sent, a.streamChunkBytes));
        st.sent += a.streamChunkBytes;
      }, a.streamPaceMs);
    });
    return st;
  };
  for (let i = 0; i < a.streams; i++) {
    streams.push(openStream(i));
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 50));
  }

  const interval = 1000 / a.rps;
  const total = Math.round(a.rps * a.seconds);
  let sent = 0;
  let index = 0;
  const start = performance.now();
  const report = (): void => {
    const sorted = lat.sort((x, y) => x - y);
    const line: SoakClientInterval = {
      ev: 'interval',
      index: index++,
      completed: sorted.length,
      errors,
      skipped,
      p50Ms: round(quantile(sorted, 0.5)),
      p99Ms: round(quantile(sorted, 0.99)),
      maxMs: round(sorted.at(-1) ?? 0),
      streamsOpen: streams.filter((s) => !s.finished && s.socket.readyState === 'open').length,
      streamBytes,
      integrityErrors,
      firstErrors,
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    lat = [];
    errors = 0;
    skipped = 0;
    streamBytes = 0;
    integrityErrors = 0;
    firstErrors = [];
  };
  const reporter = setInterval(report, a.intervalSeconds * 1000);
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
      while (sent < due) {
        sent++;
        if (inFlight >= maxInFlight) {
          skipped++;
          totals.skipped++;
          continue;
        }
        request();
      }
      if (sent >= total) return resolve();
      setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    tick();
  });
  for (let i = 0; i < 100 && inFlight > 0; i++) await new Promise((r) => setTimeout(r, 50));
  clearInterval(reporter);
  // A trailing partial interval is reported only when it holds requests.
  if (lat.length + errors > 0) report();
  // End every stream; each must then echo all it was sent and end cleanly.
  for (const st of streams) {
    clearInterval(st.timer);
    if (st.finished) continue;
    st.ended = true;
    st.socket.end();
  }
  const deadline = setTimeout(() => {
    for (const st of streams) if (!st.finished) st.socket.destroy(new Error('echo did not finish within 15 s'));
  }, 15_000);
  await Promise.all(streams.map((s) => s.done));
  clearTimeout(deadline);
  agent.destroy();
  const done: SoakClientDone = {
    ev: 'done',
    requests: totals.requests,
    httpErrors: totals.httpErrors,
    skipped: totals.skipped,
    connections,
    streamsOpened: streams.length,
    streamsIntact: streams.filter((s) => s.intact && s.finished).length,
    streamBytes: totals.streamBytes,
    integrityErrors: totals.integrityErrors,
    integrityNotes,
  };
  process.stdout.write(`${JSON.stringify(done)}\n`);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server') {
  runServer(rest[0] ?? '0.0.0.0', Number(rest[1] ?? 8080), Number(rest[2] ?? 8081));
} else if (mode === 'client') {
  await runClient(JSON.parse(rest[0] ?? '{}') as SoakClientArgs);
} else {
  process.stderr.write('usage: soak-pod.js server <ip> <httpPort> <echoPort> | client <json>\n');
  process.exitCode = 64;
}
