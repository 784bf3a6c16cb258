/** Workload certificates for tests, issued by a real (ephemeral, in-memory) local CA. */
import { LocalCa } from '../../src/identity/local-ca.js';
import { spiffeId } from '../../src/identity/spiffe.js';
import { createCsr, generateWorkloadKey } from '../../src/identity/x509.js';
import type { TlsIdentity } from '../../src/hbone/tls-identity.js';

export async function ephemeralCa(trustDomain = 'cluster.local'): Promise<LocalCa> {
  return LocalCa.createEphemeral({ trustDomain });
}

export async function issueIdentity(ca: LocalCa, trustDomain: string, ns: string, sa: string): Promise<TlsIdentity> {
  const id = spiffeId(trustDomain, ns, sa);
  const key = await generateWorkloadKey();
  const csrPem = await createCsr(key, id);
  const { certChainPem, rootsPem } = await ca.sign({ csrPem, identity: id, ttlSeconds: 3600 });
  return { identity: id.toString(), privateKeyPem: key.privateKeyPem, certChainPem, rootsPem };
}
