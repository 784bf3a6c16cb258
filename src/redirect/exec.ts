/**
 * Runs programs inside a netns: `nsenter --net=<path> <program> ...` with an
 * argument array, never a shell; rule text goes on stdin. Failures that mean
 * "the netns is gone" or "not root" become typed errors. The runner and the
 * binary lookup are injectable so unit tests need neither root nor the tools.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { RedirectBinaryMissingError, RedirectCommandError, RedirectNetnsNotFoundError, RedirectPermissionError } from './errors.js';

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Written to the program's stdin. */
  readonly input?: string;
}

/** Resolves with the exit code (also non-zero); rejects only if the program could not start. */
export type Runner = (argv: readonly string[], opts?: RunOptions) => Promise<RunResult>;

export const execRunner: Runner = (argv, opts = {}) =>
  new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) {
      reject(new Error('BUG: empty command'));
      return;
    }
    const child = execFile(cmd, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, timeout: 30_000 }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const raw = (err as { code?: unknown }).code;
      if (typeof raw === 'number') resolve({ code: raw, stdout, stderr });
      else reject(err);
    });
    child.stdin?.on('error', () => undefined); // EPIPE if the program exits early; its exit code tells
    child.stdin?.end(opts.input ?? '');
  });

const FALLBACK_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The absolute path of `name` from $PATH (plus the sbin dirs), or undefined. */
export function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...FALLBACK_DIRS];
  for (const d of dirs) {
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface RedirectDeps {
  run: Runner;
  which: (name: string) => string | undefined;
  exists: (path: string) => boolean;
}

export const defaultDeps: RedirectDeps = { run: execRunner, which, exists: existsSync };

/** A netns given by name (`/run/netns/<name>`) or by path (anything with a '/'). */
export interface NetnsTarget {
  /** As the user gave it; used in messages. */
  readonly name: string;
  readonly path: string;
}

export function resolveNetns(ref: string): NetnsTarget {
  if (ref.includes('/')) return { name: ref, path: ref };
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(ref)) {
    // Not a valid `ip netns` name: it cannot exist under /run/netns.
    return { name: ref, path: join('/run/netns', ref.replace(/[^A-Za-z0-9_.-]/g, '_')) };
  }
  return { name: ref, path: join('/run/netns', ref) };
}

const INSTALL_HINT: Record<string, string> = {
  nft: 'install the nftables package or use --backend iptables',
  'iptables-restore': 'install the iptables package or use --backend nftables',
  'iptables-save': 'install the iptables package or use --backend nftables',
  nsenter: 'install the util-linux package',
  ip: 'install the iproute2 package',
};

export function requireBinary(deps: RedirectDeps, name: string): string {
  const p = deps.which(name);
  if (p === undefined) throw new RedirectBinaryMissingError(name, `${name} not found; ${INSTALL_HINT[name] ?? `install ${name}`}`);
  return p;
}

/** Runs `program args...` inside the netns; a non-zero exit becomes a typed error unless `accept` says otherwise. */
export class NetnsExec {
  private readonly nsenter: string;

  constructor(
    readonly target: NetnsTarget,
    private readonly deps: RedirectDeps,
  ) {
    this.nsenter = requireBinary(deps, 'nsenter');
  }

  /** Throws RedirectNetnsNotFoundError if the netns file is gone. */
  checkExists(): void {
    if (!this.deps.exists(this.target.path)) throw new RedirectNetnsNotFoundError(this.target.name, this.target.path);
  }

  argv(program: string, args: readonly string[]): string[] {
    return [this.nsenter, `--net=${this.target.path}`, program, ...args];
  }

  /**
   * Runs and returns the result. Exit 0 resolves; otherwise `accept(result)`
   * may still take it (e.g. "no such table" on a removal), else it throws.
   */
  async run(program: string, args: readonly string[], opts: RunOptions & { accept?: (r: RunResult) => boolean } = {}): Promise<RunResult> {
    const argv = this.argv(program, args);
    let r: RunResult;
    try {
      r = await this.deps.run(argv, opts.input !== undefined ? { input: opts.input } : {});
    } catch (err) {
      throw new RedirectCommandError(argv, null, err instanceof Error ? err.message : String(err), { cause: err });
    }
    if (r.code === 0) return r;
    const stderr = r.stderr;
    // nsenter's own failures: the netns file vanished, or we may not enter it.
    if (/nsenter: cannot open .*No such file or directory/i.test(stderr) || !this.deps.exists(this.target.path)) {
      throw new RedirectNetnsNotFoundError(this.target.name, this.target.path);
    }
    if (/operation not permitted|permission denied/i.test(stderr)) throw new RedirectPermissionError(this.target.name, stderr.split('\n')[0] ?? '');
    if (opts.accept?.(r)) return r;
    throw new RedirectCommandError(argv, r.code, stderr);
  }
}
