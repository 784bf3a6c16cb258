/**
 * `ambit lab <up|down|status|exec>`: a local cluster of network namespaces.
 * The framework gives each command one flag set, so the subcommand is the
 * first positional and flags that do not apply to it are rejected here
 * (ConfigError, exit 64) rather than silently ignored.
 */
import { ConfigError } from '../common/errors.js';
import { createLogger, silentLogger, type Logger } from '../common/logger.js';
import { DEFAULT_LAB_NAME, DEFAULT_READY_TIMEOUT_MS, labApply, labDown, labDownAll, labExec, labList, labStatus, labUp, type LabDownReport, type LabStatus, type LabTarget } from '../lab/lab.js';
import { WIRE_AUDIT_ENV, runWireTap } from '../lab/wire-tap.js';
import { boolFlag, enumFlag, intFlag, stringFlag, type Command, type ParsedArgs } from './command.js';

const SUBCOMMAND_FLAGS: Record<string, readonly string[]> = {
  up: ['name', 'no-mesh', 'no-control-plane', 'state-dir', 'ready-timeout', 'quiet', 'log-format'],
  apply: ['name', 'quiet', 'log-format'],
  down: ['name', 'all', 'quiet', 'log-format'],
  status: ['name', 'all', 'json'],
  exec: ['name', 'node'],
  'wire-tap': ['name', 'out', 'spool', 'ready-file', 'netns'],
};

function checkFlags(sub: string, args: ParsedArgs): void {
  const allowed = SUBCOMMAND_FLAGS[sub] ?? [];
  for (const [flag, value] of Object.entries(args.values)) {
    if (value === undefined || flag === 'help') continue;
    if (!allowed.includes(flag)) throw new ConfigError(`ambit lab: --${flag} does not apply to 'lab ${sub}'; see 'ambit lab --help'`);
  }
}

function labName(args: ParsedArgs): string {
  return stringFlag(args, 'name', DEFAULT_LAB_NAME) ?? DEFAULT_LAB_NAME;
}

function logger(args: ParsedArgs): Logger {
  if (boolFlag(args, 'quiet')) return silentLogger();
  return createLogger({ level: 'warn', format: enumFlag(args, 'log-format', ['pretty', 'json'] as const, 'pretty') });
}

function noExtraPositionals(sub: string, args: ParsedArgs, expected: number): void {
  if (args.positionals.length > expected) {
    throw new ConfigError(`ambit lab: unexpected argument '${args.positionals[expected] ?? ''}' for 'lab ${sub}'; see 'ambit lab --help'`);
  }
}

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n') + '\n';
}

function formatStatus(s: LabStatus): string {
  const missing = (exists: boolean): string => (exists ? '' : ' (missing)');
  const nodes = table([
    ['NODE', 'IP', 'POD CIDR', 'NETNS', 'AGENT'],
    ...s.nodes.map((n) => [n.name, n.ip, n.podCidr, n.netns + missing(n.netnsExists), n.agent ? `pid ${n.agent.pid} (${n.agent.alive ? 'alive' : 'dead'})` : '-']),
  ]);
  const pods = table([['POD', 'NODE', 'IP', 'NETNS'], ...s.pods.map((p) => [p.uid, p.node, p.ip, p.netns + missing(p.netnsExists)])]);
  const ranges = s.ranges ? `pods ${s.ranges.pod}, services ${s.ranges.service}, nodes ${s.ranges.node}` : 'unknown';
  return `lab ${s.name}: ${s.phase} since ${s.createdAt}\nstate dir: ${s.stateDir}\nranges: ${ranges}\n\n${nodes}\n${pods}`;
}

function formatDown(r: LabDownReport): string {
  if (!r.found && r.netns.length === 0 && r.hostsDirs.length === 0) return `lab ${r.name}: nothing to remove\n`;
  const parts = [`${r.netns.length} netns`, `${r.hostsDirs.length} hosts dirs`, `${r.processes.length} processes`];
  if (r.routes.length > 0) parts.push(`routes ${r.routes.join(', ')}`);
  return `lab ${r.name}: removed ${parts.join(', ')}\n`;
}

