/**
 * The agent's view of the workload API: workloads by uid and by network/IP,
 * services by `namespace/hostname` and by VIP (network/IP), authorization
 * policies by `namespace/name`, and service endpoints. Updates come as Delta
 * xDS batches; each resource is validated on its own, invalid ones are
 * rejected with a reason (the NACK text) and the valid ones of the same batch
 * are applied. Everything held is plain data (snapshot() is structured-clone
 * safe and fromSnapshot() rebuilds a store), so the state can be copied to
 * worker threads; there are no sockets or timers here.
 */
import { EventEmitter } from 'node:events';
import { decodeAddress, decodeAuthorization, validateAddress, validateAuthorization, type DecodeResult } from './codec.js';
import { authorizationResourceName, bytesToIp, networkIpKey, serviceResourceName } from './ip.js';
import type { Address, Authorization, Service, Workload } from './types.js';

/** One upsert: the xDS resource name and either the encoded bytes or an already-decoded value. */
export interface ResourceUpsert<T> {
  readonly name: string;
  readonly resource: Uint8Array | T;
}

export interface ResourceBatch<T> {
  readonly upserts?: readonly ResourceUpsert<T>[];
  /** Resource names to remove; unknown names are ignored. */
  readonly removals?: readonly string[];
}

export interface Rejection {
  readonly name: string;
  readonly reason: string;
}

export interface ApplyResult {
  readonly rejected: Rejection[];
}

export interface StoreChange {
  readonly type: 'addresses' | 'authorizations';
  readonly upserted: readonly string[];
  readonly removed: readonly string[];
}

export interface WorkloadStoreSnapshot {
  readonly workloads: Workload[];
  readonly services: Service[];
  readonly policies: Authorization[];
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

function ipKeys(network: string | undefined, addrs: readonly Uint8Array[]): string[] {
  const out: string[] = [];
  for (const a of addrs) {
    const ip = bytesToIp(a);
    if (ip !== undefined) out.push(networkIpKey(network ?? '', ip));
  }
  return out;
}

export class WorkloadStore extends EventEmitter<{ change: [StoreChange] }> {
  readonly #workloads = new Map<string, Workload>();
  readonly #workloadByIp = new Map<string, string>();
  readonly #services = new Map<string, Service>();
  readonly #serviceByVip = new Map<string, string>();
  readonly #endpoints = new Map<string, Set<string>>();
  readonly #policies = new Map<string, Authorization>();
  /** xDS resource name -> store key, for names that differ from the uid / namespace/hostname. */
  readonly #names = new Map<string, string>();

