/**
 * Runs `ip` and `sysctl`. Always execFile with an argument array, never a
 * shell, so names from manifests cannot inject anything. The runner is an
 * interface so unit tests can record the exact command sequence without root.
 */
import { execFile } from 'node:child_process';
import { LabCommandError } from './errors.js';

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Return the result of a failing command instead of throwing LabCommandError. */
  readonly allowFailure?: boolean;
}

export type CommandRunner = (argv: readonly string[], opts?: RunOptions) => Promise<RunResult>;

/** The real runner. */
export const execRunner: CommandRunner = (argv, opts = {}) =>
  new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) {
      reject(new Error('BUG: empty command'));
      return;
    }
    execFile(cmd, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, timeout: 30_000 }, (err, stdout, stderr) => {
      if (!err) {
        resolve({ code: 0, stdout, stderr });
        return;
      }
      const raw = (err as { code?: unknown }).code;
      const code = typeof raw === 'number' ? raw : null;
      // ENOENT etc. (the program is missing) always throws: allowFailure is about exit codes.
      if (opts.allowFailure && code !== null) resolve({ code, stdout, stderr });
      else reject(new LabCommandError(argv, code, stderr || err.message, { cause: err }));
    });
  });

/** Thin, typed wrappers over the `ip` invocations the lab needs. */
export class Ip {
  constructor(private readonly run: CommandRunner) {}

  /** `ip -n <netns> <args...>`: cheaper than `ip netns exec` (no mount namespace). */
  in(netns: string, ...args: string[]): Promise<RunResult> {
    return this.run(['ip', '-n', netns, ...args]);
  }

  host(...args: string[]): Promise<RunResult> {
    return this.run(['ip', ...args]);
  }

  async netnsList(): Promise<string[]> {
    const r = await this.run(['ip', '-j', 'netns', 'list']);
    const text = r.stdout.trim();
    if (text === '') return [];
    const parsed = JSON.parse(text) as Array<{ name?: unknown }>;
    return parsed.map((e) => e.name).filter((n): n is string => typeof n === 'string');
  }

  netnsAdd(netns: string): Promise<RunResult> {
    return this.run(['ip', 'netns', 'add', netns]);
  }

  /** Deletes a netns; a missing one is not an error (down must be idempotent). */
  async netnsDel(netns: string): Promise<boolean> {
    const r = await this.run(['ip', 'netns', 'del', netns], { allowFailure: true });
    if (r.code === 0) return true;
    if (/no such file/i.test(r.stderr)) return false;
    throw new LabCommandError(['ip', 'netns', 'del', netns], r.code, r.stderr);
  }

  /** sysctl inside a netns: /proc/sys/net is per network namespace. */
  sysctl(netns: string, key: string, value: string): Promise<RunResult> {
    return this.run(['ip', 'netns', 'exec', netns, 'sysctl', '-q', '-w', `${key}=${value}`]);
  }

  /** Routes in the host's main table whose destination is exactly `cidr`. */
  async hostRoutesExact(cidr: string): Promise<Array<{ type: string; dev?: string }>> {
    const r = await this.run(['ip', '-j', 'route', 'show', 'exact', cidr]);
    const text = r.stdout.trim();
    if (text === '') return [];
    return (JSON.parse(text) as Array<{ type?: unknown; dev?: unknown }>).map((e) => ({
      type: typeof e.type === 'string' ? e.type : 'unicast',
      ...(typeof e.dev === 'string' ? { dev: e.dev } : {}),
    }));
  }

  /** Host routes strictly inside `cidr` (they would win over a blackhole for `cidr`). */
  async hostRoutesInside(cidr: string): Promise<string[]> {
    const r = await this.run(['ip', '-j', 'route', 'show', 'root', cidr]);
    const text = r.stdout.trim();
    if (text === '') return [];
    return (JSON.parse(text) as Array<{ dst?: unknown; type?: unknown; dev?: unknown }>)
      .filter((e) => e.dst !== cidr)
      .map((e) => `${String(e.dst)}${typeof e.dev === 'string' ? ` dev ${e.dev}` : ''}`);
  }
}
