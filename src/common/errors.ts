/**
 * The base of every Ambit error. Each subsystem has its own `errors.ts` that
 * extends this class with one subclass per condition and a stable `code`
 * (`AMBIT_ERR_<SUBSYSTEM>_<CONDITION>`). Codes are listed in docs/errors.md
 * and never reused. Messages are lowercase and say what to do next.
 */
export class AmbitError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Walks the `cause` chain and reports whether any link is an instance of `cls`. */
export function isCausedBy<T extends Error>(err: unknown, cls: abstract new (...args: never[]) => T): err is T {
  let cur: unknown = err;
  for (let depth = 0; cur instanceof Error && depth < 16; depth++) {
    if (cur instanceof cls) return true;
    cur = cur.cause;
  }
  return false;
}

/** Finds the first error in the `cause` chain (including `err`) that is an instance of `cls`. */
export function findCause<T extends Error>(err: unknown, cls: abstract new (...args: never[]) => T): T | undefined {
  let cur: unknown = err;
  for (let depth = 0; cur instanceof Error && depth < 16; depth++) {
    if (cur instanceof cls) return cur;
    cur = cur.cause;
  }
  return undefined;
}

/** Invalid configuration (flags, files, env). The CLI exits with code 64 (EX_USAGE). */
export class ConfigError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_CONFIG_INVALID', message, options);
  }
}

/** Converts anything thrown into an Error without losing the original as `cause`. */
export function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value), { cause: value });
}
