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
 *
 * IPv4 and IPv6: the nft table holds both families' rules (one transaction);
 * the iptables fallback runs iptables-restore then ip6tables-restore; routing
 * is `ip rule`/`ip route` and the same with `ip -6` (local ::/0). IPv6 counts
 * as enabled in the netns when lo has an IPv6 address (as istio-cni decides
 * for its ::/0 route); when it is disabled (net.ipv6.conf.*.disable_ipv6=1,
 * no IPv6 in the kernel, or lo still down) the IPv4 rules are still installed
 * and the IPv6 part is skipped with a note (result, status and optional
 * logger), not an error. Install again once lo is up to add IPv6.
 */
import type { Logger } from '../common/logger.js';
import { INPOD_MASK, NFT_TABLE, type Backend, type IpFamily, type RuleOptions } from './constants.js';
import { defaultDeps, NetnsExec, requireBinary, resolveNetns, type RedirectDeps, type RunResult } from './exec.js';
import { RedirectBinaryMissingError } from './errors.js';
import { buildIptablesRestore, canonicalLines, emptyIptState, iptablesDesired, IPT_TABLES, parseIptablesSave, type IptState } from './iptables-rules.js';
import { buildNftInstall, buildNftRemove, buildNftTable, normalizeNftListing } from './nft-rules.js';
import {
  ipRouteDelArgs,
  ipRouteReplaceArgs,
  ipRouteShowArgs,
  ipRuleAddArgs,
  ipRuleDelArgs,
  ipRuleShowArgs,
  isOurIpRule,
  isOurRoute,
  loHasIpv6,
  loIpv6AddrArgs,
} from './route-rules.js';

export interface RedirectOptions extends RuleOptions {
  /** Default: nftables when `nft` is installed, else iptables. */
  backend?: Backend;
  /** Gets the notes (e.g. "IPv6 skipped") at info level. */
  logger?: Pick<Logger, 'info'>;
}

export interface InstallResult {
  netns: string;
  backend: Backend;
  dns: boolean;
  /** IPv6 rules and routing were installed too (false: IPv6 is disabled in the netns, or ipv6: false). */
  ipv6: boolean;
  /** What was skipped and why; empty when everything was installed. */
  notes: string[];
}

