/**
 * The control plane's composition root (istiod's role for ambient mode).
 *
 *   sources (manifest folder, Kubernetes API) ─► ResourceStore (valid
 *   resources + ConfigIssues) ─► [lab overlay] ─► translate ─► encode
 *   (version = content hash) ─► DeltaXdsServer.replaceAll (the server diffs,
 *   debounces and pushes only what changed) ─► agents
 *                                 └─► translateL7 ─► one ambit.l7.v1.L7Config
 *   per waypoint Gateway, named `<ns>/<name>` (waypoints subscribe to their
 *   own name); a config that does not compile keeps the last good one.
 *
 *   IstioCaServer: node-token authentication, impersonation limited to the
 *   identities of the pods on the caller's node (from the same translation).
 *
 * Served on one gRPC server with TLS (15012; serving certificate issued from
 * the mesh root for spiffe://<td>/ns/istio-system/sa/istiod) and optionally a
 * plaintext one (15010), plus monitoring on HTTP 15014: /metrics, /ready,
 * /debug/status, /debug/config, /debug/ca (mesh roots and rotation stage)
 * and POST /debug/ca/rotate?phase=add|activate|retire[&force=1] (bearer
 * token from <ca-dir>/admin-token; docs/CERTIFICATES.md). The mesh roots
 * live in CaRoots; the serving certificate is re-issued from the active root
 * after each rotation phase, with the cross-certificate to the old root.
 *
 * Versions are content hashes, so a restarted control plane recognises what
 * reconnecting agents already hold (initial_resource_versions) and sends
 * nothing for it.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { toError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { IstioCaServer, nodeIdentityAuthorizer, CA_SERVER_CHANNEL_OPTIONS } from '../ca/ca-server.js';
import type { CaAuthenticator } from '../ca/authenticator.js';
import { CaRoots, ROTATION_PHASES, type RotationPhase } from '../ca/ca-roots.js';
import { RotatableServerCredentials, type ServingIdentity } from '../ca/serving-credentials.js';
import { readOrCreateAdminToken, ADMIN_TOKEN_FILE } from '../ca/admin-token.js';
import { CaError } from '../ca/errors.js';
import { spiffeId } from '../identity/spiffe.js';
import { createCsr, generateWorkloadKey } from '../identity/x509.js';
import { parseLocalClusterConfig, type LocalClusterConfig } from '../state/local-config.js';
import { L7_CONFIG_TYPE_URL } from '../waypoint/l7-codec.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../workload-api/types.js';
import { DeltaXdsServer, type XdsResource } from '../xds/delta-server.js';
import { encodeL7Translation, encodeTranslation, type EncodedResource } from './diff.js';
import { applyLabOverlay } from './lab-overlay.js';
import { ManifestSource } from './manifest-source.js';
import { ResourceStore, type ResourceSnapshot } from './resource-store.js';
import { buildStatus, ControlPlaneMetrics, type ControlPlaneStatus } from './status.js';
import { translate, type Translation, type TranslateOptions } from './translate.js';
import { translateL7, type L7Translation } from './translate-l7.js';

export const CONTROL_PLANE_NAMESPACE = 'istio-system';
export const CONTROL_PLANE_SERVICE_ACCOUNT = 'istiod';

export interface ControlPlaneConfig {
  readonly manifests?: string;
  /** The lab's cluster file: pod IPs, nodes, netns and service IPs the manifests leave out. */
  readonly labCluster?: string;
  readonly caDir: string;
  readonly trustDomain: string;
  readonly clusterDomain: string;
  readonly address: string;
  /** TLS gRPC (xDS + CA); 0 picks a free port. */
  readonly grpcPort: number;
  /** Plaintext gRPC (xDS only: the CA needs TLS); undefined disables it. */
  readonly plaintextPort?: number;
  readonly monitoringPort: number;
  readonly debounceMs?: number;
  /** Upper bound on workload certificate lifetimes the CA issues (default 24 h). */
  readonly caMaxTtlSeconds?: number;
}

export interface ControlPlaneWorld {
  readonly logger: Logger;
  readonly registry: Registry;
  /** Authenticates CA callers (node tokens in manifest mode, TokenReview in Kubernetes). */
  readonly caAuthenticator: CaAuthenticator;
  /** Extra sources (e.g. a KubeSource) feeding the same store. */
  readonly attachSources?: (store: ResourceStore) => Promise<{ close(): Promise<void> | void }>;
}

