/**
 * The shape of an `ambit` subcommand. Each command declares its flags once;
 * `parseCommandArgs` validates them (unknown flag, missing value, bad type)
 * and produces a ConfigError, which the entry point turns into exit code 64.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from '../common/errors.js';

export type FlagSpec = {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** One line of help. */
  help: string;
  /** Shown in help as the default value. */
  default?: string;
};

export interface Command {
  name: string;
  summary: string;
  /** Usage line after `ambit <name>`, e.g. `up <manifests> [flags]`. */
  usage: string;
  flags: Record<string, FlagSpec>;
  /** Free text appended to `--help`. */
  details?: string;
  /** Runs the command; resolves to the process exit code. */
  run(args: ParsedArgs): Promise<number>;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  positionals: string[];
  /** Everything after a literal `--`, untouched. */
  rest: string[];
}

export function parseCommandArgs(cmd: Command, argv: string[]): ParsedArgs {
  const dashdash = argv.indexOf('--');
  const head = dashdash >= 0 ? argv.slice(0, dashdash) : argv;
  const rest = dashdash >= 0 ? argv.slice(dashdash + 1) : [];
  const options: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, spec] of Object.entries(cmd.flags)) {
    options[name] = { type: spec.type, ...(spec.short ? { short: spec.short } : {}), ...(spec.multiple ? { multiple: true } : {}) };
  }
  try {
    const { values, positionals } = parseArgs({ args: head, options, allowPositionals: true, strict: true });
    return { values, positionals, rest };
  } catch (err) {
    const msg = err instanceof Error ? err.message.replace(/^./, (c) => c.toLowerCase()) : String(err);
    throw new ConfigError(`ambit ${cmd.name}: ${msg}; see 'ambit ${cmd.name} --help'`, { cause: err });
  }
}

export function formatHelp(cmd: Command): string {
  const lines = [`ambit ${cmd.name} ${cmd.usage}`.trimEnd(), '', cmd.summary, ''];
  const entries = Object.entries(cmd.flags);
  if (entries.length > 0) {
    lines.push('Flags:');
    for (const [name, spec] of entries) {
      const flag = `${spec.short ? `-${spec.short}, ` : ''}--${name}${spec.type === 'string' ? ' <value>' : ''}`;
      lines.push(`  ${flag.padEnd(34)} ${spec.help}${spec.default !== undefined ? ` (default: ${spec.default})` : ''}`);
    }
  }
  lines.push(`  ${'-h, --help'.padEnd(34)} show this help`);
  if (cmd.details) lines.push('', cmd.details.trimEnd());
  return lines.join('\n') + '\n';
}

/** Typed accessors that turn a bad value into a ConfigError naming the flag. */
export function stringFlag(args: ParsedArgs, name: string, fallback?: string): string | undefined {
  const v = args.values[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'string') throw new ConfigError(`--${name} takes a single value`);
  return v;
}

export function requiredString(args: ParsedArgs, cmd: string, name: string): string {
  const v = stringFlag(args, name);
  if (v === undefined || v === '') throw new ConfigError(`ambit ${cmd}: --${name} is required`);
  return v;
}

export function intFlag(args: ParsedArgs, name: string, fallback: number, range: [number, number]): number {
  const raw = stringFlag(args, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < range[0] || n > range[1]) {
    throw new ConfigError(`--${name} must be an integer from ${range[0]} to ${range[1]}, got '${raw}'`);
  }
  return n;
}

export function boolFlag(args: ParsedArgs, name: string): boolean {
  return args.values[name] === true;
}

export function enumFlag<T extends string>(args: ParsedArgs, name: string, allowed: readonly T[], fallback: T): T {
  const raw = stringFlag(args, name);
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`--${name} must be one of ${allowed.join(', ')}, got '${raw}'`);
  }
  return raw as T;
}
