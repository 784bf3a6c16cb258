/**
 * Puts `ambit-cni` into the node's CNI configuration and takes it out again:
 *
 * - the plugin entry is appended to the plugins list of the primary conflist
 *   in /etc/cni/net.d (the first *.conflist/*.conf by name, as the runtime
 *   picks it; a single-plugin .conf is turned into a .conflist); an existing
 *   ambit entry is replaced, so installing twice changes nothing;
 * - the plugin itself is copied to /opt/cni/bin: the node binary, plugin.js
 *   (which imports only node builtins) and an `ambit-cni` shell launcher.
 * Files are written atomically (temp + rename): the runtime never reads a
 * half-written config.
 */
import { copyFileSync, chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CniConfigInstallError } from './errors.js';
import { DEFAULT_ADD_TIMEOUT_MS, DEFAULT_NODE_SOCKET, PLUGIN_TYPE } from './plugin.js';

export interface PluginEntryOptions {
  readonly nodeSocket?: string;
  readonly addTimeoutMs?: number;
  readonly excludeNamespaces?: readonly string[];
}

export function pluginEntry(o: PluginEntryOptions = {}): Record<string, unknown> {
  return {
    type: PLUGIN_TYPE,
    nodeSocket: o.nodeSocket ?? DEFAULT_NODE_SOCKET,
    addTimeoutMs: o.addTimeoutMs ?? DEFAULT_ADD_TIMEOUT_MS,
    excludeNamespaces: [...(o.excludeNamespaces ?? ['kube-system'])],
  };
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.ambit-tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** The primary CNI config file of `confDir`, or undefined when there is none yet. */
export function primaryConfig(confDir: string): string | undefined {
  let names: string[];
  try {
    names = readdirSync(confDir);
  } catch {
    return undefined;
  }
  const name = names.filter((n) => n.endsWith('.conflist') || n.endsWith('.conf') || n.endsWith('.json')).sort()[0];
  return name === undefined ? undefined : join(confDir, name);
}

/** Appends (or replaces) our entry in the primary conflist. Returns the file written. */
export function installCniConfig(confDir: string, o: PluginEntryOptions = {}): string {
  const file = primaryConfig(confDir);
  if (file === undefined) throw new CniConfigInstallError(`no CNI configuration in ${confDir} yet; ambit-cni chains after the primary network plugin, start it after the network plugin`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new CniConfigInstallError(`${file} is not valid JSON; fix or remove it`, { cause: e });
  }
  let list: Record<string, unknown>;
  let target = file;
  if (Array.isArray(raw.plugins)) list = raw;
  else {
    // A single-plugin .conf: convert to a conflist with the same name and version.
    const { name, cniVersion, ...plugin } = raw;
    list = { cniVersion, name, plugins: [plugin] };
    target = file.replace(/\.(conf|json)$/, '.conflist');
  }
  const plugins = (list.plugins as Array<Record<string, unknown>>).filter((p) => p.type !== PLUGIN_TYPE);
  plugins.push(pluginEntry(o));
  writeAtomic(target, JSON.stringify({ ...list, plugins }, null, 2) + '\n');
  if (target !== file) rmSync(file, { force: true });
  return target;
}

/** Removes our entry from every config in `confDir`. Returns the files changed. */
export function uninstallCniConfig(confDir: string): string[] {
  const changed: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(confDir);
  } catch {
    return changed;
  }
  for (const n of names.filter((x) => x.endsWith('.conflist'))) {
    const f = join(confDir, n);
    try {
      const j = JSON.parse(readFileSync(f, 'utf8')) as { plugins?: Array<Record<string, unknown>> };
      if (!Array.isArray(j.plugins) || !j.plugins.some((p) => p.type === PLUGIN_TYPE)) continue;
      writeAtomic(f, JSON.stringify({ ...j, plugins: j.plugins.filter((p) => p.type !== PLUGIN_TYPE) }, null, 2) + '\n');
      changed.push(f);
    } catch {
      // not ours to fix
    }
  }
  return changed;
}

/** Copies the plugin into `binDir`: ambit-cni (launcher), ambit-cni.d/{node,plugin.js,main.mjs}. */
export function installPluginBinary(binDir: string, nodeBinary = process.execPath): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const dir = join(binDir, 'ambit-cni.d');
  mkdirSync(dir, { recursive: true });
  copyFileSync(nodeBinary, join(dir, 'node.tmp'));
  chmodSync(join(dir, 'node.tmp'), 0o755);
  renameSync(join(dir, 'node.tmp'), join(dir, 'node'));
  writeAtomic(join(dir, 'plugin.js'), readFileSync(join(here, 'plugin.js'), 'utf8'));
  writeAtomic(join(dir, 'package.json'), '{"type":"module"}\n');
  writeAtomic(join(dir, 'main.mjs'), "import { pluginMain } from './plugin.js';\nawait pluginMain();\n");
  const launcher = join(binDir, PLUGIN_TYPE);
  writeAtomic(launcher, `#!/bin/sh\nexec "$(dirname "$0")/ambit-cni.d/node" "$(dirname "$0")/ambit-cni.d/main.mjs" "$@"\n`);
  chmodSync(launcher, 0o755);
  return launcher;
}

export function uninstallPluginBinary(binDir: string): void {
  rmSync(join(binDir, PLUGIN_TYPE), { force: true });
  rmSync(join(binDir, 'ambit-cni.d'), { recursive: true, force: true });
}
