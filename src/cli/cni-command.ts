/**
 * `ambit cni`: the CNI node component for one node (see src/cni/node-component.ts).
 * It serves ZDS to the agent, answers the `ambit-cni` plugin, follows the
 * node's pods (Kubernetes API, or a manifest file in lab mode), and, with
 * --install-cni on, installs the plugin into the host's CNI directories on
 * start and removes it on SIGTERM (--uninstall-on-exit on).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from '../common/errors.js';
import { createLogger, LOG_LEVELS } from '../common/logger.js';
import { kubeInformerFactory, loadKubeConfig } from '../control-plane/kube-source.js';
import { installCniConfig, installPluginBinary, uninstallCniConfig, uninstallPluginBinary } from '../cni/cni-install.js';
import { DEFAULT_CNI_SOCKET, DEFAULT_STATE_FILE, DEFAULT_ZDS_SOCKET, NodeComponent } from '../cni/node-component.js';
import { KubePodSource, ManifestPodSource, type PodSource } from '../cni/pod-source.js';
import { callNodeComponent } from '../cni/plugin.js';
import type { NodeComponentStatus } from '../cni/node-component.js';
import { enumFlag, intFlag, stringFlag, type Command, type ParsedArgs } from './command.js';
import { emit, outputFormat } from './enroll-command.js';
import { paint, processOutput, table, type Output } from './format.js';

/** `ambit cni status`: asks the running node component over its plugin socket. */
export async function runCniStatus(args: ParsedArgs, out: Output): Promise<number> {
  const socket = stringFlag(args, 'plugin-socket', DEFAULT_CNI_SOCKET) as string;
  let r;
  try {
    r = await callNodeComponent(socket, { op: 'status', containerId: '', netns: '', ifName: '', podNamespace: '', podName: '', podUid: '' }, 5_000);
  } catch (e) {
    throw new ConfigError(`ambit cni status: cannot reach the node component at ${socket}: ${(e as Error).message}`);
  }
  const st = r.status as NodeComponentStatus | undefined;
  if (!st) throw new ConfigError('ambit cni status: the node component sent no status');
  emit(out, outputFormat(args), st, () => {
    const head = `${paint(out.colour, 'bold', 'cni node component')} on node ${st.node}: agent ${st.agentReady ? paint(out.colour, 'green', 'connected') : paint(out.colour, 'red', 'not connected')} (${st.agentConnections} connection(s))\n\n`;
    const rows = st.pods.map((p) => [p.pod, p.phase === 'enrolled' ? paint(out.colour, 'green', 'enrolled') : paint(out.colour, 'yellow', 'pending'), p.netns, p.lastError ?? '']);
    return head + table(['POD', 'STATE', 'NETNS', 'LAST ERROR'], rows, out.colour) + (st.cleanedAtStart.length > 0 ? `\ncleaned at start: ${st.cleanedAtStart.join(', ')}\n` : '');
  });
  return st.agentReady && st.pods.every((p) => p.phase === 'enrolled') ? 0 : 1;
}

