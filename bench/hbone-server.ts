/**
 * Benchmark endpoint, server side. Runs inside the server pod's netns (the
 * driver starts it with `ip netns exec`), like a node agent serving inbound
 * HBONE for that pod:
 *
 *   :15008  HboneServer (mTLS 1.3 + HTTP/2 CONNECT) ──► dials the pod IP
 *   podIp:sinkPort  sink: counts and discards everything it receives
 *   podIp:echoPort  echo: writes back what it receives (stream setup test)
 *
 * The sink is the receiver for every throughput path (direct TCP, HBONE, the
 * peer proxy), so all paths are counted the same way: bytes that reached the
 * application, on this process's clock (`count`).
 */
import { performance } from 'node:perf_hooks';
import net from 'node:net';
import { createLogger } from '../src/common/logger.js';
import { HboneServer } from '../src/hbone/server.js';
import { configFromArgv, emit, serveCommands } from './lib/control.js';
import { issueFromCaDir } from './lib/certs.js';
import type { CountResult, ServerConfig } from './lib/protocol.js';

const cfg = configFromArgv<ServerConfig>();
const log = createLogger({ level: 'warn', format: 'json', destination: process.stderr });
const identity = await issueFromCaDir(cfg.caDir, cfg.trustDomain, cfg.namespace, cfg.serviceAccount);

let sinkBytes = 0;
let sinkConnections = 0;
const sink = net.createServer({ allowHalfOpen: true }, (s) => {
  sinkConnections++;
  s.on('error', () => undefined);
  s.on('data', (c: Buffer) => {
    sinkBytes += c.length;
  });
  s.on('end', () => s.end());
});
const echo = net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => undefined);
  s.pipe(s);
});

function listen(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 1024 }, () => resolve());
  });
}

await listen(sink, cfg.podIp, cfg.sinkPort);
await listen(echo, cfg.podIp, cfg.echoPort);

const targets = new Set([cfg.sinkPort, cfg.echoPort]);
const hbone = new HboneServer({
  identityFor: () => identity,
  resolveTarget: (req) =>
    req.authority.host === cfg.podIp && targets.has(req.authority.port)
      ? { kind: 'allow', host: req.authority.host, port: req.authority.port }
      : { kind: 'deny', reason: 'not a benchmark target' },
  dial: (t) => net.connect({ host: t.host, port: t.port, allowHalfOpen: true }),
  logger: log,
});
await hbone.listen(cfg.hbonePort, '0.0.0.0');

function shutdown(): void {
  hbone.destroy();
  sink.close();
  echo.close();
  process.exit(0);
}

serveCommands(
  {
    count: (): CountResult => ({ bytes: sinkBytes, t: performance.now(), connections: sinkConnections }),
    exit: () => {
      setImmediate(shutdown);
      return 'bye';
    },
  },
  shutdown,
);
process.on('SIGTERM', shutdown);
emit({ ev: 'ready', pid: process.pid, identity: identity.identity });
