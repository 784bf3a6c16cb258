/**
 * The request pipeline: one request's lifecycle as named phases, like
 * fastify's. Each phase either continues or ends the request with a local
 * reply drawn from the error table (error-table.ts).
 *
 *   authn            RequestAuthentication (JWT): bad token → 401
 *   authz            L7 AuthorizationPolicy (DENY, then ALLOW) → 403
 *   route            first matching route; redirect / direct response; rewrite,
 *                    request header ops, mirrors (fire-and-forget)
 *   filters          plugins' onRequestHeaders (may answer locally)
 *   fault            delay (flag DI) and abort (flag FI) by percentage
 *   upstream-select  weighted backend → cluster
 *   retry-loop       per try: circuit breaker admission (UO), endpoint pick
 *                    avoiding tried hosts (UH), per-try timeout, retry-on
 *                    conditions, jittered exponential backoff, retry budget,
 *                    overall timeout (UT); exhausted retries add URX
 *   response         response header ops, plugins' onResponseHeaders, stream
 *                    body and trailers to the client
 *   telemetry        istio_* metrics, access log, span end, plugins' onLog
 *
 * The pipeline is protocol-neutral: the server (server.ts) turns HTTP/1.1 or
 * HTTP/2 into a PipelineRequest and gives a ResponseSink to write to.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { Abort, LinkedAbort, type AbortLike } from './abort.js';
import type { AuthnResult, JwtAuthenticator } from './authn.js';
import { evaluateAuthz, type AuthzVerdict } from './authz.js';
import type { ClusterState, EndpointState } from './cluster.js';
import { GRPC_CODES, type RetryCondition, type RouteConfig, type ServiceConfig, type WeightedBackend } from './config.js';
import { WaypointUpstreamError } from './errors.js';
import { httpToGrpcStatus, localReply, type LocalOutcome } from './error-table.js';
import { applyHeaderOps, applyRewrite, pickBackend, redirectLocation, selectRoute, splitPath, type HeaderMap } from './match.js';
import type { PluginRequest, WaypointPlugin } from './plugin.js';
import { RequestBody } from './request-body.js';
import type { RequestRecord, WaypointTelemetry, IstioHttpLabel } from './telemetry.js';
import { extractTrace, injectTrace, type ActiveSpan, type WaypointTracer } from './tracing.js';
import type { UpstreamPool, UpstreamResponse } from './upstream.js';

export const PIPELINE_PHASES = ['authn', 'authz', 'route', 'filters', 'fault', 'upstream-select', 'retry-loop', 'response', 'telemetry'] as const;
export type PipelinePhase = (typeof PIPELINE_PHASES)[number];

export interface PipelineRequest {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly headers: HeaderMap;
  /** Streams upstream; a copy is kept (up to a limit) for retries and mirrors. */
  readonly body: RequestBody;
  readonly protocol: 'http' | 'http2';
  readonly service: ServiceConfig;
  readonly sourceAddress: string;
  /** spiffe://td/ns/x/sa/y of the HBONE peer, if any. */
  readonly sourcePrincipal?: string;
  readonly mtls: boolean;
  /** Source workload attributes (from HBONE baggage), for the source_* labels. */
  readonly sourceWorkload?: { readonly workload?: string; readonly namespace?: string; readonly cluster?: string; readonly canonicalService?: string; readonly canonicalRevision?: string };
  /** Aborted when the client goes away. */
  readonly signal: AbortLike;
}

export interface SinkResult { readonly bytes: number; readonly error?: string }

/** Where the response goes. `body` may be a stream (proxied) or a buffer (local reply). */
export interface ResponseSink {
  send(status: number, headers: Record<string, string | string[]>, body: Readable | Buffer, trailers: Promise<Record<string, string>> | undefined, grpc: boolean): Promise<SinkResult>;
}