export interface RedirectStatusV6 {
  /** IPv6 is enabled in the netns (lo has ::1) and was not turned off with ipv6: false. */
  enabled: boolean;
  /** Our IPv6 rules exist (ip6 lines in the nft table / our ip6tables chains). */
  rules: boolean;
  /** `ip -6 rule` 32764 fwmark 0x111/0xfff lookup 100. */
  ipRule: boolean;
  /** `local ::/0 dev lo table 100`. */
  route: boolean;
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
  /** The IPv6 half (ipRule/route/rules above are IPv4, `rules` for nft: the table exists). */
  ipv6: RedirectStatusV6;
  /** E.g. that IPv6 is disabled in the netns and only IPv4 is captured. */
  notes: string[];
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

/** Reads that may fail for IPv6 (no IPv6 in the kernel) are taken as "nothing there". */
const anyExit = (): boolean => true;

async function readIpRules(ns: NetnsExec, ip: string, family: IpFamily = 4, tolerant = false): Promise<Array<Record<string, unknown>>> {
  const r = await ns.run(ip, ipRuleShowArgs(family), tolerant ? { accept: anyExit } : {});
  return r.code === 0 ? parseJsonArray(r.stdout) : [];
}

async function readRoutes(ns: NetnsExec, ip: string, family: IpFamily = 4, tolerant = false): Promise<Array<Record<string, unknown>>> {
  // An empty IPv4 table 100 does not exist: `ip route show table 100` exits 2.
  const r = await ns.run(ip, ipRouteShowArgs(family), { accept: tolerant ? anyExit : noSuchTable });
  return r.code === 0 ? parseJsonArray(r.stdout) : [];
}

/** IPv6 is usable in the netns when lo has an IPv6 address (::1); a failing `ip -6` means no IPv6 at all. */
async function ipv6Enabled(ns: NetnsExec, ip: string): Promise<boolean> {
  const r = await ns.run(ip, loIpv6AddrArgs(), { accept: anyExit });
  return r.code === 0 && loHasIpv6(parseJsonArray(r.stdout));
}

// lo without ::1: disable_ipv6=1 (or no IPv6 in the kernel), or lo still down; either way the
// `local ::/0 dev lo` route cannot be added ("Nexthop device is not up" / "IPv6 is disabled on
// nexthop device"), which is also why istio-cni adds it only when lo has IPv6.
const V6_OFF_NOTE = 'IPv6 is disabled in this netns (no ::1 on lo: disable_ipv6=1, or lo is down): IPv6 rules and routing skipped, only IPv4 is captured';
const V6_NOT_WANTED_NOTE = 'IPv6 rules not requested (ipv6: false): only IPv4 is captured';

/** Whether to handle IPv6, and the note when not. */
async function decideIpv6(ns: NetnsExec, ip: string, opts: RuleOptions): Promise<{ v6: boolean; notes: string[] }> {
  if (opts.ipv6 === false) return { v6: false, notes: [V6_NOT_WANTED_NOTE] };
  if (await ipv6Enabled(ns, ip)) return { v6: true, notes: [] };
  return { v6: false, notes: [V6_OFF_NOTE] };
}

async function installRouting(ns: NetnsExec, ip: string, family: IpFamily = 4): Promise<void> {
  const rules = await readIpRules(ns, ip, family);
  if (!(rules.length === 1 && rules[0] && isOurIpRule(rules[0]))) {
    for (let i = 0; i < rules.length; i++) await ns.run(ip, ipRuleDelArgs(family));
    await ns.run(ip, ipRuleAddArgs(family));
  }
  await ns.run(ip, ipRouteReplaceArgs(family));
}

async function removeRouting(ns: NetnsExec, ip: string, family: IpFamily = 4): Promise<boolean> {
  const tolerant = family === 6;
  const rules = (await readIpRules(ns, ip, family, tolerant)).filter(isOurIpRule);
  for (let i = 0; i < rules.length; i++) await ns.run(ip, ipRuleDelArgs(family), { accept: tolerant ? anyExit : noSuchTable });
  const routes = (await readRoutes(ns, ip, family, tolerant)).filter(isOurRoute);
  if (routes.length > 0) await ns.run(ip, ipRouteDelArgs(family), { accept: tolerant ? anyExit : noSuchTable });
  return rules.length > 0 || routes.length > 0;
}

async function nftListing(ns: NetnsExec, nft: string): Promise<string | undefined> {
  const r = await ns.run(nft, ['list', 'table', 'inet', NFT_TABLE], { accept: noSuchTable });
  return r.code === 0 ? r.stdout : undefined;
}

interface IptTools {
  save: string;
  restore: string;
}

const IPT_BINARIES: Record<IpFamily, { save: string; restore: string }> = {
  4: { save: 'iptables-save', restore: 'iptables-restore' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};

function iptTools(deps: RedirectDeps, family: IpFamily): IptTools {
  return { save: requireBinary(deps, IPT_BINARIES[family].save), restore: requireBinary(deps, IPT_BINARIES[family].restore) };
}

function haveIptTools(deps: RedirectDeps, family: IpFamily): boolean {
  return deps.which(IPT_BINARIES[family].save) !== undefined && deps.which(IPT_BINARIES[family].restore) !== undefined;
}

/** Our chains per table; for IPv6 a failing ip6tables-save (no IPv6 in the kernel) reads as "none". */
async function iptState(ns: NetnsExec, save: string, family: IpFamily = 4): Promise<IptState> {
  const r = await ns.run(save, [], family === 6 ? { accept: anyExit } : {});
  return r.code === 0 ? parseIptablesSave(r.stdout) : emptyIptState();
}

const iptHasAny = (s: IptState): boolean => IPT_TABLES.some((t) => s[t].chains.length > 0 || s[t].lines.length > 0);

async function removeNft(ns: NetnsExec, nft: string): Promise<boolean> {
  const present = (await nftListing(ns, nft)) !== undefined;
  if (present) await ns.run(nft, ['-f', '-'], { input: buildNftRemove() });
  return present;
}

/** Removes our iptables (family 4) or ip6tables (family 6) chains, if the tools are there. */
async function removeIpt(ns: NetnsExec, deps: RedirectDeps, family: IpFamily): Promise<boolean> {
  if (!haveIptTools(deps, family)) return false;
  const tools = iptTools(deps, family);
  const state = await iptState(ns, tools.save, family);
  if (!iptHasAny(state)) return false;
  await ns.run(tools.restore, ['--noflush'], { input: buildIptablesRestore(null, state, family) });
  return true;
}

export async function install(netns: string, opts: RedirectOptions = {}, deps: RedirectDeps = defaultDeps): Promise<InstallResult> {
  const backend = selectBackend(opts.backend, deps);
  const { ns, ip } = prepare(netns, deps);
  const { v6, notes } = await decideIpv6(ns, ip, opts);
  // The IPv6 tools are needed before anything changes: half-installed capture would let IPv6 bypass the mesh.
  const ipt6 = backend === 'iptables' && v6 ? iptTools(deps, 6) : undefined;
  const rules: RuleOptions = { dns: opts.dns === true, ipv6: v6 };
  await installRouting(ns, ip, 4);
  if (v6) await installRouting(ns, ip, 6);
  else await removeRouting(ns, ip, 6);
  if (backend === 'nftables') {
    await ns.run(requireBinary(deps, 'nft'), ['-f', '-'], { input: buildNftInstall(rules) });
    await removeIpt(ns, deps, 4);
    await removeIpt(ns, deps, 6);
  } else {
    const ipt4 = iptTools(deps, 4);
    const state = await iptState(ns, ipt4.save);
    await ns.run(ipt4.restore, ['--noflush'], { input: buildIptablesRestore(rules, state, 4) });
    if (ipt6) {
      const state6 = await iptState(ns, ipt6.save, 6);
      await ns.run(ipt6.restore, ['--noflush'], { input: buildIptablesRestore(rules, state6, 6) });
    } else {
      await removeIpt(ns, deps, 6);
    }
    const nft = deps.which('nft');
    if (nft !== undefined) await removeNft(ns, nft);
  }
  for (const note of notes) opts.logger?.info({ netns, note }, note);
  return { netns, backend, dns: rules.dns === true, ipv6: v6, notes };
}

/** Removes everything of ours (both backends, both families, unless a backend is named). Idempotent. */
export async function remove(netns: string, opts: Pick<RedirectOptions, 'backend'> = {}, deps: RedirectDeps = defaultDeps): Promise<RemoveResult> {
  if (opts.backend !== undefined) selectBackend(opts.backend, deps);
  const { ns, ip } = prepare(netns, deps);
  let removed = false;
  const nft = deps.which('nft');
  if (opts.backend !== 'iptables' && nft !== undefined) removed = (await removeNft(ns, nft)) || removed;
  if (opts.backend !== 'nftables') {
    removed = (await removeIpt(ns, deps, 4)) || removed;
    removed = (await removeIpt(ns, deps, 6)) || removed;
  }
  removed = (await removeRouting(ns, ip, 4)) || removed;
  removed = (await removeRouting(ns, ip, 6)) || removed;
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
  const { v6, notes } = await decideIpv6(ns, ip, opts);
  const want: RuleOptions = { dns: opts.dns === true, ipv6: v6 };
  const differences: string[] = [];
  let rules: boolean;
  let rules6: boolean;
  let dns: boolean;
  if (backend === 'nftables') {
    const listing = await nftListing(ns, requireBinary(deps, 'nft'));
    rules = listing !== undefined;
    rules6 = listing !== undefined && /\bip6 [sd]addr /.test(listing);
    dns = listing !== undefined && /chain raw-output/.test(listing);
    if (listing === undefined) differences.push(`nftables: table inet ${NFT_TABLE} is missing`);
    else differences.push(...diffLines(normalizeNftListing(buildNftTable(want)), normalizeNftListing(listing), 'nftables'));
  } else {
    const state = await iptState(ns, iptTools(deps, 4).save);
    rules = iptHasAny(state);
    dns = state.raw.lines.length > 0;
    const desired = iptablesDesired(want, 4);
    if (!rules) differences.push('iptables: AMBIT_PRERT/AMBIT_OUTPUT chains are missing');
    else for (const t of IPT_TABLES) differences.push(...diffLines(canonicalLines(desired[t]), canonicalLines(state[t].lines), `iptables ${t}`));
    const state6 = v6 ? await iptState(ns, iptTools(deps, 6).save, 6) : haveIptTools(deps, 6) ? await iptState(ns, requireBinary(deps, 'ip6tables-save'), 6) : undefined;
    rules6 = state6 !== undefined && iptHasAny(state6);
    if (v6 && state6) {
      const desired6 = iptablesDesired(want, 6);
      if (!rules6) differences.push('ip6tables: AMBIT_PRERT/AMBIT_OUTPUT chains are missing');
      else for (const t of IPT_TABLES) differences.push(...diffLines(canonicalLines(desired6[t]), canonicalLines(state6[t].lines), `ip6tables ${t}`));
    } else if (rules6) {
      differences.push('ip6tables: unexpected AMBIT chains (IPv6 is not handled in this netns)');
    }
  }
  const ipRules = await readIpRules(ns, ip);
  const ipRule = ipRules.some(isOurIpRule);
  if (!ipRule) differences.push(`ip rule: missing 'fwmark 0x111/0x${INPOD_MASK.toString(16)} pref 32764 lookup 100'`);
  else if (ipRules.length > 1) differences.push('ip rule: more than one rule at pref 32764');
  const route = (await readRoutes(ns, ip)).some(isOurRoute);
  if (!route) differences.push("route: missing 'local 0.0.0.0/0 dev lo table 100'");
  const ipRules6 = await readIpRules(ns, ip, 6, true);
  const ipRule6 = ipRules6.some(isOurIpRule);
  const route6 = (await readRoutes(ns, ip, 6, true)).some(isOurRoute);
  if (v6) {
    if (!ipRule6) differences.push(`ip -6 rule: missing 'fwmark 0x111/0x${INPOD_MASK.toString(16)} pref 32764 lookup 100'`);
    else if (ipRules6.length > 1) differences.push('ip -6 rule: more than one rule at pref 32764');
    if (!route6) differences.push("ip -6 route: missing 'local ::/0 dev lo table 100'");
  }
  const installed = rules && ipRule && route && (!v6 || (rules6 && ipRule6 && route6));
  return {
    netns,
    backend,
    rules,
    dns,
    ipRule,
    route,
    installed,
    matches: installed && differences.length === 0,
    differences,
    ipv6: { enabled: v6, rules: rules6, ipRule: ipRule6, route: route6 },
    notes,
  };
}

/** The text `ambit redirect status` prints (both families). */
export function formatRedirectStatus(s: RedirectStatus): string {
  const yes = (b: boolean): string => (b ? 'yes' : 'no');
  const lines = [
    `netns ${s.netns} (${s.backend}): ${s.matches ? 'installed, up to date' : s.installed ? 'installed, differs' : s.rules || s.ipRule || s.route ? 'partially installed' : 'not installed'}`,
    `  ipv4  rules: ${yes(s.rules)}  dns: ${yes(s.dns)}  ip rule 32764: ${yes(s.ipRule)}  table 100 route: ${yes(s.route)}`,
    s.ipv6.enabled
      ? `  ipv6  rules: ${yes(s.ipv6.rules)}  ip -6 rule 32764: ${yes(s.ipv6.ipRule)}  table 100 route ::/0: ${yes(s.ipv6.route)}`
      : '  ipv6  skipped',
  ];
  for (const n of s.notes) lines.push(`  note: ${n}`);
  if (s.installed && !s.matches) for (const d of s.differences) lines.push(`  ${d}`);
  return lines.join('\n') + '\n';
}
