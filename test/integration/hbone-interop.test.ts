/**
 * HBONE wire compatibility with implementations that share no code with ours.
 *
 * 1. Our client (HbonePool) → Debian nghttpx as an HBONE-like front (h2 over
 *    mutual TLS 1.3, --http2-proxy) → tinyproxy (HTTP/1.1 CONNECT) → target.
 * 2. A python-h2 CONNECT client (test/fixtures/interop/h2_connect_client.py)
 *    → our HboneServer.
 * 3. curl (HTTP/1.1 CONNECT) → nghttpx as an h2-over-mTLS client bridge →
 *    our HboneServer → a loopback HTTP server.
 *
 * Everything listens on 127.0.0.1 ephemeral ports. Every external process
 * runs under coreutils `timeout` (a hard limit that holds even if this test
 * process dies) and is killed, with its process group, in after() hooks.
 *
 * Peer behaviour these tests rely on (nghttpx 1.52, tinyproxy 1.11, h2 4.1):
 * - nghttpx does not forward a client END_STREAM on a CONNECT tunnel to its
 *   HTTP/1 backend: the target sees no EOF until the tunnel is torn down, and
 *   bytes still flow back to the client. So transfers through nghttpx read a
 *   known length instead of waiting for EOF, and teardown may reset.
 * - tinyproxy answers 500 when the target refuses the connection and 403 for
 *   a port outside its ConnectPort list; nghttpx relays both statuses.
 * - Node's nghttp2 resets a CONNECT stream that lacks :authority or carries
 *   :scheme/:path with RST_STREAM(PROTOCOL_ERROR) before our server sees it.
 * - nghttpx (--verify-client) rejects a foreign client certificate only after
 *   the client's TLS 1.3 handshake completed, so our pool sees the CONNECT
 *   stream reset (INTERNAL_ERROR) rather than a handshake error.
 * - As a client bridge, nghttpx checks the backend certificate's host name
 *   (dNSName, or CN when there is no dNSName; an IP:127.0.0.1 SAN did not
 *   satisfy it). A URI-only SPIFFE certificate fails that check, so the bridge
 *   test uses an openssl-made certificate with an extra DNS:localhost SAN and
 *   sni=localhost. Our non-200 answers reach curl unchanged (401 → "CONNECT
 *   tunnel failed, response 401").
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { ClientHttp2Stream } from 'node:http2';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/common/logger.js';
import { HboneError, HboneIdentityMismatchError, HboneStatusError } from '../../src/hbone/errors.js';
import { HbonePool, type PoolKey } from '../../src/hbone/pool.js';
import { HboneServer, type InboundRequest } from '../../src/hbone/server.js';
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';
import { ephemeralCa, issueIdentity } from '../helpers/mesh-certs.js';
import { inCI, requiresTool } from '../helpers/privileged.js';
import { closeServer, echoServer, listen, payload, readAll, sha256 } from '../helpers/tcp.js';

const TD = 'cluster.local';
const HOST = '127.0.0.1';
const PYTHON = '/usr/bin/python3';
const H2_CLIENT = fileURLToPath(new URL('../../../test/fixtures/interop/h2_connect_client.py', import.meta.url));
/** Hard limit for a daemon (nghttpx, tinyproxy), enforced by coreutils timeout. */
const DAEMON_HARD_LIMIT_S = 180;
/** Hard limit for a one-shot client (python, curl, openssl). */
const CLIENT_TIMEOUT_MS = 30_000;
const READY_TIMEOUT_MS = 5_000;
const TEST_TIMEOUT_MS = 60_000;
const log = silentLogger();

// ---------------------------------------------------------------- helpers

/** Skip options for a suite needing tools (and python-h2); under CI=true nothing is skipped (it fails instead). */
function needs(tools: string[], pythonH2 = false): { skip?: string } {
  const missing = requiresTool(...tools).skip;
  if (missing) return { skip: missing };
  if (inCI || !pythonH2) return {};
  const h2 = spawnSync(PYTHON, ['-c', 'import h2'], { stdio: 'ignore', timeout: 10_000 });
  return h2.status === 0 ? {} : { skip: `needs ${PYTHON} with the h2 module (apt-get install python3-h2)` };
}

