/**
 * The `ambit` entry point: dispatches to a subcommand, prints help, and maps
 * errors to exit codes (64 for bad configuration, 1 for anything else).
 */
import { ConfigError } from '../common/errors.js';
import { formatHelp, parseCommandArgs, type Command } from './command.js';
import { commands } from './commands.js';

const EXIT_USAGE = 64;

function topHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'usage: ambit <command> [flags]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'ambit <command> --help' for the flags of a command.",
    '',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(topHelp());
    return name === undefined ? EXIT_USAGE : 0;
  }
  const cmd: Command | undefined = commands.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`ambit: unknown command '${name}'; run 'ambit --help' for the list\n`);
    return EXIT_USAGE;
  }
  try {
    const args = parseCommandArgs(cmd, rest);
    if (args.values.help === true) {
      process.stdout.write(formatHelp(cmd));
      return 0;
    }
    return await cmd.run(args);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`ambit ${cmd.name}: ${err.message.replace(new RegExp(`^ambit ${cmd.name}: `), '')}\n`);
      return EXIT_USAGE;
    }
    const e = err instanceof Error ? err : new Error(String(err));
    const code = (e as { code?: unknown }).code;
    process.stderr.write(`ambit ${cmd.name}: ${e.message}${typeof code === 'string' ? ` [${code}]` : ''}\n`);
    if (process.env.AMBIT_DEBUG) process.stderr.write(`${e.stack ?? ''}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ambit: BUG: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
