/**
 * `ambit enroll <namespace>` / `ambit unenroll <namespace>`: put a namespace
 * in the ambient mesh (label istio.io/dataplane-mode=ambient) or take it out,
 * with kubectl label semantics: an existing different value is only replaced
 * with --overwrite, and doing it twice is a no-op ("unchanged"). Through the
 * Kubernetes API (--kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster),
 * or in a manifest folder (--manifests, e.g. the lab's, watched live).
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError } from '../common/errors.js';
import { loadKubeConfig } from '../control-plane/kube-source.js';
import { apiKubeOps, folderKubeOps, type KubeOps } from '../cni/kube-ops.js';
import { DATAPLANE_MODE_LABEL } from '../cni/pod-source.js';
import { boolFlag, enumFlag, stringFlag, type Command, type FlagSpec, type ParsedArgs } from './command.js';
import { processOutput, table, type Output } from './format.js';

export const KUBE_FLAGS: Record<string, FlagSpec> = {
  kubeconfig: { type: 'string', help: 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster)' },
  manifests: { type: 'string', help: 'edit this manifest folder instead of the API (lab mode)' },
  output: { type: 'string', short: 'o', help: 'table, json or yaml', default: 'table' },
};

export function kubeOpsFor(args: ParsedArgs): KubeOps {
  const dir = stringFlag(args, 'manifests');
  if (dir !== undefined) {
    if (!existsSync(dir)) throw new ConfigError(`--manifests ${dir} does not exist`);
    return folderKubeOps(dir);
  }
  const explicit = stringFlag(args, 'kubeconfig') ?? process.env.KUBECONFIG;
  const home = join(homedir(), '.kube', 'config');
  return apiKubeOps(loadKubeConfig(explicit ?? (existsSync(home) ? home : undefined)));
}

export type OutputFormat = 'table' | 'json' | 'yaml';

export function outputFormat(args: ParsedArgs): OutputFormat {
  return enumFlag(args, 'output', ['table', 'json', 'yaml'] as const, 'table');
}

/** Writes `data` as JSON/YAML, or the table text. */
export function emit(out: Output, format: OutputFormat, data: unknown, text: () => string): void {
  out.write(format === 'json' ? JSON.stringify(data, null, 2) + '\n' : format === 'yaml' ? stringify(data) : text());
}

export interface LabelResult {
  namespace: string;
  label: string;
  value: string | null;
  result: 'labeled' | 'unlabeled' | 'unchanged';
}

export async function runLabel(args: ParsedArgs, out: Output, enroll: boolean, ops: KubeOps = kubeOpsFor(args)): Promise<number> {
  const verb = enroll ? 'enroll' : 'unenroll';
  const ns = args.positionals[0];
  if (!ns || args.positionals.length > 1) throw new ConfigError(`ambit ${verb}: give exactly one namespace`);
  const labels = await ops.namespaceLabels(ns);
  if (labels === undefined) {
    if (!enroll) throw new ConfigError(`ambit unenroll: namespace '${ns}' not found`);
    if (stringFlag(args, 'manifests') === undefined) throw new ConfigError(`ambit enroll: namespace '${ns}' not found`);
  }
  const current = labels?.[DATAPLANE_MODE_LABEL];
  let result: LabelResult['result'];
  if (enroll) {
    if (current === 'ambient') result = 'unchanged';
    else if (current !== undefined && !boolFlag(args, 'overwrite')) {
      throw new ConfigError(`ambit enroll: namespace '${ns}' already has ${DATAPLANE_MODE_LABEL}=${current}; use --overwrite to replace it`);
    } else {
      await ops.patchNamespaceLabels(ns, { [DATAPLANE_MODE_LABEL]: 'ambient' });
      result = 'labeled';
    }
  } else if (current === undefined) result = 'unchanged';
  else {
    await ops.patchNamespaceLabels(ns, { [DATAPLANE_MODE_LABEL]: null });
    result = 'unlabeled';
  }
  const r: LabelResult = { namespace: ns, label: DATAPLANE_MODE_LABEL, value: enroll ? 'ambient' : null, result };
  emit(out, outputFormat(args), r, () => table(['NAMESPACE', 'LABEL', 'RESULT'], [[ns, enroll ? `${DATAPLANE_MODE_LABEL}=ambient` : `${DATAPLANE_MODE_LABEL}-`, result]], out.colour));
  return 0;
}

const flags = { ...KUBE_FLAGS, overwrite: { type: 'boolean', help: 'enroll: replace an existing different dataplane-mode value (e.g. none)' } } satisfies Record<string, FlagSpec>;

export const enrollCommand: Command = {
  name: 'enroll',
  summary: 'add a namespace to the ambient mesh (label istio.io/dataplane-mode=ambient)',
  usage: '<namespace> [--kubeconfig <file> | --manifests <dir>] [--overwrite] [-o table|json|yaml]',
  flags,
  run: (args) => runLabel(args, processOutput(), true),
};

export const unenrollCommand: Command = {
  name: 'unenroll',
  summary: 'take a namespace out of the ambient mesh (remove istio.io/dataplane-mode)',
  usage: '<namespace> [--kubeconfig <file> | --manifests <dir>] [-o table|json|yaml]',
  flags,
  run: (args) => runLabel(args, processOutput(), false),
};
