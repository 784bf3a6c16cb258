/**
 * The Istio CA gRPC service (istio.v1.auth.IstioCertificateService): node
 * agents send a CSR and, in shared mode, the identity they impersonate; the
 * server authenticates the caller to a node, checks the CSR, checks the
 * caller may hold that identity (pods on its own node only), and signs.
 *
 * This module only builds the service; the composition root owns the
 * grpc.Server, its TLS credentials and port, and calls
 * `server.addService(ca.service().definition, ca.service().implementation)`.
 *
 * Every refusal is a gRPC status with a lowercase message saying what to fix:
 * UNAUTHENTICATED (token), PERMISSION_DENIED (identity not on the caller's
 * node), INVALID_ARGUMENT (request, CSR, SANs), UNAVAILABLE (authenticator
 * backend down), INTERNAL (signer failure; details only in the log). Each
 * request is counted in `ambit_ca_requests_total{result}`. The handler
 * catches everything: bad input never takes the server down.
 *
 * CSR policy: at most 64 KiB of PEM; ECDSA P-256 or RSA >= 2048 bits; a valid
 * self-signature; exactly one SAN, a URI that is a SPIFFE id in our trust
 * domain and equal to the ImpersonatedIdentity when one is sent. Anything
 * else is refused rather than silently narrowed.
 *
 * Response: cert_chain = [leaf, ...intermediates, roots] where the last
 * element is every trusted root concatenated (Istio's convention: root last;
 * during a root rotation the bundle holds both roots).
 */
import * as grpc from '@grpc/grpc-js';
import { Counter, Registry } from 'prom-client';
import { systemClock, type Clock } from '../common/clock.js';
import { silentLogger, type Logger } from '../common/logger.js';
import type { CertificateSource } from '../identity/certificate-source.js';
import { CsrIdentityMismatchError, CsrSanError, InvalidCsrError, InvalidTtlError, TrustDomainMismatchError } from '../identity/errors.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId } from '../identity/spiffe.js';
import { readCsr } from '../identity/x509.js';
import { ConfigError } from '../common/errors.js';
import type { CaAuthenticator, CallerIdentity } from './authenticator.js';
import { caServiceDefinition, IMPERSONATED_IDENTITY_KEY, type CertificateResponseMessage, type DecodedRequest } from './ca-proto.js';

export const DEFAULT_MAX_TTL_SECONDS = 24 * 60 * 60;
export const MAX_CSR_BYTES = 64 * 1024;
/** Whole-request limit checked by the handler: the CSR plus room for metadata. */
export const MAX_REQUEST_BYTES = MAX_CSR_BYTES + 16 * 1024;
/**
 * Server options the composition root should pass to `new grpc.Server()`:
 * requests up to 1 MiB reach the handler (which refuses > 64 KiB CSRs with a
 * clear INVALID_ARGUMENT); bigger ones are refused by grpc-js itself
 * (RESOURCE_EXHAUSTED) before any parsing.
 */
export const CA_SERVER_CHANNEL_OPTIONS: grpc.ServerOptions = { 'grpc.max_receive_message_length': 1024 * 1024 };

/** `false` or `{allowed: false, reason}` refuses (PERMISSION_DENIED); `true` allows. */
export type AuthorizationDecision = boolean | { readonly allowed: false; readonly reason: string };

/** Decides whether `caller` (an authenticated node agent) may hold `requested`. */
export type CaAuthorizer = (caller: CallerIdentity, requested: SpiffeId) => AuthorizationDecision | Promise<AuthorizationDecision>;

/** A signer; `trustBundle()` is used when present (RotatingCa, LocalCa). */
export type CaServerSigner = CertificateSource & { trustBundle?(): string[] };

export interface IstioCaServerOptions {
  readonly ca: CaServerSigner;
  readonly trustDomain: string;
  readonly authenticate: CaAuthenticator;
  readonly authorize: CaAuthorizer;
  /** Upper bound on issued lifetimes; longer requests are cut to it. Default (and for 0, negative or non-finite) 24 h. */
  readonly maxTtlSeconds?: number;
  /** When set, a request whose `clusterid` header names another cluster is refused. */
  readonly clusterId?: string;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Where `ambit_ca_requests_total` is registered; a private registry if omitted. */
  readonly registry?: Registry;
}

