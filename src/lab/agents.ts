/**
 * Starting, watching and stopping the per-node agents. The launch is a
 * replaceable function so tests (and the lab before the agent exists) can
 * substitute a stub; processes are identified by pid *and* start time so a
 * later `down` never signals an unrelated process that reused the pid.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, fstatSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { LabAgentError } from './errors.js';

export interface AgentLaunch {
  readonly node: string;
  /** The node's netns name; the agent runs inside it. */
  readonly netns: string;
  /** The agent's argv (program first), to run inside the netns. */
  readonly argv: readonly string[];
  /** stdout and stderr are appended here. */
  readonly logFile: string;
  readonly readyFile: string;
}

export interface AgentExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface AgentProcess {
  readonly pid: number;
  /** Settles when the process exits (never rejects). */
  readonly exited: Promise<AgentExit>;
}

export type SpawnAgent = (launch: AgentLaunch) => AgentProcess | Promise<AgentProcess>;

/** `<repo>/bin/ambit.js`, resolved from this module (dist/src/lab/agents.js). */
export function defaultAgentCommand(): string[] {
  return [process.execPath, fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url))];
}

export function agentArgv(command: readonly string[], a: { node: string; clusterFile: string; caDir: string; readyFile: string }): string[] {
  return [...command, 'agent', '--node', a.node, '--cluster', a.clusterFile, '--ca-dir', a.caDir, '--ready-file', a.readyFile, '--log-format', 'json'];
}

/**
 * The real launch: `ip netns exec <netns> <argv...>`, detached into its own
 * process group (so `down` can signal the agent and anything it forked) and
 * unref'd (so `ambit lab up` can exit while the agents keep running).
 * `ip netns exec` execs the command, so the pid is the agent's own.
 */
export const defaultSpawnAgent: SpawnAgent = (launch) => {
  const fd = openSync(launch.logFile, 'a', 0o644);
  try {
    const child = spawn('ip', ['netns', 'exec', launch.netns, ...launch.argv], { detached: true, stdio: ['ignore', fd, fd] });
    const exited = new Promise<AgentExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', () => resolve({ code: null, signal: null }));
    });
    if (child.pid === undefined) {
      throw new LabAgentError(launch.node, `cannot start the agent for node ${launch.node} ('ip netns exec ${launch.netns} ${launch.argv.join(' ')}')`, '');
    }
    child.unref();
    return { pid: child.pid, exited };
  } finally {
    closeSync(fd);
  }
};

/** The last `maxLines` lines of a file (at most `maxBytes` read); '' when missing. */
export function tailFile(path: string, maxLines = 20, maxBytes = 8192): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const lines = buf.toString('utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    return lines.slice(-maxLines).join('\n');
  } finally {
    closeSync(fd);
  }
}

export interface WatchedAgent {
  readonly node: string;
  readonly proc: AgentProcess;
  readonly readyFile: string;
  readonly logFile: string;
  /** How errors name the process; default `the agent on node <node>`. */
  readonly what?: string;
  /** Builds the error (default LabAgentError); gets the message and the log tail. */
  readonly error?: (message: string, logTail: string) => Error;
}

function failure(a: WatchedAgent, message: string): Error {
  const tail = tailFile(a.logFile);
  return a.error ? a.error(message, tail) : new LabAgentError(a.node, message, tail);
}

/** Resolves once every agent's ready file exists; throws LabAgentError on early exit or timeout. */
export async function waitForAgents(agents: readonly WatchedAgent[], timeoutMs: number, pollMs = 50): Promise<void> {
  const exits = new Map<string, AgentExit>();
  for (const a of agents) void a.proc.exited.then((e) => exits.set(a.node, e));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let pending: WatchedAgent | undefined;
    for (const a of agents) {
      if (existsSync(a.readyFile)) continue;
      const exit = exits.get(a.node);
      if (exit) {
        const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code ?? 'unknown'}`;
        throw failure(a, `${a.what ?? `the agent on node ${a.node}`} ${how} before it was ready (log: ${a.logFile})`);
      }
      pending ??= a;
    }
    if (!pending) return;
    if (Date.now() >= deadline) {
      throw failure(pending, `${pending.what ?? `the agent on node ${pending.node}`} did not write its ready file ${pending.readyFile} within ${(timeoutMs / 1000).toFixed(1)}s (log: ${pending.logFile})`);
    }
    await sleep(pollMs);
  }
}

interface ProcStat {
  readonly state: string;
  readonly pgrp: number;
  readonly startTime: string;
}

function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses; fields after the last ')' are fixed.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', pgrp: Number(fields[2]), startTime: fields[19] ?? '' };
}

export function processStartTime(pid: number): string | undefined {
  return procStat(pid)?.startTime;
}

/** Alive, not a zombie, and (when known) the same process that was recorded. */
export function processAlive(pid: number, startTime?: string): boolean {
  const st = procStat(pid);
  if (!st || st.state === 'Z' || st.state === 'X') return false;
  return startTime === undefined || st.startTime === startTime;
}

function signal(pid: number, pgrp: boolean, sig: NodeJS.Signals): void {
  try {
    process.kill(pgrp ? -pid : pid, sig);
  } catch {
    // Already gone.
  }
}

/**
 * SIGTERM, then SIGKILL after `graceMs`. Signals the whole process group when
 * the process leads one (agents are spawned detached). Returns how it ended.
 */
export async function stopProcess(pid: number, startTime: string | undefined, graceMs = 3000): Promise<'not-running' | 'terminated' | 'killed'> {
  const st = procStat(pid);
  if (!st || !processAlive(pid, startTime)) return 'not-running';
  const group = st.pgrp === pid;
  signal(pid, group, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!processAlive(pid, startTime)) return 'terminated';
    await sleep(25);
  }
  signal(pid, group, 'SIGKILL');
  for (let i = 0; i < 80 && processAlive(pid, startTime); i++) await sleep(25);
  return 'killed';
}
