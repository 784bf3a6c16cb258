/**
 * The policy routing istio-cni adds next to the rules (iptables_linux.go):
 * packets marked 0x111 (replies on connections ambit opened with mark 0x539)
 * are delivered locally through table 100. Pure argv builders for `ip`.
 *
 * Per family: IPv4 uses plain `ip` (its default family), IPv6 the same
 * commands with `-6` and `local ::/0` (istio-cni adds that route only when
 * lo has IPv6; the installer checks the same).
 */
import { hex, INPOD_MASK, INPOD_TPROXY_MARK, IP_RULE_PREF, ROUTE_TABLE, type IpFamily } from './constants.js';

const FWMARK = `${hex(INPOD_TPROXY_MARK)}/${hex(INPOD_MASK)}`;
const fam = (family: IpFamily): string[] => (family === 6 ? ['-6'] : []);
const ANY: Record<IpFamily, string> = { 4: '0.0.0.0/0', 6: '::/0' };

/** `ip [-6] rule add fwmark 0x111/0xfff pref 32764 lookup 100` */
export const ipRuleAddArgs = (family: IpFamily = 4): string[] => [...fam(family), 'rule', 'add', 'fwmark', FWMARK, 'pref', String(IP_RULE_PREF), 'lookup', String(ROUTE_TABLE)];

/** Deletes one rule at our preference (repeat until it fails to delete all). */
export const ipRuleDelArgs = (family: IpFamily = 4): string[] => [...fam(family), 'rule', 'del', 'pref', String(IP_RULE_PREF)];

export const ipRuleShowArgs = (family: IpFamily = 4): string[] => [...fam(family), '-j', 'rule', 'show', 'pref', String(IP_RULE_PREF)];

/** `ip [-6] route replace local 0.0.0.0/0|::/0 dev lo table 100` (replace: idempotent). */
export const ipRouteReplaceArgs = (family: IpFamily = 4): string[] => [...fam(family), 'route', 'replace', 'local', ANY[family], 'dev', 'lo', 'table', String(ROUTE_TABLE)];

export const ipRouteDelArgs = (family: IpFamily = 4): string[] => [...fam(family), 'route', 'del', 'local', ANY[family], 'dev', 'lo', 'table', String(ROUTE_TABLE)];

export const ipRouteShowArgs = (family: IpFamily = 4): string[] => [...fam(family), '-j', 'route', 'show', 'table', String(ROUTE_TABLE)];

/** `ip -6 -j addr show dev lo`: IPv6 counts as enabled in a netns when lo has an inet6 address (::1). */
export const loIpv6AddrArgs = (): string[] => ['-6', '-j', 'addr', 'show', 'dev', 'lo'];

/** True when `ip -6 -j addr show dev lo` output lists an inet6 address. */
export function loHasIpv6(entries: ReadonlyArray<Record<string, unknown>>): boolean {
  return entries.some((e) => Array.isArray(e.addr_info) && (e.addr_info as Array<Record<string, unknown>>).some((a) => a.family === 'inet6'));
}

/** True for exactly our rule in `ip [-6] -j rule show pref 32764` output. */
export function isOurIpRule(e: Record<string, unknown>): boolean {
  return (
    e.priority === IP_RULE_PREF &&
    Number(e.fwmark) === INPOD_TPROXY_MARK &&
    Number(e.fwmask) === INPOD_MASK &&
    String(e.table) === String(ROUTE_TABLE) &&
    (e.src === undefined || e.src === 'all')
  );
}

/** True for our `local default dev lo` route in `ip [-6] -j route show table 100` output. */
export function isOurRoute(e: Record<string, unknown>): boolean {
  return e.type === 'local' && (e.dst === 'default' || e.dst === '0.0.0.0/0' || e.dst === '::/0') && e.dev === 'lo';
}
