/**
 * The living demo's sample application, in the spirit of Istio's Bookinfo:
 * loadgen -> frontend -> productpage -> reviews (v1 on node-a, v2 on
 * node-b; the namespace's waypoint splits the reviews service 90/10 over
 * reviews-v1 and reviews-v2 with an HTTPRoute), productpage -> details over
 * gRPC (through the waypoint too), and reviews-v2 -> ratings over a
 * raw TCP protocol. A "rogue" client calls productpage directly, and an
 * AuthorizationPolicy denies it, so the graph has a denied edge. Every
 * service is a small real server (node, one script below) in its lab pod;
 * every call is a new connection, so the agents' connection counters are
 * the request rate.
 */

import { createRequire } from 'node:module';

export const APP_NAMESPACE = 'demo';

/** Pods and what runs in them. `calls` are the downstream URLs of a server. */
export interface AppProcess {
  pod: string;
  mode: 'http' | 'tcp' | 'grpc' | 'load';
  port?: number;
  version?: string;
  calls?: string[];
  /** HTTP servers: answer 503 to every Nth request (a flaky canary the waypoint retries). */
  failEvery?: number;
  /** For load generators: the URL and the rate (requests per second). */
  target?: string;
  rps?: number;
}

const svc = (name: string, port: number): string => `${name}.${APP_NAMESPACE}.svc.cluster.local:${port}`;

export function appProcesses(rps: number, rogueRps = 1): AppProcess[] {
  return [
    { pod: 'ratings', mode: 'tcp', port: 9070 },
    { pod: 'reviews-v1', mode: 'http', port: 9080, version: 'v1' },
    { pod: 'reviews-v2', mode: 'http', port: 9080, version: 'v2', calls: [`tcp://${svc('ratings', 9070)}`], failEvery: 5 },
    { pod: 'details', mode: 'grpc', port: 9090, version: 'v1' },
    { pod: 'productpage', mode: 'http', port: 9080, version: 'v1', calls: [`http://${svc('reviews', 9080)}/reviews`, `grpc://${svc('details', 9090)}`] },
    { pod: 'frontend', mode: 'http', port: 8080, version: 'v1', calls: [`http://${svc('productpage', 9080)}/productpage`] },
    { pod: 'loadgen', mode: 'load', target: `http://${svc('frontend', 80)}/`, rps },
    { pod: 'rogue', mode: 'load', target: `http://${svc('productpage', 9080)}/productpage`, rps: rogueRps },
  ];
}

function pod(name: string, node: string, app: string, version: string): string {
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${APP_NAMESPACE}
  labels: { app: ${app}, version: ${version} }
spec:
  nodeName: ${node}
  serviceAccountName: ${app === 'reviews' ? 'reviews' : name}
`;
}

function service(name: string, port: number, targetPort: number, protocol: 'http' | 'tcp' | 'grpc', extra: { labels?: string; selector?: string } = {}): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: ${APP_NAMESPACE}${extra.labels ? `\n  labels: ${extra.labels}` : ''}
spec:
  selector: ${extra.selector ?? `{ app: ${name} }`}
  ports:
    - name: ${protocol}
      port: ${port}
      targetPort: ${targetPort}
`;
}

