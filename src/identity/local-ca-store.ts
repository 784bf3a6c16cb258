/**
 * The on-disk root of the local CA, shared by every agent process on a
 * machine so that all of them chain to one trust anchor.
 *
 * Layout of `dir` (mode 0700, files 0600):
 *   root-key.pem   the PKCS#8 key followed by the root certificate
 *   root-cert.pem  the root certificate alone (what peers need to trust)
 *
 * Creation must be race-free between processes started at the same moment.
 * The key file is the commit point: it is written completely under a unique
 * temporary name, flushed, then published with link(), which fails with
 * EEXIST if another process got there first. Because it carries the matching
 * certificate too, a published key file is always a complete root, and the
 * loser simply reads the winner's. root-cert.pem is derived from it with
 * write-temp-then-rename, so concurrent writers (all writing the same bytes)
 * and crashes between the two steps are harmless.
 *
 * A key file without a certificate is accepted too (a root supplied by the
 * operator); the certificate is then read from root-cert.pem.
 */
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CaStoreError } from './errors.js';

export const ROOT_KEY_FILE = 'root-key.pem';
export const ROOT_CERT_FILE = 'root-cert.pem';

export interface StoredRoot {
  readonly certPem: string;
  readonly privateKeyPem: string;
}

const KEY_BLOCK_RE = /-----BEGIN (?:EC )?PRIVATE KEY-----[\s\S]+?-----END (?:EC )?PRIVATE KEY-----\n?/;
const CERT_BLOCK_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/;

/** Reads the root in `dir`, or creates it with `create()` if there is none. */
export async function loadOrCreateRoot(dir: string, create: () => Promise<StoredRoot>): Promise<StoredRoot> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw storeError(`cannot create the ca directory ${dir}`, err);
  }
  const keyPath = join(dir, ROOT_KEY_FILE);
  let root = await readRoot(dir);
  if (root === undefined) {
    const fresh = await create();
    const tmp = await writeTemp(dir, ROOT_KEY_FILE, fresh.privateKeyPem + fresh.certPem);
    try {
      await link(tmp, keyPath);
      root = fresh;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw storeError(`cannot publish ${keyPath}`, err);
      root = await readRoot(dir);
      if (root === undefined) throw storeError(`${keyPath} vanished while it was being read`, err);
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }
  await ensureCertFile(dir, root.certPem);
  return root;
}

async function readRoot(dir: string): Promise<StoredRoot | undefined> {
  const keyPath = join(dir, ROOT_KEY_FILE);
  let keyText: string;
  try {
    keyText = await readFile(keyPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw storeError(`cannot read ${keyPath}`, err);
  }
  const privateKeyPem = KEY_BLOCK_RE.exec(keyText)?.[0];
  if (privateKeyPem === undefined) throw storeError(`${keyPath} holds no pem private key`);
  let certPem = CERT_BLOCK_RE.exec(keyText)?.[0];
  if (certPem === undefined) {
    const certPath = join(dir, ROOT_CERT_FILE);
    let certText: string;
    try {
      certText = await readFile(certPath, 'utf8');
    } catch (err) {
      throw storeError(`${keyPath} has no certificate and ${certPath} cannot be read`, err);
    }
    certPem = CERT_BLOCK_RE.exec(certText)?.[0];
    if (certPem === undefined) throw storeError(`${certPath} holds no pem certificate`);
  }
  try {
    if (!new X509Certificate(certPem).checkPrivateKey(createPrivateKey(privateKeyPem))) {
      throw new Error('the certificate does not belong to the key');
    }
  } catch (err) {
    throw storeError(`the root in ${dir} is unusable`, err);
  }
  return { certPem: withNewline(certPem), privateKeyPem: withNewline(privateKeyPem) };
}

/** Writes root-cert.pem unless it already holds exactly this certificate. */
async function ensureCertFile(dir: string, certPem: string): Promise<void> {
  const certPath = join(dir, ROOT_CERT_FILE);
  const current = await readFile(certPath, 'utf8').catch(() => undefined);
  if (current !== undefined && CERT_BLOCK_RE.exec(current)?.[0] === certPem) return;
  const tmp = await writeTemp(dir, ROOT_CERT_FILE, certPem);
  try {
    await rename(tmp, certPath);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw storeError(`cannot write ${certPath}`, err);
  }
}

/** A complete, flushed 0600 file under a name no other process uses. */
async function writeTemp(dir: string, base: string, content: string): Promise<string> {
  const tmp = join(dir, `.${base}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(content);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw storeError(`cannot write a temporary file in ${dir}`, err);
  }
  return tmp;
}

function withNewline(s: string): string {
  return s.endsWith('\n') ? s : `${s}\n`;
}

function storeError(what: string, cause?: unknown): CaStoreError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new CaStoreError(`${what}${detail}; check the directory's ownership and permissions, or remove it to start a new root`, { cause });
}
