/**
 * The policy routing istio-cni adds next to the rules (iptables_linux.go):
 * packets marked 0x111 (replies on connections ambit opened with mark 0x539)
 * are delivered locally through table 100. Pure argv builders for `ip`.
 */
import { hex, INPOD_MASK, INPOD_TPROXY_MARK, IP_RULE_PREF, ROUTE_TABLE } from './constants.js';

const FWMARK = `${hex(INPOD_TPROXY_MARK)}/${hex(INPOD_MASK)}`;

/** `ip rule add fwmark 0x111/0xfff pref 32764 lookup 100` */
export const ipRuleAddArgs = (): string[] => ['rule', 'add', 'fwmark', FWMARK, 'pref', String(IP_RULE_PREF), 'lookup', String(ROUTE_TABLE)];

/** Deletes one rule at our preference (repeat until it fails to delete all). */
export const ipRuleDelArgs = (): string[] => ['rule', 'del', 'pref', String(IP_RULE_PREF)];

export const ipRuleShowArgs = (): string[] => ['-j', 'rule', 'show', 'pref', String(IP_RULE_PREF)];

/** `ip route replace local 0.0.0.0/0 dev lo table 100` (replace: idempotent). */
export const ipRouteReplaceArgs = (): string[] => ['route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(ROUTE_TABLE)];

export const ipRouteDelArgs = (): string[] => ['route', 'del', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(ROUTE_TABLE)];

export const ipRouteShowArgs = (): string[] => ['-j', 'route', 'show', 'table', String(ROUTE_TABLE)];

/** True for exactly our rule in `ip -j rule show pref 32764` output. */
export function isOurIpRule(e: Record<string, unknown>): boolean {
  return (
    e.priority === IP_RULE_PREF &&
    Number(e.fwmark) === INPOD_TPROXY_MARK &&
    Number(e.fwmask) === INPOD_MASK &&
    String(e.table) === String(ROUTE_TABLE) &&
    (e.src === undefined || e.src === 'all')
  );
}

/** True for our `local default dev lo` route in `ip -j route show table 100` output. */
export function isOurRoute(e: Record<string, unknown>): boolean {
  return e.type === 'local' && (e.dst === 'default' || e.dst === '0.0.0.0/0') && e.dev === 'lo';
}
