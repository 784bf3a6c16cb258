/**
 * A minimal OTLP/HTTP trace receiver to run inside a lab pod (loopback or
 * pod IP only): POST /v1/traces with OTLP JSON (what
 * @opentelemetry/exporter-trace-otlp-http sends) answers 200 `{}` and
 * prints one JSON line per span: {traceId, spanId, parentSpanId, name,
 * kind, service}. Ids are hex as OTLP/JSON specifies (base64 is converted).
 * A protobuf body is answered 415 and reported as {error}. Ready line:
 * `otlp-receiver ready <host>:<port>`.
 *
 *   node dist/test/helpers/otlp-receiver.js --host 127.0.0.1 --port 4318
 */
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values: v } = parseArgs({ options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string', default: '4318' } } });

type Obj = Record<string, unknown>;
const arr = (x: unknown): Obj[] => (Array.isArray(x) ? (x as Obj[]) : []);
function hexId(x: unknown, len: number): string {
  if (typeof x !== 'string' || x === '') return '';
  if (new RegExp(`^[0-9a-fA-F]{${len}}$`).test(x)) return x.toLowerCase();
  return Buffer.from(x, 'base64').toString('hex');
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.method !== 'POST' || !(req.url ?? '').startsWith('/v1/traces')) {
      res.writeHead(404).end();
      return;
    }
    if (!(req.headers['content-type'] ?? '').includes('json')) {
      process.stdout.write(JSON.stringify({ error: `unsupported content-type ${req.headers['content-type'] ?? '(none)'}` }) + '\n');
      res.writeHead(415).end();
      return;
    }
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Obj;
      for (const rs of arr(body.resourceSpans)) {
        const attrs = arr((rs.resource as Obj | undefined)?.attributes);
        const svc = attrs.find((a) => a.key === 'service.name');
        const service = ((svc?.value as Obj | undefined)?.stringValue as string | undefined) ?? '';
        for (const ss of arr(rs.scopeSpans)) {
          for (const s of arr(ss.spans)) {
            process.stdout.write(JSON.stringify({ traceId: hexId(s.traceId, 32), spanId: hexId(s.spanId, 16), parentSpanId: hexId(s.parentSpanId, 16), name: s.name, kind: s.kind, service }) + '\n');
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    } catch (err) {
      process.stdout.write(JSON.stringify({ error: `bad OTLP JSON: ${(err as Error).message}` }) + '\n');
      res.writeHead(400).end();
    }
  });
});
server.listen(Number(v.port), v.host, () => process.stdout.write(`otlp-receiver ready ${v.host}:${v.port}\n`));
process.on('SIGTERM', () => process.exit(0));