/** The lab: two nodes (made from the pods' nodeName), the ambient namespace, the pods and services. */
export const APP_MANIFESTS = [
  `# The living demo (ambit demo): a Bookinfo-like app in the ambient namespace "${APP_NAMESPACE}".
apiVersion: v1
kind: Namespace
metadata:
  name: ${APP_NAMESPACE}
  labels:
    istio.io/dataplane-mode: ambient
`,
  pod('loadgen', 'node-a', 'loadgen', 'v1'),
  pod('frontend', 'node-a', 'frontend', 'v1'),
  pod('productpage', 'node-b', 'productpage', 'v1'),
  pod('reviews-v1', 'node-a', 'reviews', 'v1'),
  pod('reviews-v2', 'node-b', 'reviews', 'v2'),
  pod('ratings', 'node-a', 'ratings', 'v1'),
  pod('details', 'node-b', 'details', 'v1'),
  pod('rogue', 'node-b', 'rogue', 'v1'),
  service('frontend', 80, 8080, 'http'),
  service('productpage', 9080, 9080, 'http'),
  // reviews is served through the namespace's waypoint, which splits it 90/10 over the per-version services.
  service('reviews', 9080, 9080, 'http', { labels: '{ istio.io/use-waypoint: waypoint }' }),
  service('reviews-v1', 9080, 9080, 'http', { selector: '{ app: reviews, version: v1 }' }),
  service('reviews-v2', 9080, 9080, 'http', { selector: '{ app: reviews, version: v2 }' }),
  service('ratings', 9070, 9070, 'tcp'),
  // gRPC (port name grpc): the waypoint labels its requests with grpc_response_status.
  service('details', 9090, 9090, 'grpc', { labels: '{ istio.io/use-waypoint: waypoint }' }),
  `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: ${APP_NAMESPACE}
  labels: { istio.io/waypoint-for: service }
spec:
  gatewayClassName: istio-waypoint
  listeners:
    - { name: mesh, port: 15008, protocol: HBONE }
`,
  `apiVersion: v1
kind: Service
metadata:
  name: waypoint
  namespace: ${APP_NAMESPACE}
spec:
  selector: { gateway.networking.k8s.io/gateway-name: waypoint }
  ports:
    - { name: mesh, port: 15008 }
`,
  `apiVersion: v1
kind: Pod
metadata:
  name: waypoint
  namespace: ${APP_NAMESPACE}
  labels: { gateway.networking.k8s.io/gateway-name: waypoint, istio.io/dataplane-mode: none }
spec:
  nodeName: node-a
  serviceAccountName: waypoint
`,
  `# The canary: 90% of reviews requests to v1, 10% to v2 (applied by the waypoint).
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews-split
  namespace: ${APP_NAMESPACE}
spec:
  parentRefs:
    - { group: "", kind: Service, name: reviews, port: 9080 }
  rules:
    - backendRefs:
        - { name: reviews-v1, port: 9080, weight: 90 }
        - { name: reviews-v2, port: 9080, weight: 10 }
      # reviews-v2 is a flaky canary (a 503 in every 5 requests); the waypoint retries those.
      retry: { codes: [503], attempts: 2 }
`,
].join('---\n');

export const DENY_POLICY_FILE = 'deny-rogue.yaml';

/** Denies the rogue client's connections to productpage (L4, enforced by productpage's node agent). */
export const DENY_POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-rogue
  namespace: ${APP_NAMESPACE}
spec:
  selector:
    matchLabels: { app: productpage }
  action: DENY
  rules:
    - from:
        - source:
            principals: ["cluster.local/ns/${APP_NAMESPACE}/sa/rogue"]