export class ControlPlane {
  readonly #cfg: ControlPlaneConfig;
  readonly #w: ControlPlaneWorld;
  readonly #log: Logger;
  readonly store = new ResourceStore();
  readonly #metrics: ControlPlaneMetrics;
  readonly xds: DeltaXdsServer;
  #translation: Translation | undefined;
  #l7: L7Translation | undefined;
  #l7Encoded: ReadonlyMap<string, EncodedResource> = new Map();
  #lab: LocalClusterConfig | undefined;
  #manifests: ManifestSource | undefined;
  #extra: { close(): Promise<void> | void } | undefined;
  #grpc: grpc.Server[] = [];
  #http: HttpServer | undefined;
  #ports = { grpc: 0, plaintext: 0, monitoring: 0 };
  #ca: CaRoots | undefined;
  #adminToken: string | undefined;

  private constructor(cfg: ControlPlaneConfig, world: ControlPlaneWorld) {
    this.#cfg = cfg;
    this.#w = world;
    this.#log = world.logger.child({ component: 'control-plane' });
    this.#metrics = new ControlPlaneMetrics(world.registry);
    this.xds = new DeltaXdsServer({ typeUrls: [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, L7_CONFIG_TYPE_URL], debounceMs: cfg.debounceMs ?? 100, logger: world.logger, registry: world.registry });
    this.xds.on('nack', (e: { typeUrl: string; nodeId: string; message: string }) => {
      this.#metrics.countRejection(e.typeUrl === ADDRESS_TYPE_URL ? 'address' : e.typeUrl === L7_CONFIG_TYPE_URL ? 'l7' : 'authorization');
      this.#log.warn({ node: e.nodeId, typeUrl: e.typeUrl, detail: e.message }, 'agent rejected resources (NACK)');
    });
  }

  static async start(cfg: ControlPlaneConfig, world: ControlPlaneWorld): Promise<ControlPlane> {
    const cp = new ControlPlane(cfg, world);
    try {
      await cp.#start();
    } catch (err) {
      await cp.close();
      throw err;
    }
    return cp;
  }

