/**
 * The bearer token that guards the control plane's root-rotation endpoint
 * (POST /debug/ca/rotate). It lives in the CA directory, next to the root
 * keys, so whoever may rotate the roots (can read the keys) can read it, and
 * nobody who merely reaches the monitoring port can rotate anything.
 */
import { randomBytes } from 'node:crypto';
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CaRootRotationError } from './errors.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

/** The token in `<dir>/admin-token`, created (0600, race-free) if absent. */
export async function readOrCreateAdminToken(dir: string): Promise<string> {
  const file = join(dir, ADMIN_TOKEN_FILE);
  const existing = await readToken(file);
  if (existing !== undefined) return existing;
  const tmp = join(dir, `.${ADMIN_TOKEN_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, `${randomBytes(24).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    await link(tmp, file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  } catch (err) {
    throw new CaRootRotationError(`cannot create ${file}: ${(err as Error).message}; check the ca directory's permissions`, { cause: err });
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  const token = await readToken(file);
  if (token === undefined) throw new CaRootRotationError(`${file} is empty; remove it so a new token is created`);
  return token;
}

/** Reads a token file given to the CLI; undefined when absent or empty. */
export async function readToken(file: string): Promise<string | undefined> {
  try {
    const t = (await readFile(file, 'utf8')).trim();
    return t === '' ? undefined : t;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CaRootRotationError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}
