/**
 * A CertificateSource backed by an Istio-compatible CA over gRPC
 * (istio.v1.auth.IstioCertificateService/CreateCertificate), so the secret
 * manager can get workload certificates from istiod or Ambit's CA server the
 * same way it gets them from the local CA.
 *
 * Each request carries `authorization: Bearer <token>` (asked from the token
 * provider every time, so a rotated projected token is picked up),
 * `clusterid`, and metadata {ImpersonatedIdentity: <spiffe id>} as ztunnel
 * sends in shared mode. The answer is checked before it is returned: the
 * leaf's only SAN must be the requested identity and the chain must verify
 * up to one of the returned roots. gRPC failures become typed CaClientErrors
 * whose messages say which CA, which identity, and what to check.
 */
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { CertificateSource, SignRequest, SignResponse } from '../identity/certificate-source.js';
import { parseSubjectAltNames } from '../identity/spiffe.js';
import {
  decodeCertificateResponse,
  encodeCertificateRequest,
  CREATE_CERTIFICATE_PATH,
  IMPERSONATED_IDENTITY_KEY,
  type CertificateRequestMessage,
  type CertificateResponseMessage,
} from './ca-proto.js';
import {
  CaInvalidRequestError,
  CaInvalidResponseError,
  CaPermissionDeniedError,
  CaRequestFailedError,
  CaTokenError,
  CaUnauthenticatedError,
  CaUnavailableError,
  type CaClientError,
} from './errors.js';

export const DEFAULT_CLUSTER_ID = 'Kubernetes';
/**
 * grpc-js backs off reconnecting up to 120 s by default, and an RPC on a
 * channel in that backoff fails at once: after a CA outage the secret
 * manager's retries (every 5 s once a certificate has expired) would keep
 * failing long after the CA is back. Cap the channel's backoff at 5 s too.
 */
export const CA_CHANNEL_DEFAULTS: grpc.ChannelOptions = { 'grpc.initial_reconnect_backoff_ms': 500, 'grpc.max_reconnect_backoff_ms': 5_000 };
export const DEFAULT_CA_TIMEOUT_MS = 10_000;

export interface IstioCaClientOptions {
  /** `host:port` of the CA, e.g. `istiod.istio-system.svc:15012`. */
  readonly address: string;
  /** TLS towards the CA (grpc.credentials.createSsl(caRoots)); insecure only in tests. */
  readonly credentials: grpc.ChannelCredentials;
  /** The bearer token, asked for on every request. */
  readonly tokenProvider: () => Promise<string> | string;
  /** Sent as the `clusterid` header. Default "Kubernetes" (Istio's default cluster name). */
  readonly clusterId?: string;
  /** Extra request headers (Istio's CA_HEADER_*). Keys are lowercased by gRPC. */
  readonly extraHeaders?: Readonly<Record<string, string>>;
  /** Deadline per request. Default 10 s. */
  readonly timeoutMs?: number;
  readonly channelOptions?: grpc.ChannelOptions;
}

export class IstioCaClient implements CertificateSource {
  readonly address: string;
  readonly #client: grpc.Client;
  readonly #tokenProvider: () => Promise<string> | string;
  readonly #clusterId: string;
  readonly #extraHeaders: Readonly<Record<string, string>>;
  readonly #timeoutMs: number;

  constructor(opts: IstioCaClientOptions) {
    this.address = opts.address;
    this.#client = new grpc.Client(opts.address, opts.credentials, { ...CA_CHANNEL_DEFAULTS, ...(opts.channelOptions ?? {}) });
    this.#tokenProvider = opts.tokenProvider;
    this.#clusterId = opts.clusterId ?? DEFAULT_CLUSTER_ID;
    this.#extraHeaders = opts.extraHeaders ?? {};
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_CA_TIMEOUT_MS;
  }

