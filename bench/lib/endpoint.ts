/**
 * Driver side of a benchmark child process: the JSON-lines control channel
 * (see control.ts), a bounded tail of its stderr for error messages, and a
 * stop that always ends with the process gone.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { ControlReply, ReadyEvent } from './control.js';

const TAIL_BYTES = 8192;

export class Endpoint {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly ready: Promise<ReadyEvent>;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #stderr = '';
  #exited: Error | undefined;

  constructor(name: string, proc: ChildProcess, readyTimeoutMs = 30_000) {
    this.name = name;
    this.proc = proc;
    proc.stderr?.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-TAIL_BYTES);
    });
    proc.stdin?.on('error', () => undefined);
    let onReady: (e: ReadyEvent) => void = () => undefined;
    let onFail: (e: Error) => void = () => undefined;
    this.ready = new Promise<ReadyEvent>((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    this.ready.catch(() => undefined);
    const timer = setTimeout(() => onFail(new Error(`${name} was not ready after ${readyTimeoutMs} ms${this.#tailText()}`)), readyTimeoutMs);
    timer.unref();
    if (proc.stdout) {
      createInterface({ input: proc.stdout }).on('line', (line) => {
        let msg: Partial<ReadyEvent & ControlReply>;
        try {
          msg = JSON.parse(line) as Partial<ReadyEvent & ControlReply>;
        } catch {
          this.#stderr = (this.#stderr + `[stdout] ${line}\n`).slice(-TAIL_BYTES);
          return;
        }
        if (msg.ev === 'ready') {
          clearTimeout(timer);
          onReady(msg as ReadyEvent);
          return;
        }
        const p = msg.id === undefined ? undefined : this.#pending.get(msg.id);
        if (!p || msg.id === undefined) return;
        this.#pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new Error(`${name}: ${msg.error ?? 'failed'}`));
      });
    }
    const onGone = (why: string): void => {
      clearTimeout(timer);
      this.#exited ??= new Error(`${name} ${why}${this.#tailText()}`);
      onFail(this.#exited);
      for (const p of this.#pending.values()) p.reject(this.#exited);
      this.#pending.clear();
    };
    proc.once('error', (err) => onGone(`could not start: ${err.message}`));
    proc.once('exit', (code, signal) => onGone(`exited (${signal ?? `code ${code}`})`));
  }

  #tailText(): string {
    const t = this.#stderr.trim();
    return t === '' ? '' : `; its stderr ends with:\n${t}`;
  }

  get alive(): boolean {
    return this.#exited === undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  request<T>(cmd: string, args?: unknown, timeoutMs = 60_000): Promise<T> {
    if (this.#exited) return Promise.reject(this.#exited);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${this.name}: '${cmd}' got no answer in ${timeoutMs} ms${this.#tailText()}`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.proc.stdin?.write(`${JSON.stringify({ id, cmd, args })}\n`);
    });
  }

  /** Closes stdin (the child exits), then SIGTERM and SIGKILL if it lingers. */
  async stop(graceMs = 2000): Promise<void> {
    if (!this.alive) return;
    const exited = once(this.proc, 'exit').catch(() => undefined);
    this.proc.stdin?.end();
    if (await settlesWithin(exited, graceMs)) return;
    this.proc.kill('SIGTERM');
    if (await settlesWithin(exited, graceMs)) return;
    this.proc.kill('SIGKILL');
    await settlesWithin(exited, graceMs);
  }
}

/** Stops a plain child process (a tool without a control channel): SIGTERM, then SIGKILL. */
export async function stopChild(proc: ChildProcess, graceMs = 2000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
  const exited = once(proc, 'exit').catch(() => undefined);
  proc.kill('SIGTERM');
  if (await settlesWithin(exited, graceMs)) return;
  proc.kill('SIGKILL');
  await settlesWithin(exited, graceMs);
}

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([p.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  clearTimeout(timer);
  return done;
}
