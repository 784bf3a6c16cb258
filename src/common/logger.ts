/**
 * pino loggers. JSON by default (what log pipelines want); `pretty` for humans.
 * Components take a `Logger` and make children with a `component` field.
 */
import { pino, destination, stdTimeFunctions, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;
export type LogFormat = 'json' | 'pretty';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  level: LogLevel;
  format: LogFormat;
  /** Where JSON lines go; defaults to stdout. Pretty output always goes to stderr-free stdout. */
  destination?: NodeJS.WritableStream;
  base?: Record<string, unknown>;
}

export function createLogger(opts: LoggerOptions): Logger {
  if (opts.format === 'pretty') {
    return pino({
      level: opts.level,
      base: opts.base ?? null,
      transport: { target: 'pino-pretty', options: { colorize: process.stdout.isTTY === true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } },
    });
  }
  const dest = opts.destination ?? destination({ fd: 1, sync: false });
  return pino({ level: opts.level, base: opts.base ?? null, timestamp: stdTimeFunctions.isoTime }, dest);
}

/** A logger that drops everything, for tests that do not assert on logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
