/**
 * The iptables fallback (iptables-restore text): istio-cni's in-pod rules
 * (cni/pkg/iptables testdata/default.golden, IPv4) in chains of our own,
 * AMBIT_PRERT and AMBIT_OUTPUT, written in the canonical form iptables-save
 * prints so `status` can compare line by line.
 *
 * iptables-restore --noflush has no "create or replace"; declaring a chain
 * (`:AMBIT_PRERT - [0:0]`) creates it or flushes it, but the jumps from the
 * built-in chains would be appended again. So the transaction is built from
 * what is present: delete the existing jumps, (re)declare the chains, add
 * rules and jumps, drop chains no longer wanted. Pure functions.
 *
 * IPv6 (istio-cni's IPv6 twin): the same text for ip6tables-restore with
 * ::1/128 for loopback and fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128 as the
 * probe source. iptables-restore and ip6tables-restore are two separate
 * transactions (each atomic per family); nftables does both in one.
 */
import {
  DNS_CAPTURE_PORT,
  FAMILY,
  hex,
  INBOUND_HBONE_PORT,
  INBOUND_PLAINTEXT_PORT,
  INPOD_MARK,
  INPOD_MASK,
  INPOD_TPROXY_MARK,
  IPT_OUTPUT,
  IPT_PRERT,
  OUTBOUND_PORT,
  type IpFamily,
  type RuleOptions,
} from './constants.js';

export type IptTable = 'mangle' | 'nat' | 'raw';
export const IPT_TABLES: readonly IptTable[] = ['mangle', 'nat', 'raw'];
export const IPT_CHAINS: readonly string[] = [IPT_PRERT, IPT_OUTPUT];

/** Our chains' jump sources: PREROUTING → AMBIT_PRERT, OUTPUT → AMBIT_OUTPUT. */
const JUMPS: ReadonlyArray<readonly [builtin: string, chain: string]> = [
  ['PREROUTING', IPT_PRERT],
  ['OUTPUT', IPT_OUTPUT],
];

const m = `${hex(INPOD_MARK)}/${hex(INPOD_MASK)}`;
const t = `${hex(INPOD_TPROXY_MARK)}/${hex(INPOD_MASK)}`;

/**
 * The `-A` lines we want per table (chain rules then jumps), in
 * iptables-save (family 4) or ip6tables-save (family 6) form.
 */
export function iptablesDesired(opts: RuleOptions = {}, family: IpFamily = 4): Record<IptTable, string[]> {
  const dns = opts.dns === true;
  const bits = family === 4 ? 32 : 128;
  const lo = `${FAMILY[family].loopback}/${bits}`;
  const probe = `${FAMILY[family].probe}/${bits}`;
  const jumps = JUMPS.map(([b, c]) => `-A ${b} -j ${c}`);
  return {
    mangle: [
      ...jumps,
      `-A ${IPT_PRERT} -m mark --mark ${m} -j CONNMARK --set-xmark ${t}`,
      `-A ${IPT_OUTPUT} -m connmark --mark ${t} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff`,
    ],
    nat: [
      ...jumps,
      `-A ${IPT_PRERT} -s ${probe} -p tcp -m tcp -j ACCEPT`,
      `-A ${IPT_PRERT} ! -d ${lo} -p tcp -m tcp ! --dport ${INBOUND_HBONE_PORT} -m mark ! --mark ${m} -j REDIRECT --to-ports ${INBOUND_PLAINTEXT_PORT}`,
      `-A ${IPT_OUTPUT} -d ${probe} -p tcp -m tcp -j ACCEPT`,
      ...(dns
        ? [
            `-A ${IPT_OUTPUT} ! -o lo -p udp -m mark ! --mark ${m} -m udp --dport 53 -j REDIRECT --to-ports ${DNS_CAPTURE_PORT}`,
            `-A ${IPT_OUTPUT} ! -d ${lo} -p tcp -m tcp --dport 53 -m mark ! --mark ${m} -j REDIRECT --to-ports ${DNS_CAPTURE_PORT}`,
          ]
        : []),
      `-A ${IPT_OUTPUT} -p tcp -m mark --mark ${t} -j ACCEPT`,
      `-A ${IPT_OUTPUT} ! -d ${lo} -o lo -j ACCEPT`,
      `-A ${IPT_OUTPUT} ! -d ${lo} -p tcp -m mark ! --mark ${m} -j REDIRECT --to-ports ${OUTBOUND_PORT}`,
    ],
    raw: dns
      ? [
          ...jumps,
          `-A ${IPT_PRERT} -p udp -m mark ! --mark ${m} -m udp --sport 53 -j CT --zone 1`,
          `-A ${IPT_OUTPUT} -p udp -m mark --mark ${m} -m udp --dport 53 -j CT --zone 1`,
        ]
      : [],
  };
}