  get ports(): { grpc: number; plaintext: number; monitoring: number } {
    return { ...this.#ports };
  }

  get translation(): Translation | undefined {
    return this.#translation;
  }

  /** The waypoints' L7 configs of the last translation (compileL7Config inputs by `<ns>/<name>`). */
  get l7(): L7Translation | undefined {
    return this.#l7;
  }

  status(): ControlPlaneStatus {
    return buildStatus(this.store, this.#translation, this.#metrics, this.#l7Encoded.size);
  }

  async #start(): Promise<void> {
    const c = this.#cfg;
    if (c.labCluster) this.#lab = parseLocalClusterConfig(JSON.parse(readFileSync(c.labCluster, 'utf8')) as unknown, c.labCluster);
    if (c.manifests) {
      this.#manifests = new ManifestSource({ dir: c.manifests, store: this.store, logger: this.#w.logger, ...(c.debounceMs !== undefined ? { debounceMs: c.debounceMs } : {}) });
      await this.#manifests.start({ watch: true });
    }
    if (this.#w.attachSources) this.#extra = await this.#w.attachSources(this.store);
    // One translation for the initial load (not one per file), then one per burst of changes.
    this.#retranslate();
    this.store.on('change', () => this.#scheduleRetranslate());

    const ca = await CaRoots.open(c.caDir, { trustDomain: c.trustDomain, logger: this.#w.logger });
    this.#ca = ca;
    try {
      this.#adminToken = await readOrCreateAdminToken(c.caDir);
    } catch (err) {
      // A read-only CA directory (a Kubernetes Secret) cannot rotate anyway: serve, without the rotation endpoint.
      this.#log.warn({ err: toError(err).message }, 'root rotation disabled: no admin token in the ca directory');
    }
    const caServer = new IstioCaServer({
      ca,
      trustDomain: c.trustDomain,
      ...(c.caMaxTtlSeconds !== undefined ? { maxTtlSeconds: c.caMaxTtlSeconds } : {}),
      authenticate: this.#w.caAuthenticator,
      authorize: nodeIdentityAuthorizer((node) => this.#identitiesOn(node)),
      logger: this.#w.logger,
      registry: this.#w.registry,
    });
    const tls = new RotatableServerCredentials(await this.#servingCertificate(ca));
    ca.onChange(() => {
      this.#servingCertificate(ca).then(
        (next) => {
          tls.update(next);
          this.#log.info({ activeRoot: ca.status().roots.find((r) => r.active)?.fingerprint }, 'serving certificate re-issued from the active root');
        },
        (err: unknown) => this.#log.error({ err: toError(err).message }, 'cannot re-issue the serving certificate; the previous one stays in use'),
      );
    });
    const secure = new grpc.Server(CA_SERVER_CHANNEL_OPTIONS);
    const xdsService = this.xds.service();
    const caService = caServer.service();
    secure.addService(xdsService.definition, xdsService.implementation);
    secure.addService(caService.definition, caService.implementation);
    this.#grpc.push(secure);
    this.#ports.grpc = await bind(secure, `${c.address}:${c.grpcPort}`, tls);
    if (c.plaintextPort !== undefined) {
      const plain = new grpc.Server();
      plain.addService(xdsService.definition, xdsService.implementation);
      this.#grpc.push(plain);
      this.#ports.plaintext = await bind(plain, `${c.address}:${c.plaintextPort}`, grpc.ServerCredentials.createInsecure());
    }
    this.#http = await this.#monitoring(c.address, c.monitoringPort);
    this.#log.info({ ports: this.#ports, manifests: c.manifests, status: summary(this.status()) }, 'control plane serving');
  }

  /** Identities the pods on `node` run as: what that node's agent may ask the CA for. */
  *#identitiesOn(node: string): Iterable<string> {
    for (const a of this.#translation?.addresses.values() ?? []) {
      if (a.type !== 'workload' || a.workload.node !== node) continue;
      const w = a.workload;
      yield spiffeId(w.trustDomain || this.#cfg.trustDomain, w.namespace ?? '', w.serviceAccount || 'default').toString();
    }
  }

  /** From the active root, followed by the cross-certificate that lets agents trusting only the previous root verify it. */
  async #servingCertificate(ca: CaRoots): Promise<ServingIdentity> {
    const id = spiffeId(this.#cfg.trustDomain, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT);
    const key = await generateWorkloadKey();
    const res = await ca.signUnrecorded({ csrPem: await createCsr(key, id), identity: id, ttlSeconds: 365 * 24 * 3600 });
    return { privateKeyPem: key.privateKeyPem, certChainPem: [...res.certChainPem, ...ca.servingChainExtras()].join('') };
  }

  /** POST /debug/ca/rotate?phase=...&force=1 with `authorization: Bearer <admin-token>`. */
  async #rotate(req: IncomingMessage, url: URL): Promise<{ status: number; body: unknown }> {
    if (req.method !== 'POST') return { status: 405, body: { error: 'use POST' } };
    const auth = req.headers.authorization ?? '';
    if (this.#adminToken === undefined) return { status: 503, body: { error: `root rotation is disabled: ${this.#cfg.caDir} is not writable (no ${ADMIN_TOKEN_FILE}); rotation needs a writable --ca-dir` } };
    if (!tokenEquals(auth, `Bearer ${this.#adminToken}`)) {
      return { status: 401, body: { error: `missing or wrong admin token; send 'authorization: Bearer <token>' with the token in ${this.#cfg.caDir}/${ADMIN_TOKEN_FILE}` } };
    }
    const phase = url.searchParams.get('phase') ?? '';
    if (!(ROTATION_PHASES as readonly string[]).includes(phase)) return { status: 400, body: { error: `phase must be one of ${ROTATION_PHASES.join(', ')}` } };
    const force = url.searchParams.get('force') === '1' || url.searchParams.get('force') === 'true';
    if (!this.#ca) return { status: 503, body: { error: 'the ca is not started yet' } };
    try {
      return { status: 200, body: await this.#ca.rotate(phase as RotationPhase, { force }) };
    } catch (err) {
      if (err instanceof CaError) return { status: 409, body: { error: err.message, code: err.code, status: this.#ca.status() } };
      throw err;
    }
  }

  #retranslateTimer: NodeJS.Timeout | undefined;

  /** Coalesces the store changes of one burst (several files, a rename) into one translation. */
  #scheduleRetranslate(): void {
    if (this.#retranslateTimer) return;
    this.#retranslateTimer = setTimeout(() => {
      this.#retranslateTimer = undefined;
      this.#retranslate();
    }, 10);
  }

  #retranslate(): void {
    const t0 = process.hrtime.bigint();
    try {
      let snap = this.store.snapshot();
      if (this.#lab) snap = applyLabOverlay(snap, this.#lab);
      const options: Partial<TranslateOptions> = { trustDomain: this.#cfg.trustDomain, clusterDomain: this.#cfg.clusterDomain };
      const t = translate(snap, options);
      this.#translation = t;
      this.#metrics.setIssues(this.store.issues());
      const encoded = encodeTranslation(t);
      for (const e of encoded.errors) this.#log.error({ err: e }, 'resource left out: it would not encode (a translation bug)');
      const toXds = (m: ReadonlyMap<string, EncodedResource>): XdsResource[] => [...m.values()].map((r) => ({ name: r.name, version: r.version, body: r.bytes }));
      const addresses = toXds(encoded.addresses);
      const policies = toXds(encoded.authorizations);
      this.xds.replaceAll(ADDRESS_TYPE_URL, addresses);
      this.xds.replaceAll(AUTHORIZATION_TYPE_URL, policies);
      this.#retranslateL7(snap, t, options);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      this.#log.info(
        { version: snap.version, addresses: addresses.length, authorizations: policies.length, waypoints: this.#l7Encoded.size, issues: this.store.issues().length, ms: Math.round(ms) },
        'configuration translated',
      );
    } catch (err) {
      // A translation bug must not stop serving the last good configuration.
      this.#log.error({ err: toError(err).message }, 'translation failed; still serving the previous configuration');
    }
  }

  /** The waypoints' configs from the same snapshot; a failure here keeps the previous L7 configs and never stops the rest. */
  #retranslateL7(snap: ResourceSnapshot, t: Translation, options: Partial<TranslateOptions>): void {
    try {
      const l7 = translateL7(snap, t, options);
      t.notes.push(...l7.notes);
      const encoded = encodeL7Translation(l7, this.#l7Encoded);
      for (const e of encoded.errors) this.#log.warn({ err: e }, 'waypoint config not updated: the new one is invalid; the last good one stays served');
      this.#l7 = l7;
      this.#l7Encoded = encoded.resources;
      this.xds.replaceAll(
        L7_CONFIG_TYPE_URL,
        [...encoded.resources.values()].map((r) => ({ name: r.name, version: r.version, body: r.bytes })),
      );
    } catch (err) {
      t.notes.push(`waypoint L7 translation failed (${toError(err).message}); the previous waypoint configs stay served`);
      this.#log.error({ err: toError(err).message }, 'waypoint L7 translation failed; still serving the previous waypoint configs');
    }
  }

  #monitoring(address: string, port: number): Promise<HttpServer> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const json = (v: unknown): void => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(v, (_k, val: unknown) => (val instanceof Uint8Array ? Buffer.from(val).toString('base64') : val), 2) + '\n');
      };
      void (async () => {
        switch (url.pathname) {
          case '/metrics': {
            const body = await this.#w.registry.metrics();
            res.writeHead(200, { 'content-type': this.#w.registry.contentType });
            res.end(body);
            return;
          }
          case '/ready':
            res.writeHead(this.#translation ? 200 : 503, { 'content-type': 'text/plain' });
            res.end(this.#translation ? 'ready\n' : 'not ready: no configuration translated yet\n');
            return;
          case '/debug/status':
            json(this.status());
            return;
          case '/debug/ca':
            if (this.#ca) json(this.#ca.status());
            else {
              res.writeHead(503, { 'content-type': 'text/plain' });
              res.end('the ca is not started yet\n');
            }
            return;
          case '/debug/ca/rotate': {
            const r = await this.#rotate(req, url);
            res.writeHead(r.status, { 'content-type': 'application/json' });
            res.end(JSON.stringify(r.body, null, 2) + '\n');
            return;
          }
          case '/debug/config':
            json({
              status: this.status(),
              connections: this.xds.connectionsInfo(),
              addresses: Object.fromEntries(this.#translation?.addresses ?? []),
              authorizations: Object.fromEntries(this.#translation?.authorizations ?? []),
              waypoints: Object.fromEntries(this.#l7?.configs ?? []),
            });
            return;
          default:
            res.writeHead(404, { 'content-type': 'text/plain' });
            res.end('endpoints: /metrics /ready /debug/status /debug/config /debug/ca POST:/debug/ca/rotate\n');
        }
      })().catch((err: unknown) => {
        res.writeHead(500);
        res.end(`error: ${String(err)}\n`);
      });
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, address, () => {
        server.off('error', reject);
        const a = server.address();
        this.#ports.monitoring = typeof a === 'object' && a ? a.port : port;
        resolve(server);
      });
    });
  }

  /** The active mesh root, for agents' --root-cert. */
  get rootCertPem(): string | undefined {
    return this.#ca?.activeRootPem;
  }

  /** The mesh roots and the rotation (undefined before start). */
  get caRoots(): CaRoots | undefined {
    return this.#ca;
  }

  async close(): Promise<void> {
    if (this.#retranslateTimer) clearTimeout(this.#retranslateTimer);
    this.#manifests?.close();
    await this.#extra?.close();
    this.xds.close();
    for (const s of this.#grpc) s.forceShutdown();
    this.#grpc = [];
    await new Promise<void>((r) => (this.#http ? this.#http.close(() => r()) : r()));
    this.#http?.closeAllConnections();
  }
}

/** Constant-time comparison of the authorization header. */
function tokenEquals(got: string, want: string): boolean {
  const a = Buffer.from(got);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

function bind(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))));
}

function summary(s: ControlPlaneStatus): string {
  return `${s.served.workloads} workloads, ${s.served.services} services, ${s.served.authorizations} authorizations, ${s.issues.length} config issues`;
}
