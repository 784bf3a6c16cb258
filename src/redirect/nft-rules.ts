/**
 * The nftables rule set for one pod netns: istio-cni's in-pod rules
 * (cni/pkg/nftables default.golden) in one table of our own, `inet ambit`.
 * Rules are written the way `nft list` prints them back, so `status` can
 * compare the listing with what we would install line by line.
 *
 * IPv6: the same rules with `ip6` matches (loopback ::1, probe source
 * fd16:9254:7127:1337:ffff:ffff:ffff:ffff), in the same chains, so v4 and v6
 * are installed and replaced in one transaction. As for IPv4 the capture is
 * NAT `redirect` (istio-cni's current mode): locally generated packets go to
 * ::1:15001, inbound to the receiving interface's address on 15006, and the
 * original destination is IP6T_SO_ORIGINAL_DST. The mark/connmark rules carry
 * no address and already cover both families.
 *
 * Pure functions: the text goes to `nft -f -` as one transaction.
 */
import {
  DNS_CAPTURE_PORT,
  FAMILY,
  hex8,
  INBOUND_HBONE_PORT,
  INBOUND_PLAINTEXT_PORT,
  INPOD_MARK,
  INPOD_MASK,
  INPOD_TPROXY_MARK,
  NFT_TABLE,
  OUTBOUND_PORT,
  type IpFamily,
  type RuleOptions,
} from './constants.js';

const notOurs = `meta mark & ${hex8(INPOD_MASK)} != ${hex8(INPOD_MARK)}`;
const ours = `meta mark & ${hex8(INPOD_MASK)} == ${hex8(INPOD_MARK)}`;

interface Chain {
  name: string;
  header: string;
  rules: string[];
}

/** The families the rules cover: IPv4 always, IPv6 unless opts.ipv6 === false. */
export const familiesOf = (opts: RuleOptions): IpFamily[] => (opts.ipv6 === false ? [4] : [4, 6]);

function chains(opts: RuleOptions): Chain[] {
  const dns = opts.dns === true;
  const fams = familiesOf(opts);
  // One line per family for the address-matching rules (`ip daddr` only
  // matches IPv4 packets in an inet table, `ip6 daddr` only IPv6); rules with
  // no address match (marks, udp dport 53) cover both families at once.
  const each = (f: (a: { nft: string; loopback: string; probe: string }) => string): string[] => fams.map((fam) => f(FAMILY[fam]));
  const natOutput = [
    ...each((a) => `meta l4proto tcp ${a.nft} daddr ${a.probe} counter accept`),
    ...(dns
      ? [
          `oifname != "lo" ${notOurs} udp dport 53 counter redirect to :${DNS_CAPTURE_PORT}`,
          ...each((a) => `${a.nft} daddr != ${a.loopback} tcp dport 53 ${notOurs} counter redirect to :${DNS_CAPTURE_PORT}`),
        ]
      : []),
    `meta l4proto tcp meta mark & ${hex8(INPOD_MASK)} == ${hex8(INPOD_TPROXY_MARK)} counter accept`,
    ...each((a) => `oifname "lo" ${a.nft} daddr != ${a.loopback} counter accept`),
    ...each((a) => `meta l4proto tcp ${a.nft} daddr != ${a.loopback} ${notOurs} counter redirect to :${OUTBOUND_PORT}`),
  ];
  const out: Chain[] = [
    {
      name: 'nat-prerouting',
      header: 'type nat hook prerouting priority dstnat; policy accept;',
      rules: [
        ...each((a) => `meta l4proto tcp ${a.nft} saddr ${a.probe} counter accept`),
        ...each((a) => `${a.nft} daddr != ${a.loopback} tcp dport != ${INBOUND_HBONE_PORT} ${notOurs} counter redirect to :${INBOUND_PLAINTEXT_PORT}`),
      ],
    },
    { name: 'nat-output', header: 'type nat hook output priority -100; policy accept;', rules: natOutput },
    {
      name: 'mangle-prerouting',
      header: 'type filter hook prerouting priority mangle; policy accept;',
      rules: [`${ours} counter ct mark set ct mark & 0xfffff000 | ${hex8(INPOD_TPROXY_MARK)}`],
    },
    {
      // A route chain: a mark changed here makes the kernel reroute (table 100).
      name: 'mangle-output',
      header: 'type route hook output priority mangle; policy accept;',
      rules: [`ct mark & ${hex8(INPOD_MASK)} == ${hex8(INPOD_TPROXY_MARK)} counter meta mark set ct mark`],
    },
  ];
  if (dns) {
    out.push(
      {
        name: 'raw-prerouting',
        header: 'type filter hook prerouting priority raw; policy accept;',
        rules: [`udp sport 53 ${notOurs} counter ct zone set 1`],
      },
      {
        name: 'raw-output',
        header: 'type filter hook output priority raw; policy accept;',
        rules: [`udp dport 53 ${ours} counter ct zone set 1`],
      },
    );
  }
  return out;
}

/** The `table inet ambit { ... }` block alone. */
export function buildNftTable(opts: RuleOptions = {}): string {
  const lines = [`table inet ${NFT_TABLE} {`];
  for (const c of chains(opts)) {
    lines.push(`\tchain ${c.name} {`, `\t\t${c.header}`, ...c.rules.map((r) => `\t\t${r}`), '\t}');
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

/**
 * One atomic transaction that replaces our table: `table` (create if absent),
 * `delete table`, then the full definition. Running it twice gives the same
 * rule set; a failure anywhere leaves the previous rules untouched.
 */
export function buildNftInstall(opts: RuleOptions = {}): string {
  return `table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n${buildNftTable(opts)}`;
}

/** Removes our table; succeeds whether or not it exists. */
export function buildNftRemove(): string {
  return `table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n`;
}

/**
 * Canonical form of `nft list table inet ambit` (or of buildNftTable) for
 * comparison: trimmed non-empty lines, counter values and handles dropped,
 * and nft's rewrite of the connmark mask (`& 0xfffff111 | 0x111`, which
 * equals `& 0xfffff000 | 0x111`) folded back.
 */
export function normalizeNftListing(text: string): string[] {
  return text
    .split('\n')
    .map((l) =>
      l
        .replace(/\s+#\s*handle\s+\d+/g, '')
        .replace(/counter packets \d+ bytes \d+/g, 'counter')
        .replace(/ct mark & 0xfffff111 \| 0x00000111/g, 'ct mark & 0xfffff000 | 0x00000111')
        .trim(),
    )
    .filter((l) => l !== '');
}
