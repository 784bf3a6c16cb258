/**
 * `ambit demo` (what `npm start` runs). By default the living mesh: a lab
 * with the sample app, steady traffic, a deny policy and the dashboard,
 * running until Ctrl-C. `--once`: the original quick run (one request
 * through HBONE, proof from the agents, teardown). `--tour`: a scripted
 * walk through the features with proofs, then teardown. The dashboard is
 * served by the lab's control plane (--port/--address become its
 * --dashboard-listen), on this process's netns.
 */
import { isIP } from 'node:net';
import { runDemo } from '../demo/demo.js';
import { runLivingDemo } from '../demo/living.js';
import { runTour } from '../demo/tour.js';
import { DEFAULT_DASHBOARD_ADDRESS, DEFAULT_DASHBOARD_PORT } from '../dashboard/server.js';
import { labDown } from '../lab/lab.js';
import { boolFlag, intFlag, stringFlag, type Command } from './command.js';
import { ConfigError } from '../common/errors.js';

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run the living demo: a two-node lab mesh with a sample app, traffic, a deny policy and a service-graph dashboard (Ctrl-C stops)',
  usage: '[--once [--keep] | --tour] [--name <lab>] [--port <n>] [--address <ip>] [--rps <n>]',
  flags: {
    once: { type: 'boolean', help: 'the quick run: one request through HBONE, proof from the agents, teardown' },
    tour: { type: 'boolean', help: 'a scripted tour: enroll, traffic with mTLS, the v1/v2 split, apply and remove a deny policy; then teardown' },
    keep: { type: 'boolean', help: 'with --once: leave the lab running afterwards' },
    name: { type: 'string', help: 'lab name', default: 'demo' },
    port: { type: 'string', help: 'dashboard port (0 picks a free one); the control plane serves the dashboard there', default: String(DEFAULT_DASHBOARD_PORT) },
    address: { type: 'string', help: 'dashboard bind address, an IP of this host (loopback by default; the page has no authentication)', default: DEFAULT_DASHBOARD_ADDRESS },
    rps: { type: 'string', help: 'requests per second the load generator sends to the frontend', default: '5' },
  },
  details: "Needs root (network namespaces). The dashboard is served by the lab's control plane, which creates its listening socket in this process's network namespace. Ctrl-C tears everything down; a second Ctrl-C forces it.",
  async run(args) {
    if (boolFlag(args, 'once') && boolFlag(args, 'tour')) throw new ConfigError('--once and --tour are different demos; pick one');
    const name = stringFlag(args, 'name', 'demo') as string;
    const port = intFlag(args, 'port', DEFAULT_DASHBOARD_PORT, [0, 65535]);
    const rps = intFlag(args, 'rps', 5, [1, 200]);
    const address = stringFlag(args, 'address', DEFAULT_DASHBOARD_ADDRESS) as string;
    if (isIP(address) === 0) throw new ConfigError(`--address must be an IP address of this host (e.g. 127.0.0.1), got '${address}'`);
    if (process.getuid?.() !== 0) throw new ConfigError('the demo creates network namespaces and must run as root (try: sudo npm start)');
    const out = (l: string): void => void process.stdout.write(l + '\n');
    const abort = new AbortController();
    let signals = 0;
    // First Ctrl-C: a clean stop (the demo tears down and returns). Second: tear the lab down now and exit.
    const onSignal = (): void => {
      signals++;
      if (signals === 1 && !boolFlag(args, 'once')) {
        process.stdout.write('\ninterrupted; tearing down (Ctrl-C again to force) ...\n');
        abort.abort();
        return;
      }
      process.stdout.write('\ninterrupted; tearing down the lab ...\n');
      void labDown(name).finally(() => process.exit(130));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      if (boolFlag(args, 'once')) return await runDemo({ name, keep: boolFlag(args, 'keep'), out });
      if (boolFlag(args, 'tour')) return await runTour({ name, rps, dashboardPort: port, dashboardAddress: address, out, signal: abort.signal });
      return await runLivingDemo({ name, rps, dashboardPort: port, dashboardAddress: address, out, signal: abort.signal });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};
