/**
 * pino loggers. JSON by default (what log pipelines want); `pretty` for humans.
 * Components take a `Logger` and make children with a `component` field.
 *
 * Levels can change at run time (the admin `POST /logging`): pino children
 * copy their parent's level when created and never look at it again, so a
 * LogControl keeps (weak) track of every logger of one tree and sets the
 * level on all of them, or only on those of one component. The format can
 * change too: lines are always made as JSON and, in `pretty` mode, turned
 * into text in process (pino-pretty's formatter) before they are written.
 */
import { pino, destination, stdTimeFunctions, type Logger as PinoLogger } from 'pino';
import { prettyFactory } from 'pino-pretty';

export type Logger = PinoLogger;
export type LogFormat = 'json' | 'pretty';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  level: LogLevel;
  format: LogFormat;
  /** Where lines go; defaults to stdout. */
  destination?: NodeJS.WritableStream;
  base?: Record<string, unknown>;
}

/** The levels in effect: the default one, and per-component overrides. */
export interface LogLevels {
  default: LogLevel;
  components: Record<string, LogLevel>;
}

/**
 * Run-time control of the levels of one logger tree (a root and every child
 * made from it, at any depth, before or after the change).
 */
export class LogControl {
  readonly #initial: LogLevel;
  readonly #output: FormatSwitch | undefined;
  #default: LogLevel;
  readonly #overrides = new Map<string, LogLevel>();
  readonly #loggers = new Set<WeakRef<Logger>>();

  constructor(initial: LogLevel, output?: FormatSwitch) {
    this.#initial = initial;
    this.#default = initial;
    this.#output = output;
  }

  /** The output format, when it can be changed (loggers made by createLogger). */
  get format(): LogFormat | undefined {
    return this.#output?.format;
  }

  /** Switches JSON ⇄ pretty; false when this logger's output cannot switch. */
  setFormat(format: LogFormat): boolean {
    if (!this.#output) return false;
    this.#output.format = format;
    return true;
  }

  /** The hook pino calls for every child; also used to register the root. */
  readonly track = (l: Logger): void => {
    this.#loggers.add(new WeakRef(l));
    const component = componentOf(l);
    const override = component === undefined ? undefined : this.#overrides.get(component);
    if (override !== undefined) l.level = override;
  };

  levels(): LogLevels {
    return { default: this.#default, components: Object.fromEntries([...this.#overrides].sort(([a], [b]) => a.localeCompare(b))) };
  }

  /** Sets the level of every logger, or only of the loggers of `component`. */
  setLevel(level: LogLevel, component?: string): void {
    if (component === undefined) {
      this.#default = level;
      this.#overrides.clear();
    } else {
      this.#overrides.set(component, level);
    }
    this.#apply();
  }

  /** Back to the level given at start-up, with no per-component overrides. */
  reset(): void {
    this.#default = this.#initial;
    this.#overrides.clear();
    this.#apply();
  }

  #apply(): void {
    for (const ref of this.#loggers) {
      const l = ref.deref();
      if (!l) {
        this.#loggers.delete(ref);
        continue;
      }
      const component = componentOf(l);
      l.level = (component === undefined ? undefined : this.#overrides.get(component)) ?? this.#default;
    }
  }
}

function componentOf(l: Logger): string | undefined {
  const c = (l.bindings() as { component?: unknown }).component;
  return typeof c === 'string' ? c : undefined;
}

const controls = new WeakMap<Logger, LogControl>();

/**
 * The level control of a logger made by createLogger (or by loggerWithControl).
 * For any other logger, a control that only reaches that logger is returned.
 */
export function logControlFor(logger: Logger): LogControl {
  const known = controls.get(logger);
  if (known) return known;
  const c = new LogControl(logger.level as LogLevel);
  c.track(logger);
  controls.set(logger, c);
  return c;
}

/** Parses a level name as the admin endpoint accepts it (`off` is an alias of `silent`). */
export function parseLogLevel(raw: string): LogLevel | undefined {
  const v = raw.trim().toLowerCase();
  if (v === 'off') return 'silent';
  return (LOG_LEVELS as readonly string[]).includes(v) ? (v as LogLevel) : undefined;
}

/** A pino destination that writes JSON lines as they are, or pretty-printed. */
export class FormatSwitch {
  format: LogFormat;
  readonly #out: { write(s: string): unknown };
  readonly #colorize: boolean;
  #pretty: ((line: string) => string) | undefined;

  constructor(format: LogFormat, out: { write(s: string): unknown }, colorize = false) {
    this.format = format;
    this.#out = out;
    this.#colorize = colorize;
  }

  write(line: string): void {
    if (this.format === 'json') {
      this.#out.write(line);
      return;
    }
    this.#pretty ??= prettyFactory({ colorize: this.#colorize, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' });
    this.#out.write(this.#pretty(line));
  }

  /** logger.flush() reaches the real destination (e.g. pino's async stdout writer). */
  flush(cb?: (err?: Error) => void): void {
    const f = (this.#out as { flush?: (cb: (err?: Error) => void) => void }).flush;
    if (typeof f === 'function') f.call(this.#out, cb ?? (() => undefined));
    else cb?.();
  }
}

/** Wraps a pino constructor call so its tree is tracked by a LogControl. */
function withControl(level: LogLevel, make: (onChild: (l: Logger) => void) => Logger, output?: FormatSwitch): Logger {
  const control = new LogControl(level, output);
  const root = make((child) => control.track(child));
  control.track(root);
  controls.set(root, control);
  return root;
}

export function createLogger(opts: LoggerOptions): Logger {
  const out = opts.destination ?? destination({ fd: 1, sync: false });
  const output = new FormatSwitch(opts.format, out, opts.format === 'pretty' && process.stdout.isTTY === true);
  return withControl(opts.level, (onChild) => pino({ level: opts.level, base: opts.base ?? null, timestamp: stdTimeFunctions.isoTime, onChild }, output), output);
}

/** A logger writing lines to `write` (JSON unless switched), with a LogControl (for tests of run-time levels and format). */
export function loggerWithControl(level: LogLevel, write: (line: string) => void, format: LogFormat = 'json'): Logger {
  const output = new FormatSwitch(format, { write });
  return withControl(level, (onChild) => pino({ level, base: null, onChild }, output), output);
}

/** A logger that drops everything, for tests that do not assert on logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
