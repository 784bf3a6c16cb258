import { readFileSync } from 'node:fs';
import type { Command } from './command.js';

export const versionCommand: Command = {
  name: 'version',
  summary: 'print the ambit version',
  usage: '',
  flags: {},
  run() {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`ambit ${pkg.version} (node ${process.version})\n`);
    return Promise.resolve(0);
  },
};
