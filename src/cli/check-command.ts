/** `ambit check`: preflight of the kernel features the agent and the CNI need (see src/cni/preflight.ts). */
import { runPreflight, type PreflightResult } from '../cni/preflight.js';
import { loadNativeBinding } from '../native/load.js';
import { stringFlag, type Command, type ParsedArgs } from './command.js';
import { emit, outputFormat } from './enroll-command.js';
import { paint, processOutput, table, type Output } from './format.js';

export function renderPreflight(results: readonly PreflightResult[], colour: boolean): string {
  const colourOf = { ok: 'green', warn: 'yellow', fail: 'red' } as const;
  const failed = results.filter((r) => r.status === 'fail').length;
  return (
    table(['CHECK', 'STATUS', 'DETAIL'], results.map((r) => [r.name, paint(colour, colourOf[r.status], r.status.toUpperCase()), r.detail]), colour) +
    (failed === 0 ? `\n${paint(colour, 'green', 'this node can run ambit')}\n` : `\n${paint(colour, 'red', `${failed} check(s) failed: this node cannot run ambit as is`)}\n`)
  );
}

export async function runCheck(args: ParsedArgs, out: Output, results?: PreflightResult[]): Promise<number> {
  const r = results ?? (await runPreflight({ loadBinding: loadNativeBinding, cniConfDir: stringFlag(args, 'cni-conf-dir', '/etc/cni/net.d') as string, cniBinDir: stringFlag(args, 'cni-bin-dir', '/opt/cni/bin') as string }));
  emit(out, outputFormat(args), r, () => renderPreflight(r, out.colour));
  return r.some((x) => x.status === 'fail') ? 1 : 0;
}

export const checkCommand: Command = {
  name: 'check',
  summary: 'preflight: can this node run ambit (netns, setns, SO_MARK, nftables, sysctls, CNI dirs)?',
  usage: '[-o table|json|yaml]',
  flags: {
    output: { type: 'string', short: 'o', help: 'table, json or yaml', default: 'table' },
    'cni-conf-dir': { type: 'string', help: 'CNI config directory', default: '/etc/cni/net.d' },
    'cni-bin-dir': { type: 'string', help: 'CNI plugin directory', default: '/opt/cni/bin' },
  },
  details: 'Exit code 1 when a required check fails. Everything is tried in a throwaway network namespace.',
  run: (args) => runCheck(args, processOutput()),
};
