/**
 * Cluster mode: the node agent presents its ServiceAccount token (projected,
 * audience `istio-ca`); the Kubernetes TokenReview API says whose it is, and
 * the token's pod-bound claims say which pod, hence which node.
 *
 * Steps: TokenReview(token, audiences=[istio-ca]) must be authenticated, for
 * that audience, for one of the trusted node-agent service accounts (like
 * istiod's CA_TRUSTED_NODE_ACCOUNTS). The node is the
 * `authentication.kubernetes.io/node-name` extra when the API server sets it
 * (Kubernetes >= 1.30 with ServiceAccountTokenPodNodeInfo); otherwise the pod
 * named by `authentication.kubernetes.io/pod-name` is read and its
 * `spec.nodeName` used, after checking its uid matches
 * `authentication.kubernetes.io/pod-uid` (a token of a deleted pod must not
 * speak for a new pod of the same name on another node).
 *
 * Successful reviews are cached per token digest for `cacheTtlMs` (default
 * 60 s) to spare the API server one review per certificate. The Kubernetes
 * calls go through the small KubeAuthClient interface so tests inject a fake.
 */
import { createHash } from 'node:crypto';
import { AuthenticationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { systemClock, type Clock } from '../common/clock.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { bearerToken, type AuthContext, type AuthResult, type CaAuthenticator, type CallerIdentity } from './authenticator.js';

export const ISTIO_CA_AUDIENCE = 'istio-ca';
export const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
export const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
export const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
const SA_PREFIX = 'system:serviceaccount:';
const MAX_CACHE_ENTRIES = 4096;

/** The part of TokenReview.status this authenticator reads. */
export interface TokenReviewResult {
  readonly authenticated?: boolean;
  readonly error?: string;
  readonly audiences?: readonly string[];
  readonly user?: { readonly username?: string; readonly uid?: string; readonly extra?: Readonly<Record<string, readonly string[]>> };
}

export interface PodPlacement {
  readonly uid?: string;
  readonly nodeName?: string;
}

/** The two Kubernetes calls, injectable. Throwing means "the API failed" (UNAVAILABLE), not "denied". */
export interface KubeAuthClient {
  reviewToken(token: string, audiences: readonly string[]): Promise<TokenReviewResult>;
  /** undefined when the pod does not exist. */
  getPod(namespace: string, name: string): Promise<PodPlacement | undefined>;
}

/** KubeAuthClient over @kubernetes/client-node. */
export function kubeAuthClientFromConfig(kc: KubeConfig): KubeAuthClient {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  return {
    async reviewToken(token, audiences) {
      const r = await authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [...audiences] } } });
      return r.status ?? {};
    },
    async getPod(namespace, name) {
      try {
        const p = await core.readNamespacedPod({ namespace, name });
        return { ...(p.metadata?.uid !== undefined ? { uid: p.metadata.uid } : {}), ...(p.spec?.nodeName !== undefined ? { nodeName: p.spec.nodeName } : {}) };
      } catch (err) {
        if ((err as { code?: number }).code === 404) return undefined;
        throw err;
      }
    },
  };
}

export interface KubeTokenReviewAuthenticatorOptions {
  readonly client: KubeAuthClient;
  /** `<namespace>/<service-account>` of the node agents allowed to request certificates. */
  readonly trustedServiceAccounts: readonly string[];
  readonly audience?: string;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** How long a successful review is reused; 0 disables the cache. */
  readonly cacheTtlMs?: number;
}

export class KubeTokenReviewAuthenticator implements CaAuthenticator {
  readonly #client: KubeAuthClient;
  readonly #trusted: ReadonlySet<string>;
  readonly #audience: string;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #cacheTtlMs: number;
  readonly #cache = new Map<string, { caller: CallerIdentity; until: number }>();

  constructor(opts: KubeTokenReviewAuthenticatorOptions) {
    this.#client = opts.client;
    this.#trusted = new Set(opts.trustedServiceAccounts);
    this.#audience = opts.audience ?? ISTIO_CA_AUDIENCE;
    this.#clock = opts.clock ?? systemClock;
    this.#log = (opts.logger ?? silentLogger()).child({ component: 'ca-kube-token-auth' });
    this.#cacheTtlMs = opts.cacheTtlMs ?? 60_000;
  }