async function up(args: ParsedArgs): Promise<number> {
  const manifests = args.positionals[1];
  if (manifests === undefined) throw new ConfigError("ambit lab: 'lab up' needs <manifests>, a YAML file or a directory of YAML files");
  noExtraPositionals('up', args, 2);
  const name = labName(args);
  const readyTimeoutS = intFlag(args, 'ready-timeout', DEFAULT_READY_TIMEOUT_MS / 1000, [1, 600]);
  const stateDir = stringFlag(args, 'state-dir');
  const lab = await labUp({
    manifests,
    name,
    mesh: !boolFlag(args, 'no-mesh'),
    controlPlane: !boolFlag(args, 'no-control-plane'),
    readyTimeoutMs: readyTimeoutS * 1000,
    logger: logger(args),
    ...(stateDir ? { stateDir } : {}),
  });
  if (!boolFlag(args, 'quiet')) {
    process.stdout.write(formatStatus(await labStatus(lab.name)));
    process.stdout.write(`\ncluster config: ${lab.stateDir}/cluster.json\nrun in a pod:  ambit lab exec <namespace>/<pod> --name ${name} -- <command>\nremove:        ambit lab down --name ${name}\n`);
  }
  return 0;
}

async function apply(args: ParsedArgs): Promise<number> {
  const manifests = args.positionals[1];
  if (manifests === undefined) throw new ConfigError("ambit lab: 'lab apply' needs <manifests>, a YAML file or a directory of YAML files");
  noExtraPositionals('apply', args, 2);
  const r = await labApply(labName(args), { manifests }, { logger: logger(args) });
  if (!boolFlag(args, 'quiet')) {
    const changes = Object.entries(r.membership).map(([uid, m]) => `  ${uid}: ${m} the mesh\n`);
    process.stdout.write(`applied to ${r.clusterFile}\n${changes.join('') || '  no pod changed its mesh membership\n'}`);
  }
  return 0;
}

async function down(args: ParsedArgs): Promise<number> {
  noExtraPositionals('down', args, 1);
  const quiet = boolFlag(args, 'quiet');
  if (boolFlag(args, 'all')) {
    if (args.values.name !== undefined) throw new ConfigError("ambit lab: use either --all or --name with 'lab down'");
    const reports = await labDownAll({ logger: logger(args) });
    if (!quiet) process.stdout.write(reports.length === 0 ? 'no labs to remove\n' : reports.map(formatDown).join(''));
    return 0;
  }
  const report = await labDown(labName(args), { logger: logger(args) });
  if (!quiet) process.stdout.write(formatDown(report));
  return 0;
}

async function status(args: ParsedArgs): Promise<number> {
  noExtraPositionals('status', args, 1);
  const json = boolFlag(args, 'json');
  if (boolFlag(args, 'all')) {
    const all = await Promise.all(labList().map((n) => labStatus(n)));
    process.stdout.write(json ? JSON.stringify(all, null, 2) + '\n' : all.length === 0 ? 'no labs are up\n' : all.map(formatStatus).join('\n'));
    return 0;
  }
  const s = await labStatus(labName(args));
  process.stdout.write(json ? JSON.stringify(s, null, 2) + '\n' : formatStatus(s));
  return 0;
}

async function exec(args: ParsedArgs): Promise<number> {
  const node = stringFlag(args, 'node');
  const podArg = args.positionals[1];
  let target: LabTarget;
  if (node !== undefined) {
    if (podArg !== undefined) throw new ConfigError("ambit lab: give either <namespace>/<pod> or --node to 'lab exec', not both");
    target = { node };
  } else {
    if (podArg === undefined) throw new ConfigError("ambit lab: 'lab exec' needs <namespace>/<pod> or --node <node>");
    noExtraPositionals('exec', args, 2);
    target = podArg;
  }
  if (args.rest.length === 0) throw new ConfigError("ambit lab: 'lab exec' needs a command after '--', e.g. 'ambit lab exec default/client -- ip addr'");
  return labExec(labName(args), target, args.rest);
}

/** Internal: the lab's wire tap, started by `lab up` in the bridge netns when AMBIT_WIRE_AUDIT_DIR is set. */
async function wireTap(args: ParsedArgs): Promise<number> {
  noExtraPositionals('wire-tap', args, 1);
  const outDir = stringFlag(args, 'out') ?? process.env[WIRE_AUDIT_ENV];
  if (!outDir) throw new ConfigError(`ambit lab: 'lab wire-tap' needs --out <dir> (or ${WIRE_AUDIT_ENV})`);
  const readyFile = stringFlag(args, 'ready-file');
  const spoolDir = stringFlag(args, 'spool');
  const report = await runWireTap({ lab: labName(args), netns: stringFlag(args, 'netns') ?? '', outDir, ...(readyFile ? { readyFile } : {}), ...(spoolDir ? { spoolDir } : {}) });
  process.stdout.write(`${JSON.stringify({ lab: report.lab, packets: report.packets, bytes: report.bytes, markerHits: report.markerHits, error: report.error })}\n`);
  if (report.error) process.stderr.write(`ambit lab wire-tap: ${report.error}\n`);
  return report.error ? 1 : 0;
}