export type CaRequestResult = 'ok' | 'unauthenticated' | 'permission_denied' | 'invalid_argument' | 'unavailable' | 'internal';

interface Refusal {
  readonly status: grpc.status;
  readonly result: CaRequestResult;
  readonly message: string;
}

type Step<T> = { ok: true; value: T } | { ok: false; refusal: Refusal };

const refuse = (status: grpc.status, result: CaRequestResult, message: string): { ok: false; refusal: Refusal } => ({ ok: false, refusal: { status, result, message } });
const invalid = (message: string): { ok: false; refusal: Refusal } => refuse(grpc.status.INVALID_ARGUMENT, 'invalid_argument', message);

/** An authorizer that allows exactly the identities `identitiesOn(node)` lists (e.g. from the pod list). */
export function nodeIdentityAuthorizer(identitiesOn: (node: string) => Iterable<SpiffeId | string>): CaAuthorizer {
  return (caller, requested) => {
    const want = requested.toString();
    for (const id of identitiesOn(caller.node)) if (id.toString() === want) return true;
    return { allowed: false, reason: `no pod on node ${caller.node} runs as ${want}` };
  };
}

export class IstioCaServer {
  readonly #ca: CaServerSigner;
  readonly #trustDomain: string;
  readonly #authn: CaAuthenticator;
  readonly #authz: CaAuthorizer;
  readonly #maxTtl: number;
  readonly #clusterId: string | undefined;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #requests: Counter<'result'>;

  constructor(opts: IstioCaServerOptions) {
    try {
      this.#trustDomain = parseTrustDomain(opts.trustDomain);
    } catch (err) {
      throw new ConfigError(`ca server: ${(err as Error).message}`, { cause: err });
    }
    this.#ca = opts.ca;
    this.#authn = opts.authenticate;
    this.#authz = opts.authorize;
    const max = opts.maxTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS;
    this.#maxTtl = Number.isFinite(max) && max > 0 ? Math.floor(max) : DEFAULT_MAX_TTL_SECONDS;
    this.#clusterId = opts.clusterId;
    this.#clock = opts.clock ?? systemClock;
    this.#log = (opts.logger ?? silentLogger()).child({ component: 'ca-server' });
    const registry = opts.registry ?? new Registry();
    const existing = registry.getSingleMetric('ambit_ca_requests_total');
    this.#requests =
      (existing as Counter<'result'> | undefined) ??
      new Counter({ name: 'ambit_ca_requests_total', help: 'Certificate requests to the Istio CA service, by result.', labelNames: ['result'], registers: [registry] });
  }

  /** The effective maximum lifetime in seconds. */
  get maxTtlSeconds(): number {
    return this.#maxTtl;
  }

  /** The roots the signer asks peers to trust (empty if the signer does not say). */
  trustBundle(): string[] {
    return this.#ca.trustBundle?.() ?? [];
  }

