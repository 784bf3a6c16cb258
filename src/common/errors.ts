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
