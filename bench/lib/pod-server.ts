/**
 * The server side shared by the programs the benchmarks run inside lab pods
 * (inpod-http.ts, l7-load.ts, soak-pod.ts): a request handler answering every
 * request with 1 KiB once its body is read, the one-line ready signal the
 * driver waits for, and the shutdown contract (stdin closing, SIGTERM or
 * SIGINT stops the process: the driver ends it by closing stdin).
 */
import type http from 'node:http';
import type http2 from 'node:http2';

const RESPONSE = Buffer.alloc(1024, 0x61);

/** Reads the request body, then answers 200 with 1 KiB. Works for HTTP/1.1 and HTTP/2 compat requests. */
export function answer1KiB(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void {
  req.on('data', () => undefined);
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(RESPONSE.length) });
    res.end(RESPONSE);
  });
  req.on('error', () => res.destroy());
}

/** Returns a callback; once it has been called `count` times (every listener up), prints {"ev":"ready"}. */
export function readyAfter(count: number): () => void {
  let left = count;
  return () => {
    if (--left === 0) process.stdout.write(`${JSON.stringify({ ev: 'ready', pid: process.pid })}\n`);
  };
}

/** Runs `close` and exits when stdin ends (the driver's stop) or on SIGTERM/SIGINT. */
export function stopOnStdinEnd(close: () => void): void {
  const stop = (): void => {
    close();
    process.exit(0);
  };
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