export interface PipelineDeps {
  readonly clock: Clock;
  readonly random: () => number;
  readonly logger: Logger;
  readonly telemetry: WaypointTelemetry;
  readonly tracer: WaypointTracer;
  readonly authn: JwtAuthenticator;
  readonly pool: UpstreamPool;
  readonly plugins: readonly WaypointPlugin[];
  readonly cluster: (name: string) => ClusterState | undefined;
  readonly clusterId: string;
  readonly mirrorTimeoutMs: number;
}

interface Ctx {
  readonly id: string;
  readonly start: number;
  readonly in: PipelineRequest;
  readonly grpc: boolean;
  readonly span: ActiveSpan;
  /** What goes upstream (mutated by route, filters). */
  readonly up: { method: string; path: string; authority: string; headers: Record<string, string> };
  readonly flags: string[];
  authn?: AuthnResult;
  authz?: AuthzVerdict;
  route?: RouteConfig;
  backend?: WeightedBackend;
  cluster?: ClusterState;
  endpoint?: EndpointState;
  attempts: number;
  status: number;
  grpcStatus?: number;
  responseBytes: number;
  error?: string;
}

type Step = { kind: 'continue' } | { kind: 'reply'; outcome: LocalOutcome; detail?: string } | { kind: 'custom'; status: number; headers: Record<string, string | string[]>; body: string; flag?: string };
const CONTINUE: Step = { kind: 'continue' };
const NO_ATTRS = Object.freeze({});
const NO_HOSTS: ReadonlySet<string> = new Set();

const GRPC_RETRY: Partial<Record<RetryCondition, number>> = { cancelled: 1, 'deadline-exceeded': 4, internal: 13, 'resource-exhausted': 8, unavailable: 14 };
const MAX_GRPC_BUFFER = 1 << 20;

export class Pipeline {
  readonly #d: PipelineDeps;

  constructor(deps: PipelineDeps) {
    this.#d = deps;
  }

  /** Runs one request to completion. Never throws. */
  async handle(req: PipelineRequest, sink: ResponseSink): Promise<void> {
    const d = this.#d;
    const grpc = (req.headers['content-type'] ?? '').startsWith('application/grpc');
    const incoming = extractTrace(req.headers);
    // span names and attributes are only built when spans are exported
    const span = d.tracer.recording
      ? d.tracer.start(`${req.service.hostname}:${req.service.port}/*`, incoming, {
        'http.request.method': req.method, 'url.path': splitPath(req.path).path, 'server.address': req.authority, 'upstream_cluster': '',
      })
      : d.tracer.start('', incoming, NO_ATTRS);
    const headers: Record<string, string> = { ...req.headers };
    const ctx: Ctx = {
      id: req.headers['x-request-id'] ?? randomUUID(),
      start: d.clock.now(),
      in: req,
      grpc,
      span,
      up: { method: req.method, path: req.path, authority: req.authority, headers },
      flags: [],
      attempts: 0,
      status: 0,
      responseBytes: 0,
    };
    headers['x-request-id'] = ctx.id;
    headers['x-forwarded-proto'] = 'http';
    headers['x-forwarded-for'] = headers['x-forwarded-for'] ? `${headers['x-forwarded-for']}, ${req.sourceAddress}` : req.sourceAddress;
    if (req.sourcePrincipal) headers['x-forwarded-client-cert'] = `URI=${req.sourcePrincipal}`;
    else delete headers['x-forwarded-client-cert'];
    injectTrace(headers, span.traceId, span.spanId, span.parentSpanId, span.sampled);
    try {
      await this.#run(ctx, sink);
      // a body no attempt read (local reply, no upstream): drain it so the connection stays usable
      ctx.in.body.discard();
    } catch (err) {
      d.logger.error({ err }, 'BUG: unexpected error in waypoint pipeline');
      ctx.error = err instanceof Error ? err.message : String(err);
      if (ctx.status === 0) await this.#custom(ctx, sink, 500, {}, 'internal error', 'PLUGIN').catch(() => undefined);
    }
    this.#telemetry(ctx);
  }