  /** Applies a batch of Address resources (workloads and services). */
  applyAddresses(batch: ResourceBatch<Address>): ApplyResult {
    const rejected: Rejection[] = [];
    const upserted: string[] = [];
    const removed: string[] = [];
    for (const u of batch.upserts ?? []) {
      const r: DecodeResult<Address> = isBytes(u.resource) ? decodeAddress(u.resource) : check(u.resource, validateAddress);
      if (!r.ok) {
        rejected.push({ name: u.name, reason: r.reason });
        continue;
      }
      if (r.value.type === 'workload') this.#putWorkload(r.value.workload);
      else this.#putService(r.value.service);
      const key = r.value.type === 'workload' ? (r.value.workload.uid ?? '') : serviceResourceName(r.value.service);
      if (key !== u.name) this.#names.set(u.name, key);
      upserted.push(u.name);
    }
    for (const name of batch.removals ?? []) {
      const key = this.#names.get(name) ?? name;
      this.#names.delete(name);
      if (this.#removeWorkload(key) || this.#removeService(key)) removed.push(name);
    }
    if (upserted.length > 0 || removed.length > 0) this.emit('change', { type: 'addresses', upserted, removed });
    return { rejected };
  }

  /** Applies a batch of Authorization resources. */
  applyAuthorizations(batch: ResourceBatch<Authorization>): ApplyResult {
    const rejected: Rejection[] = [];
    const upserted: string[] = [];
    const removed: string[] = [];
    for (const u of batch.upserts ?? []) {
      const r = isBytes(u.resource) ? decodeAuthorization(u.resource) : check(u.resource, validateAuthorization);
      if (!r.ok) {
        rejected.push({ name: u.name, reason: r.reason });
        continue;
      }
      const key = authorizationResourceName(r.value);
      this.#policies.set(key, r.value);
      if (key !== u.name) this.#names.set(u.name, key);
      upserted.push(u.name);
    }
    for (const name of batch.removals ?? []) {
      const key = this.#names.get(name) ?? name;
      this.#names.delete(name);
      if (this.#policies.delete(key)) removed.push(name);
    }
    if (upserted.length > 0 || removed.length > 0) this.emit('change', { type: 'authorizations', upserted, removed });
    return { rejected };
  }

  getWorkload(uid: string): Workload | undefined {
    return this.#workloads.get(uid);
  }

  /** Looks a workload up by `network` and IP text; host-network workloads are never found this way. */
  workloadByIp(network: string, ip: string): Workload | undefined {
    const uid = this.#workloadByIp.get(networkIpKey(network, ip));
    return uid === undefined ? undefined : this.#workloads.get(uid);
  }

  /** By `namespace/hostname`. */
  getService(key: string): Service | undefined {
    return this.#services.get(key);
  }

  serviceByVip(network: string, ip: string): Service | undefined {
    const key = this.#serviceByVip.get(networkIpKey(network, ip));
    return key === undefined ? undefined : this.#services.get(key);
  }

  /** Workloads whose `services` map names this service (`namespace/hostname`). */
  endpointsOf(serviceKey: string): Workload[] {
    return [...(this.#endpoints.get(serviceKey) ?? [])].flatMap((uid) => this.#workloads.get(uid) ?? []);
  }

  /** By `namespace/name`. */
  getPolicy(key: string): Authorization | undefined {
    return this.#policies.get(key);
  }

  /** The policies that apply to a workload: GLOBAL ones, its namespace's NAMESPACE ones, and the selector ones it lists. */
  policiesFor(w: Workload): Authorization[] {
    const out: Authorization[] = [];
    for (const p of this.#policies.values()) {
      if (p.scope === 'GLOBAL' || (p.scope === 'NAMESPACE' && p.namespace === w.namespace)) out.push(p);
    }
    for (const key of w.authorizationPolicies ?? []) {
      const p = this.#policies.get(key);
      if (p && p.scope === 'WORKLOAD_SELECTOR') out.push(p);
    }
    return out;
  }

  get counts(): { workloads: number; services: number; policies: number } {
    return { workloads: this.#workloads.size, services: this.#services.size, policies: this.#policies.size };
  }

  /** A plain copy (structured-clone safe). */
  snapshot(): WorkloadStoreSnapshot {
    return { workloads: [...this.#workloads.values()], services: [...this.#services.values()], policies: [...this.#policies.values()] };
  }

  /** Rebuilds a store from snapshot() output (e.g. in a worker thread). Values are re-validated. */
  static fromSnapshot(s: WorkloadStoreSnapshot): WorkloadStore {
    const store = new WorkloadStore();
    store.applyAddresses({
      upserts: [
        ...s.workloads.map((w) => ({ name: w.uid ?? '', resource: { type: 'workload', workload: w } as Address })),
        ...s.services.map((sv) => ({ name: serviceResourceName(sv), resource: { type: 'service', service: sv } as Address })),
      ],
    });
    store.applyAuthorizations({ upserts: s.policies.map((p) => ({ name: authorizationResourceName(p), resource: p })) });
    return store;
  }

  #putWorkload(w: Workload): void {
    const uid = w.uid ?? '';
    this.#removeWorkload(uid);
    this.#workloads.set(uid, w);
    if (w.networkMode !== 'HOST_NETWORK') for (const k of ipKeys(w.network, w.addresses ?? [])) this.#workloadByIp.set(k, uid);
    for (const svc of Object.keys(w.services ?? {})) {
      let set = this.#endpoints.get(svc);
      if (!set) this.#endpoints.set(svc, (set = new Set()));
      set.add(uid);
    }
  }

  #removeWorkload(uid: string): boolean {
    const old = this.#workloads.get(uid);
    if (!old) return false;
    this.#workloads.delete(uid);
    for (const k of ipKeys(old.network, old.addresses ?? [])) if (this.#workloadByIp.get(k) === uid) this.#workloadByIp.delete(k);
    for (const svc of Object.keys(old.services ?? {})) {
      const set = this.#endpoints.get(svc);
      set?.delete(uid);
      if (set?.size === 0) this.#endpoints.delete(svc);
    }
    return true;
  }

  #putService(s: Service): void {
    const key = serviceResourceName(s);
    this.#removeService(key);
    this.#services.set(key, s);
    for (const a of s.addresses ?? []) {
      const ip = a.address ? bytesToIp(a.address) : undefined;
      if (ip !== undefined) this.#serviceByVip.set(networkIpKey(a.network ?? '', ip), key);
    }
  }

  #removeService(key: string): boolean {
    const old = this.#services.get(key);
    if (!old) return false;
    this.#services.delete(key);
    for (const a of old.addresses ?? []) {
      const ip = a.address ? bytesToIp(a.address) : undefined;
      if (ip === undefined) continue;
      const k = networkIpKey(a.network ?? '', ip);
      if (this.#serviceByVip.get(k) === key) this.#serviceByVip.delete(k);
    }
    return true;
  }
}

function check<T>(value: T, validate: (v: T) => string | undefined): DecodeResult<T> {
  const reason = validate(value);
  return reason === undefined ? { ok: true, value } : { ok: false, reason };
}
