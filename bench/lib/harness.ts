/**
 * What every benchmark driver needs around its measurements: option parsing,
 * a cleanup registry that runs once on success, failure or a signal, child
 * tools inside lab pods, and report formatting. One copy, so both drivers
 * tear down the same way.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { labStatus, type LabHandle, type LabTarget } from '../../src/lab/lab.js';
import type { LocalWorkload } from '../../src/state/local-config.js';
import { stopChild } from './endpoint.js';

/** A positive number from a `--name value` option, or the default. */
export function num(v: string | boolean | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${String(v)}`);
  return n;
}

export class Harness {
  readonly #cleanups: Array<{ what: string; run: () => Promise<unknown> }> = [];
  #cleaning: Promise<void> | undefined;
  #interrupted = false;

  /** Installs the signal and crash handlers; `label` names the benchmark in messages. */
  constructor(label: string) {
    for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
      process.on(sig, () => {
        if (!this.#interrupted) console.error(`\n${sig}: stopping the ${label} and removing the lab`);
        this.#interrupted = true;
        void this.cleanup().finally(() => process.exit(code));
      });
    }
    process.on('uncaughtException', (err) => {
      console.error(`${label} failed: ${err.stack ?? err.message}`);
      void this.cleanup().finally(() => process.exit(1));
    });
    // Output piped into `head` must not kill the benchmark before it cleans up.
    process.stdout.on('error', () => undefined);
    process.stderr.on('error', () => undefined);
  }

  get interrupted(): boolean {
    return this.#interrupted;
  }

  onCleanup(what: string, run: () => Promise<unknown>): void {
    this.#cleanups.push({ what, run });
  }

  /** Runs every registered cleanup once, newest first; each failure is reported, none stops the others. */
  cleanup(): Promise<void> {
    this.#cleaning ??= (async () => {
      for (const c of this.#cleanups.reverse()) {
        try {
          await c.run();
        } catch (err) {
          console.error(`cleanup (${c.what}) failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    })();
    return this.#cleaning;
  }

  /** Starts a program inside a lab pod, keeps the tail of its output, and stops it at cleanup. */
  spawnTool(lab: LabHandle, name: string, target: LabTarget, argv: readonly string[]): Tool {
    const proc = lab.spawn(target, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    const keep = (d: Buffer): void => {
      out = (out + d.toString()).slice(-4096);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    proc.stdin?.on('error', () => undefined);
    proc.on('error', (err) => keep(Buffer.from(`spawn failed: ${err.message}\n`)));
    this.onCleanup(`stop ${name}`, () => stopChild(proc));
    return { proc, pid: proc.pid, output: () => out, alive: () => proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined };
  }

  /** Retries `fn` until it resolves, the deadline passes, or the run is interrupted. */
  async retry<T>(what: string, fn: () => Promise<T>, timeoutMs: number, pauseMs = 200): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (Date.now() > deadline || this.#interrupted) throw new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`);
        await sleep(pauseMs);
      }
    }
  }
}

export interface Tool {
  readonly proc: ChildProcess;
  readonly pid: number | undefined;
  output(): string;
  alive(): boolean;
}

/** Waits until something listens on TCP `port` inside the target's netns (ss, read-only). */
export async function waitListening(lab: LabHandle, target: LabTarget, port: number, tool: Pick<Tool, 'alive' | 'output'>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await lab.exec(target, ['ss', '-Hltn', `sport = :${port}`], { timeoutMs: 5000 });
    if (r.stdout.trim() !== '') return;
    if (!tool.alive()) throw new Error(`nothing listens on port ${port} and the process has exited: ${tool.output()}`);
    await sleep(100);
  }
  throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms: ${tool.output()}`);
}

/** The pid and log file of each node's agent in a running lab; throws when one of `nodes` has none. */
export async function labAgents(lab: string, nodes: readonly string[]): Promise<{ pids: Record<string, number>; logFiles: Record<string, string> }> {
  const pids: Record<string, number> = {};
  const logFiles: Record<string, string> = {};
  for (const n of (await labStatus(lab)).nodes) {
    if (!n.agent) continue;
    pids[n.name] = n.agent.pid;
    logFiles[n.name] = n.agent.logFile;
  }
  for (const n of nodes) if (pids[n] === undefined) throw new Error(`lab '${lab}' has no agent pid for ${n}`);
  return { pids, logFiles };
}

export function workload(lab: LabHandle, namespace: string, pod: string): LocalWorkload {
  const w = lab.cluster.workloads.find((x) => x.namespace === namespace && x.name === pod);
  if (!w) throw new Error(`lab has no pod ${namespace}/${pod}`);
  return w;
}

/** Whether a program is on PATH. */
export function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

/** The first line a tool prints for its version, or undefined when it is not installed. */
export function version(argv: readonly string[]): string | undefined {
  const [cmd, ...args] = argv;
  if (!cmd) return undefined;
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return undefined;
  return `${r.stdout}${r.stderr}`.trim().split('\n')[0];
}

export function fmt(x: number | undefined, digits = 2): string {
  return x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

export function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

/** What a result file records about the machine, so numbers from two runs can be compared fairly. */
export function machineInfo(loadavgStart: readonly number[], tools: Readonly<Record<string, string | undefined>>) {
  return {
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    openssl: process.versions.openssl,
    kernel: os.release(),
    arch: process.arch,
    totalMemBytes: os.totalmem(),
    loadavgStart,
    loadavgEnd: os.loadavg(),
    tools,
  };
}

/**
 * Writes `<dir>/<prefix>-<start time>.json` and `<dir>/<latestName>`; returns
 * the first path. Indented, but arrays of numbers (samples) stay on one line.
 */
export function writeResults(dir: string, prefix: string, latestName: string, startedAt: Date, report: unknown): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${prefix}-${startedAt.toISOString().replaceAll(':', '-')}.json`);
  const text = `${JSON.stringify(report, null, 2).replace(/\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]/g, (_m, inner: string) => `[${inner.split(/,\s*/).join(',')}]`)}\n`;
  writeFileSync(file, text);
  writeFileSync(join(dir, latestName), text);
  return file;
}