  async #run(ctx: Ctx, sink: ResponseSink): Promise<void> {
    // the phases in order (no per-request closures); async phases are only awaited when they have work
    for (let i = 0; i < 6; i++) {
      let step: Step | Promise<Step>;
      switch (i) {
        case 0: step = ctx.in.service.requestAuthentication.length === 0 ? CONTINUE : this.#authn(ctx); break;
        case 1: step = this.#authz(ctx); break;
        case 2: step = this.#route(ctx); break;
        case 3: step = this.#d.plugins.length === 0 ? CONTINUE : this.#filters(ctx); break;
        case 4: step = ctx.route?.fault ? this.#fault(ctx) : CONTINUE; break;
        default: step = this.#upstreamSelect(ctx);
      }
      if (step instanceof Promise) step = await step;
      if (step.kind === 'reply') return this.#local(ctx, sink, step.outcome, step.detail);
      if (step.kind === 'custom') return this.#custom(ctx, sink, step.status, step.headers, step.body, step.flag);
    }
    const result = await this.#retryLoop(ctx);
    if (result.kind === 'reply') return this.#local(ctx, sink, result.outcome, result.detail);
    if (result.kind === 'custom') return this.#custom(ctx, sink, result.status, result.headers, result.body, result.flag);
    if (result.kind === 'continue') return this.#local(ctx, sink, 'upstream_reset');
    await this.#respond(ctx, sink, result.resp, result.release);
  }

  // ------------------------------------------------------------ phases

  async #authn(ctx: Ctx): Promise<Step> {
    const rules = ctx.in.service.requestAuthentication;
    if (rules.length === 0) return CONTINUE;
    const r = await this.#d.authn.authenticate(rules, ctx.in.headers);
    ctx.authn = r;
    if (r.kind === 'failed') return { kind: 'reply', outcome: 'authn_failed', detail: r.reason };
    if (r.kind === 'authenticated' && !r.rule.forwardOriginalToken) delete ctx.up.headers[r.header];
    return CONTINUE;
  }

  #authz(ctx: Ctx): Step {
    const policies = ctx.in.service.authorization;
    if (policies.length === 0) return CONTINUE;
    const principal = ctx.in.sourcePrincipal?.replace(/^spiffe:\/\//, '');
    const ns = principal ? /\/ns\/([^/]+)\//.exec(principal)?.[1] : undefined;
    const a = ctx.authn?.kind === 'authenticated' ? ctx.authn : undefined;
    const v = evaluateAuthz(policies, {
      host: ctx.in.authority, method: ctx.in.method, path: splitPath(ctx.in.path).path, headers: ctx.in.headers,
      ...(principal ? { principal } : {}), ...(ns ? { namespace: ns } : {}),
      sourceIp: ctx.in.sourceAddress, destinationPort: ctx.in.service.port,
      ...(a ? { requestPrincipal: a.principal, claims: a.claims } : {}),
    });
    ctx.authz = v;
    for (const dr of v.dryRun) this.#d.logger.debug({ policy: dr.policy, action: dr.action, matched: dr.matched, request_id: ctx.id }, 'authz dry-run');
    return v.allowed ? CONTINUE : { kind: 'reply', outcome: 'authz_denied', detail: v.reason };
  }

  #route(ctx: Ctx): Step {
    const route = selectRoute(ctx.in.service, ctx.in);
    if (!route) return { kind: 'reply', outcome: 'no_route' };
    ctx.route = route;
    if (route.redirect) {
      return { kind: 'custom', status: route.redirect.status, headers: { location: redirectLocation(route.redirect, route, ctx.in, ctx.in.authority) }, body: '' };
    }
    if (route.directResponse) return { kind: 'custom', status: route.directResponse.status, headers: {}, body: route.directResponse.body };
    if (route.rewrite) {
      const rw = applyRewrite(route.rewrite, route, ctx.in, ctx.up.authority);
      ctx.up.path = rw.path;
      ctx.up.authority = rw.authority;
    }
    applyHeaderOps(ctx.up.headers, route.requestHeaders);
    for (const m of route.mirrors) if (this.#d.random() * 100 < m.percentage) this.#mirror(ctx, m.cluster);
    return CONTINUE;
  }

  async #filters(ctx: Ctx): Promise<Step> {
    if (this.#d.plugins.length === 0) return CONTINUE;
    const view = this.#pluginRequest(ctx);
    for (const p of this.#d.plugins) {
      if (!p.onRequestHeaders) continue;
      const r = await p.onRequestHeaders(view);
      if (r && r.kind === 'respond') return { kind: 'custom', status: r.status, headers: r.headers ?? {}, body: r.body ?? '' };
    }
    ctx.up.method = view.method;
    ctx.up.path = view.path;
    ctx.up.authority = view.authority;
    return CONTINUE;
  }

  async #fault(ctx: Ctx): Promise<Step> {
    const f = ctx.route?.fault;
    if (!f) return CONTINUE;
    if (f.delay && this.#d.random() * 100 < f.delay.percentage) {
      ctx.flags.push('DI');
      await this.#sleep(f.delay.fixedDelayMs, ctx.in.signal);
    }
    if (f.abort && this.#d.random() * 100 < f.abort.percentage) {
      if (f.abort.grpcStatus !== undefined) {
        ctx.grpcStatus = f.abort.grpcStatus;
        return { kind: 'custom', status: 200, headers: grpcHeaders(f.abort.grpcStatus, 'fault filter abort'), body: '', flag: 'FI' };
      }
      return { kind: 'custom', status: f.abort.httpStatus ?? 503, headers: {}, body: 'fault filter abort', flag: 'FI' };
    }
    return CONTINUE;
  }

  #upstreamSelect(ctx: Ctx): Step {
    const route = ctx.route as RouteConfig;
    const backend = pickBackend(route.backends, this.#d.random());
    if (!backend) return { kind: 'reply', outcome: 'no_cluster' };
    const cluster = this.#d.cluster(backend.cluster);
    if (!cluster) return { kind: 'reply', outcome: 'no_cluster' };
    ctx.backend = backend;
    ctx.cluster = cluster;
    applyHeaderOps(ctx.up.headers, backend.requestHeaders);
    return CONTINUE;
  }

  async #retryLoop(ctx: Ctx): Promise<Step | { kind: 'upstream'; resp: UpstreamResponse; release: () => void }> {
    const d = this.#d;
    const route = ctx.route as RouteConfig;
    const cluster = ctx.cluster as ClusterState;
    const policy = route.retries;
    // aborted by the client going away or the route timeout; without a timeout the client's own signal serves
    const overallCtl = route.timeoutMs > 0 ? new LinkedAbort(ctx.in.signal) : undefined;
    const overall: AbortLike = overallCtl ?? ctx.in.signal;
    const overallTimer = overallCtl ? d.clock.setTimeout(() => overallCtl.abort(), route.timeoutMs) : undefined;
    const tried = new Set<string>();
    // the query is only parsed when a consistent-hash policy asks for it
    const inPath = ctx.in.path;
    const hashInput = { headers: ctx.in.headers, sourceIp: ctx.in.sourceAddress, get query(): URLSearchParams { return splitPath(inPath).query; } };
    const protocol = cluster.config.protocol;
    let last: Step = { kind: 'reply', outcome: 'no_healthy_upstream' };
    try {
      for (let attempt = 0; attempt <= policy.attempts; attempt++) {
        let isRetry = false;
        if (attempt > 0) {
          const ceil = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** (attempt - 1));
          await this.#sleep(Math.floor(d.random() * ceil), overall);
          if (overall.aborted) break;
          isRetry = true;
          cluster.activeRetries++;
          d.telemetry.retries.inc({ destination_service: ctx.in.service.hostname, cluster: cluster.config.name });
        }
        try {
          const admission = await cluster.admit(overall);
          if (!admission.ok) {
            if (overall.aborted) break;
            return { kind: 'reply', outcome: 'overflow' };
          }
          const ep = cluster.pick(hashInput, policy.retryIgnorePreviousHosts ? tried : NO_HOSTS);
          if (!ep) {
            admission.release();
            return { kind: 'reply', outcome: 'no_healthy_upstream' };
          }
          tried.add(ep.key);
          ctx.endpoint = ep;
          ctx.attempts++;
          // per-try signal: its own only with a per-try timeout, else the overall one
          const tryCtl = policy.perTryTimeoutMs > 0 ? new LinkedAbort(overall) : undefined;
          const trySignal: AbortLike = tryCtl ?? overall;
          const tryTimer = tryCtl ? d.clock.setTimeout(() => tryCtl.abort(), policy.perTryTimeoutMs) : undefined;
          ep.active++;
          const done = (): void => {
            ep.active--;
            tryTimer?.cancel();
            tryCtl?.unlink();
            admission.release();
          };
          // the pool copies what it sends, so the first try needs no copy of its own
          const headers = attempt === 0 ? ctx.up.headers : { ...ctx.up.headers, 'x-envoy-attempt-count': String(attempt + 1) };
          let resp: UpstreamResponse;
          try {
            resp = await d.pool.request(ep.endpoint, protocol, { method: ctx.up.method, path: ctx.up.path, authority: ctx.up.authority, headers, body: ctx.in.body, signal: trySignal }, cluster.config.connectionPool.maxRequestsPerConnection);
          } catch (err) {
            done();
            const kind = err instanceof WaypointUpstreamError ? err.kind : 'reset';
            ctx.error = err instanceof Error ? err.message : String(err);
            cluster.record(ep, kind === 'refused_stream' ? 'reset' : kind);
            if (overall.aborted) {
              last = ctx.in.signal.aborted ? { kind: 'reply', outcome: 'upstream_reset', detail: 'client went away' } : { kind: 'reply', outcome: 'timeout' };
              break;
            }
            const outcome: LocalOutcome = kind === 'connect_failure' ? 'connect_failure' : kind === 'refused_stream' ? 'refused_stream' : kind === 'timeout' ? 'per_try_timeout' : 'upstream_reset';
            last = { kind: 'reply', outcome };
            if (!retriableFailure(kind, policy.retryOn)) return last;
            if (attempt < policy.attempts && (!retryAllowed(cluster, policy) || !ctx.in.body.replayable)) return last;
            continue;
          }
          // gRPC status: trailers-only responses carry it in headers; otherwise buffer when a gRPC condition could retry
          let grpcStatus = grpcStatusOf(resp.headers);
          // only when the request is complete: a still-streaming call (bidi) cannot be retried, and must not be held
          if (ctx.grpc && grpcStatus === undefined && attempt < policy.attempts && hasGrpcCondition(policy.retryOn) && ctx.in.body.ended && ctx.in.body.replayable) {
            const b = await bufferResponse(resp, MAX_GRPC_BUFFER);
            resp = b.resp;
            if (b.complete) grpcStatus = grpcStatusOf(await resp.trailers);
          }
          cluster.record(ep, resp.status);
          if (attempt < policy.attempts && retriableResponse(resp.status, grpcStatus, policy.retryOn, policy.retriableStatusCodes) && retryAllowed(cluster, policy) && ctx.in.body.replayable) {
            resp.discard();
            done();
            last = { kind: 'continue' };
            continue;
          }
          if (ctx.attempts > 1 && retriableResponse(resp.status, grpcStatus, policy.retryOn, policy.retriableStatusCodes)) ctx.flags.push('URX');
          // the slot is released when the body is done
          const release = once(done);
          resp.body.once('end', release);
          resp.body.once('close', release);
          resp.body.once('error', release);
          return { kind: 'upstream', resp, release };
        } finally {
          if (isRetry) cluster.activeRetries--;
        }
      }
      if (ctx.attempts > 1 && !overall.aborted) ctx.flags.push('URX');
      if (overall.aborted && !ctx.in.signal.aborted) return { kind: 'reply', outcome: 'timeout' };
      if (last.kind === 'continue') return { kind: 'reply', outcome: 'upstream_reset', detail: 'retries exhausted' };
      return last;
    } finally {
      overallTimer?.cancel();
      overallCtl?.unlink();
    }
  }

  // ------------------------------------------------------------ response

  async #respond(ctx: Ctx, sink: ResponseSink, resp: UpstreamResponse, release: () => void): Promise<void> {
    const headers = { ...resp.headers };
    ctx.status = resp.status;
    if (ctx.grpc) ctx.grpcStatus = grpcStatusOf(headers);
    applyHeaderOps(headers, (ctx.route as RouteConfig).responseHeaders);
    if (ctx.backend) applyHeaderOps(headers, ctx.backend.responseHeaders);
    await this.#pluginResponse(ctx, headers);
    const trailers = resp.trailers.then((t) => {
      if (ctx.grpc) {
        const s = grpcStatusOf(t);
        if (s !== undefined) ctx.grpcStatus = s;
      }
      return t;
    });
    try {
      const r = await sink.send(resp.status, headers, resp.body, trailers, ctx.grpc);
      ctx.responseBytes = r.bytes;
      if (r.error) {
        ctx.error = r.error;
        ctx.flags.push(ctx.in.signal.aborted ? 'DC' : 'UPE');
      }
    } finally {
      release();
    }
    if (ctx.grpc && ctx.grpcStatus === undefined && resp.status !== 200) ctx.grpcStatus = httpToGrpcStatus(resp.status);
  }

  async #local(ctx: Ctx, sink: ResponseSink, outcome: LocalOutcome, detail?: string): Promise<void> {
    if (detail) ctx.error = detail;
    if (ctx.in.signal.aborted) {
      // the client went away first: nothing to send; Envoy logs code 0 with DC
      ctx.flags.push('DC');
      return;
    }
    const r = localReply(outcome);
    if (ctx.grpc) {
      ctx.grpcStatus = r.grpcStatus;
      await this.#custom(ctx, sink, 200, grpcHeaders(r.grpcStatus, r.body), '', r.flag);
      return;
    }
    await this.#custom(ctx, sink, r.status, { 'content-type': 'text/plain' }, r.body, r.flag);
  }

  async #custom(ctx: Ctx, sink: ResponseSink, status: number, headers: Record<string, string | string[]>, body: string, flag?: string): Promise<void> {
    if (flag && !ctx.flags.includes(flag)) ctx.flags.push(flag);
    ctx.status = status;
    const h = { ...headers };
    if (ctx.route) applyHeaderOps(h, ctx.route.responseHeaders);
    await this.#pluginResponse(ctx, h);
    const r = await sink.send(status, h, Buffer.from(body), undefined, ctx.grpc);
    ctx.responseBytes = r.bytes;
  }

  async #pluginResponse(ctx: Ctx, headers: Record<string, string | string[]>): Promise<void> {
    if (this.#d.plugins.length === 0) return;
    const request = this.#pluginRequest(ctx);
    for (const p of this.#d.plugins) await p.onResponseHeaders?.({ status: ctx.status, headers, request });
  }

  #pluginRequest(ctx: Ctx): PluginRequest {
    const a = ctx.authn?.kind === 'authenticated' ? ctx.authn : undefined;
    return {
      method: ctx.up.method, path: ctx.up.path, authority: ctx.up.authority, headers: ctx.up.headers,
      service: ctx.in.service.hostname, route: ctx.route?.name ?? '',
      ...(ctx.in.sourcePrincipal ? { sourcePrincipal: ctx.in.sourcePrincipal } : {}),
      ...(a ? { requestPrincipal: a.principal } : {}),
    };
  }

  // ------------------------------------------------------------ telemetry

  #telemetry(ctx: Ctx): void {
    const d = this.#d;
    const svc = ctx.in.service;
    const principal = ctx.in.sourcePrincipal;
    const srcNs = principal ? /\/ns\/([^/]+)\//.exec(principal)?.[1] : undefined;
    const ep = ctx.endpoint?.endpoint;
    const sw = ctx.in.sourceWorkload;
    const u = (v: string | undefined): string => (v === undefined || v === '' ? 'unknown' : v);
    const labels: Record<IstioHttpLabel, string> = {
      reporter: 'waypoint',
      source_workload: u(sw?.workload), source_workload_namespace: u(sw?.namespace ?? srcNs), source_principal: u(principal),
      source_app: u(sw?.canonicalService), source_version: u(sw?.canonicalRevision), source_cluster: u(sw?.cluster),
      source_canonical_service: u(sw?.canonicalService), source_canonical_revision: u(sw?.canonicalRevision),
      destination_workload: u(ep?.workload), destination_workload_namespace: u(ep?.namespace), destination_principal: u(ep?.principal),
      destination_app: u(ep?.labels.app), destination_version: u(ep?.labels.version),
      destination_service: svc.hostname, destination_service_name: svc.hostname.split('.')[0] ?? svc.hostname, destination_service_namespace: svc.namespace,
      destination_cluster: d.clusterId,
      destination_canonical_service: u(ep?.labels['service.istio.io/canonical-name'] ?? ep?.labels.app), destination_canonical_revision: u(ep?.labels['service.istio.io/canonical-revision'] ?? ep?.labels.version),
      request_protocol: ctx.grpc ? 'grpc' : 'http',
      response_code: String(ctx.status),
      grpc_response_status: ctx.grpc && ctx.grpcStatus !== undefined ? String(ctx.grpcStatus) : '',
      response_flags: ctx.flags.length > 0 ? [...ctx.flags].sort().join(',') : '-',
      connection_security_policy: ctx.in.mtls ? 'mutual_tls' : 'unknown',
    };
    const durationMs = d.clock.now() - ctx.start;
    const record: RequestRecord = {
      labels, method: ctx.in.method, path: ctx.in.path, authority: ctx.in.authority, route: ctx.route?.name ?? '-',
      upstream: ep ? `${ep.address}:${ep.port}` : '-', durationMs, requestBytes: ctx.in.body.size, responseBytes: ctx.responseBytes,
      attempts: ctx.attempts, traceId: ctx.span.traceId, requestId: ctx.id, sourceAddress: ctx.in.sourceAddress,
      userAgent: ctx.in.headers['user-agent'] ?? '-',
      ...(ctx.authz?.policy ? { authzPolicy: ctx.authz.policy } : {}), ...(ctx.error ? { error: ctx.error } : {}),
    };
    try {
      d.telemetry.record(record);
    } catch (err) {
      d.logger.warn({ err }, 'recording request telemetry failed');
    }
    if (d.tracer.recording) {
      ctx.span.end({
        'http.response.status_code': ctx.status, 'upstream_cluster': ctx.cluster?.config.name ?? '', 'response_flags': labels.response_flags,
        'istio.canonical_service': labels.destination_canonical_service, 'guid:x-request-id': ctx.id,
        ...(ctx.grpc && ctx.grpcStatus !== undefined ? { 'rpc.grpc.status_code': ctx.grpcStatus } : {}),
      }, ctx.status >= 500 || ctx.status === 0);
    }
    for (const p of d.plugins) {
      try {
        p.onLog?.(record);
      } catch (err) {
        d.logger.warn({ err, plugin: p.name }, 'plugin onLog failed');
      }
    }
  }

  // ------------------------------------------------------------ helpers

  #mirror(ctx: Ctx, clusterName: string): void {
    const d = this.#d;
    const cluster = d.cluster(clusterName);
    const ep = cluster?.pick({ headers: ctx.in.headers, sourceIp: ctx.in.sourceAddress, query: new URLSearchParams() });
    if (!cluster || !ep) return;
    const [host, port] = ctx.up.authority.split(':');
    const authority = `${host}-shadow${port ? `:${port}` : ''}`;
    const req = { method: ctx.up.method, path: ctx.up.path, authority, headers: { ...ctx.up.headers } };
    // the copy goes out once the client's body is complete (and was small enough to keep)
    void ctx.in.body.whenEnded().then(() => {
      const buf = ctx.in.body.buffered();
      if (!buf) return;
      const ctl = new Abort();
      const timer = d.clock.setTimeout(() => ctl.abort(), d.mirrorTimeoutMs);
      d.pool
        .request(ep.endpoint, cluster.config.protocol, { ...req, body: RequestBody.of(buf), signal: ctl }, cluster.config.connectionPool.maxRequestsPerConnection)
        .then((r) => {
          r.body.on('error', () => undefined);
          r.body.once('end', () => timer.cancel());
          r.discard();
        }, () => timer.cancel());
    });
  }

  #sleep(ms: number, signal: AbortLike): Promise<void> {
    if (ms <= 0 || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const t = this.#d.clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        t.cancel();
        resolve();
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** Retry budget (percent of active + pending, with a floor) and the cluster's maxRetries circuit breaker. */
function retryAllowed(cluster: ClusterState, policy: RouteConfig['retries']): boolean {
  const budget = policy.budget ? Math.max(policy.budget.minRetryConcurrency, (policy.budget.percent / 100) * (cluster.active + cluster.pending)) : Infinity;
  return cluster.activeRetries < Math.min(budget, cluster.config.connectionPool.maxRetries);
}

function grpcHeaders(code: number, message: string): Record<string, string> {
  return { 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) };
}