/** An environment without proxy variables, so clients go where we point them. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(https?|all|no)_proxy$/i.test(k)) delete env[k];
  return env;
}

/** A free loopback port: bind port 0, read it, release it. */
async function freePort(): Promise<number> {
  const s = createServer();
  const port = await listen(s, HOST, 0);
  await closeServer(s);
  return port;
}

const liveSockets = new WeakMap<Server, Set<Socket>>();

/** Remembers a server's connections so teardown can drop them (a half-open socket would stall server.close). */
function tracked<T extends Server>(server: T): T {
  const socks = new Set<Socket>();
  liveSockets.set(server, socks);
  server.on('connection', (c: Socket) => {
    socks.add(c);
    c.once('close', () => socks.delete(c));
  });
  return server;
}

/** Drops a server's remaining connections, then closes it. */
async function stopServer(server: Server): Promise<void> {
  for (const c of liveSockets.get(server) ?? []) c.destroy();
  await closeServer(server);
}

interface Daemon {
  readonly name: string;
  readonly proc: ChildProcess;
  /** The tail of its stdout and stderr, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

function exitedAlready(proc: ChildProcess): boolean {
  return proc.exitCode !== null || proc.signalCode !== null;
}

/**
 * Starts `cmd` under `timeout -k 2 <limit>`. timeout makes itself a process
 * group leader and signals the whole group, so nghttpx's worker goes too.
 */
function startDaemon(name: string, cmd: string, args: string[], cwd: string): Daemon {
  const proc = spawn('timeout', ['-k', '2', String(DAEMON_HARD_LIMIT_S), cmd, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
  let out = '';
  const collect = (c: Buffer): void => {
    out = (out + c.toString()).slice(-8000);
  };
  proc.stdout?.on('data', collect);
  proc.stderr?.on('data', collect);
  proc.on('error', (err) => collect(Buffer.from(`spawn error: ${err.message}\n`)));
  const exited = new Promise<void>((resolve) => {
    if (exitedAlready(proc)) resolve();
    proc.once('exit', () => resolve());
    proc.once('error', () => resolve());
  });
  const signal = (sig: NodeJS.Signals): void => {
    if (proc.pid === undefined) return;
    try {
      process.kill(-proc.pid, sig);
    } catch {
      try {
        proc.kill(sig);
      } catch {
        // already gone
      }
    }
  };
  return {
    name,
    proc,
    output: () => out,
    async stop() {
      if (proc.pid === undefined) return;
      if (!exitedAlready(proc)) {
        signal('SIGTERM');
        const done = await Promise.race([exited.then(() => true), sleep(3000, false, { ref: false })]);
        if (!done) {
          signal('SIGKILL');
          await Promise.race([exited, sleep(2000, undefined, { ref: false })]);
        }
      }
      // timeout has exited; make sure nothing of its group lingers
      signal('SIGKILL');
    },
  };
}

/** Polls a TCP connect to `port` until it succeeds; fails if the daemon exits or the deadline passes. */
async function waitForPort(d: Daemon, port: number, timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exitedAlready(d.proc)) throw new Error(`${d.name} exited (${d.proc.exitCode ?? d.proc.signalCode}) before listening on ${port}:\n${d.output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = netConnect({ host: HOST, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${d.name} not listening on ${HOST}:${port} after ${timeoutMs}ms:\n${d.output()}`);
    await sleep(50);
  }
}

function writePems(dir: string, name: string, id: TlsIdentity): { cert: string; key: string; ca: string } {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), ca: join(dir, `${name}-roots.crt`) };
  writeFileSync(files.cert, id.certChainPem.join('\n'));
  writeFileSync(files.key, id.privateKeyPem, { mode: 0o600 });
  writeFileSync(files.ca, id.rootsPem.join('\n'));
  return files;
}

