/**
 * `ambit ca status | rotate --phase add|activate|retire [--force]`: the mesh
 * root rotation, driven through the control plane's monitoring endpoint
 * (GET /debug/ca, POST /debug/ca/rotate). The rotate call carries the admin
 * token from <ca-dir>/admin-token (or --token-file), so only someone who can
 * read the CA directory can rotate. The procedure: docs/CERTIFICATES.md.
 *
 * Exit codes: 0 done, 1 refused (out of order, too early: the message says
 * when to retry), 69 control plane unreachable.
 */
import { join } from 'node:path';
import { readToken, ADMIN_TOKEN_FILE } from '../ca/admin-token.js';
import { ROTATION_PHASES, type RotationStatus } from '../ca/ca-roots.js';
import { ConfigError } from '../common/errors.js';
import { boolFlag, enumFlag, stringFlag, type Command, type ParsedArgs } from './command.js';

const DEFAULT_ADDRESS = '127.0.0.1:15014';
const DEFAULT_CA_DIR = '/var/run/ambit/ca';

export function formatRotationStatus(s: RotationStatus): string {
  const lines = [`trust domain ${s.trustDomain}: stage ${s.stage}, next phase '${s.nextPhase}'${s.nextPhaseSafeAt ? ` (safe from ${s.nextPhaseSafeAt}, in ${s.nextPhaseSafeInSeconds} s)` : ' (safe now)'}`];
  for (const r of s.roots) lines.push(`  ${r.active ? 'active ' : 'trusted'} ${r.fingerprint}  ${r.subject}  until ${r.notAfter}`);
  if (s.lastPhase) lines.push(`last phase: ${s.lastPhase.phase} at ${s.lastPhase.at}`);
  if (s.issuedUntil) lines.push(`leaves issued so far expire by ${s.issuedUntil}`);
  return lines.join('\n') + '\n';
}

async function call(address: string, path: string, init: RequestInit): Promise<{ status: number; body: unknown } | undefined> {
  try {
    const res = await fetch(`http://${address}${path}`, { ...init, signal: AbortSignal.timeout(30_000) });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text) as unknown;
    } catch {
      // plain text answer
    }
    return { status: res.status, body };
  } catch (err) {
    process.stderr.write(`cannot reach the control plane monitoring endpoint at ${address}: ${(err as Error).message}; is 'ambit control-plane' running, and is --address its --monitoring-port?\n`);
    return undefined;
  }
}

async function run(args: ParsedArgs): Promise<number> {
  const sub = args.positionals[0];
  const address = stringFlag(args, 'address', DEFAULT_ADDRESS) as string;
  const json = boolFlag(args, 'json');
  const print = (s: RotationStatus): void => void process.stdout.write(json ? JSON.stringify(s, null, 2) + '\n' : formatRotationStatus(s));
  if (sub === 'status') {
    const r = await call(address, '/debug/ca', {});
    if (!r) return 69;
    if (r.status !== 200) {
      process.stderr.write(`the control plane answered ${r.status}: ${typeof r.body === 'string' ? r.body : JSON.stringify(r.body)}\n`);
      return 1;
    }
    print(r.body as RotationStatus);
    return 0;
  }
  if (sub === 'rotate') {
    if (stringFlag(args, 'phase') === undefined) throw new ConfigError(`ambit ca rotate: give --phase ${ROTATION_PHASES.join('|')}`);
    const phase = enumFlag(args, 'phase', ROTATION_PHASES, 'add');
    const tokenFile = stringFlag(args, 'token-file') ?? join(stringFlag(args, 'ca-dir', DEFAULT_CA_DIR) as string, ADMIN_TOKEN_FILE);
    const token = await readToken(tokenFile);
    if (token === undefined) throw new ConfigError(`ambit ca rotate: no admin token in ${tokenFile}; pass --ca-dir <the control plane's --ca-dir> or --token-file`);
    const q = new URLSearchParams({ phase, ...(boolFlag(args, 'force') ? { force: '1' } : {}) });
    const r = await call(address, `/debug/ca/rotate?${q.toString()}`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    if (!r) return 69;
    if (r.status !== 200) {
      const b = r.body as { error?: string; status?: RotationStatus };
      process.stderr.write(`refused: ${b.error ?? JSON.stringify(r.body)}\n`);
      if (b.status && !json) process.stderr.write(formatRotationStatus(b.status));
      return 1;
    }
    print(r.body as RotationStatus);
    return 0;
  }
  throw new ConfigError(`ambit ca: ${sub === undefined ? 'give a subcommand' : `unknown subcommand '${sub}'`} (status, rotate); see 'ambit ca --help'`);
}

export const caCommand: Command = {
  name: 'ca',
  summary: 'mesh roots: show them, or rotate the root in phases (add, activate, retire) with live traffic',
  usage: 'status | rotate --phase add|activate|retire [--force] [--address host:port] [--ca-dir dir]',
  flags: {
    address: { type: 'string', help: "the control plane's monitoring endpoint", default: DEFAULT_ADDRESS },
    phase: { type: 'string', help: 'rotate: add (new root trusted), activate (new root signs), retire (old root dropped)' },
    force: { type: 'boolean', help: 'rotate: run the phase before the safe time (connections may fail)' },
    'ca-dir': { type: 'string', help: "rotate: the control plane's --ca-dir, for its admin-token", default: DEFAULT_CA_DIR },
    'token-file': { type: 'string', help: 'rotate: the admin token file (default <ca-dir>/admin-token)' },
    json: { type: 'boolean', help: 'print JSON' },
  },
  details: `Rotation (docs/CERTIFICATES.md): run each phase once 'ambit ca status' says it is safe,
i.e. once every certificate issued before the previous phase has expired:
  ambit ca rotate --phase add        the new root joins the trust bundle
  ambit ca rotate --phase activate   the new root signs; the old one stays trusted
  ambit ca rotate --phase retire     the old root leaves the bundle`,
  run,
};