`;

/**
 * One script for every process of the app (run with `node -e`): an HTTP
 * service that calls its downstreams, the TCP ratings service, or a load
 * generator printing its counts as JSON every second. Raw string: the
 * script's own escapes stay as written.
 */
export const APP_SCRIPT = String.raw`
const http = require('node:http');
const net = require('node:net');
const [grpcPath, mode, ...rest] = process.argv.slice(1);
// gRPC without .proto files: JSON messages on the method /demo.Details/Get.
const GET = '/demo.Details/Get';
const json = { serialize: (o) => Buffer.from(JSON.stringify(o)), deserialize: (b) => JSON.parse(b.toString()) };
const grpcClients = new Map();
function call(target) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const u = new URL(target);
    let done = false;
    const finish = (r) => { if (!done) { done = true; resolve(Object.assign({ target: u.host, ms: Date.now() - t0 }, r)); } };
    if (u.protocol === 'grpc:') {
      const grpc = require(grpcPath);
      let c = grpcClients.get(u.host);
      if (!c) { c = new grpc.Client(u.host, grpc.credentials.createInsecure()); grpcClients.set(u.host, c); }
      c.makeUnaryRequest(GET, json.serialize, json.deserialize, { product: 1 }, { deadline: Date.now() + 2000 }, (err, reply) => {
        if (err) finish({ ok: false, error: 'grpc ' + err.code });
        else finish({ ok: true, body: reply });
      });
      return;
    }
    if (u.protocol === 'tcp:') {
      let buf = '';
      const s = net.connect(Number(u.port), u.hostname);
      s.setTimeout(2000, () => s.destroy(new Error('timeout')));
      s.on('connect', () => s.write('rating?\n'));
      s.on('data', (d) => { buf += d; if (buf.includes('\n')) { s.end(); finish({ ok: true, body: buf.trim() }); } });
      s.on('error', (e) => finish({ ok: false, error: e.code || e.message }));
      s.on('close', () => finish({ ok: buf.includes('\n'), error: 'closed' }));
      return;
    }
    const req = http.get(target, { agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => finish({ ok: res.statusCode === 200, status: res.statusCode }));
      res.on('error', (e) => finish({ ok: false, error: e.code || e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => finish({ ok: false, error: e.code || e.message }));
  });
}
if (mode === 'http') {
  const [ip, port, name, version, calls, failEvery] = rest;
  const downs = (calls || '').split(',').filter(Boolean);
  let hits = 0;
  http.createServer(async (req, res) => {
    hits++;
    if (Number(failEvery) > 0 && hits % Number(failEvery) === 0) {
      res.writeHead(503, { 'content-type': 'text/plain', connection: 'close' });
      res.end('flaky canary\n');
      return;
    }
    const results = [];
    for (const d of downs) results.push(await call(d));
    const ok = results.every((r) => r.ok);
    const body = JSON.stringify({ service: name, version, path: req.url, ok, calls: results }) + '\n';
    res.writeHead(ok ? 200 : 502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  }).listen(Number(port), ip, () => console.log('listening'));
} else if (mode === 'grpc') {
  const grpc = require(grpcPath);
  const [ip, port] = rest;
  const server = new grpc.Server();
  server.addService({ Get: { path: GET, requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize } }, {
    Get: (call, cb) => cb(null, { product: call.request.product, pages: 200, publisher: 'ambit' }),
  });
  server.bindAsync(ip + ':' + port, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) { console.error(err.message); process.exit(1); }
    console.log('listening');
  });
} else if (mode === 'tcp') {
  const [ip, port] = rest;
  net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', () => s.end('5\n'));
  }).listen(Number(port), ip, () => console.log('listening'));
} else if (mode === 'load') {
  const [target, rps] = rest;
  let ok = 0;
  let failed = 0;
  let last = '';
  console.log(JSON.stringify({ started: target }));
  setInterval(() => {
    call(target).then((r) => { if (r.ok) ok++; else { failed++; last = r.error || String(r.status); } });
  }, Math.max(10, 1000 / Number(rps)));
  setInterval(() => console.log(JSON.stringify({ ok, failed, last })), 1000);
} else {
  console.error('unknown mode ' + mode);
  process.exit(2);
}
`;

/** Where @grpc/grpc-js is installed (the app script runs with `node -e`, outside any module tree). */
const GRPC_JS = createRequire(import.meta.url).resolve('@grpc/grpc-js');

/** The argv (after the node binary) of one app process in its pod. */
export function appArgv(p: AppProcess, podIp: string): string[] {
  const script = ['-e', APP_SCRIPT, GRPC_JS];
  switch (p.mode) {
    case 'http':
      return [...script, 'http', podIp, String(p.port), p.pod, p.version ?? 'v1', (p.calls ?? []).join(','), String(p.failEvery ?? 0)];
    case 'tcp':
      return [...script, 'tcp', podIp, String(p.port)];
    case 'grpc':
      return [...script, 'grpc', podIp, String(p.port)];
    case 'load':
      return [...script, 'load', p.target ?? '', String(p.rps ?? 1)];
  }
}