  async authenticate(ctx: AuthContext): Promise<AuthResult> {
    const b = bearerToken(ctx.metadata);
    if (!b.ok) return denied(b.reason);
    const key = createHash('sha256').update(b.token).digest('hex');
    const now = this.#clock.now();
    const hit = this.#cache.get(key);
    if (hit !== undefined && now < hit.until) return { ok: true, caller: hit.caller };
    this.#cache.delete(key);
    const r = await this.#review(b.token);
    if (r.ok && this.#cacheTtlMs > 0) {
      if (this.#cache.size >= MAX_CACHE_ENTRIES) this.#cache.clear();
      this.#cache.set(key, { caller: r.caller, until: now + this.#cacheTtlMs });
    }
    return r;
  }

  async #review(token: string): Promise<AuthResult> {
    let status: TokenReviewResult;
    try {
      status = await this.#client.reviewToken(token, [this.#audience]);
    } catch (err) {
      this.#log.warn({ err }, 'token review failed');
      return { ok: false, kind: 'unavailable', reason: `the ca could not review the token with the kubernetes api (${(err as Error).message}); retry later` };
    }
    if (status.authenticated !== true) {
      return denied(`kubernetes did not authenticate the token${status.error ? ` (${status.error})` : ''}; use a projected service account token with audience ${this.#audience}`);
    }
    if (status.audiences !== undefined && !status.audiences.includes(this.#audience)) {
      return denied(`the token is not for audience ${this.#audience}; project the token with audience ${this.#audience}`);
    }
    const username = status.user?.username ?? '';
    if (!username.startsWith(SA_PREFIX)) return denied(`the token belongs to ${JSON.stringify(username)}, not a service account; use the node agent's service account token`);
    const [ns, sa, ...rest] = username.slice(SA_PREFIX.length).split(':');
    if (ns === undefined || sa === undefined || rest.length > 0) return denied(`the token's user ${JSON.stringify(username)} is not a service account name`);
    if (!this.#trusted.has(`${ns}/${sa}`)) {
      return denied(`the service account ${ns}/${sa} is not a trusted node agent account (${[...this.#trusted].join(', ') || 'none configured'})`);
    }
    const extra = status.user?.extra ?? {};
    const podName = first(extra[EXTRA_POD_NAME]);
    const podUid = first(extra[EXTRA_POD_UID]);
    const subject = `${username}${podName !== undefined ? ` pod ${ns}/${podName}` : ''}`;
    const nodeClaim = first(extra[EXTRA_NODE_NAME]);
    if (nodeClaim !== undefined) return { ok: true, caller: { node: nodeClaim, method: 'kube-token-review', subject } };
    if (podName === undefined) {
      return denied('the token is not bound to a pod, so its node is unknown; use a projected (pod-bound) service account token, not a secret-based one');
    }
    let pod: PodPlacement | undefined;
    try {
      pod = await this.#client.getPod(ns, podName);
    } catch (err) {
      this.#log.warn({ err, pod: `${ns}/${podName}` }, 'pod lookup failed');
      return { ok: false, kind: 'unavailable', reason: `the ca could not read pod ${ns}/${podName} from the kubernetes api (${(err as Error).message}); retry later` };
    }
    if (pod === undefined) return denied(`the token's pod ${ns}/${podName} no longer exists; restart the agent to get a fresh token`);
    if (podUid !== undefined && pod.uid !== undefined && pod.uid !== podUid) {
      return denied(`the token was issued to an earlier pod named ${ns}/${podName}; restart the agent to get a fresh token`);
    }
    if (pod.nodeName === undefined || pod.nodeName === '') return denied(`the token's pod ${ns}/${podName} is not scheduled on a node`);
    return { ok: true, caller: { node: pod.nodeName, method: 'kube-token-review', subject } };
  }
}

function first(v: readonly string[] | undefined): string | undefined {
  return v !== undefined && v.length > 0 && v[0] !== '' ? v[0] : undefined;
}

function denied(reason: string): AuthResult {
  return { ok: false, kind: 'unauthenticated', reason };
}
