/**
 * Bearer tokens mapped to node names, for manifest/lab mode where there is
 * no Kubernetes API to review tokens.
 *
 * File format (UTF-8 text): one `<token> <node-name>` per line, separated by
 * spaces or tabs; blank lines and lines starting with `#` are ignored.
 * Tokens are at least 16 visible ASCII characters and unique; a node may
 * have several tokens (rotation). Only SHA-256 digests of the tokens are kept
 * in memory.
 *
 * Reload: at most once per `reloadCheckMs` (default 1 s) a request stats the
 * file and re-reads it when its size, mtime or inode changed. A file that no
 * longer parses keeps the previous table (an editor's half-written save must
 * not lock every agent out) and logs an error; a file that was removed
 * empties the table (removal is revocation: fail closed).
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { systemClock, type Clock } from '../common/clock.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { bearerToken, type AuthContext, type AuthResult, type CaAuthenticator } from './authenticator.js';
import { CaTokenFileError } from './errors.js';

export const MIN_NODE_TOKEN_LENGTH = 16;
const TOKEN_RE = /^[\x21-\x7e]+$/;
const NODE_RE = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

export interface NodeTokenEntry {
  readonly node: string;
  /** Where the token came from, for logs (never the token). */
  readonly label: string;
}

function digest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Parses the token file text; throws CaTokenFileError naming the first bad line. */
export function parseNodeTokens(text: string, source: string): Map<string, NodeTokenEntry> {
  const out = new Map<string, NodeTokenEntry>();
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const where = `${source} line ${i + 1}`;
    const parts = t.split(/[ \t]+/);
    const [token, node] = parts;
    if (parts.length !== 2 || token === undefined || node === undefined) {
      throw new CaTokenFileError(`${where} has ${parts.length} fields; write "<token> <node-name>"`);
    }
    addToken(out, token, node, where);
  });
  return out;
}

function addToken(out: Map<string, NodeTokenEntry>, token: string, node: string, where: string): void {
  if (!TOKEN_RE.test(token) || token.length < MIN_NODE_TOKEN_LENGTH) {
    throw new CaTokenFileError(`${where}: the token must be at least ${MIN_NODE_TOKEN_LENGTH} visible ascii characters; generate one with "openssl rand -hex 32"`);
  }
  if (!NODE_RE.test(node)) throw new CaTokenFileError(`${where}: ${JSON.stringify(node)} is not a valid node name; use letters, digits, ".", "-" and "_"`);
  const d = digest(token);
  if (out.has(d)) throw new CaTokenFileError(`${where}: the token is already listed; give every node its own token`);
  out.set(d, { node, label: where });
}

export interface NodeTokenAuthenticatorOptions {
  readonly file: string;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Minimum time between checks of the file for changes. Default 1000 ms; 0 checks on every request. */
  readonly reloadCheckMs?: number;
}

interface FileStamp {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
}

export class NodeTokenAuthenticator implements CaAuthenticator {
  #table: Map<string, NodeTokenEntry>;
  readonly #file: string | undefined;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #reloadCheckMs: number;
  #stamp: FileStamp | undefined;
  #lastCheck = 0;
  #checking: Promise<void> | undefined;

  private constructor(table: Map<string, NodeTokenEntry>, file: string | undefined, stamp: FileStamp | undefined, opts: Partial<NodeTokenAuthenticatorOptions>) {
    this.#table = table;
    this.#file = file;
    this.#stamp = stamp;
    this.#clock = opts.clock ?? systemClock;
    this.#log = (opts.logger ?? silentLogger()).child({ component: 'ca-node-token-auth' });
    this.#reloadCheckMs = opts.reloadCheckMs ?? 1000;
    this.#lastCheck = this.#clock.now();
  }

  /** Reads the file now; throws CaTokenFileError if it cannot be read or parsed. */
  static async fromFile(opts: NodeTokenAuthenticatorOptions): Promise<NodeTokenAuthenticator> {
    const { table, stamp } = await readTable(opts.file);
    return new NodeTokenAuthenticator(table, opts.file, stamp, opts);
  }

  /** A fixed table (tests, or tokens from another source). Throws CaTokenFileError on a bad entry. */
  static fromEntries(entries: Iterable<readonly [token: string, node: string]>, opts: { logger?: Logger } = {}): NodeTokenAuthenticator {
    const table = new Map<string, NodeTokenEntry>();
    let i = 0;
    for (const [token, node] of entries) addToken(table, token, node, `entry ${++i}`);
    return new NodeTokenAuthenticator(table, undefined, undefined, opts);
  }

  /** Number of tokens currently accepted. */
  get size(): number {
    return this.#table.size;
  }

  async authenticate(ctx: AuthContext): Promise<AuthResult> {
    await this.#maybeReload();
    const b = bearerToken(ctx.metadata);
    if (!b.ok) return { ok: false, kind: 'unauthenticated', reason: b.reason };
    const e = this.#table.get(digest(b.token));
    if (e === undefined) {
      const where = this.#file !== undefined ? ` in ${this.#file}` : '';
      return { ok: false, kind: 'unauthenticated', reason: `the bearer token is not a known node token${where}; give the agent its node's token` };
    }
    return { ok: true, caller: { node: e.node, method: 'node-token', subject: e.label } };
  }

  /** Checks the file now (tests; otherwise requests do it). */
  async reload(): Promise<void> {
    this.#lastCheck = -Infinity;
    await this.#maybeReload();
  }

  #maybeReload(): Promise<void> {
    if (this.#file === undefined) return Promise.resolve();
    if (this.#checking !== undefined) return this.#checking;
    const now = this.#clock.now();
    if (now - this.#lastCheck < this.#reloadCheckMs) return Promise.resolve();
    this.#lastCheck = now;
    const file = this.#file;
    this.#checking = this.#check(file).finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  async #check(file: string): Promise<void> {
    let s: FileStamp;
    try {
      s = await stampOf(file);
    } catch (err) {
      if (this.#table.size > 0 || this.#stamp !== undefined) this.#log.error({ err, file }, 'node token file is gone; refusing every token until it is back');
      this.#table = new Map();
      this.#stamp = undefined;
      return;
    }
    if (this.#stamp !== undefined && s.size === this.#stamp.size && s.mtimeMs === this.#stamp.mtimeMs && s.ino === this.#stamp.ino) return;
    try {
      const { table, stamp } = await readTable(file);
      this.#table = table;
      this.#stamp = stamp;
      this.#log.info({ file, tokens: table.size }, 'node token file reloaded');
    } catch (err) {
      this.#log.error({ err, file }, 'node token file changed but cannot be used; keeping the previous tokens');
      this.#stamp = s;
    }
  }
}

async function stampOf(file: string): Promise<FileStamp> {
  const s = await stat(file);
  return { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino };
}

async function readTable(file: string): Promise<{ table: Map<string, NodeTokenEntry>; stamp: FileStamp }> {
  let text: string;
  let stamp: FileStamp;
  try {
    stamp = await stampOf(file);
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CaTokenFileError(`cannot read the node token file ${file}: ${(err as Error).message}; create it with lines "<token> <node-name>"`, { cause: err });
  }
  return { table: parseNodeTokens(text, file), stamp };
}