function grpcStatusOf(h: Record<string, string | string[] | undefined>): number | undefined {
  const v = h['grpc-status'];
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || !/^\d+$/.test(s)) return undefined;
  return Number(s);
}

function hasGrpcCondition(on: ReadonlySet<RetryCondition>): boolean {
  return Object.keys(GRPC_RETRY).some((c) => on.has(c as RetryCondition));
}

/** Envoy retry-on for failures before a response. */
export function retriableFailure(kind: WaypointUpstreamError['kind'], on: ReadonlySet<RetryCondition>): boolean {
  switch (kind) {
    case 'connect_failure': return on.has('connect-failure') || on.has('5xx') || on.has('gateway-error') || on.has('reset');
    case 'refused_stream': return on.has('refused-stream') || on.has('5xx') || on.has('reset');
    case 'timeout': return on.has('5xx') || on.has('gateway-error') || on.has('reset');
    case 'reset': return on.has('reset') || on.has('5xx');
  }
}

/** Envoy retry-on for a response (HTTP status and, for gRPC, grpc-status). */
export function retriableResponse(status: number, grpcStatus: number | undefined, on: ReadonlySet<RetryCondition>, codes: ReadonlySet<number>): boolean {
  if (on.has('5xx') && status >= 500) return true;
  if (on.has('gateway-error') && (status === 502 || status === 503 || status === 504)) return true;
  if (on.has('retriable-4xx') && status === 409) return true;
  if (on.has('retriable-status-codes') && codes.has(status)) return true;
  if (grpcStatus !== undefined) {
    for (const [cond, code] of Object.entries(GRPC_RETRY)) if (code === grpcStatus && on.has(cond as RetryCondition)) return true;
  }
  return false;
}

/**
 * Reads a whole (small) response so its trailers can be inspected. When it is
 * larger than `max`, the bytes read so far and the rest are streamed on and
 * the status stays unknown (undefined trailers check).
 */
async function bufferResponse(resp: UpstreamResponse, max: number): Promise<{ resp: UpstreamResponse; complete: boolean }> {
  const it = resp.body[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      chunks.push(b);
      n += b.length;
      if (n > max) {
        async function* rest(): AsyncGenerator<Buffer> {
          yield* chunks;
          for (;;) {
            const x = await it.next();
            if (x.done) return;
            yield Buffer.isBuffer(x.value) ? x.value : Buffer.from(x.value);
          }
        }
        return { resp: { ...resp, body: Readable.from(rest()), trailers: resp.trailers, discard: () => resp.discard() }, complete: false };
      }
    }
  } catch {
    // the upstream reset mid-body: pass on what arrived; the sink sees a short body
  }
  const trailers = await resp.trailers;
  return { resp: { status: resp.status, headers: resp.headers, body: Readable.from([Buffer.concat(chunks)]), trailers: Promise.resolve(trailers), discard: () => undefined }, complete: true };
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (!done) {
      done = true;
      fn();
    }
  };
}

export { GRPC_CODES };
