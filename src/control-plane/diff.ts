/**
 * From translations to Delta xDS updates: each resource is encoded once and
 * versioned by a hash of its bytes, so a push sends only resources whose
 * bytes changed and removes the names that disappeared. Pure; the gRPC
 * server (server.ts) owns subscriptions and streams. Waypoint L7 configs
 * (ambit.l7.v1.L7Config, one per waypoint) keep their previous encoding
 * when the new one is rejected or does not encode.
 */
import { createHash } from 'node:crypto';
import { encodeAddress, encodeAuthorization } from '../workload-api/codec.js';
import { encodeL7Config } from '../waypoint/l7-codec.js';
import { WorkloadApiEncodeError } from '../workload-api/errors.js';
import type { Translation } from './translate.js';
import type { L7Translation } from './translate-l7.js';

export interface EncodedResource {
  readonly name: string;
  /** Short content hash; the Delta xDS resource version. */
  readonly version: string;
  readonly bytes: Buffer;
}

export interface EncodedTranslation {
  /** istio.workload.Address by resource name. */
  readonly addresses: ReadonlyMap<string, EncodedResource>;
  /** istio.security.Authorization by `namespace/name`. */
  readonly authorizations: ReadonlyMap<string, EncodedResource>;
  /** Resources left out because they failed the agent-side checks (a translation bug), with the reason. */
  readonly errors: readonly string[];
}

export interface ResourceDiff {
  readonly upserts: EncodedResource[];
  readonly removals: string[];
}

function versionOf(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

export const EMPTY_ENCODED: EncodedTranslation = { addresses: new Map(), authorizations: new Map(), errors: [] };

/**
 * Encodes every resource. One that would fail the agent-side checks is left
 * out and reported in `errors` (it would only be NACKed), never thrown.
 */
export function encodeTranslation(t: Translation): EncodedTranslation {
  const errors: string[] = [];
  const encodeAll = <T>(from: ReadonlyMap<string, T>, encode: (v: T) => Buffer): Map<string, EncodedResource> => {
    const out = new Map<string, EncodedResource>();
    for (const [name, v] of from) {
      try {
        const bytes = encode(v);
        out.set(name, { name, version: versionOf(bytes), bytes });
      } catch (err) {
        if (!(err instanceof WorkloadApiEncodeError)) throw err;
        errors.push(`${name}: ${err.reason}`);
      }
    }
    return out;
  };
  return { addresses: encodeAll(t.addresses, encodeAddress), authorizations: encodeAll(t.authorizations, encodeAuthorization), errors };
}

/** What changed from `prev` to `next` for one resource type (sorted by name). */
export function diffResources(prev: ReadonlyMap<string, EncodedResource>, next: ReadonlyMap<string, EncodedResource>): ResourceDiff {
  const upserts = [...next.values()].filter((r) => prev.get(r.name)?.version !== r.version).sort((a, b) => (a.name < b.name ? -1 : 1));
  const removals = [...prev.keys()].filter((n) => !next.has(n)).sort();
  return { upserts, removals };
}

export interface EncodedL7 {
  /** ambit.l7.v1.L7Config by waypoint `<ns>/<name>`. */
  readonly resources: ReadonlyMap<string, EncodedResource>;
  /** Waypoints whose new config was not usable (the previous one, if any, is kept), with the reason. */
  readonly errors: readonly string[];
}

/**
 * Encodes each waypoint's config. A waypoint whose config was rejected by
 * translation, or fails to encode, keeps its resource from `previous` (the
 * last good config stays served); waypoints that no longer exist drop out.
 */
export function encodeL7Translation(l7: L7Translation, previous: ReadonlyMap<string, EncodedResource>): EncodedL7 {
  const resources = new Map<string, EncodedResource>();
  const errors: string[] = [];
  const keep = (name: string): void => {
    const old = previous.get(name);
    if (old) resources.set(name, old);
  };
  for (const [name, reason] of l7.rejected) {
    errors.push(`${name}: ${reason}`);
    keep(name);
  }
  for (const [name, input] of l7.configs) {
    try {
      const bytes = Buffer.from(encodeL7Config(input));
      resources.set(name, { name, version: versionOf(bytes), bytes });
    } catch (err) {
      errors.push(`${name}: ${err instanceof Error ? err.message : String(err)}`);
      keep(name);
    }
  }
  return { resources: new Map([...resources].sort(([a], [b]) => (a < b ? -1 : 1))), errors };
}