  async sign(req: SignRequest): Promise<SignResponse> {
    const id = req.identity.toString();
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(this.#extraHeaders)) metadata.set(k, v);
    metadata.set('authorization', `Bearer ${await this.#token(id)}`);
    metadata.set('clusterid', this.#clusterId);
    const message: CertificateRequestMessage = { csr: req.csrPem, validityDuration: Math.floor(req.ttlSeconds), metadata: { [IMPERSONATED_IDENTITY_KEY]: id } };
    const res = await new Promise<CertificateResponseMessage>((resolve, reject) => {
      this.#client.makeUnaryRequest(
        CREATE_CERTIFICATE_PATH,
        encodeCertificateRequest,
        decodeCertificateResponse,
        message,
        metadata,
        { deadline: Date.now() + this.#timeoutMs },
        (err, value) => {
          if (err) reject(this.#mapError(err, id));
          else if (value === undefined) reject(new CaInvalidResponseError(`the ca at ${this.address} sent an empty answer for ${id}; check the ca`));
          else resolve(value);
        },
      );
    });
    return checkResponse(res.certChain, id, this.address);
  }

  /** Closes the channel; later sign() calls fail with CaUnavailableError. */
  close(): void {
    this.#client.close();
  }

  async #token(id: string): Promise<string> {
    let token: string;
    try {
      token = await this.#tokenProvider();
    } catch (err) {
      throw new CaTokenError(`cannot get a token to ask the ca at ${this.address} for ${id}: ${(err as Error).message}; check the agent's token file`, { cause: err });
    }
    if (typeof token !== 'string' || token.trim() === '') throw new CaTokenError(`the token for the ca at ${this.address} is empty; check the agent's token file`);
    if (/[\r\n]/.test(token.trim())) throw new CaTokenError(`the token for the ca at ${this.address} contains a line break; the token file must hold one token`);
    return token.trim();
  }

  #mapError(err: grpc.ServiceError, id: string): CaClientError {
    const details = err.details || err.message;
    const o = { cause: err, grpcCode: err.code };
    const refused = `the ca at ${this.address} refused the request for ${id}`;
    switch (err.code) {
      case grpc.status.UNAUTHENTICATED:
        return new CaUnauthenticatedError(`${refused}: unauthenticated (${details}); check the agent's token (audience istio-ca) and that the ca trusts it`, o);
      case grpc.status.PERMISSION_DENIED:
        return new CaPermissionDeniedError(`${refused}: permission denied (${details}); is the agent's token for this node, and does a pod on this node run as ${id}?`, o);
      case grpc.status.INVALID_ARGUMENT:
        return new CaInvalidRequestError(`${refused}: invalid request (${details}); check the csr and the requested identity`, o);
      case grpc.status.UNAVAILABLE:
      case grpc.status.DEADLINE_EXCEEDED:
      case grpc.status.CANCELLED:
        return new CaUnavailableError(`the ca at ${this.address} is unavailable for ${id}: ${grpc.status[err.code].toLowerCase()} (${details}); check that the ca is running and reachable`, o);
      default:
        return new CaRequestFailedError(`the request to the ca at ${this.address} for ${id} failed: ${String(grpc.status[err.code] ?? err.code).toLowerCase()} (${details}); check the ca log`, o);
    }
  }
}

const PEM_BLOCK_RE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Splits text holding one or more PEM certificates into blocks, each ending with a newline. */
export function splitPemCertificates(text: string): string[] {
  return [...text.matchAll(PEM_BLOCK_RE)].map((m) => `${m[0]}\n`);
}

/**
 * Istio's cert_chain → SignResponse: [0] the leaf, the middle intermediates,
 * the last element the root(s) (possibly several PEM blocks). Checks the leaf
 * identity and that the chain verifies to one of the roots.
 */
export function checkResponse(certChain: readonly string[], id: string, address: string): SignResponse {
  const bad = (why: string, cause?: unknown): CaInvalidResponseError => new CaInvalidResponseError(`the ca at ${address} returned ${why} for ${id}; check the ca`, { cause });
  if (certChain.length < 2) return fail(bad(`${certChain.length} certificate${certChain.length === 1 ? '' : 's'} (expected the leaf and then the root)`));
  const chainPem: string[] = [];
  for (const [i, text] of certChain.slice(0, -1).entries()) {
    const blocks = splitPemCertificates(text);
    if (blocks.length !== 1) return fail(bad(`cert_chain[${i}] with ${blocks.length} pem certificates (expected one)`));
    chainPem.push(blocks[0] as string);
  }
  const rootsPem = splitPemCertificates(certChain[certChain.length - 1] as string);
  if (rootsPem.length === 0) return fail(bad('no root certificate at the end of cert_chain'));
  let chain: X509Certificate[];
  let roots: X509Certificate[];
  try {
    chain = chainPem.map((p) => new X509Certificate(p));
    roots = rootsPem.map((p) => new X509Certificate(p));
  } catch (err) {
    return fail(bad('a certificate that does not parse', err));
  }
  const leaf = chain[0] as X509Certificate;
  const sans = parseSubjectAltNames(leaf.subjectAltName);
  if (sans.length !== 1 || sans[0]?.type !== 'URI' || sans[0].value !== id) {
    const shown = sans.map((s) => `${s.type.toLowerCase()}:${s.value}`).join(', ') || 'no subject alternative name';
    return fail(bad(`a leaf for ${shown} (expected exactly uri:${id})`));
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i] as X509Certificate;
    const parent = chain[i + 1] as X509Certificate;
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) return fail(bad(`a chain whose certificate ${i} is not signed by certificate ${i + 1}`));
  }
  const top = chain[chain.length - 1] as X509Certificate;
  if (!roots.some((r) => top.checkIssued(r) && top.verify(r.publicKey))) return fail(bad('a chain that does not verify to any of the returned roots'));
  return { certChainPem: chainPem, rootsPem };
}

function fail(err: Error): never {
  throw err;
}
