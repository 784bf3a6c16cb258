/**
 * A gRPC client to run inside a lab pod (grpc-js, raw-bytes unary calls to
 * the l7-backend's method). Makes --count calls one after the other to
 * --target and prints one JSON line: {codes: {<grpc status>: n}, versions:
 * {<backend version>: n}, ms: [per-call ms]}. grpc-js's own retries are off,
 * so every retry seen is the mesh's.
 *
 *   node dist/test/helpers/grpc-client.js --target 10.96.0.50:9090 --count 20 [--authority host:port]
 */
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { L7_BACKEND_GRPC_METHOD } from './l7-backend.js';

const { values: v } = parseArgs({
  options: {
    target: { type: 'string' },
    count: { type: 'string', default: '1' },
    authority: { type: 'string' },
    method: { type: 'string', default: L7_BACKEND_GRPC_METHOD },
    'deadline-ms': { type: 'string', default: '5000' },
  },
});
if (!v.target) {
  process.stderr.write('grpc-client: --target host:port is required\n');
  process.exit(64);
}
const id = (b: Buffer): Buffer => b;
const Client = grpc.makeGenericClientConstructor({}, 'Generic');
const client = new Client(v.target, grpc.credentials.createInsecure(), { 'grpc.enable_retries': 0, ...(v.authority ? { 'grpc.default_authority': v.authority } : {}) });
const codes: Record<string, number> = {};
const versions: Record<string, number> = {};
const ms: number[] = [];
const details: string[] = [];
for (let i = 0; i < Number(v.count); i++) {
  const t0 = Date.now();
  const r = await new Promise<{ code: number; value?: Buffer; details?: string }>((resolve) => {
    client.makeUnaryRequest(v.method as string, id, id, Buffer.from(`call-${i}`), new grpc.Metadata(), { deadline: Date.now() + Number(v['deadline-ms']) }, (err: grpc.ServiceError | null, value?: Buffer) =>
      resolve(err ? { code: err.code, details: err.details } : { code: 0, ...(value ? { value } : {}) }),
    );
  });
  ms.push(Date.now() - t0);
  codes[r.code] = (codes[r.code] ?? 0) + 1;
  if (r.details && details.length < 5) details.push(`${r.code}: ${r.details}`);
  if (r.value) {
    const ver = (JSON.parse(r.value.toString('utf8')) as { version?: string }).version ?? 'unknown';
    versions[ver] = (versions[ver] ?? 0) + 1;
  }
}
client.close();
process.stdout.write(JSON.stringify({ codes, versions, ms, details }) + '\n');
