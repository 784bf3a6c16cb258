/**
 * install / remove / status of the in-pod capture rules in one netns.
 *
 * - install: policy routing (ip rule 32764 + table 100 local route), then the
 *   rules in ONE transaction (nft -f - or iptables-restore --noflush) that
 *   replaces whatever of ours was there: running it twice is a no-op change.
 *   Leftovers of the other backend are removed so traffic is captured once.
 * - remove: deletes our table/chains, the ip rule and the route; no error
 *   when nothing is there.
 * - status: what is installed and whether it equals what install would write.
 */
import { INPOD_MASK, NFT_TABLE, type Backend, type RuleOptions } from './constants.js';
import { defaultDeps, NetnsExec, requireBinary, resolveNetns, type RedirectDeps, type RunResult } from './exec.js';
import { RedirectBinaryMissingError } from './errors.js';
import { buildIptablesRestore, canonicalLines, iptablesDesired, IPT_TABLES, parseIptablesSave, type IptState } from './iptables-rules.js';
import { buildNftInstall, buildNftRemove, buildNftTable, normalizeNftListing } from './nft-rules.js';
import { ipRouteDelArgs, ipRouteReplaceArgs, ipRouteShowArgs, ipRuleAddArgs, ipRuleDelArgs, ipRuleShowArgs, isOurIpRule, isOurRoute } from './route-rules.js';

export interface RedirectOptions extends RuleOptions {
  /** Default: nftables when `nft` is installed, else iptables. */
  backend?: Backend;
}

export interface InstallResult {
  netns: string;
  backend: Backend;
  dns: boolean;
}

export interface RemoveResult {
  netns: string;
  /** True if anything of ours was there. */
  removed: boolean;
}

export interface RedirectStatus {
  netns: string;
  backend: Backend;
  /** Our nft table / iptables chains exist. */
  rules: boolean;
  /** DNS capture rules are among them. */
  dns: boolean;
  ipRule: boolean;
  route: boolean;
  /** rules, ip rule and route are all there. */
  installed: boolean;
  /** installed, and exactly what install(netns, opts) would write. */
  matches: boolean;
  /** Human-readable differences from the expected state (empty when matches). */
  differences: string[];
}

/** nftables unless asked otherwise or `nft` is missing (then iptables, if present). */
export function selectBackend(requested: Backend | undefined, deps: Pick<RedirectDeps, 'which'>): Backend {
  if (requested === 'nftables') {
    requireBinary(deps as RedirectDeps, 'nft');
    return 'nftables';
  }
  if (requested === 'iptables') {
    requireBinary(deps as RedirectDeps, 'iptables-restore');
    requireBinary(deps as RedirectDeps, 'iptables-save');
    return 'iptables';
  }
  if (deps.which('nft') !== undefined) return 'nftables';
  if (deps.which('iptables-restore') !== undefined && deps.which('iptables-save') !== undefined) return 'iptables';
  throw new RedirectBinaryMissingError('nft', 'nft not found (and no iptables-restore to fall back to); install the nftables package');
}

function prepare(netns: string, deps: RedirectDeps): { ns: NetnsExec; ip: string } {
  const ns = new NetnsExec(resolveNetns(netns), deps);
  const ip = requireBinary(deps, 'ip');
  ns.checkExists();
  return { ns, ip };
}

const noSuchTable = (r: RunResult): boolean => /no such file or directory|does not exist/i.test(r.stderr);

function parseJsonArray(text: string): Array<Record<string, unknown>> {
  const t = text.trim();
  if (t === '' || t === '[') return [];
  const v = JSON.parse(t) as unknown;
  return Array.isArray(v) ? (v as Array<Record<string, unknown>>) : [];
}

async function readIpRules(ns: NetnsExec, ip: string): Promise<Array<Record<string, unknown>>> {
  return parseJsonArray((await ns.run(ip, ipRuleShowArgs())).stdout);
}

async function readRoutes(ns: NetnsExec, ip: string): Promise<Array<Record<string, unknown>>> {
  // An empty table 100 does not exist: `ip route show table 100` exits 2.
  return parseJsonArray((await ns.run(ip, ipRouteShowArgs(), { accept: noSuchTable })).stdout);
}

async function installRouting(ns: NetnsExec, ip: string): Promise<void> {
  const rules = await readIpRules(ns, ip);
  if (!(rules.length === 1 && rules[0] && isOurIpRule(rules[0]))) {
    for (let i = 0; i < rules.length; i++) await ns.run(ip, ipRuleDelArgs());
    await ns.run(ip, ipRuleAddArgs());
  }
  await ns.run(ip, ipRouteReplaceArgs());
}

async function removeRouting(ns: NetnsExec, ip: string): Promise<boolean> {
  const rules = (await readIpRules(ns, ip)).filter(isOurIpRule);
  for (let i = 0; i < rules.length; i++) await ns.run(ip, ipRuleDelArgs());
  const routes = (await readRoutes(ns, ip)).filter(isOurRoute);
  if (routes.length > 0) await ns.run(ip, ipRouteDelArgs(), { accept: noSuchTable });
  return rules.length > 0 || routes.length > 0;
}

async function nftListing(ns: NetnsExec, nft: string): Promise<string | undefined> {
  const r = await ns.run(nft, ['list', 'table', 'inet', NFT_TABLE], { accept: noSuchTable });
  return r.code === 0 ? r.stdout : undefined;
}

