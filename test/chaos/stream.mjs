// Checksummed transfers for the chaos tests, run inside lab pods.
//   node stream.mjs serve <ip> <port> <maxBytes> [chunkDelayMs]
//     each connection sends "<n>\n" and gets n (<= maxBytes) bytes of a deterministic stream, paced, then a clean end
//   node stream.mjs fetch <ip> <port> <bytes>
//     asks for and reads one stream and prints {outcome: 'eof'|'error', bytes, intact, code}:
//     'eof' with intact=false would be silent truncation, the one outcome a mesh must never produce
//   node stream.mjs send <ip> <port> <text> — connects, writes text, prints the outcome (for leak probes)
//   node stream.mjs hold <ip> <port> <count> <askBytes> <seconds>
//     opens <count> connections, asks each for <askBytes>, never reads, holds them, prints {opened, failed}
import { createHash } from 'node:crypto';
import { connect, createServer } from 'node:net';

const [mode, host, portText, arg, delayText] = process.argv.slice(2);
const port = Number(portText);
const CHUNK = 64 * 1024;

function chunk(i) {
  const seed = createHash('sha256').update(`ambit-chaos-${i}`).digest();
  const b = Buffer.allocUnsafe(CHUNK);
  for (let o = 0; o < CHUNK; o += seed.length) seed.copy(b, o);
  return b;
}

function expectedDigest(total) {
  const h = createHash('sha256');
  for (let i = 0, sent = 0; sent < total; i++, sent += CHUNK) h.update(chunk(i).subarray(0, Math.min(CHUNK, total - sent)));
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
    s.on('data', (d) => {
      if (total >= 0) return;
      head += d.toString('latin1');
      const nl = head.indexOf('\n');
      if (nl < 0) return;
      total = Math.min(max, Number(head.slice(0, nl)) || 0);
      next();
    });
    const next = () => {
      if (s.destroyed) return;
      if (sent >= total) return s.end();
      const c = chunk(i++).subarray(0, Math.min(CHUNK, total - sent));
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
  const s = connect({ host, port }, () => s.write(`${total}\n`));
  const finish = (outcome, code) => {
    if (done) return;
    done = true;
    const intact = bytes === total && h.digest('hex') === expectedDigest(total);
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
  const [count, ask, secs] = [Number(arg), Number(delayText), Number(process.argv[7] ?? 5)];
  let opened = 0;
  let failed = 0;
  const socks = [];
  for (let i = 0; i < count; i++) {
    const s = connect({ host, port }, () => {
      opened++;
      s.write(`${ask}\n`);
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
