/**
 * Config issues: what is wrong with one resource (or one YAML file), said so
 * the user can fix it: the file, the kind, namespace/name and the field.
 * Rendered like
 *   authz.yaml: AuthorizationPolicy default/deny-all: spec.action: must be one of ALLOW, DENY, AUDIT, CUSTOM; got 'BLOCK'
 * An invalid resource is dropped; everything else keeps being served.
 *
 * FieldReader is the small toolkit the per-kind validators (kinds.ts) use:
 * each accessor checks one field and throws InvalidField naming it.
 */
import { isIP } from 'node:net';

export interface ConfigIssue {
  /** The manifest file, when the resource came from one. */
  readonly file?: string;
  /** Kind (e.g. `AuthorizationPolicy`); empty for a file-level problem such as bad YAML. */
  readonly kind: string;
  /** Empty for cluster-scoped kinds or file-level problems. */
  readonly namespace: string;
  readonly name: string;
  /** The offending field path (`spec.action`), or the document for file-level problems (`document 2`). */
  readonly field: string;
  readonly message: string;
}

/** The one-line form shown in logs, `ambit control-plane status` and tests. */
export function formatIssue(i: ConfigIssue): string {
  const parts: string[] = [];
  if (i.file !== undefined && i.file !== '') parts.push(i.file);
  if (i.kind !== '') parts.push(`${i.kind} ${i.namespace !== '' ? `${i.namespace}/` : ''}${i.name !== '' ? i.name : '(unnamed)'}`);
  if (i.field !== '') parts.push(i.field);
  parts.push(i.message);
  return parts.join(': ');
}

/** Thrown by FieldReader; turned into a ConfigIssue by the kind table. */
export class InvalidField extends Error {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const show = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : JSON.stringify(v) ?? String(v));

/** Reads and checks fields of one object; `path` prefixes every field name (`spec.rules[0]`). */
export class FieldReader {
  constructor(
    readonly obj: Obj,
    readonly path: string,
  ) {}

  at(key: string): string {
    return this.path === '' ? key : `${this.path}.${key}`;
  }

  fail(key: string, problem: string): never {
    throw new InvalidField(this.at(key), problem);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  optString(key: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') this.fail(key, `must be a string; got ${show(v)}`);
    return v;
  }

  string(key: string, fallback?: string): string {
    const v = this.optString(key) ?? fallback;
    if (v === undefined || v === '') this.fail(key, 'is required');
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') this.fail(key, `must be true or false; got ${show(v)}`);
    return v;
  }

  optInt(key: string, min: number, max: number): number | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(key, `must be an integer from ${min} to ${max}; got ${show(v)}`);
    return v;
  }

  port(key: string): number {
    const v = this.optInt(key, 1, 65535);
    if (v === undefined) this.fail(key, 'is required');
    return v;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
    const v = this.obj[key];
    if ((v === undefined || v === null) && fallback !== undefined) return fallback;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) this.fail(key, `must be one of ${allowed.join(', ')}; got ${show(v)}`);
    return v as T;
  }

  /** A string-to-string map such as labels; undefined when absent. */
  optStringMap(key: string): Record<string, string> | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (!isObj(v)) this.fail(key, 'must be a map of strings');
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(v)) {
      if (typeof x !== 'string') this.fail(`${key}.${k}`, `must be a string (quote it in YAML); got ${show(x)}`);
      out[k] = x;
    }
    return out;
  }

  stringMap(key: string): Record<string, string> {
    return this.optStringMap(key) ?? {};
  }

  strings(key: string): string[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) this.fail(key, 'must be a list of strings');
    return v.map((x: unknown, i) => {
      if (typeof x !== 'string') this.fail(`${key}[${i}]`, `must be a string; got ${show(x)}`);
      return x;
    });
  }

  /** A nested mapping as a reader; an empty one when absent. */
  child(key: string, required = false): FieldReader {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (required) this.fail(key, 'is required');
      return new FieldReader({}, this.at(key));
    }
    if (!isObj(v)) this.fail(key, 'must be a mapping');
    return new FieldReader(v, this.at(key));
  }

  /** A list of mappings, each as a reader (`spec.rules[2]`). */
  list(key: string): FieldReader[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) this.fail(key, 'must be a list');
    return v.map((x: unknown, i) => {
      if (!isObj(x)) this.fail(`${key}[${i}]`, 'must be a mapping');
      return new FieldReader(x, this.at(`${key}[${i}]`));
    });
  }

  ips(key: string): string[] {
    return this.strings(key).map((ip, i) => {
      if (isIP(ip) === 0) this.fail(`${key}[${i}]`, `must be an IP address; got '${ip}'`);
      return ip;
    });
  }

  /** A finite number (YAML int or float) from min to max; undefined when absent. */
  optNumber(key: string, min: number, max: number): number | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) this.fail(key, `must be a number from ${min} to ${max}; got ${show(v)}`);
    return v;
  }

  /**
   * A duration as Kubernetes/Istio write them (`10s`, `1.5s`, `250ms`,
   * `1m30s`, `1h`; Go time.ParseDuration units), in milliseconds;
   * undefined when absent.
   */
  optDurationMs(key: string): number | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    const ms = typeof v === 'string' ? parseDurationMs(v) : undefined;
    if (ms === undefined) this.fail(key, `must be a duration such as '10s', '1.5s', '250ms' or '1m30s'; got ${show(v)}`);
    return ms;
  }

  /** A regular expression (RE2 syntax as far as JavaScript shares it), checked to compile. */
  optRegex(key: string): string | undefined {
    const v = this.optString(key);
    if (v === undefined) return undefined;
    try {
      new RegExp(v);
    } catch (err) {
      this.fail(key, `is not a valid regular expression (${(err as Error).message}); got ${show(v)}`);
    }
    return v;
  }

  /** IPs or CIDRs (`10.0.0.0/8`, `10.1.2.3`). */
  cidrs(key: string): string[] {
    return this.strings(key).map((c, i) => {
      if (!isCidr(c)) this.fail(`${key}[${i}]`, `must be an IP address or CIDR; got '${c}'`);
      return c;
    });
  }
}

export function isCidr(c: string): boolean {
  const [ip, len, extra] = c.split('/');
  if (ip === undefined || extra !== undefined) return false;
  const fam = isIP(ip);
  if (fam === 0) return false;
  if (len === undefined) return true;
  if (!/^\d{1,3}$/.test(len)) return false;
  return Number(len) <= (fam === 4 ? 32 : 128);
}

const DURATION_UNITS_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, 'µs': 0.001, ns: 0.000001 };

/** Go-style duration (`1h2m3.5s`, `250ms`) in milliseconds; undefined if malformed. */
export function parseDurationMs(text: string): number | undefined {
  const t = text.trim();
  if (t === '' || t === '0') return t === '0' ? 0 : undefined;
  const re = /(\d+(?:\.\d+)?|\.\d+)(h|ms|m|s|us|µs|ns)/y;
  let total = 0;
  let at = 0;
  while (at < t.length) {
    re.lastIndex = at;
    const m = re.exec(t);
    if (!m) return undefined;
    total += Number(m[1]) * (DURATION_UNITS_MS[m[2] as string] as number);
    at = re.lastIndex;
  }
  return Math.round(total * 1000) / 1000;
}
