/**
 * A MINIMAL FAKE Kubernetes API server (plain HTTP on 127.0.0.1) for tests:
 * not a real API server. It knows a handful of kinds (Namespace, Pod,
 * ConfigMap, Service, ServiceAccount, Deployment, Gateway): discovery,
 * list (with equality label selectors) and watch, get, create (409
 * AlreadyExists; 404 for a missing namespace and 403 for a Terminating one
 * when `strictNamespaces` is set), replace (409 Conflict on a stale
 * resourceVersion), JSON merge-patch, delete, TokenReview, and the
 * pods/services proxy (answered by `proxy`). Enough for client-node's
 * generic object API, its informers, and the API-server proxy GETs.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface KindInfo {
  readonly kind: string;
  readonly group: string; // '' for core
  readonly version: string;
  readonly plural: string;
  readonly namespaced: boolean;
}

const KINDS: readonly KindInfo[] = [
  { kind: 'Namespace', group: '', version: 'v1', plural: 'namespaces', namespaced: false },
  { kind: 'Pod', group: '', version: 'v1', plural: 'pods', namespaced: true },
  { kind: 'ConfigMap', group: '', version: 'v1', plural: 'configmaps', namespaced: true },
  { kind: 'Service', group: '', version: 'v1', plural: 'services', namespaced: true },
  { kind: 'ServiceAccount', group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true },
  { kind: 'Deployment', group: 'apps', version: 'v1', plural: 'deployments', namespaced: true },
  { kind: 'Gateway', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', namespaced: true },
];

const byKind = (kind: string): KindInfo => KINDS.find((k) => k.kind === kind) ?? (undefined as never);

export type ProxyHandler = (ns: string, target: string, path: string, headers: IncomingMessage['headers']) => { status: number; body: string } | undefined;

export class FakeKubeApi {
  readonly objects = new Map<string, Obj>();
  readonly requests: string[] = [];
  readonly #watches = new Set<{ kind: string; ns: string | undefined; res: ServerResponse }>();
  /** Creating in a missing namespace is 404, in a Terminating one 403 (as a real API server). */
  strictNamespaces = false;
  /** Return true to answer 403 Forbidden (RBAC) for a request. */
  forbid: (method: string, kind: string, ns: string | undefined) => boolean = () => false;
  /** Answers GETs to /api/v1/namespaces/<ns>/(pods|services)/<name:port>/proxy/<path>. */
  proxy: ProxyHandler = () => undefined;
  rv = 1;
  readonly server: Server;

  constructor() {
    this.server = createServer((req, res) => void this.#handle(req, res));
  }

  listen(): Promise<number> {
    return new Promise((r) => this.server.listen(0, '127.0.0.1', () => r((this.server.address() as AddressInfo).port)));
  }

  close(): Promise<void> {
    for (const w of this.#watches) w.res.destroy();
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  static key(kind: string, ns: string | undefined, name: string): string {
    return byKind(kind).namespaced ? `${kind}/${ns ?? ''}/${name}` : `${kind}//${name}`;
  }

  get(kind: string, ns: string | undefined, name: string): Obj | undefined {
    return this.objects.get(FakeKubeApi.key(kind, ns, name));
  }

  put(o: Obj, type: 'ADDED' | 'MODIFIED' = 'ADDED'): Obj {
    o.metadata.resourceVersion = String(++this.rv);
    o.metadata.uid ??= `uid-${o.kind}-${o.metadata.namespace ?? ''}-${o.metadata.name}`;
    this.objects.set(FakeKubeApi.key(o.kind, o.metadata.namespace, o.metadata.name), o);
    this.#notify(o, type);
    return o;
  }

  remove(kind: string, ns: string | undefined, name: string): Obj | undefined {
    const k = FakeKubeApi.key(kind, ns, name);
    const o = this.objects.get(k);
    if (!o) return undefined;
    this.objects.delete(k);
    o.metadata.resourceVersion = String(++this.rv);
    this.#notify(o, 'DELETED');
    return o;
  }

  list(kind: string, ns?: string, selector?: string): Obj[] {
    const want = (selector ?? '')
      .split(',')
      .filter((t) => t !== '')
      .map((t) => t.split(/==?/, 2) as [string, string]);
    return [...this.objects.values()].filter((o) => o.kind === kind && (ns === undefined || o.metadata.namespace === ns) && want.every(([k, v]) => o.metadata.labels?.[k] === v));
  }

  #notify(o: Obj, type: string): void {
    for (const w of this.#watches) if (w.kind === o.kind && (w.ns === undefined || w.ns === o.metadata.namespace)) w.res.write(JSON.stringify({ type, object: o }) + '\n');
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const p = url.pathname;
    this.requests.push(`${req.method} ${p}${url.searchParams.get('watch') ? '?watch' : ''}`);
    let body = '';
    for await (const c of req) body += String(c);
    const send = (code: number, o: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(o));
    };
    const status = (code: number, reason: string, message: string): void => send(code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, code, message });
    // Discovery.
    const disc = /^\/api\/v1$|^\/apis\/([^/]+)\/([^/]+)$/.exec(p);
    if (disc && req.method === 'GET') {
      const group = disc[1] ?? '';
      const version = disc[2] ?? 'v1';
      const resources = KINDS.filter((k) => k.group === group && k.version === version).map((k) => ({ name: k.plural, singularName: k.kind.toLowerCase(), kind: k.kind, namespaced: k.namespaced, verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] }));
      if (resources.length === 0) return status(404, 'NotFound', `${p} not found`);
      return send(200, { kind: 'APIResourceList', groupVersion: group ? `${group}/${version}` : 'v1', resources });
    }
    if (p === '/apis/authentication.k8s.io/v1/tokenreviews' && req.method === 'POST') {
      const tr = JSON.parse(body) as Obj;
      const ok = tr.spec.token === 'good-token' && (tr.spec.audiences as string[]).includes('istio-ca');
      return send(201, {
        ...tr,
        status: ok
          ? { authenticated: true, audiences: ['istio-ca'], user: { username: 'system:serviceaccount:mesh:client', extra: { 'authentication.kubernetes.io/pod-name': ['client'] } } }
          : { authenticated: false, error: 'invalid bearer token' },
      });
    }
    const m = /^\/api\/v1\/(.*)$|^\/apis\/([^/]+)\/([^/]+)\/(.*)$/.exec(p);
    if (!m) return status(404, 'NotFound', `${p} not found`);
    const group = m[2] ?? '';
    const version = m[3] ?? 'v1';
    const rest = (m[1] ?? m[4] ?? '').split('/').filter((x) => x !== '');
    let plural: string | undefined;
    let ns: string | undefined;
    let name: string | undefined;
    let proxyPath: string | undefined;
    if (rest.length === 1) plural = rest[0];
    else if (rest[0] === 'namespaces' && rest.length === 2 && group === '') [plural, name] = ['namespaces', rest[1]];
    else if (rest[0] === 'namespaces' && rest.length >= 3) {
      [ns, plural, name] = [rest[1], rest[2], rest[3]];
      if (rest[4] === 'proxy') proxyPath = '/' + rest.slice(5).join('/');
    }
    if (proxyPath !== undefined && req.method === 'GET') {
      const a = this.proxy(ns ?? '', `${plural}/${name}`, proxyPath, req.headers);
      if (!a) return status(503, 'ServiceUnavailable', `no endpoints for ${plural}/${name}`);
      res.writeHead(a.status, { 'content-type': 'text/plain' });
      return void res.end(a.body);
    }
    const info = KINDS.find((k) => k.group === group && k.version === version && k.plural === plural);
    if (!info) return status(404, 'NotFound', `${p} not found`);
    if (this.forbid(req.method ?? 'GET', info.kind, ns)) return status(403, 'Forbidden', `${info.plural} is forbidden: the fake says no`);
    if (name === undefined) {
      if (req.method === 'GET') {
        if (url.searchParams.get('watch') === 'true') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.flushHeaders();
          const w = { kind: info.kind, ns, res };
          this.#watches.add(w);
          res.on('close', () => this.#watches.delete(w));
          return;
        }
        return send(200, { kind: `${info.kind}List`, apiVersion: info.group ? `${info.group}/${info.version}` : 'v1', metadata: { resourceVersion: String(this.rv) }, items: this.list(info.kind, ns, url.searchParams.get('labelSelector') ?? undefined) });
      }
      if (req.method === 'POST') {
        const o = JSON.parse(body) as Obj;
        o.metadata.namespace ??= ns;
        if (info.namespaced && this.strictNamespaces) {
          const nsObj = this.get('Namespace', undefined, o.metadata.namespace as string);
          if (!nsObj) return status(404, 'NotFound', `namespaces "${String(o.metadata.namespace)}" not found`);
          if (nsObj.status?.phase === 'Terminating') return status(403, 'Forbidden', `unable to create new content in namespace ${String(o.metadata.namespace)} because it is being terminated`);
        }
        if (this.get(info.kind, o.metadata.namespace, o.metadata.name)) return status(409, 'AlreadyExists', `${info.plural} "${String(o.metadata.name)}" already exists`);
        delete o.metadata.resourceVersion;
        return send(201, this.put(o));
      }
      return status(405, 'MethodNotAllowed', `${String(req.method)} on a collection`);
    }
    const o = this.get(info.kind, ns, name);
    if (!o) return status(404, 'NotFound', `${info.plural} "${name}" not found`);
    if (req.method === 'GET') return send(200, o);
    if (req.method === 'DELETE') return send(200, this.remove(info.kind, ns, name));
    if (req.method === 'PUT') {
      const n = JSON.parse(body) as Obj;
      const rv = n.metadata?.resourceVersion as string | undefined;
      if (rv !== undefined && rv !== '' && rv !== o.metadata.resourceVersion) return status(409, 'Conflict', `Operation cannot be fulfilled on ${info.plural} "${name}": the object has been modified`);
      n.metadata.uid = o.metadata.uid;
      return send(200, this.put(n, 'MODIFIED'));
    }
    if (req.method === 'PATCH') {
      if (!String(req.headers['content-type']).includes('merge-patch')) return status(415, 'UnsupportedMediaType', 'only merge-patch');
      const patch = JSON.parse(body) as Obj;
      const merge = (dst: Obj, src: Obj): void => {
        for (const [k, v] of Object.entries(src)) {
          if (v === null) delete dst[k];
          else if (typeof v === 'object' && !Array.isArray(v)) merge((dst[k] ??= {}), v as Obj);
          else dst[k] = v;
        }
      };
      merge(o, patch);
      return send(200, this.put(o, 'MODIFIED'));
    }
    return status(405, 'MethodNotAllowed', String(req.method));
  }
}