  /** For `grpcServer.addService(definition, implementation)`. */
  service(): { definition: grpc.ServiceDefinition<grpc.UntypedServiceImplementation>; implementation: grpc.UntypedServiceImplementation } {
    const handler: grpc.handleUnaryCall<DecodedRequest, CertificateResponseMessage> = (call, callback) => {
      this.#handle(call).then(
        (r) => {
          this.#requests.inc({ result: r.ok ? 'ok' : r.refusal.result });
          if (r.ok) callback(null, r.value);
          else callback({ code: r.refusal.status, details: r.refusal.message });
        },
        (err: unknown) => {
          // #handle catches everything; this is a last resort.
          this.#log.error({ err }, 'ca request handler failed');
          this.#requests.inc({ result: 'internal' });
          callback({ code: grpc.status.INTERNAL, details: 'the ca failed while handling the request; see the ca log' });
        },
      );
    };
    return { definition: caServiceDefinition(), implementation: { CreateCertificate: handler as grpc.UntypedHandleCall } };
  }

  async #handle(call: grpc.ServerUnaryCall<DecodedRequest, CertificateResponseMessage>): Promise<Step<CertificateResponseMessage>> {
    const peer = safePeer(call);
    const started = this.#clock.now();
    let caller: CallerIdentity | undefined;
    let requested: SpiffeId | undefined;
    const done = (r: Step<CertificateResponseMessage>): Step<CertificateResponseMessage> => {
      const ctx = { peer, node: caller?.node, caller: caller?.subject, identity: requested?.toString(), ms: this.#clock.now() - started };
      if (r.ok) this.#log.info(ctx, 'certificate issued');
      else if (r.refusal.result === 'internal' || r.refusal.result === 'unavailable') this.#log.warn({ ...ctx, reason: r.refusal.message }, 'certificate request failed');
      else this.#log.info({ ...ctx, result: r.refusal.result, reason: r.refusal.message }, 'certificate request refused');
      return r;
    };
    try {
      const auth = await this.#authn.authenticate({ metadata: call.metadata, peer });
      if (!auth.ok) {
        return done(
          auth.kind === 'unavailable'
            ? refuse(grpc.status.UNAVAILABLE, 'unavailable', auth.reason)
            : refuse(grpc.status.UNAUTHENTICATED, 'unauthenticated', `${auth.reason}`),
        );
      }
      caller = auth.caller;
      const cluster = call.metadata.get('clusterid')[0];
      if (this.#clusterId !== undefined && typeof cluster === 'string' && cluster !== '' && cluster !== this.#clusterId) {
        return done(refuse(grpc.status.UNAUTHENTICATED, 'unauthenticated', `the request is for cluster ${JSON.stringify(cluster)} but this ca serves ${JSON.stringify(this.#clusterId)}; set the agent's cluster id`));
      }
      const req = call.request;
      if ('undecodable' in req) return done(invalid(`the request is not a valid IstioCertificateRequest (${req.undecodable}); send the istio.v1.auth message`));
      if (req.size > MAX_REQUEST_BYTES) return done(invalid(`the request is ${req.size} bytes; the limit is ${MAX_REQUEST_BYTES}`));
      const checked = await this.#checkCsr(req.csr, req.metadata[IMPERSONATED_IDENTITY_KEY]);
      if (!checked.ok) return done(checked);
      requested = checked.value;
      const authz = await this.#authorize(caller, requested);
      if (!authz.ok) return done(authz);
      const ttl = this.#ttl(req.validityDuration);
      return done(await this.#sign(req.csr, requested, ttl));
    } catch (err) {
      this.#log.error({ err, peer }, 'unexpected error in the ca request handler');
      return done(refuse(grpc.status.INTERNAL, 'internal', 'the ca failed while handling the request; see the ca log'));
    }
  }

  /** Returns the identity the CSR may be signed for. */
  async #checkCsr(csr: string, impersonated: unknown): Promise<Step<SpiffeId>> {
    let wanted: SpiffeId | undefined;
    if (impersonated !== undefined) {
      if (typeof impersonated !== 'string') return invalid(`metadata ${IMPERSONATED_IDENTITY_KEY} must be a string spiffe id`);
      try {
        wanted = parseSpiffeId(impersonated);
      } catch (err) {
        return invalid(`metadata ${IMPERSONATED_IDENTITY_KEY}: ${(err as Error).message}`);
      }
      if (wanted.trustDomain !== this.#trustDomain) return invalid(`${wanted.toString()} is not in trust domain ${this.#trustDomain}; request an identity in ${this.#trustDomain}`);
    }
    if (csr === '') return invalid('the request has no csr; send a pem pkcs#10 certificate request in field csr');
    const bytes = Buffer.byteLength(csr, 'utf8');
    if (bytes > MAX_CSR_BYTES) return invalid(`the csr is ${bytes} bytes; the limit is ${MAX_CSR_BYTES}, a csr is normally under 2 kib`);
    let info;
    try {
      info = await readCsr(csr, { allowRsa: true });
    } catch (err) {
      if (err instanceof InvalidCsrError) return invalid(err.message);
      return invalid('the csr could not be parsed; send the pem text of a pkcs#10 certificate request');
    }
    const sans = [...info.uris.map((u) => `uri:${u}`), ...info.otherSans];
    const expect = wanted !== undefined ? `the spiffe id ${wanted.toString()}` : 'the spiffe id of the workload';
    if (info.uris.length !== 1 || info.otherSans.length > 0) {
      const found = sans.length === 0 ? 'no subject alternative name' : `${sans.length} subject alternative names (${sans.join(', ')})`;
      return invalid(`the csr has ${found}; it must carry exactly one uri san, ${expect}`);
    }
    const uri = info.uris[0] as string;
    let inCsr: SpiffeId;
    try {
      inCsr = parseSpiffeId(uri);
    } catch (err) {
      return invalid(`the csr uri san is not a spiffe id (${(err as Error).message}); put ${expect} in the csr`);
    }
    if (inCsr.trustDomain !== this.#trustDomain) return invalid(`the csr asks for ${uri}, outside trust domain ${this.#trustDomain}; request an identity in ${this.#trustDomain}`);
    if (wanted !== undefined && !wanted.equals(inCsr)) {
      return invalid(`the csr asks for ${uri} but ${IMPERSONATED_IDENTITY_KEY} is ${wanted.toString()}; put the impersonated identity in the csr`);
    }
    return { ok: true, value: inCsr };
  }

  async #authorize(caller: CallerIdentity, requested: SpiffeId): Promise<Step<void>> {
    let d: AuthorizationDecision;
    try {
      d = await this.#authz(caller, requested);
    } catch (err) {
      this.#log.error({ err, node: caller.node, identity: requested.toString() }, 'ca authorizer threw');
      return refuse(grpc.status.INTERNAL, 'internal', 'the ca could not check whether the caller may hold the identity; see the ca log');
    }
    if (d === true) return { ok: true, value: undefined };
    const why = d === false ? `no workload on node ${caller.node} runs as ${requested.toString()}` : d.reason;
    return refuse(grpc.status.PERMISSION_DENIED, 'permission_denied', `node ${caller.node} may not request ${requested.toString()}: ${why}; an agent gets certificates only for pods on its own node`);
  }

  #ttl(requested: number): number {
    if (!Number.isFinite(requested) || requested <= 0) return this.#maxTtl;
    return Math.min(Math.floor(requested), this.#maxTtl);
  }

  async #sign(csrPem: string, identity: SpiffeId, ttlSeconds: number): Promise<Step<CertificateResponseMessage>> {
    let res;
    try {
      res = await this.#ca.sign({ csrPem, identity, ttlSeconds });
    } catch (err) {
      if (err instanceof InvalidCsrError || err instanceof CsrSanError || err instanceof CsrIdentityMismatchError || err instanceof TrustDomainMismatchError || err instanceof InvalidTtlError) {
        return invalid(err.message);
      }
      this.#log.error({ err, identity: identity.toString() }, 'the signer failed');
      return refuse(grpc.status.INTERNAL, 'internal', 'the ca could not sign the certificate; see the ca log');
    }
    const roots = res.rootsPem.length > 0 ? res.rootsPem : this.trustBundle();
    if (res.certChainPem.length === 0 || roots.length === 0) {
      this.#log.error({ identity: identity.toString(), chain: res.certChainPem.length, roots: roots.length }, 'the signer returned no leaf or no roots');
      return refuse(grpc.status.INTERNAL, 'internal', 'the ca produced an incomplete chain; see the ca log');
    }
    return { ok: true, value: { certChain: [...res.certChainPem.map(nl), roots.map(nl).join('')] } };
  }
}

function nl(s: string): string {
  return s.endsWith('\n') ? s : `${s}\n`;
}

function safePeer(call: grpc.ServerUnaryCall<unknown, unknown>): string {
  try {
    return call.getPeer();
  } catch {
    return 'unknown';
  }
}
