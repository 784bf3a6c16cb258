/** `ambit demo`: the first demo (what `npm start` runs). */
import { runDemo } from '../demo/demo.js';
import { labDown } from '../lab/lab.js';
import { boolFlag, stringFlag, type Command } from './command.js';
import { ConfigError } from '../common/errors.js';

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run the demo: a two-node lab mesh, a request through HBONE, proof from the agents, teardown',
  usage: '[--keep] [--name <lab>]',
  flags: {
    keep: { type: 'boolean', help: 'leave the lab running afterwards' },
    name: { type: 'string', help: 'lab name', default: 'demo' },
  },
  details: 'Needs root (network namespaces). Ctrl-C tears everything down.',
  async run(args) {
    if (process.getuid?.() !== 0) throw new ConfigError('the demo creates network namespaces and must run as root (try: sudo npm start)');
    const name = stringFlag(args, 'name', 'demo') as string;
    // Ctrl-C: tear the lab down (processes included), then exit; down is idempotent.
    const onSignal = (): void => {
      process.stdout.write('\ninterrupted; tearing down the lab ...\n');
      void labDown(name).finally(() => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      return await runDemo({ name, keep: boolFlag(args, 'keep'), out: (l) => process.stdout.write(l + '\n') });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};
