/**
 * Shared pieces of the certificate chaos tests (CA outage, root rotation):
 * checksummed fetches with test/chaos/stream.mjs from a lab pod, the agents'
 * certificate view (/config_dump, /metrics), tcpdump on a node, and the
 * `ambit` CLI run inside a node.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { LabHandle, LabTarget } from '../../src/lab/lab.js';

export const streamScript = fileURLToPath(new URL('../../../test/chaos/stream.mjs', import.meta.url));
export const ambitBin = fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url));

export interface Fetch {
  outcome: 'eof' | 'error';
  bytes: number;
  intact: boolean;
  code?: string;
}

export function podIp(lab: LabHandle, pod: string): string {
  const w = lab.cluster.workloads.find((x) => x.name === pod);
  assert.ok(w, `no pod ${pod}`);
  return w.ip;
}

/** One checksummed download of `bytes` from host:port, run in pod `from` (e.g. 'mesh/client'). */
export async function fetchFrom(lab: LabHandle, from: string, host: string, port: number, bytes: number): Promise<Fetch> {
  const r = await lab.exec(from as LabTarget, [process.execPath, streamScript, 'fetch', host, String(port), String(bytes)], { timeoutMs: 70_000 });
  assert.equal(r.code, 0, `fetch did not run: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Fetch;
}

/** Starts a process in a pod and waits for its first line of output. */
export async function startInPodProcess(lab: LabHandle, target: string, argv: readonly string[], timeoutMs = 10_000): Promise<ChildProcess> {
  const child = lab.spawn(target as LabTarget, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${target}: ${argv.join(' ')} printed nothing within ${timeoutMs} ms`)), timeoutMs);
      child.stdout?.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${target}: exited (${signal ?? code}) before it was ready`));
      });
    });
  } catch (err) {
    child.kill();
    throw err;
  }
  return child;
}

export interface DumpedCertificate {
  identity: string;
  state: string;
  certificate?: { serialNumber: string; notBefore: string; notAfter: string; certChainPem: string[]; rootsPem: string[] };
  renewal?: { consecutiveFailures: number; failuresTotal: number; expiresInSeconds?: number };
}

/** The certificates an agent holds (its /config_dump). */
export async function agentCertificates(lab: LabHandle, node: string): Promise<DumpedCertificate[]> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15000/config_dump'], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, `config_dump on ${node}: ${r.stderr}`);
  return ((JSON.parse(r.stdout) as { certificates?: DumpedCertificate[] }).certificates ?? []);
}

/** Samples of one metric from an agent's /metrics: label text -> value. */
export async function agentMetric(lab: LabHandle, node: string, metric: string): Promise<Map<string, number>> {
  const r = await lab.exec({ node }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics'], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, `metrics on ${node}: ${r.stderr}`);
  const out = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith(`${metric}{`) && !line.startsWith(`${metric} `)) continue;
    const m = /^[^{ ]+(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m) out.set(m[1] ?? '', Number(m[2]));
  }
  return out;
}

/** Whether `certPem` is signed by `rootPem`. */
export function signedBy(certPem: string, rootPem: string): boolean {
  const c = new X509Certificate(certPem);
  const r = new X509Certificate(rootPem);
  return c.checkIssued(r) && c.verify(r.publicKey);
}

/** tcpdump -w on every interface of a node's netns; resolves once it listens. */
export async function startCapture(lab: LabHandle, node: string, file: string): Promise<ChildProcess> {
  const dump = spawn('ip', ['netns', 'exec', lab.nodeNetns(node), 'tcpdump', '--immediate-mode', '-i', 'any', '-nn', '-U', '-w', file, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tcpdump did not start')), 10_000);
    dump.stderr?.on('data', (d: Buffer) => {
      if (d.toString().includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return dump;
}

export async function stopCapture(dump: ChildProcess): Promise<void> {
  if (dump.exitCode !== null) return;
  dump.kill('SIGINT');
  await new Promise((r) => dump.once('exit', r));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
