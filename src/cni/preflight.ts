/**
 * `ambit check`: can this node run the agent and the CNI? Each check does the
 * real thing in a throwaway network namespace (a child `unshare -n` process,
 * so nothing named is created and nothing remains): open the netns and setns
 * into it through the native addon, set SO_MARK and IP_TRANSPARENT on a
 * listener there, load and remove an nftables table there. Plus the
 * sysctl the CNI sets per pod and the CNI directories (warnings only).
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { toError } from '../common/errors.js';
import type { NativeBinding } from '../native/binding.js';

const run = promisify(execFile);

export type CheckStatus = 'ok' | 'fail' | 'warn';

export interface PreflightResult {
  readonly name: string;
  readonly status: CheckStatus;
  readonly detail: string;
}

export interface PreflightOptions {
  /** Loads the addon; a throw is reported as a failed check. */
  readonly loadBinding: () => NativeBinding;
  readonly cniConfDir?: string;
  readonly cniBinDir?: string;
  readonly mark?: number;
}

async function withThrowawayNetns<T>(fn: (path: string) => Promise<T>): Promise<T> {
  const child = spawn('unshare', ['--net', 'sleep', '30'], { stdio: 'ignore' });
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const failed = new Promise<never>((_, rej) => child.on('error', (e) => rej(e)));
  try {
    // Wait until the child is in its own netns (its ns/net differs from ours).
    const t0 = Date.now();
    const { readlinkSync } = await import('node:fs');
    const self = readlinkSync('/proc/self/ns/net');
    for (;;) {
      await Promise.race([new Promise((r) => setTimeout(r, 20)), failed]);
      const code = await Promise.race([exited, Promise.resolve('running' as const)]);
      if (code !== 'running') throw new Error(`unshare --net exited with ${String(code)} (no CAP_SYS_ADMIN?)`);
      try {
        if (readlinkSync(`/proc/${child.pid ?? 0}/ns/net`) !== self) break;
      } catch {
        // not yet
      }
      if (Date.now() - t0 > 3000) throw new Error('unshare --net did not enter a new network namespace');
    }
    return await fn(`/proc/${child.pid ?? 0}/ns/net`);
  } finally {
    child.kill('SIGKILL');
  }
}

export async function runPreflight(o: PreflightOptions): Promise<PreflightResult[]> {
  const out: PreflightResult[] = [];
  const add = (name: string, status: CheckStatus, detail: string) => out.push({ name, status, detail });
  let binding: NativeBinding | undefined;
  try {
    binding = o.loadBinding();
    add('native addon', 'ok', 'loaded');
  } catch (e) {
    add('native addon', 'fail', `${toError(e).message}; run npm run build (node-gyp)`);
  }
  try {
    await withThrowawayNetns(async (netns) => {
      add('netns', 'ok', `created a network namespace (${netns})`);
      if (binding) {
        const b = binding;
        try {
          const fd = b.listenTcpInNetns(netns, '0.0.0.0', 0, { transparent: true });
          b.closeFd(fd);
          add('setns', 'ok', 'listened inside the namespace with IP_TRANSPARENT (CAP_SYS_ADMIN, CAP_NET_RAW/ADMIN)');
        } catch (e) {
          add('setns', 'fail', `${toError(e).message}; the agent needs CAP_SYS_ADMIN and CAP_NET_RAW`);
        }
        try {
          const mark = o.mark ?? 0x539;
          const fd = b.socketTcpInNetns(netns, 4, { mark });
          const got = b.getMark(fd);
          b.closeFd(fd);
          add('SO_MARK', got === mark ? 'ok' : 'fail', got === mark ? `set and read back 0x${mark.toString(16)}` : `read back ${got}, wanted ${mark}`);
        } catch (e) {
          add('SO_MARK', 'fail', `${toError(e).message}; the agent needs CAP_NET_ADMIN`);
        }
      } else {
        add('setns', 'fail', 'needs the native addon');
        add('SO_MARK', 'fail', 'needs the native addon');
      }
      try {
        const table = 'table inet ambit_check {\n  chain c {\n    type nat hook prerouting priority -100;\n  }\n}\ndelete table inet ambit_check\n';
        const child = execFile('nsenter', [`--net=${netns}`, 'nft', '-f', '-'], { timeout: 5000 });
        child.stdin?.end(table);
        await new Promise<void>((resolve, reject) => {
          let err = '';
          child.stderr?.on('data', (d: Buffer) => (err += String(d)));
          child.on('error', reject);
          child.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(err.trim() || `nft exited with ${String(c)}`))));
        });
        const v = await run('nft', ['--version']).then((r) => r.stdout.trim(), () => 'nft');
        add('nft', 'ok', `${v}: loaded and removed a nat table in one transaction`);
      } catch (e) {
        const ipt = await run('iptables-restore', ['--version']).then(() => true, () => false);
        add('nft', ipt ? 'warn' : 'fail', `${toError(e).message.split('\n')[0] ?? ''}${ipt ? '; iptables-restore is there as a fallback' : '; install nftables'}`);
      }
    });
  } catch (e) {
    add('netns', 'fail', `${toError(e).message}; needs CAP_SYS_ADMIN and util-linux unshare`);
  }
  add(
    'tcp_migrate_req',
    existsSync('/proc/sys/net/ipv4/tcp_migrate_req') ? 'ok' : 'warn',
    existsSync('/proc/sys/net/ipv4/tcp_migrate_req') ? 'available (Linux 5.14+)' : 'missing: an agent restart may reset a few queued connections',
  );
  for (const [what, dir] of [
    ['CNI config dir', o.cniConfDir ?? '/etc/cni/net.d'],
    ['CNI bin dir', o.cniBinDir ?? '/opt/cni/bin'],
  ] as const) {
    add(what, existsSync(dir) ? 'ok' : 'warn', existsSync(dir) ? dir : `${dir} does not exist (not a Kubernetes node?)`);
  }
  return out;
}
