/**
 * The pure bookkeeping behind the delta xDS server, kept apart from gRPC so
 * it can be unit tested: a per-type resource store that reports which names
 * really changed (same version = unchanged), a per-stream subscription that
 * remembers what the client is believed to hold (name -> version) and
 * computes the next delta from it, and a nonce source.
 *
 * "What the client holds" starts from initial_resource_versions and is
 * updated when a response is sent, not when it is ACKed: a NACKed version is
 * therefore not resent; the next change of that resource is.
 */
import { randomBytes } from 'node:crypto';
import type { XdsResource } from './codec.js';

export const WILDCARD = '*';

/** The current resources of one type URL. */
export class ResourceStore {
  readonly typeUrl: string;
  readonly #resources = new Map<string, XdsResource>();
  #version = 0;

  constructor(typeUrl: string) {
    this.typeUrl = typeUrl;
  }

  /** Bumped whenever a change set changes anything; sent as system_version_info. */
  get systemVersion(): string {
    return String(this.#version);
  }

  get size(): number {
    return this.#resources.size;
  }

  get(name: string): XdsResource | undefined {
    return this.#resources.get(name);
  }

  names(): IterableIterator<string> {
    return this.#resources.keys();
  }

  /** Applies upserts then removals; returns the names whose presence or version changed. */
  update(upserts: readonly XdsResource[], removals: readonly string[]): string[] {
    const changed = new Set<string>();
    for (const r of upserts) {
      const cur = this.#resources.get(r.name);
      if (cur && cur.version === r.version) continue;
      this.#resources.set(r.name, { name: r.name, version: r.version, body: r.body });
      changed.add(r.name);
    }
    for (const name of removals) {
      if (this.#resources.delete(name)) changed.add(name);
    }
    if (changed.size > 0) this.#version++;
    return [...changed];
  }

  /** Replaces the whole set; returns the changed names (upserted with a new version, added or removed). */
  replaceAll(resources: readonly XdsResource[]): string[] {
    const keep = new Set(resources.map((r) => r.name));
    const removals = [...this.#resources.keys()].filter((n) => !keep.has(n));
    return this.update(resources, removals);
  }
}

export interface Delta {
  upserts: XdsResource[];
  removals: string[];
}

/** One stream's subscription to one type URL. */
export class Subscription {
  wildcard = false;
  readonly names = new Set<string>();
  /** name -> version the client is believed to hold. */
  readonly known = new Map<string, string>();

  /**
   * Applies a request's subscribe/unsubscribe lists. On the first request an
   * empty subscribe list means wildcard; "*" subscribes/unsubscribes the
   * wildcard explicitly. Returns the names newly subscribed (for a targeted push).
   */
  applyRequest(subscribe: readonly string[], unsubscribe: readonly string[], first: boolean): string[] {
    const added: string[] = [];
    if (first && subscribe.length === 0) this.wildcard = true;
    for (const n of subscribe) {
      if (n === WILDCARD) this.wildcard = true;
      else if (!this.names.has(n)) {
        this.names.add(n);
        added.push(n);
      }
    }
    for (const n of unsubscribe) {
      if (n === WILDCARD) this.wildcard = false;
      else this.names.delete(n);
    }
    // Forget what the client held for names no longer subscribed (it drops them itself).
    for (const n of [...this.known.keys()]) if (!this.isSubscribed(n)) this.known.delete(n);
    return added;
  }

  /** Seeds `known` from initial_resource_versions (first request of a type on a new stream). */
  seed(initial: Readonly<Record<string, string>>): void {
    for (const [name, version] of Object.entries(initial)) this.known.set(name, version);
  }

  isSubscribed(name: string): boolean {
    return this.wildcard || this.names.has(name);
  }

  /**
   * The delta to send: among `candidates` (default: every name in the store
   * and every name the client holds), subscribed resources the client lacks
   * or holds at another version, and held names no longer in the store.
   */
  computeDelta(store: ResourceStore, candidates?: Iterable<string>): Delta {
    const names = candidates ? new Set(candidates) : new Set([...store.names(), ...this.known.keys()]);
    const upserts: XdsResource[] = [];
    const removals: string[] = [];
    for (const name of names) {
      const held = this.known.get(name);
      const cur = store.get(name);
      if (cur) {
        if (this.isSubscribed(name) && held !== cur.version) upserts.push(cur);
      } else if (held !== undefined) {
        removals.push(name);
      }
    }
    upserts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    removals.sort();
    return { upserts, removals };
  }

  /** Records a delta as sent: from now on the client is believed to hold exactly this. */
  markSent(delta: Delta): void {
    for (const r of delta.upserts) this.known.set(r.name, r.version);
    for (const n of delta.removals) this.known.delete(n);
  }
}

/** Unique nonces: a random per-process prefix and a counter. */
export class NonceSource {
  readonly #prefix: string;
  #counter = 0;

  constructor(prefix: string = randomBytes(4).toString('hex')) {
    this.#prefix = prefix;
  }

  next(): string {
    this.#counter++;
    return `${this.#prefix}-${this.#counter.toString(36)}`;
  }
}
