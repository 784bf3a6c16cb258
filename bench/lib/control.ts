/**
 * The control channel between the benchmark driver and its endpoint
 * processes: one JSON object per line. The driver writes requests
 * (`{"id":1,"cmd":"count"}`) to a child's stdin; the child answers on stdout
 * with `{"id":1,"ok":true,"result":...}` and announces itself once with
 * `{"ev":"ready",...}`. Logs go to stderr, never stdout.
 */
import { createInterface } from 'node:readline';

export interface ControlRequest {
  readonly id: number;
  readonly cmd: string;
  readonly args?: unknown;
}

export interface ControlReply {
  readonly id: number;
  readonly ok: boolean;
  readonly result?: unknown;
  readonly error?: string;
}

export interface ReadyEvent {
  readonly ev: 'ready';
  readonly pid: number;
  readonly identity: string;
}

export type Handler = (args: unknown) => unknown;

/** Writes one line to stdout (the only place children write stdout). */
export function emit(obj: ReadyEvent | ControlReply): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/**
 * Child side: answers requests from stdin. When stdin closes (the driver is
 * gone, or asked us to stop) `onClose` runs; the child must then exit.
 */
export function serveCommands(handlers: Readonly<Record<string, Handler>>, onClose: () => void): void {
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
    } catch {
      process.stderr.write(`bad control line: ${line}\n`);
      return;
    }
    const handler = handlers[req.cmd];
    if (!handler) {
      emit({ id: req.id, ok: false, error: `unknown command ${req.cmd}` });
      return;
    }
    Promise.resolve()
      .then(() => handler(req.args))
      .then(
        (result) => emit({ id: req.id, ok: true, result }),
        (err: unknown) => emit({ id: req.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
      );
  });
  rl.once('close', onClose);
}

/** The child's config: one JSON argument. */
export function configFromArgv<T>(): T {
  const raw = process.argv[2];
  if (!raw) throw new Error('usage: node <endpoint>.js <json config>');
  return JSON.parse(raw) as T;
}