async function iptState(ns: NetnsExec, save: string): Promise<IptState> {
  return parseIptablesSave((await ns.run(save, [])).stdout);
}

const iptHasAny = (s: IptState): boolean => IPT_TABLES.some((t) => s[t].chains.length > 0 || s[t].lines.length > 0);

async function removeNft(ns: NetnsExec, nft: string): Promise<boolean> {
  const present = (await nftListing(ns, nft)) !== undefined;
  if (present) await ns.run(nft, ['-f', '-'], { input: buildNftRemove() });
  return present;
}

async function removeIpt(ns: NetnsExec, deps: RedirectDeps): Promise<boolean> {
  const state = await iptState(ns, requireBinary(deps, 'iptables-save'));
  if (!iptHasAny(state)) return false;
  await ns.run(requireBinary(deps, 'iptables-restore'), ['--noflush'], { input: buildIptablesRestore(null, state) });
  return true;
}

export async function install(netns: string, opts: RedirectOptions = {}, deps: RedirectDeps = defaultDeps): Promise<InstallResult> {
  const backend = selectBackend(opts.backend, deps);
  const { ns, ip } = prepare(netns, deps);
  const rules: RuleOptions = { dns: opts.dns === true };
  await installRouting(ns, ip);
  if (backend === 'nftables') {
    await ns.run(requireBinary(deps, 'nft'), ['-f', '-'], { input: buildNftInstall(rules) });
    if (deps.which('iptables-save') !== undefined && deps.which('iptables-restore') !== undefined) await removeIpt(ns, deps);
  } else {
    const state = await iptState(ns, requireBinary(deps, 'iptables-save'));
    await ns.run(requireBinary(deps, 'iptables-restore'), ['--noflush'], { input: buildIptablesRestore(rules, state) });
    const nft = deps.which('nft');
    if (nft !== undefined) await removeNft(ns, nft);
  }
  return { netns, backend, dns: rules.dns === true };
}

/** Removes everything of ours (both backends unless one is named). Idempotent. */
export async function remove(netns: string, opts: Pick<RedirectOptions, 'backend'> = {}, deps: RedirectDeps = defaultDeps): Promise<RemoveResult> {
  if (opts.backend !== undefined) selectBackend(opts.backend, deps);
  const { ns, ip } = prepare(netns, deps);
  let removed = false;
  const nft = deps.which('nft');
  if (opts.backend !== 'iptables' && nft !== undefined) removed = (await removeNft(ns, nft)) || removed;
  if (opts.backend !== 'nftables' && deps.which('iptables-save') !== undefined && deps.which('iptables-restore') !== undefined) {
    removed = (await removeIpt(ns, deps)) || removed;
  }
  removed = (await removeRouting(ns, ip)) || removed;
  return { netns, removed };
}

/** Line-level differences: expected lines missing, then unexpected lines present. */
function diffLines(expected: readonly string[], actual: readonly string[], what: string): string[] {
  const out: string[] = [];
  const same = expected.length === actual.length && expected.every((l, i) => l === actual[i]);
  if (same) return out;
  for (const l of expected) if (!actual.includes(l)) out.push(`${what}: missing '${l}'`);
  for (const l of actual) if (!expected.includes(l)) out.push(`${what}: unexpected '${l}'`);
  if (out.length === 0) out.push(`${what}: rules are in a different order`);
  return out;
}

export async function status(netns: string, opts: RedirectOptions = {}, deps: RedirectDeps = defaultDeps): Promise<RedirectStatus> {
  const backend = selectBackend(opts.backend, deps);
  const { ns, ip } = prepare(netns, deps);
  const want: RuleOptions = { dns: opts.dns === true };
  const differences: string[] = [];
  let rules: boolean;
  let dns: boolean;
  if (backend === 'nftables') {
    const listing = await nftListing(ns, requireBinary(deps, 'nft'));
    rules = listing !== undefined;
    dns = listing !== undefined && /chain raw-output/.test(listing);
    if (listing === undefined) differences.push(`nftables: table inet ${NFT_TABLE} is missing`);
    else differences.push(...diffLines(normalizeNftListing(buildNftTable(want)), normalizeNftListing(listing), 'nftables'));
  } else {
    const state = await iptState(ns, requireBinary(deps, 'iptables-save'));
    rules = iptHasAny(state);
    dns = state.raw.lines.length > 0;
    const desired = iptablesDesired(want);
    if (!rules) differences.push('iptables: AMBIT_PRERT/AMBIT_OUTPUT chains are missing');
    else for (const t of IPT_TABLES) differences.push(...diffLines(canonicalLines(desired[t]), canonicalLines(state[t].lines), `iptables ${t}`));
  }
  const ipRules = await readIpRules(ns, ip);
  const ipRule = ipRules.some(isOurIpRule);
  if (!ipRule) differences.push(`ip rule: missing 'fwmark 0x111/0x${INPOD_MASK.toString(16)} pref 32764 lookup 100'`);
  else if (ipRules.length > 1) differences.push('ip rule: more than one rule at pref 32764');
  const route = (await readRoutes(ns, ip)).some(isOurRoute);
  if (!route) differences.push("route: missing 'local 0.0.0.0/0 dev lo table 100'");
  const installed = rules && ipRule && route;
  return { netns, backend, rules, dns, ipRule, route, installed, matches: installed && differences.length === 0, differences };
}