export const cniCommand: Command = {
  name: 'cni',
  summary: 'run the CNI node component: enrolls the node\'s ambient pods (plugin socket, pod watch, /proc discovery) and serves ZDS to the agent',
  usage: '[status | uninstall] --node <name> (--pods <file> | --kubeconfig <file> | --in-cluster) [flags]',
  flags: {
    node: { type: 'string', help: 'this node name (default: $NODE_NAME)' },
    pods: { type: 'string', help: 'lab mode: Pod and Namespace manifests (annotation ambit.dev/netns gives a pod\'s netns)' },
    kubeconfig: { type: 'string', help: 'watch pods through the Kubernetes API with this kubeconfig' },
    'in-cluster': { type: 'boolean', help: 'watch pods with the in-cluster service account' },
    'zds-socket': { type: 'string', help: 'ZDS socket the agent connects to', default: DEFAULT_ZDS_SOCKET },
    'plugin-socket': { type: 'string', help: 'socket the ambit-cni plugin talks to', default: DEFAULT_CNI_SOCKET },
    'state-file': { type: 'string', help: 'enrolled pods, kept across restarts', default: DEFAULT_STATE_FILE },
    'cluster-id': { type: 'string', help: 'cluster id in workload uids (<id>//Pod/<ns>/<name>); empty: <ns>/<name> as in lab cluster files', default: 'Kubernetes' },
    'proc-root': { type: 'string', help: 'where to scan for running pods\' processes', default: '/proc' },
    'netns-dir': { type: 'string', help: 'named network namespaces (preferred over /proc paths)', default: '/var/run/netns' },
    'install-cni': { type: 'string', help: 'on: add ambit-cni to the primary conflist and copy it to the CNI bin dir', default: 'off' },
    'uninstall-on-exit': { type: 'string', help: 'on: remove the conflist entry and the plugin on SIGTERM (off keeps new ambient pods from starting unprotected during an upgrade)', default: 'off' },
    'cni-conf-dir': { type: 'string', help: 'CNI config directory', default: '/etc/cni/net.d' },
    'cni-bin-dir': { type: 'string', help: 'CNI plugin directory', default: '/opt/cni/bin' },
    'exclude-namespaces': { type: 'string', help: 'comma-separated namespaces the plugin never asks about', default: 'kube-system' },
    'add-timeout-ms': { type: 'string', help: 'how long a CNI ADD waits for the enrollment', default: '25000' },
    output: { type: 'string', short: 'o', help: 'status: table, json or yaml', default: 'table' },
    'log-level': { type: 'string', help: `one of ${LOG_LEVELS.join(', ')}`, default: 'info' },
    'log-format': { type: 'string', help: 'json or pretty', default: 'json' },
  },
  details: '`ambit cni status` shows the running component\'s pods and agent connection (exit 1 when not all enrolled). `ambit cni uninstall` removes the plugin from the CNI config and bin dirs. Otherwise runs until SIGTERM/SIGINT. The pods\' capture rules stay in place when it stops (a restart opens no window of direct traffic).',
  async run(args) {
    if (args.positionals[0] === 'uninstall') {
      const confDir = stringFlag(args, 'cni-conf-dir', '/etc/cni/net.d') as string;
      const changed = uninstallCniConfig(confDir);
      uninstallPluginBinary(stringFlag(args, 'cni-bin-dir', '/opt/cni/bin') as string);
      process.stdout.write(`ambit-cni removed from ${changed.length > 0 ? changed.join(', ') : '(no conflist had it)'}\n`);
      return 0;
    }
    if (args.positionals[0] === 'status') return runCniStatus(args, processOutput());
    if (args.positionals.length > 0) throw new ConfigError(`ambit cni: unknown subcommand '${args.positionals[0] ?? ''}' (status, uninstall)`);
    const node = stringFlag(args, 'node', process.env.NODE_NAME);
    if (!node) throw new ConfigError('ambit cni: --node is required (or set NODE_NAME)');
    const podsFile = stringFlag(args, 'pods');
    const kubeconfig = stringFlag(args, 'kubeconfig');
    const inCluster = args.values['in-cluster'] === true;
    if ([podsFile, kubeconfig, inCluster || undefined].filter((x) => x !== undefined).length !== 1) {
      throw new ConfigError('ambit cni: give exactly one of --pods <file>, --kubeconfig <file> or --in-cluster');
    }
    const logger = createLogger({ level: enumFlag(args, 'log-level', LOG_LEVELS, 'info'), format: enumFlag(args, 'log-format', ['json', 'pretty'] as const, 'json'), base: { node } });
    const source: PodSource = podsFile
      ? new ManifestPodSource({ node, file: podsFile, logger })
      : new KubePodSource({ node, logger, informers: kubeInformerFactory(loadKubeConfig(kubeconfig)) });
    const zdsSocket = stringFlag(args, 'zds-socket', DEFAULT_ZDS_SOCKET) as string;
    const pluginSocket = stringFlag(args, 'plugin-socket', DEFAULT_CNI_SOCKET) as string;
    const stateFile = stringFlag(args, 'state-file', DEFAULT_STATE_FILE) as string;
    for (const f of [zdsSocket, pluginSocket, stateFile]) mkdirSync(dirname(f), { recursive: true });
    const procRoot = stringFlag(args, 'proc-root', '/proc') as string;
    const addTimeoutMs = intFlag(args, 'add-timeout-ms', 25_000, [100, 600_000]);
    const component = await NodeComponent.start({
      node,
      zdsSocket,
      pluginSocket,
      stateFile,
      source,
      logger,
      ...((stringFlag(args, 'cluster-id', 'Kubernetes') as string) === ''
        ? { zdsUid: (ns: string, n: string) => `${ns}/${n}` } // lab cluster files: uid <ns>/<name>
        : { clusterId: stringFlag(args, 'cluster-id', 'Kubernetes') as string }),
      // The host's netns is pid 1's (this container is not in it); host-network pods share it and are skipped.
      discovery: { procRoot, netnsDir: stringFlag(args, 'netns-dir', '/var/run/netns') as string, hostNetns: `${procRoot}/1/ns/net` },
      addTimeoutMs,
    });
    const confDir = stringFlag(args, 'cni-conf-dir', '/etc/cni/net.d') as string;
    const binDir = stringFlag(args, 'cni-bin-dir', '/opt/cni/bin') as string;
    const installCni = enumFlag(args, 'install-cni', ['on', 'off'] as const, 'off') === 'on';
    if (installCni) {
      const launcher = installPluginBinary(binDir);
      const conf = installCniConfig(confDir, {
        nodeSocket: pluginSocket,
        addTimeoutMs: addTimeoutMs + 5_000,
        excludeNamespaces: (stringFlag(args, 'exclude-namespaces', 'kube-system') as string).split(',').filter((x) => x !== ''),
      });
      logger.info({ launcher, conf }, 'ambit-cni installed');
    }
    logger.info({ zdsSocket, pluginSocket }, 'cni node component ready');
    return new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (why: string): void => {
        if (stopping) return;
        stopping = true;
        logger.info({ why }, 'cni node component shutting down; pod rules stay in place');
        if (installCni && enumFlag(args, 'uninstall-on-exit', ['on', 'off'] as const, 'off') === 'on') {
          uninstallCniConfig(confDir);
          uninstallPluginBinary(binDir);
        }
        void component.close().then(() => {
          logger.flush();
          resolve(0);
        });
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
  },
};
