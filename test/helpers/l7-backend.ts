/**
 * An L7 test backend to run inside a lab pod (startInPod waits for its
 * first line): HTTP/1.1 and h2c (prior knowledge) on one port, told apart
 * by the HTTP/2 connection preface, plus an optional gRPC (grpc-js, no
 * .proto: raw bytes) unary service. Every HTTP answer is JSON
 * {version, pod, path, method, authority, protocol, headers, bodyBytes}.
 *
 *   node dist/test/helpers/l7-backend.js --host IP --port 8080 --version v1 --pod NAME
 *     [--fail-rate 0.5 --fail-status 503] [--status 500] [--delay-ms 1000]
 *     [--grpc 9090 --grpc-unavailable-rate 0.5] [--count-file FILE] [--random]
 *
 * `?delay=<ms>` in a request URL delays that one answer (overrides --delay-ms).
 * Failure rates are spread evenly over the hits by default (rate 0.5 fails
 * every other hit), so "retries make a 50 % backend succeed" is exact;
 * --random draws each hit independently instead. --count-file is rewritten
 * after each hit with {http, grpc, failed}. Ready line:
 * `l7-backend ready http=<port> grpc=<port|none>`.
 */
import { writeFileSync } from 'node:fs';
import { createServer as createHttp1, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createH2, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { createServer as createTcp, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';

/** The gRPC method this backend serves: request and reply are raw bytes (the reply is JSON). */
export const L7_BACKEND_GRPC_METHOD = '/ambit.test.Echo/Echo';
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** Fails `rate` of the hits: evenly spread (hit n fails when floor(n*rate) steps) or at random. */
export function failer(rate: number, random: boolean): () => boolean {
  let n = 0;
  return () => {
    if (rate <= 0) return false;
    if (random) return Math.random() < rate;
    n++;
    return Math.floor(n * rate) > Math.floor((n - 1) * rate);
  };
}

function main(): void {
  const { values: v } = parseArgs({
    options: {
      host: { type: 'string', default: '0.0.0.0' },
      port: { type: 'string', default: '8080' },
      version: { type: 'string', default: 'v1' },
      pod: { type: 'string', default: process.env.HOSTNAME ?? 'unknown' },
      'fail-rate': { type: 'string', default: '0' },
      'fail-status': { type: 'string', default: '503' },
      status: { type: 'string' },
      'delay-ms': { type: 'string', default: '0' },
      grpc: { type: 'string' },
      'grpc-unavailable-rate': { type: 'string', default: '0' },
      'count-file': { type: 'string' },
      random: { type: 'boolean', default: false },
    },
  });
  const counts = { http: 0, grpc: 0, failed: 0 };
  const countFile = v['count-file'];
  const count = (): void => {
    if (countFile) writeFileSync(countFile, JSON.stringify(counts) + '\n');
  };
  count();
  const delayMs = Number(v['delay-ms']);
  const fixed = v.status !== undefined ? Number(v.status) : undefined;
  const failStatus = Number(v['fail-status']);
  const httpFails = failer(Number(v['fail-rate']), v.random === true);
  const grpcFails = failer(Number(v['grpc-unavailable-rate']), v.random === true);

  const handle = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      counts.http++;
      const status = fixed ?? (httpFails() ? failStatus : 200);
      if (status >= 500) counts.failed++;
      count();
      const headers: Record<string, string> = {};
      for (const [k, val] of Object.entries(req.headers)) if (!k.startsWith(':') && val !== undefined) headers[k] = Array.isArray(val) ? val.join(', ') : String(val);
      const authority = String(req.headers[':authority'] ?? req.headers.host ?? '');
      const body = JSON.stringify({ version: v.version, pod: v.pod, path: req.url, method: req.method, authority, protocol: req.httpVersion, headers, bodyBytes: Buffer.concat(chunks).length }) + '\n';
      const send = (): void => {
        if (res.writableEnded || res.destroyed) return;
        (res as ServerResponse).writeHead(status, { 'content-type': 'application/json', 'x-backend-version': v.version as string, 'x-backend-pod': v.pod as string });
        res.end(body);
      };
      // `?delay=<ms>` in the URL delays this answer (a per-request slow backend).
      const q = /[?&]delay=(\d+)/.exec(req.url ?? '');
      const wait = q ? Number(q[1]) : delayMs;
      if (wait > 0) setTimeout(send, wait).unref();
      else send();
    });
  };

  const h1 = createHttp1(handle);
  h1.keepAliveTimeout = 60_000;
  const h2 = createH2({}, handle);
  h2.on('sessionError', () => undefined);
  // One port, two protocols: look at the first bytes, put them back, hand the socket over.
  const tcp = createTcp((socket: Socket) => {
    socket.on('error', () => undefined);
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      const n = Math.min(first.length, H2_PREFACE.length);
      const isH2 = first.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      // http2 takes the native handle over (and reads what was put back itself); http/1.1 reads the stream.
      if (isH2) h2.emit('connection', socket);
      else {
        h1.emit('connection', socket);
        process.nextTick(() => socket.resume());
      }
    });
  });

  const listenHttp = new Promise<number>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(Number(v.port), v.host, () => resolve((tcp.address() as { port: number }).port));
  });

  let grpcServer: grpc.Server | undefined;
  const listenGrpc = v.grpc === undefined
    ? Promise.resolve(undefined)
    : new Promise<number>((resolve, reject) => {
        const id = (b: Buffer): Buffer => b;
        const def: grpc.ServiceDefinition = {
          echo: { path: L7_BACKEND_GRPC_METHOD, requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id, originalName: 'echo' },
        };
        grpcServer = new grpc.Server();
        grpcServer.addService(def, {
          echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
            counts.grpc++;
            const fail = grpcFails();
            if (fail) counts.failed++;
            count();
            const reply = (): void => {
              if (fail) cb({ code: grpc.status.UNAVAILABLE, details: 'l7-backend: unavailable on purpose' });
              else cb(null, Buffer.from(JSON.stringify({ version: v.version, pod: v.pod, method: L7_BACKEND_GRPC_METHOD, request: call.request.toString('utf8') })));
            };
            if (delayMs > 0) setTimeout(reply, delayMs).unref();
            else reply();
          },
        });
        grpcServer.bindAsync(`${v.host}:${v.grpc}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
      });

  Promise.all([listenHttp, listenGrpc]).then(
    ([hp, gp]) => process.stdout.write(`l7-backend ready http=${hp} grpc=${gp ?? 'none'}\n`),
    (err: unknown) => {
      process.stderr.write(`l7-backend: cannot listen: ${String(err)}\n`);
      process.exit(1);
    },
  );
  const stop = (): void => {
    tcp.close();
    grpcServer?.forceShutdown();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// Run only as a program (tests may import failer / the method name).
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) main();
