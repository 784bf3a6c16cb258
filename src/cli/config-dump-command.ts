/** `ambit config-dump`: the agent's /config_dump (admin, 127.0.0.1:15000) as tables, or raw with --json. */
import { DEFAULT_ADMIN_PORT } from '../agent/config.js';
import { fetchJson, parseAddress } from './agent-client.js';
import { boolFlag, stringFlag, type Command, type ParsedArgs } from './command.js';
import { renderDump } from './dump-summary.js';
import { processOutput, type Output } from './format.js';

export async function runConfigDump(args: ParsedArgs, out: Output, now = Date.now()): Promise<number> {
  const admin = parseAddress(stringFlag(args, 'address', `127.0.0.1:${DEFAULT_ADMIN_PORT}`) as string, 'admin');
  const dump = await fetchJson(admin, '/config_dump');
  if (boolFlag(args, 'json')) out.write(JSON.stringify(dump, null, 2) + '\n');
  else out.write(renderDump(dump, { colour: out.colour, now }));
  return 0;
}

export const configDumpCommand: Command = {
  name: 'config-dump',
  summary: "show a running agent's configuration: workloads, services, certificates (reads the admin /config_dump)",
  usage: '[--address host:port] [--json]',
  flags: {
    address: { type: 'string', help: 'agent admin endpoint', default: `127.0.0.1:${DEFAULT_ADMIN_PORT}` },
    json: { type: 'boolean', help: 'print the raw JSON dump' },
  },
  details: "In the lab: ambit lab exec --node <node> -- ambit config-dump",
  run: (args) => runConfigDump(args, processOutput()),
};