/** What of ours exists in one table, as parsed from iptables-save. */
export interface IptTableState {
  /** Our chains that exist. */
  chains: string[];
  /** Our `-A` lines (rules in our chains and jumps to them), in save order. */
  lines: string[];
}

export type IptState = Record<IptTable, IptTableState>;

export const emptyIptState = (): IptState => ({
  mangle: { chains: [], lines: [] },
  nat: { chains: [], lines: [] },
  raw: { chains: [], lines: [] },
});

const isOurs = (chain: string): boolean => IPT_CHAINS.includes(chain);

/** Parses `iptables-save` output, keeping only what concerns our chains. */
export function parseIptablesSave(text: string): IptState {
  const state = emptyIptState();
  let cur: IptTableState | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      const name = line.slice(1);
      cur = (IPT_TABLES as readonly string[]).includes(name) ? state[name as IptTable] : undefined;
      continue;
    }
    if (!cur) continue;
    const decl = /^:(\S+)\s/.exec(line);
    if (decl?.[1] !== undefined && isOurs(decl[1])) cur.chains.push(decl[1]);
    const app = /^-A (\S+) (.*)$/.exec(line);
    if (app?.[1] !== undefined) {
      const target = / -j (\S+)/.exec(` ${app[2] ?? ''}`)?.[1];
      if (isOurs(app[1]) || (target !== undefined && isOurs(target))) cur.lines.push(line);
    }
  }
  return state;
}

/** Our rules in a stable order for comparison: per chain, in rule order. */
export function canonicalLines(lines: readonly string[]): string[] {
  const chainOf = (l: string): string => l.split(' ')[1] ?? '';
  const order = (l: string): number => {
    const c = chainOf(l);
    return c === 'PREROUTING' ? 0 : c === 'OUTPUT' ? 1 : c === IPT_PRERT ? 2 : 3;
  };
  return lines
    .map((l, i) => ({ l, i }))
    .sort((a, b) => order(a.l) - order(b.l) || a.i - b.i)
    .map((e) => e.l);
}

/**
 * The iptables-restore --noflush text that moves `present` to the rules for
 * `opts` (or removes everything of ours when `opts` is null). Empty string
 * when there is nothing to do. For ip6tables-restore with family 6.
 */
export function buildIptablesRestore(opts: RuleOptions | null, present: IptState = emptyIptState(), family: IpFamily = 4): string {
  const desired = opts ? iptablesDesired(opts, family) : { mangle: [], nat: [], raw: [] };
  const out: string[] = [];
  for (const table of IPT_TABLES) {
    const want = desired[table];
    const have = present[table];
    const wantChains = want.length > 0 ? IPT_CHAINS : [];
    if (wantChains.length === 0 && have.chains.length === 0 && have.lines.length === 0) continue;
    out.push(`*${table}`);
    const declare = [...wantChains, ...have.chains.filter((c) => !wantChains.includes(c))];
    for (const c of declare) out.push(`:${c} - [0:0]`);
    for (const l of have.lines) if (/^-A (PREROUTING|OUTPUT) /.test(l)) out.push(l.replace(/^-A /, '-D '));
    for (const c of have.chains) if (!wantChains.includes(c)) out.push(`-X ${c}`);
    out.push(...want.filter((l) => !/^-A (PREROUTING|OUTPUT) /.test(l)));
    out.push(...want.filter((l) => /^-A (PREROUTING|OUTPUT) /.test(l)));
    out.push('COMMIT');
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}