export const labCommand: Command = {
  name: 'lab',
  summary: 'run a local cluster of network namespaces (nodes and pods) from Kubernetes YAML',
  usage: '<up|down|status|exec> [args] [flags]',
  flags: {
    name: { type: 'string', help: 'lab name (prefix of its netns names)', default: DEFAULT_LAB_NAME },
    'no-mesh': { type: 'boolean', help: 'up: build the network only, start no agents' },
    'state-dir': { type: 'string', help: 'up: where cluster.json, agent logs and ready files go', default: '/run/ambit/lab/<name>' },
    'ready-timeout': { type: 'string', help: 'up: seconds to wait for every agent to become ready', default: String(DEFAULT_READY_TIMEOUT_MS / 1000) },
    all: { type: 'boolean', help: 'down: remove every lab and leftover ambit-* netns; status: show every lab' },
    quiet: { type: 'boolean', short: 'q', help: 'up/down: print nothing but errors' },
    'log-format': { type: 'string', help: 'up/down: pretty or json', default: 'pretty' },
    json: { type: 'boolean', help: 'status: print JSON' },
    'no-control-plane': { type: 'boolean', help: 'up: no control plane; the agents read the lab cluster file (local mode, for `lab apply`)' },
    node: { type: 'string', help: 'exec: run in this node netns instead of a pod' },
    out: { type: 'string', help: 'wire-tap: directory for the report (default $AMBIT_WIRE_AUDIT_DIR)' },
    'ready-file': { type: 'string', help: 'wire-tap: written once the capture listens' },
    spool: { type: 'string', help: 'wire-tap: directory for the rotating capture files (emptied and removed)' },
    netns: { type: 'string', help: 'wire-tap: the netns name recorded in the report' },
  },
  details: `Subcommands:
  up <manifests> [--name <lab>] [--no-mesh] [--state-dir <dir>]
      Build the lab from a YAML file or a directory of YAML files (Namespace,
      Node, Pod with spec.nodeName, Service, and optional ambit.dev/v1alpha1
      LabConfig {podCIDR, serviceCIDR, nodeCIDR}); then start the control
      plane on the manifests (in the first node's netns, :15012 xDS + CA,
      :15014 monitoring) and one agent per node, unless --no-mesh. Editing
      the manifest folder changes the live mesh. --no-control-plane runs the
      agents on the lab's cluster file instead (local mode).
  apply <manifests> [--name <lab>]
      Apply edited manifests to a running lab: labels (e.g. a namespace
      leaving ambient mode), services and selectors; the agents follow
      within a second. Adding or removing pods needs down and up.
  down [--name <lab>]        remove a lab (safe to repeat)
  down --all [--quiet]       remove every lab and leftover ambit-* namespaces
  status [--name <lab>] [--json] | status --all
  exec <namespace>/<pod> [--name <lab>] -- <command...>
  exec --node <node> [--name <lab>] -- <command...>
      Run a command in a pod's or node's netns; the exit code is passed through.
  wire-tap --name <lab> --out <dir> [--spool <dir>] [--ready-file <f>]
      Internal (started by 'lab up' when ${WIRE_AUDIT_ENV} is set, inside the
      lab's bridge netns): capture every frame on br0 with tcpdump, count
      frames, bytes and occurrences of the payload marker, and write
      <dir>/<lab>-<pid>.json on SIGTERM or at the end of the capture.

Needs root. State lives in /run/ambit/lab (override with AMBIT_LAB_STATE_ROOT).`,
  async run(args) {
    const sub = args.positionals[0];
    if (sub === undefined) throw new ConfigError("ambit lab: missing subcommand (up, apply, down, status or exec); see 'ambit lab --help'");
    if (!(sub in SUBCOMMAND_FLAGS)) throw new ConfigError(`ambit lab: unknown subcommand '${sub}' (up, apply, down, status, exec or wire-tap); see 'ambit lab --help'`);
    checkFlags(sub, args);
    switch (sub) {
      case 'up':
        return up(args);
      case 'apply':
        return apply(args);
      case 'down':
        return down(args);
      case 'status':
        return status(args);
      case 'wire-tap':
        return wireTap(args);
      default:
        return exec(args);
    }
  },
};
