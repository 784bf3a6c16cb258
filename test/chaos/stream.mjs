// Checksummed transfers for the chaos tests, run inside lab pods.
//   node stream.mjs serve <ip> <port> <maxBytes> [chunkDelayMs]
//     each connection sends "<n>\n" and gets n (<= maxBytes) bytes of a deterministic stream, paced, then a clean end
//   node stream.mjs fetch <ip> <port> <bytes>
//     asks for and reads one stream and prints {outcome: 'eof'|'error', bytes, intact, code}:
//     'eof' with intact=false would be silent truncation, the one outcome a mesh must never produce
//   node stream.mjs send <ip> <port> <text> — connects, writes text, prints the outcome (for leak probes)
//   node stream.mjs hold <ip> <port> <count> <askBytes> <seconds>
//     opens <count> connections, asks each for <askBytes>, never reads, holds them, prints {opened, failed}
// The stream carries the wire-audit marker "AMBIT-CANARY" every 4 KiB (docs/WIRE-AUDIT.md): it is
// mesh traffic and must never cross the lab bridge in clear. A client outside the mesh, whose traffic
// is plaintext by design, adds --plain (fetch, hold): it asks for the same stream without the marker.
import { createHash } from 'node:crypto';
import { connect, createServer } from 'node:net';

const argv = process.argv.slice(2);
const plain = argv.includes('--plain');
const [mode, host, portText, arg, delayText, extra] = argv.filter((a) => a !== '--plain');
const port = Number(portText);
const CHUNK = 64 * 1024;
const MARKER = Buffer.from('AMBIT-CANARY');
const MARKER_EVERY = 4096;

function chunk(i, withMarker = true) {
  const seed = createHash('sha256').update(`ambit-chaos-${i}`).digest();
  const b = Buffer.allocUnsafe(CHUNK);
  for (let o = 0; o < CHUNK; o += seed.length) seed.copy(b, o);
  if (withMarker) for (let o = 0; o < CHUNK; o += MARKER_EVERY) MARKER.copy(b, o);
  return b;
}

function expectedDigest(total, withMarker) {
  const h = createHash('sha256');
  for (let i = 0, sent = 0; sent < total; i++, sent += CHUNK) h.update(chunk(i, withMarker).subarray(0, Math.min(CHUNK, total - sent)));
  return h.digest('hex');
}

if (mode === 'serve') {
  const max = Number(arg);
  const delay = Number(delayText ?? 1);
  const srv = createServer((s) => {
    s.on('error', () => undefined);
    let i = 0;
    let sent = 0;
    let total = -1;
    let head = '';
    let withMarker = true;
    s.on('data', (d) => {
      if (total >= 0) return;
      head += d.toString('latin1');
      const nl = head.indexOf('\n');
      if (nl < 0) return;
      // "<n>\n" or "<n> plain\n" (no marker: the client is outside the mesh).
      const [n, flag] = head.slice(0, nl).split(' ');
      total = Math.min(max, Number(n) || 0);
      withMarker = flag !== 'plain';
      next();
    });
    const next = () => {
      if (s.destroyed) return;
      if (sent >= total) return s.end();
      const c = chunk(i++, withMarker).subarray(0, Math.min(CHUNK, total - sent));
      sent += c.length;
      if (s.write(c)) setTimeout(next, delay);
      else s.once('drain', () => setTimeout(next, delay));
    };
  });
  srv.listen(port, host, () => console.log('listening'));
} else if (mode === 'fetch') {
  const total = Number(arg);
  const h = createHash('sha256');
  let bytes = 0;
  let done = false;
  const s = connect({ host, port }, () => s.write(`${total}${plain ? ' plain' : ''}\n`));
  const finish = (outcome, code) => {
    if (done) return;
    done = true;
    const intact = bytes === total && h.digest('hex') === expectedDigest(total, !plain);
    console.log(JSON.stringify({ outcome, bytes, intact, code }));
    process.exit(0);
  };
  s.on('data', (d) => {
    bytes += d.length;
    h.update(d);
  });
  s.on('end', () => finish('eof'));
  s.on('error', (e) => finish('error', e.code ?? e.message));
  s.on('close', () => finish('error', 'closed'));
  setTimeout(() => finish('error', 'timeout'), 60_000).unref();
} else if (mode === 'send') {
  const s = connect({ host, port });
  s.setTimeout(3000, () => {
    console.log(JSON.stringify({ outcome: 'timeout' }));
    process.exit(0);
  });
  s.on('connect', () => s.write(arg));
  s.on('error', (e) => {
    console.log(JSON.stringify({ outcome: 'error', code: e.code }));
    process.exit(0);
  });
  s.on('data', () => undefined);
  s.on('close', () => {
    console.log(JSON.stringify({ outcome: 'closed' }));
    process.exit(0);
  });
} else if (mode === 'hold') {
  const [count, ask, secs] = [Number(arg), Number(delayText), Number(extra ?? 5)];
  let opened = 0;
  let failed = 0;
  const socks = [];
  for (let i = 0; i < count; i++) {
    const s = connect({ host, port }, () => {
      opened++;
      s.write(`${ask}${plain ? ' plain' : ''}\n`);
      s.pause();
    });
    s.on('error', () => failed++);
    socks.push(s);
  }
  setTimeout(() => {
    console.log(JSON.stringify({ opened, failed }));
    for (const s of socks) s.destroy();
    process.exit(0);
  }, secs * 1000);
} else {
  console.error('usage: stream.mjs serve|fetch|send ...');
  process.exit(2);
}