/** Resolves once exactly `n` bytes arrived (without waiting for EOF); rejects on an early end, a reset or the deadline. */
function readExactly(s: ClientHttp2Stream, n: number, timeoutMs = 15_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => finish(new Error(`only ${got} of ${n} bytes after ${timeoutMs}ms`)), timeoutMs);
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= n) finish();
    };
    const onEnd = (): void => finish(new Error(`stream ended after ${got} of ${n} bytes`));
    const onClose = (): void => finish(new Error(`stream closed (rst ${s.rstCode}) after ${got} of ${n} bytes`));
    function finish(err?: Error): void {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('close', onClose);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    }
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('close', onClose);
  });
}

interface H2ClientResult {
  status: number | null;
  received_len: number;
  received_sha256: string;
  stream_ended: boolean;
  reset_code: number | null;
  goaway_code: number | null;
  peer_uris: string[];
  tls_version: string;
  alpn: string | null;
}

/** Runs the python-h2 client; rejects (with its output) unless it exits 0 with a JSON result. */
function runH2Client(args: string[]): Promise<H2ClientResult> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [H2_CLIENT, ...args], { timeout: CLIENT_TIMEOUT_MS, killSignal: 'SIGKILL', env: cleanEnv() }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`h2 client ${args.join(' ')} failed: ${err.message}\nstdout: ${stdout}\nstderr: ${stderr}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as H2ClientResult);
      } catch {
        reject(new Error(`h2 client printed no json: ${stdout}\nstderr: ${stderr}`));
      }
    });
  });
}

function runCurl(args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['--max-time', '20', ...args], { timeout: CLIENT_TIMEOUT_MS, killSignal: 'SIGKILL', env: cleanEnv(), encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout, stderr: stderr.toString() });
    });
  });
}

async function refusals(registry: Registry, reason: string): Promise<number> {
  const metric = registry.getSingleMetric('ambit_hbone_inbound_refused_total');
  if (!metric) return 0;
  const { values } = await metric.get();
  return values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

// ------------------------------------------- 1. our client → nghttpx front

describe('our HBONE client → nghttpx front (h2 + mTLS) → tinyproxy → target', needs(['nghttpx', 'tinyproxy', 'timeout']), () => {
  let tmp: string;
  let frontId: TlsIdentity;
  let clientId: TlsIdentity;
  let frontPort: number;
  let echoPort: number;
  let refusedPort: number;
  let forbiddenPort: number;
  let lateReplyPort: number;
  const lateReplyEofs: boolean[] = [];
  const daemons: Daemon[] = [];
  const servers: Server[] = [];
  const pools: HbonePool[] = [];

  function newPool(): HbonePool {
    const pool = new HbonePool({
      identityFor: () => Promise.resolve(clientId),
      dial: (dst) => netConnect({ host: dst.host, port: dst.port }),
      logger: log,
      connectTimeoutMs: 5_000,
    });
    pools.push(pool);
    return pool;
  }

  function key(dstIdentities: string[] = [frontId.identity]): PoolKey {
    return { srcIdentity: clientId.identity, dstIdentities, dstHost: HOST, dstPort: frontPort };
  }

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'ambit-interop-nghttpx-'));
    const ca = await ephemeralCa(TD);
    frontId = await issueIdentity(ca, TD, 'default', 'nghttpx-front');
    clientId = await issueIdentity(ca, TD, 'default', 'client');
    const front = writePems(tmp, 'front', frontId);

    const echo = tracked(echoServer());
    servers.push(echo);
    echoPort = await listen(echo, HOST);
    // Answers 300 ms after the first bytes, so the answer surely follows the client's END_STREAM.
    const late = tracked(
      createServer({ allowHalfOpen: true }, (s: Socket) => {
        s.on('error', () => undefined);
        let eof = false;
        let replied = false;
        s.once('end', () => {
          eof = true;
          if (replied) s.end();
        });
        s.once('data', () => {
          setTimeout(() => {
            lateReplyEofs.push(eof);
            replied = true;
            if (!s.destroyed) s.write('late reply');
            if (eof) s.end();
          }, 300);
        });
      }),
    );
    servers.push(late);
    lateReplyPort = await listen(late, HOST);
    refusedPort = await freePort();
    forbiddenPort = await freePort();

    const proxyPort = await freePort();
    writeFileSync(
      join(tmp, 'tinyproxy.conf'),
      [
        `Port ${proxyPort}`,
        `Listen ${HOST}`,
        `Allow ${HOST}`,
        `PidFile "${join(tmp, 'tinyproxy.pid')}"`,
        `LogFile "${join(tmp, 'tinyproxy.log')}"`,
        'LogLevel Info',
        'MaxClients 50',
        'Timeout 60',
        // CONNECT is limited to these ports; any other port gets 403
        `ConnectPort ${echoPort}`,
        `ConnectPort ${lateReplyPort}`,
        `ConnectPort ${refusedPort}`,
        '',
      ].join('\n'),
    );
    const tinyproxy = startDaemon('tinyproxy', 'tinyproxy', ['-d', '-c', join(tmp, 'tinyproxy.conf')], tmp);
    daemons.push(tinyproxy);
    await waitForPort(tinyproxy, proxyPort);

    frontPort = await freePort();
    const nghttpx = startDaemon(
      'nghttpx',
      'nghttpx',
      [
        '--conf=/dev/null', // Debian: otherwise /etc/nghttpx/nghttpx.conf is loaded
        '--http2-proxy',
        `--frontend=${HOST},${frontPort}`,
        `--backend=${HOST},${proxyPort}`,
        '--verify-client',
        `--verify-client-cacert=${front.ca}`,
        '--tls-min-proto-version=TLSv1.3',
        '--workers=1',
        '--no-ocsp',
        `--accesslog-file=${join(tmp, 'access.log')}`,
        front.key,
        front.cert,
      ],
      tmp,
    );
    daemons.push(nghttpx);
    await waitForPort(nghttpx, frontPort);
  });

  after(async () => {
    for (const p of pools) p.destroy();
    await Promise.all(daemons.map((d) => d.stop()));
    await Promise.all(servers.map(stopServer));
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('1 MiB round-trips intact and nghttpx presents the expected identity', { timeout: TEST_TIMEOUT_MS }, async () => {
    const pool = newPool();
    const data = payload(1 << 20);
    // the pool verifies nghttpx's URI SAN against key().dstIdentities during the handshake
    const stream = await pool.openTunnel(key(), `${HOST}:${echoPort}`);
    stream.on('error', () => undefined);
    const back = readExactly(stream, data.length);
    stream.write(data);
    const got = await back;
    assert.equal(got.length, data.length);
    assert.equal(sha256(got), sha256(data));
    // no half-close through nghttpx: tear the tunnel down (a reset is fine)
    stream.destroy();
    pool.destroy();
    // nghttpx logs the stream when it closes: it saw an h2 CONNECT and answered 200
    const line = `"CONNECT ${HOST}:${echoPort} HTTP/2" 200`;
    let accessLog = '';
    for (let i = 0; i < 100 && !accessLog.includes(line); i++) {
      await sleep(20);
      if (existsSync(join(tmp, 'access.log'))) accessLog = readFileSync(join(tmp, 'access.log'), 'utf8');
    }
    assert.ok(accessLog.includes(line), `access log lacks ${line}:\n${accessLog}`);
  });

  test('a wrong expected identity is refused with HboneIdentityMismatchError', { timeout: TEST_TIMEOUT_MS }, async () => {
    const pool = newPool();
    const wrong = 'spiffe://cluster.local/ns/default/sa/someone-else';
    await assert.rejects(pool.openTunnel(key([wrong]), `${HOST}:${echoPort}`), (err: unknown) => {
      assert.ok(err instanceof HboneIdentityMismatchError, String(err));
      assert.deepEqual(err.presented, [frontId.identity]);
      assert.deepEqual(err.expected, [wrong]);
      return true;
    });
    pool.destroy();
  });

  test('nghttpx refuses a client certificate from another root (--verify-client)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const stranger = await issueIdentity(await ephemeralCa(TD), TD, 'default', 'client');
    // the stranger trusts our root, so only nghttpx's client-certificate check can refuse it
    const pool = new HbonePool({
      identityFor: () => Promise.resolve({ ...stranger, rootsPem: [...frontId.rootsPem] }),
      dial: (dst) => netConnect({ host: dst.host, port: dst.port }),
      logger: log,
      connectTimeoutMs: 5_000,
    });
    pools.push(pool);
    await assert.rejects(pool.openTunnel({ ...key(), srcIdentity: stranger.identity }, `${HOST}:${echoPort}`), (err: unknown) => {
      // TLS 1.3: the client finishes its handshake before the server checks its
      // certificate, so the alert can surface as a TLS error or as a close
      // during the HTTP/2 preface; never as an answered CONNECT.
      assert.ok(err instanceof HboneError && !(err instanceof HboneStatusError), String(err));
      t.diagnostic(`refused as ${err.code}: ${err.message}`);
      return true;
    });
    pool.destroy();
  });

  test('a CONNECT tinyproxy cannot complete is a non-200 HboneStatusError', { timeout: TEST_TIMEOUT_MS }, async () => {
    const pool = newPool();
    // nothing listens: tinyproxy answers 500 ("Unable to connect"), nghttpx relays it
    await assert.rejects(pool.openTunnel(key(), `${HOST}:${refusedPort}`), (err: unknown) => {
      assert.ok(err instanceof HboneStatusError, String(err));
      assert.equal(err.status, 500);
      return true;
    });
    // a port outside tinyproxy's ConnectPort list: 403
    await assert.rejects(pool.openTunnel(key(), `${HOST}:${forbiddenPort}`), (err: unknown) => {
      assert.ok(err instanceof HboneStatusError, String(err));
      assert.equal(err.status, 403);
      return true;
    });
    // the connection survives refused streams
    const stream = await pool.openTunnel(key(), `${HOST}:${echoPort}`);
    stream.on('error', () => undefined);
    const back = readExactly(stream, 5);
    stream.write('still');
    assert.equal((await back).toString(), 'still');
    stream.destroy();
    assert.equal(pool.connectionCount(key()), 1);
    pool.destroy();
  });

  test('after our half-close the reply still arrives (nghttpx keeps the tunnel open)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const pool = newPool();
    const stream = await pool.openTunnel(key(), `${HOST}:${lateReplyPort}`);
    stream.on('error', () => undefined);
    const back = readExactly(stream, 'late reply'.length);
    stream.end('ping');
    assert.equal((await back).toString(), 'late reply');
    t.diagnostic(`target saw EOF before replying: ${String(lateReplyEofs.at(-1))} (nghttpx 1.52 does not forward END_STREAM to its HTTP/1 backend)`);
    stream.destroy();
    pool.destroy();
  });
});

// ------------------------------------------- 2. python-h2 client → our server

describe('python-h2 CONNECT client → our HboneServer', needs([PYTHON], true), () => {
  let tmp: string;
  let serverId: TlsIdentity;
  let pyId: TlsIdentity;
  let poolId: TlsIdentity;
  let pem: { cert: string; key: string; ca: string };
  let hbone: HboneServer;
  let hbonePort: number;
  let echoPort: number;
  const registry = new Registry();
  const requests: InboundRequest[] = [];
  const servers: Server[] = [];

  function clientArgs(authority: string, payloadFile = '-', mode = 'connect'): string[] {
    return [HOST, String(hbonePort), pem.cert, pem.key, pem.ca, authority, payloadFile, mode];
  }

  function newPool(): HbonePool {
    return new HbonePool({ identityFor: () => Promise.resolve(poolId), dial: (dst) => netConnect({ host: dst.host, port: dst.port }), logger: log });
  }

  function poolKey(): PoolKey {
    return { srcIdentity: poolId.identity, dstIdentities: [serverId.identity], dstHost: HOST, dstPort: hbonePort };
  }

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'ambit-interop-h2py-'));
    const ca = await ephemeralCa(TD);
    serverId = await issueIdentity(ca, TD, 'default', 'server');
    pyId = await issueIdentity(ca, TD, 'default', 'python-client');
    poolId = await issueIdentity(ca, TD, 'default', 'pool-client');
    pem = writePems(tmp, 'python-client', pyId);
    const echo = tracked(echoServer());
    servers.push(echo);
    echoPort = await listen(echo, HOST);
    hbone = new HboneServer({
      identityFor: () => serverId,
      resolveTarget: (req) => {
        requests.push(req);
        if (req.authority.host !== HOST) return { kind: 'unavailable', reason: 'not loopback' };
        return { kind: 'allow', host: req.authority.host, port: req.authority.port };
      },
      dial: (t) => netConnect({ host: t.host, port: t.port, allowHalfOpen: true }),
      logger: log,
      registry,
    });
    const srv = await hbone.listen(0, HOST);
    hbonePort = (srv.address() as AddressInfo).port;
  });

  after(async () => {
    hbone?.destroy();
    await Promise.all(servers.map(stopServer));
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('(a) CONNECT gets 200 and 256 KiB echo back intact, with half-close both ways', { timeout: TEST_TIMEOUT_MS }, async () => {
    const data = payload(256 << 10);
    const file = join(tmp, 'payload.bin');
    writeFileSync(file, data);
    const seen = requests.length;
    const r = await runH2Client(clientArgs(`${HOST}:${echoPort}`, file));
    assert.equal(r.status, 200);
    assert.equal(r.received_len, data.length);
    assert.equal(r.received_sha256, sha256(data));
    // the client's END_STREAM reached the echo target, whose FIN came back as our END_STREAM
    assert.equal(r.stream_ended, true);
    assert.equal(r.reset_code, null);
    assert.equal(r.tls_version, 'TLSv1.3');
    assert.equal(r.alpn, 'h2');
    assert.deepEqual(r.peer_uris, [serverId.identity]);
    assert.equal(requests.length, seen + 1);
    assert.equal(requests[seen]?.peerIdentity, pyId.identity);
    assert.deepEqual(requests[seen]?.authority, { host: HOST, port: echoPort, family: 4 });
  });

  test('(b) CONNECT without :authority is reset by nghttp2 with PROTOCOL_ERROR', { timeout: TEST_TIMEOUT_MS }, async () => {
    const seen = requests.length;
    const badAuthority = await refusals(registry, 'bad_authority');
    const r = await runH2Client(clientArgs('-'));
    // RFC 9113 8.5: CONNECT must carry :authority. nghttp2 treats the header
    // block as malformed and resets the stream (PROTOCOL_ERROR = 1) before our
    // stream handler runs, so there is no 400 and no refusal counted by us.
    assert.equal(r.status, null);
    assert.equal(r.reset_code, 1);
    assert.equal(r.goaway_code, null, 'a stream error, not a connection error');
    assert.equal(requests.length, seen);
    assert.equal(await refusals(registry, 'bad_authority'), badAuthority);
  });

  test('(c) CONNECT with a malformed authority gets 400', { timeout: TEST_TIMEOUT_MS }, async () => {
    for (const authority of ['127.0.0.1', 'not-an-ip:80', '127.0.0.1:99999', '[::1']) {
      const before = await refusals(registry, 'bad_authority');
      const r = await runH2Client(clientArgs(authority));
      assert.equal(r.status, 400, authority);
      assert.equal(r.stream_ended, true, authority);
      assert.equal(r.reset_code, null, authority);
      assert.equal(await refusals(registry, 'bad_authority'), before + 1, authority);
    }
  });

  test('(d) CONNECT with :scheme and :path is reset by nghttp2 with PROTOCOL_ERROR', { timeout: TEST_TIMEOUT_MS }, async () => {
    const seen = requests.length;
    const file = join(tmp, 'small.bin');
    writeFileSync(file, randomBytes(1024));
    // RFC 9113 8.5: ":scheme and :path pseudo-header fields MUST be omitted" on
    // classic CONNECT (we do not enable RFC 8441 extended CONNECT).
    const r = await runH2Client(clientArgs(`${HOST}:${echoPort}`, file, 'with-path'));
    assert.equal(r.status, null);
    assert.equal(r.reset_code, 1);
    assert.equal(r.received_len, 0);
    assert.equal(requests.length, seen, 'the target was never resolved, let alone dialed');
  });

  test('(e) while bad CONNECTs arrive, a good pool client keeps working', { timeout: TEST_TIMEOUT_MS }, async () => {
    const pool = newPool();
    try {
      // a tunnel that is open before and during the bad requests
      const longLived = await pool.openTunnel(poolKey(), `${HOST}:${echoPort}`);
      const first = readExactly(longLived, 6);
      longLived.write('before');
      assert.equal((await first).toString(), 'before');

      const bad = Promise.all([
        runH2Client(clientArgs('-')),
        runH2Client(clientArgs('not-an-ip:80')),
        runH2Client(clientArgs(`${HOST}:${echoPort}`, '-', 'with-path')),
        runH2Client(clientArgs('-')),
        runH2Client(clientArgs('127.0.0.1:0')),
      ]);
      // new tunnels while those are in flight
      const during = Promise.all(
        Array.from({ length: 5 }, async () => {
          const s = await pool.openTunnel(poolKey(), `${HOST}:${echoPort}`);
          const data = payload(64 << 10);
          const got = readAll(s);
          s.end(data);
          return sha256(await got) === sha256(data);
        }),
      );
      const [results, oks] = await Promise.all([bad, during]);
      assert.deepEqual(
        results.map((r) => r.status ?? `rst:${r.reset_code}`),
        ['rst:1', 400, 'rst:1', 'rst:1', 400],
      );
      assert.deepEqual(oks, [true, true, true, true, true]);

      // the long-lived tunnel still carries bytes both ways, then half-closes cleanly
      const data = payload(100_000);
      const rest = readAll(longLived);
      longLived.end(data);
      assert.equal(sha256(await rest), sha256(data));
    } finally {
      pool.destroy();
    }
  });
});

// ------------------------------ 3. curl → nghttpx client bridge → our server

describe('curl → nghttpx HBONE client bridge (HTTP/1.1 CONNECT in, h2 + mTLS out) → our HboneServer', needs(['nghttpx', 'curl', 'openssl', 'timeout']), () => {
  let tmp: string;
  let hbone: HboneServer;
  let bridgePort: number;
  let httpPort: number;
  let deniedPort: number;
  const body = payload(2 << 20);
  const requests: InboundRequest[] = [];
  const daemons: Daemon[] = [];
  const servers: Server[] = [];
  const bridgeClientIdentity = `spiffe://${TD}/ns/default/sa/bridge-client`;
  const serverIdentity = `spiffe://${TD}/ns/default/sa/server`;

  function openssl(args: string[]): void {
    execFileSync('openssl', args, { cwd: tmp, stdio: ['ignore', 'ignore', 'pipe'], timeout: CLIENT_TIMEOUT_MS });
  }

  /** A P-256 leaf signed by the test CA, with exactly the given SANs. */
  function leaf(name: string, san: string): void {
    openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/', '-addext', `subjectAltName=critical,${san}`]);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '1', '-copy_extensions', 'copyall', '-out', `${name}.crt`]);
  }

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'ambit-interop-bridge-'));
    // Certificates from openssl, not our CA: nghttpx verifies the backend's host
    // name, which a URI-only SPIFFE certificate cannot satisfy, so the server
    // leaf also carries DNS:localhost (and the bridge sends sni=localhost).
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', `/O=${TD}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    leaf('server', `URI:${serverIdentity},DNS:localhost`);
    leaf('client', `URI:${bridgeClientIdentity}`);
    const read = (f: string): string => readFileSync(join(tmp, f), 'utf8');
    const serverId: TlsIdentity = { identity: serverIdentity, privateKeyPem: read('server.key'), certChainPem: [read('server.crt')], rootsPem: [read('ca.crt')] };

    const http = tracked(createHttpServer((req, res) => {
      if (req.method === 'POST') {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.once('end', () => {
          const got = Buffer.concat(chunks);
          res.end(`${sha256(got)} ${got.length}\n`);
        });
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      res.end(body);
    }));
    servers.push(http);
    httpPort = await listen(http, HOST);
    deniedPort = await freePort();

    hbone = new HboneServer({
      identityFor: () => serverId,
      resolveTarget: (req) => {
        requests.push(req);
        if (req.authority.port === deniedPort) return { kind: 'deny', reason: 'test policy' };
        return { kind: 'allow', host: req.authority.host, port: req.authority.port };
      },
      dial: (t) => netConnect({ host: t.host, port: t.port, allowHalfOpen: true }),
      logger: log,
    });
    const srv = await hbone.listen(0, HOST);
    const hbonePort = (srv.address() as AddressInfo).port;

    bridgePort = await freePort();
    const bridge = startDaemon(
      'nghttpx bridge',
      'nghttpx',
      [
        '--conf=/dev/null',
        '--http2-proxy',
        `--frontend=${HOST},${bridgePort};no-tls`,
        `--backend=${HOST},${hbonePort};;proto=h2;tls;sni=localhost`,
        `--cacert=${join(tmp, 'ca.crt')}`,
        `--client-cert-file=${join(tmp, 'client.crt')}`,
        `--client-private-key-file=${join(tmp, 'client.key')}`,
        '--tls-min-proto-version=TLSv1.3',
        '--workers=1',
        '--no-ocsp',
      ],
      tmp,
    );
    daemons.push(bridge);
    await waitForPort(bridge, bridgePort);
  });

  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    hbone?.destroy();
    await Promise.all(servers.map(stopServer));
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('curl downloads 2 MiB and uploads 1 MiB through our server', { timeout: TEST_TIMEOUT_MS }, async () => {
    const seen = requests.length;
    const get = await runCurl(['-sS', '--proxytunnel', '--proxy', `http://${HOST}:${bridgePort}`, `http://${HOST}:${httpPort}/`]);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stdout.length, body.length);
    assert.equal(sha256(get.stdout), sha256(body));
    // the bridge authenticated with its openssl-made SPIFFE certificate
    assert.ok(requests.length > seen);
    assert.equal(requests[seen]?.peerIdentity, bridgeClientIdentity);
    assert.deepEqual(requests[seen]?.authority, { host: HOST, port: httpPort, family: 4 });

    const up = payload(1 << 20);
    const file = join(tmp, 'upload.bin');
    writeFileSync(file, up);
    const post = await runCurl(['-sS', '--proxytunnel', '--proxy', `http://${HOST}:${bridgePort}`, '--data-binary', `@${file}`, `http://${HOST}:${httpPort}/digest`]);
    assert.equal(post.code, 0, post.stderr);
    assert.equal(post.stdout.toString(), `${sha256(up)} ${up.length}\n`);
  });

  test('a CONNECT our server denies fails the curl tunnel', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await runCurl(['-sS', '--proxytunnel', '--proxy', `http://${HOST}:${bridgePort}`, `http://${HOST}:${deniedPort}/`]);
    // curl exits 56 ("CONNECT tunnel failed") with the status nghttpx relayed
    assert.equal(r.code, 56, r.stderr);
    assert.match(r.stderr, /CONNECT tunnel failed, response 401/);
  });
});
