/**
 * Redirect errors: installing, removing or inspecting the in-pod capture rules.
 * Bad flags are ConfigError (exit 64); these are runtime failures.
 */
import { AmbitError } from '../common/errors.js';

export class RedirectError extends AmbitError {}

/** A required program (nft, iptables-restore, nsenter, ip) is not installed. */
export class RedirectBinaryMissingError extends RedirectError {
  readonly binary: string;

  constructor(binary: string, message: string) {
    super('AMBIT_ERR_REDIRECT_BINARY_MISSING', message);
    this.binary = binary;
  }
}

/** The network namespace does not exist (never did, or the pod went away). */
export class RedirectNetnsNotFoundError extends RedirectError {
  readonly netns: string;

  constructor(netns: string, path: string, options?: { cause?: unknown }) {
    super(
      'AMBIT_ERR_REDIRECT_NETNS_NOT_FOUND',
      `network namespace '${netns}' not found (${path}); the pod may have been deleted, check 'ip netns list'`,
      options,
    );
    this.netns = netns;
  }
}

/** Entering the netns or changing its rules was refused (not root). */
export class RedirectPermissionError extends RedirectError {
  readonly netns: string;

  constructor(netns: string, detail: string, options?: { cause?: unknown }) {
    super(
      'AMBIT_ERR_REDIRECT_NOT_PERMITTED',
      `not permitted to change the rules of network namespace '${netns}' (${detail.trim() || 'EPERM'}); run as root (needs CAP_NET_ADMIN and CAP_SYS_ADMIN)`,
      options,
    );
    this.netns = netns;
  }
}

/** nft / iptables-restore / ip failed for another reason; the message carries its stderr. */
export class RedirectCommandError extends RedirectError {
  readonly argv: readonly string[];
  readonly exitCode: number | null;
  readonly stderr: string;

  constructor(argv: readonly string[], exitCode: number | null, stderr: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_REDIRECT_COMMAND_FAILED', `'${argv.join(' ')}' failed (exit ${exitCode ?? 'signal'}): ${stderr.trim() || 'no output'}`, options);
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}
