/**
 * Trace context for one request: extract W3C `traceparent` (or B3, single
 * `b3` header or `x-b3-*`), start this hop's span as a child of it, and
 * inject both W3C and B3 headers upstream carrying our span id. With an OTLP
 * endpoint configured, one SERVER span per request is exported over
 * OTLP/HTTP (JSON) by @opentelemetry/exporter-trace-otlp-http with a batch
 * processor; without one, ids are still generated and propagated.
 */
import { randomFillSync } from 'node:crypto';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';

export interface IncomingTrace { readonly traceId: string; readonly parentSpanId: string; readonly sampled: boolean; readonly tracestate?: string }

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

/** The caller's trace context from traceparent, else B3; undefined when absent or malformed. */
export function extractTrace(h: Readonly<Record<string, string>>): IncomingTrace | undefined {
  const tp = h.traceparent;
  if (tp) {
    const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(tp.trim());
    if (m && m[1] !== 'ff' && !/^0+$/.test(m[2] as string) && !/^0+$/.test(m[3] as string)) {
      return { traceId: m[2] as string, parentSpanId: m[3] as string, sampled: (parseInt(m[4] as string, 16) & 1) === 1, ...(h.tracestate ? { tracestate: h.tracestate } : {}) };
    }
  }
  const b3 = h.b3;
  if (b3) {
    const [t, s, f] = b3.split('-');
    const traceId = t && t.length === 16 ? `0000000000000000${t}` : t;
    if (traceId && s && HEX32.test(traceId) && HEX16.test(s)) return { traceId, parentSpanId: s, sampled: f !== '0' };
  }
  const bt = h['x-b3-traceid'];
  const bs = h['x-b3-spanid'];
  if (bt && bs) {
    const traceId = bt.length === 16 ? `0000000000000000${bt}` : bt;
    if (HEX32.test(traceId) && HEX16.test(bs)) return { traceId, parentSpanId: bs, sampled: h['x-b3-sampled'] !== '0' };
  }
  return undefined;
}

/** Writes W3C and B3 (multi-header) context for our span; drops a stale single `b3`. */
export function injectTrace(h: Record<string, string>, traceId: string, spanId: string, parentSpanId: string | undefined, sampled: boolean): void {
  h.traceparent = `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
  delete h.b3;
  h['x-b3-traceid'] = traceId;
  h['x-b3-spanid'] = spanId;
  if (parentSpanId) h['x-b3-parentspanid'] = parentSpanId;
  else delete h['x-b3-parentspanid'];
  h['x-b3-sampled'] = sampled ? '1' : '0';
}

export interface ActiveSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly sampled: boolean;
  end(attrs: Attributes, error: boolean): void;
}

export interface TracingOptions {
  /** OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces. Unset = no export. */
  readonly otlpEndpoint?: string;
  readonly serviceName?: string;
  readonly exportTimeoutMs?: number;
  readonly scheduledDelayMs?: number;
}

// Trace and span ids for every request: one randomFillSync per 4 KiB instead
// of one per id (a per-request call showed up at ~3 % of the waypoint's CPU).
const RANDOM_POOL = Buffer.alloc(4096);
let randomOffset = RANDOM_POOL.length;
export function randomHex(bytes: number): string {
  if (randomOffset + bytes > RANDOM_POOL.length) {
    randomFillSync(RANDOM_POOL);
    randomOffset = 0;
  }
  const hex = RANDOM_POOL.toString('hex', randomOffset, randomOffset + bytes);
  randomOffset += bytes;
  return hex;
}

export class WaypointTracer {
  readonly #provider: BasicTracerProvider | undefined;
  readonly #tracer: Tracer | undefined;

  constructor(opts: TracingOptions = {}) {
    if (opts.otlpEndpoint) {
      const exporter = new OTLPTraceExporter({ url: opts.otlpEndpoint, timeoutMillis: opts.exportTimeoutMs ?? 10_000 });
      this.#provider = new BasicTracerProvider({
        resource: resourceFromAttributes({ 'service.name': opts.serviceName ?? 'ambit-waypoint' }),
        spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: opts.scheduledDelayMs ?? 1000 })],
      });
      this.#tracer = this.#provider.getTracer('ambit-waypoint');
    }
  }

  /** True when spans are exported (an OTLP endpoint is set); callers skip building names and attributes otherwise. */
  get recording(): boolean {
    return this.#tracer !== undefined;
  }

  start(name: string, incoming: IncomingTrace | undefined, attrs: Attributes): ActiveSpan {
    if (!this.#tracer) {
      const traceId = incoming?.traceId ?? randomHex(16);
      return { traceId, spanId: randomHex(8), ...(incoming ? { parentSpanId: incoming.parentSpanId } : {}), sampled: incoming?.sampled ?? true, end: () => undefined };
    }
    const ctx = incoming
      ? trace.setSpanContext(ROOT_CONTEXT, { traceId: incoming.traceId, spanId: incoming.parentSpanId, traceFlags: incoming.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE, isRemote: true })
      : ROOT_CONTEXT;
    const span: Span = this.#tracer.startSpan(name, { kind: SpanKind.SERVER, attributes: attrs }, ctx);
    const sc = span.spanContext();
    return {
      traceId: sc.traceId,
      spanId: sc.spanId,
      ...(incoming ? { parentSpanId: incoming.parentSpanId } : {}),
      sampled: (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED,
      end(endAttrs, error) {
        span.setAttributes(endAttrs);
        if (error) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      },
    };
  }

  async flush(): Promise<void> {
    await this.#provider?.forceFlush();
  }

  async shutdown(): Promise<void> {
    await this.#provider?.shutdown();
  }
}
