/**
 * Workload certificates for the benchmark's processes, issued by a LocalCa in
 * a directory every process shares (as the lab's agents share theirs): each
 * process opens the same root and signs its own key's CSR.
 */
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';
import { LocalCa } from '../../src/identity/local-ca.js';
import { spiffeId } from '../../src/identity/spiffe.js';
import { createCsr, generateWorkloadKey } from '../../src/identity/x509.js';

export const CERT_TTL_SECONDS = 3600;

export async function issueFromCaDir(caDir: string, trustDomain: string, namespace: string, serviceAccount: string): Promise<TlsIdentity> {
  const ca = await LocalCa.openOrCreate(caDir, { trustDomain });
  const id = spiffeId(trustDomain, namespace, serviceAccount);
  const key = await generateWorkloadKey();
  const csrPem = await createCsr(key, id);
  const { certChainPem, rootsPem } = await ca.sign({ csrPem, identity: id, ttlSeconds: CERT_TTL_SECONDS });
  return { identity: id.toString(), privateKeyPem: key.privateKeyPem, certChainPem, rootsPem };
}
