// Bootstrap shared by `npm start`, `npm test` and `npm run bench`: installs the
// Debian packages the lab needs (as root, only when a tool is missing) and the
// npm dependencies (only when node_modules is missing or older than the lockfile),
// then builds. Uses only Node built-ins so it works before `npm ci`.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const TOOLS = {
  ip: 'iproute2',
  nft: 'nftables',
  iptables: 'iptables',
  iperf3: 'iperf3',
  nghttpx: 'nghttp2-proxy',
  tinyproxy: 'tinyproxy',
  curl: 'curl',
  tcpdump: 'tcpdump',
  python3: 'python3',
  h2load: 'nghttp2-client',
  nginx: 'nginx-light',
  stunnel4: 'stunnel4',
  chromium: 'chromium',
};

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function hasPythonH2() {
  return spawnSync('/usr/bin/python3', ['-c', 'import h2'], { stdio: 'ignore' }).status === 0;
}

export function ensureSystemPackages({ tools = Object.keys(TOOLS), pythonH2 = true } = {}) {
  const missing = tools.filter((t) => !has(t)).map((t) => TOOLS[t]);
  if (pythonH2 && !hasPythonH2()) missing.push('python3-h2');
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    console.error(`missing Debian packages: ${missing.join(' ')}; install them as root (apt-get install ${missing.join(' ')})`);
    return;
  }
  console.error(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  // Packages such as nginx must not start a host service: the benchmarks run them inside lab pods.
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
  } finally {
    if (ownPolicy) rmSync(policy, { force: true });
  }
}

export function ensureNodeModules() {
  const nm = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  const built = join(root, 'build', 'Release', 'ambit_native.node');
  if (existsSync(nm) && existsSync(built) && statSync(nm).mtimeMs >= statSync(lock).mtimeMs) return;
  console.error('installing npm dependencies (npm ci)');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
}

export function build() {
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { cwd: root, stdio: 'inherit' });
}
