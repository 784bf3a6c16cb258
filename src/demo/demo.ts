/**
 * `ambit demo --once`, the quick run: a two-node lab with an agent per
 * node, a request from the client pod to the server pod through the mesh,
 * proof from the agents' own logs and metrics, then teardown. (`ambit demo`
 * without flags is the living mesh with the dashboard: living.ts.)
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown, labUp, type LabHandle } from '../lab/lab.js';
import { DEMO_MANIFESTS, DEMO_SERVER_JS } from './manifests.js';

export interface DemoOptions {
  name: string;
  /** Leave the lab running at the end (for poking around with `ambit lab exec`). */
  keep: boolean;
  out: (line: string) => void;
}

const STEPS = 6;

function bold(s: string): string {
  return process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s;
}

async function waitForLine(child: ChildProcess, text: string, timeoutMs: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for '${text}' (output: ${seen.trim() || 'none'})`)), timeoutMs);
    const onData = (d: Buffer): void => {
      seen += d.toString();
      if (seen.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with code ${code} before '${text}' (output: ${seen.trim() || 'none'})`));
    });
  });
}

function accessLines(log: string): Array<Record<string, unknown>> {
  return log
    .split('\n')
    .filter((l) => l.includes('"component":"access"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const { out } = opts;
  const step = (n: number, msg: string): void => out(`${bold(`[${n}/${STEPS}]`)} ${msg}`);
  const dir = await mkdtemp(join(tmpdir(), 'ambit-demo-'));
  let lab: LabHandle | undefined;
  let server: ChildProcess | undefined;
  try {
    const t0 = Date.now();
    await labDown(opts.name); // a crashed earlier demo leaves state behind
    step(1, 'creating the lab: 2 nodes (network namespaces joined by a bridge), 2 pods in the ambient namespace "demo"');
    const manifests = join(dir, 'demo.yaml');
    await writeFile(manifests, DEMO_MANIFESTS);
    step(2, 'starting the control plane (workload xDS + Istio CA on node-a:15012) and one Ambit agent per node');
    lab = await labUp({ manifests, name: opts.name, mesh: true, controlPlane: true });
    const client = lab.cluster.workloads.find((w) => w.name === 'client');
    const srv = lab.cluster.workloads.find((w) => w.name === 'server');
    if (!client || !srv) throw new Error('BUG: demo manifests lack the client or server pod');
    out(`      control plane on ${lab.cluster.nodes[0]?.ip ?? '?'}:15012 serving the manifests`);
    for (const n of lab.cluster.nodes) out(`      agent on ${n.name} (${n.ip}) ready: workloads over delta xDS, certificates from the CA`);
    out(`      demo/client  ${client.ip} on ${client.node}  identity spiffe://${lab.cluster.trustDomain}/ns/demo/sa/client`);
    out(`      demo/server  ${srv.ip} on ${srv.node}  identity spiffe://${lab.cluster.trustDomain}/ns/demo/sa/server`);

    step(3, `starting an HTTP server in demo/server on ${srv.ip}:8080`);
    server = lab.spawn('demo/server', [process.execPath, '-e', DEMO_SERVER_JS, srv.ip, '8080', 'demo/server'], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitForLine(server, 'listening', 10_000);

    step(4, 'demo/client: a plain `curl http://server.demo.svc.cluster.local/hello` (the agent captures it inside the pod)');
    const res = await lab.exec('demo/client', ['curl', '-sS', '--max-time', '10', 'http://server.demo.svc.cluster.local/hello'], { timeoutMs: 15_000 });
    if (res.code !== 0) throw new Error(`the request failed (curl exit ${res.code}): ${res.stderr.trim()}`);
    out(`      response: ${res.stdout.trim()}`);

    step(5, 'what the agents recorded');
    await new Promise((r) => setTimeout(r, 200));
    const logA = accessLines(await readFile(join(lab.stateDir, `agent-${client.node}.log`), 'utf8'));
    const logB = accessLines(await readFile(join(lab.stateDir, `agent-${srv.node}.log`), 'utf8'));
    const outLine = logA.find((l) => l.direction === 'outbound' && l.msg === 'connection complete');
    const inLine = logB.find((l) => l.direction === 'inbound' && l.msg === 'connection complete');
    if (!outLine || !inLine) throw new Error('the agents did not log the connection; see the agent logs in ' + lab.stateDir);
    out(`      ${client.node} (outbound): ${outLine['src.identity']} -> ${outLine['dst.identity']} via ${outLine['dst.addr']} (hbone target ${outLine['dst.hbone_addr']}), sent ${outLine.bytes_sent} B, received ${outLine.bytes_recv} B`);
    out(`      ${srv.node} (inbound):  peer certificate ${inLine['src.identity']}, delivered to ${inLine['dst.addr']}, ${inLine.duration}`);
    const metrics = await lab.exec({ node: srv.node }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
    const opened = metrics.stdout.split('\n').find((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('connection_security_policy="mutual_tls"'));
    if (opened) out(`      ${srv.node} /metrics: ${opened.replace(/\{.*source_principal="([^"]*)".*\}/, '{source_principal="$1",connection_security_policy="mutual_tls",...}')}`);

    step(6, opts.keep ? `leaving the lab '${opts.name}' running` : 'tearing the lab down');
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    out('');
    out(bold('Summary'));
    out(`  An unmodified curl in demo/client reached demo/server on another node: nftables rules in the`);
    out(`  client pod redirected it to the node-a agent, which tunnelled it to the node-b agent.`);
    out(`  The hop between the nodes was HBONE: HTTP/2 CONNECT over mutual TLS 1.3 to ${srv.ip}:15008,`);
    out(`  authenticated as ${String(outLine['src.identity'])} (client) and ${String(inLine['dst.identity'] ?? outLine['dst.identity'])} (server).`);
    out(`  The server saw the client's own address (${client.ip}), as without a mesh.`);
    out(`  Done in ${secs}s.${opts.keep ? ` Explore: ambit lab status --name ${opts.name}; ambit lab exec demo/client --name ${opts.name} -- curl http://server/ ; ambit lab down --name ${opts.name}` : ''}`);
    return 0;
  } finally {
    server?.kill();
    if (!opts.keep) await labDown(opts.name);
    await rm(dir, { recursive: true, force: true });
  }
}
