/**
 * Golden rule text for both backends. The expected text is istio-cni's in-pod
 * rule set (reference redirection-and-native.md §4.2/§4.3), written the way
 * nft list / iptables-save print it back. IPv6 is istio-cni's IPv6 twin
 * (::1 for loopback, fd16:9254:7127:1337:ffff:ffff:ffff:ffff as probe source).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildIptablesRestore, canonicalLines, iptablesDesired, parseIptablesSave } from '../../src/redirect/iptables-rules.js';
import { buildNftInstall, buildNftRemove, buildNftTable, normalizeNftListing } from '../../src/redirect/nft-rules.js';
import { ipRouteReplaceArgs, ipRouteShowArgs, ipRuleAddArgs, ipRuleShowArgs, isOurIpRule, isOurRoute, loHasIpv6 } from '../../src/redirect/route-rules.js';

const NFT_V4_ONLY = `table inet ambit
delete table inet ambit
table inet ambit {
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		meta l4proto tcp ip saddr 169.254.7.127 counter accept
		ip daddr != 127.0.0.1 tcp dport != 15008 meta mark & 0x00000fff != 0x00000539 counter redirect to :15006
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		meta l4proto tcp ip daddr 169.254.7.127 counter accept
		meta l4proto tcp meta mark & 0x00000fff == 0x00000111 counter accept
		oifname "lo" ip daddr != 127.0.0.1 counter accept
		meta l4proto tcp ip daddr != 127.0.0.1 meta mark & 0x00000fff != 0x00000539 counter redirect to :15001
	}
	chain mangle-prerouting {
		type filter hook prerouting priority mangle; policy accept;
		meta mark & 0x00000fff == 0x00000539 counter ct mark set ct mark & 0xfffff000 | 0x00000111
	}
	chain mangle-output {
		type route hook output priority mangle; policy accept;
		ct mark & 0x00000fff == 0x00000111 counter meta mark set ct mark
	}
}
`;

/** Dual stack (the builders' default): one ip6 line after each ip line, same chains, same transaction. */
const NFT_DEFAULT = `table inet ambit
delete table inet ambit
table inet ambit {
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		meta l4proto tcp ip saddr 169.254.7.127 counter accept
		meta l4proto tcp ip6 saddr PROBE6 counter accept
		ip daddr != 127.0.0.1 tcp dport != 15008 meta mark & 0x00000fff != 0x00000539 counter redirect to :15006
		ip6 daddr != ::1 tcp dport != 15008 meta mark & 0x00000fff != 0x00000539 counter redirect to :15006
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		meta l4proto tcp ip daddr 169.254.7.127 counter accept
		meta l4proto tcp ip6 daddr PROBE6 counter accept
		meta l4proto tcp meta mark & 0x00000fff == 0x00000111 counter accept
		oifname "lo" ip daddr != 127.0.0.1 counter accept
		oifname "lo" ip6 daddr != ::1 counter accept
		meta l4proto tcp ip daddr != 127.0.0.1 meta mark & 0x00000fff != 0x00000539 counter redirect to :15001
		meta l4proto tcp ip6 daddr != ::1 meta mark & 0x00000fff != 0x00000539 counter redirect to :15001
	}
	chain mangle-prerouting {
		type filter hook prerouting priority mangle; policy accept;
		meta mark & 0x00000fff == 0x00000539 counter ct mark set ct mark & 0xfffff000 | 0x00000111
	}
	chain mangle-output {
		type route hook output priority mangle; policy accept;
		ct mark & 0x00000fff == 0x00000111 counter meta mark set ct mark
	}
}
`.replaceAll('PROBE6', 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff');

const NFT_DNS_NAT_OUTPUT = `	chain nat-output {
		type nat hook output priority -100; policy accept;
		meta l4proto tcp ip daddr 169.254.7.127 counter accept
		meta l4proto tcp ip6 daddr fd16:9254:7127:1337:ffff:ffff:ffff:ffff counter accept
		oifname != "lo" meta mark & 0x00000fff != 0x00000539 udp dport 53 counter redirect to :15053
		ip daddr != 127.0.0.1 tcp dport 53 meta mark & 0x00000fff != 0x00000539 counter redirect to :15053
		ip6 daddr != ::1 tcp dport 53 meta mark & 0x00000fff != 0x00000539 counter redirect to :15053
		meta l4proto tcp meta mark & 0x00000fff == 0x00000111 counter accept
		oifname "lo" ip daddr != 127.0.0.1 counter accept
		oifname "lo" ip6 daddr != ::1 counter accept
		meta l4proto tcp ip daddr != 127.0.0.1 meta mark & 0x00000fff != 0x00000539 counter redirect to :15001
		meta l4proto tcp ip6 daddr != ::1 meta mark & 0x00000fff != 0x00000539 counter redirect to :15001
	}
`;

const NFT_DNS_RAW = `	chain raw-prerouting {
		type filter hook prerouting priority raw; policy accept;
		udp sport 53 meta mark & 0x00000fff != 0x00000539 counter ct zone set 1
	}
	chain raw-output {
		type filter hook output priority raw; policy accept;
		udp dport 53 meta mark & 0x00000fff == 0x00000539 counter ct zone set 1
	}
}
`;

const IPT_DEFAULT = `*mangle
:AMBIT_PRERT - [0:0]
:AMBIT_OUTPUT - [0:0]
-A AMBIT_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
-A AMBIT_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A PREROUTING -j AMBIT_PRERT
-A OUTPUT -j AMBIT_OUTPUT
COMMIT
*nat
:AMBIT_PRERT - [0:0]
:AMBIT_OUTPUT - [0:0]
-A AMBIT_PRERT -s 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A AMBIT_PRERT ! -d 127.0.0.1/32 -p tcp -m tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006
-A AMBIT_OUTPUT -d 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A AMBIT_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT
-A AMBIT_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT
-A AMBIT_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001
-A PREROUTING -j AMBIT_PRERT
-A OUTPUT -j AMBIT_OUTPUT
COMMIT
`;

void describe('nftables rule set', () => {
  void it('default (DNS off) is istio-cni in-pod rules in table inet ambit, replaced atomically', () => {
    assert.equal(buildNftInstall(), NFT_DEFAULT);
    assert.equal(buildNftInstall({ dns: false }), NFT_DEFAULT);
    assert.ok(!buildNftInstall().includes('15053'));
    assert.ok(!buildNftInstall().includes('ct zone'));
  });

  void it('--dns adds the 15053 redirects and the raw ct zone chains', () => {
    const text = buildNftInstall({ dns: true });
    assert.ok(text.includes(NFT_DNS_NAT_OUTPUT), text);
    assert.ok(text.endsWith(NFT_DNS_RAW), text);
    // Everything else is unchanged.
    const withoutDns = text.replace(NFT_DNS_NAT_OUTPUT, NFT_DEFAULT.slice(NFT_DEFAULT.indexOf('\tchain nat-output'), NFT_DEFAULT.indexOf('\tchain mangle-prerouting'))).replace(NFT_DNS_RAW, '}\n');
    assert.equal(withoutDns, NFT_DEFAULT);
  });

  void it('ipv6: false leaves out every ip6 line (a netns without IPv6), the rest unchanged', () => {
    assert.equal(buildNftInstall({ ipv6: false }), NFT_V4_ONLY);
    assert.ok(!NFT_V4_ONLY.includes('ip6'));
    // Dual stack = the IPv4 text plus only ip6 lines; every address-matching IPv4 rule has its ip6 twin.
    const v4 = NFT_V4_ONLY.split('\n');
    const v6 = NFT_DEFAULT.split('\n');
    assert.deepEqual(
      v6.filter((l) => !l.includes('ip6 ')),
      v4,
    );
    const twins = v4.filter((l) => /\sip [sd]addr /.test(l)).map((l) => l.replace(/(\s)ip ([sd])addr /, '$1ip6 $2addr ').replace('127.0.0.1', '::1').replace('169.254.7.127', 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff'));
    assert.deepEqual(
      v6.filter((l) => l.includes('ip6 ')),
      twins,
    );
  });

  void it('remove is create-then-delete so it works whether or not the table exists', () => {
    assert.equal(buildNftRemove(), 'table inet ambit\ndelete table inet ambit\n');
  });

  void it('normalizes an nft listing (counters, handles, folded ct mark mask) to the built text', () => {
    const listing = buildNftTable()
      .replace(/counter/g, 'counter packets 12 bytes 720')
      .replace('& 0xfffff000 |', '& 0xfffff111 |')
      .replace(/\n\tchain/g, '\n\n\tchain')
      .replace('accept\n', 'accept # handle 4\n');
    assert.deepEqual(normalizeNftListing(listing), normalizeNftListing(buildNftTable()));
    assert.notDeepEqual(normalizeNftListing(buildNftTable({ dns: true })), normalizeNftListing(buildNftTable()));
  });
});

void describe('iptables rule set', () => {
  void it('fresh install (DNS off): mangle and nat chains, no raw table', () => {
    assert.equal(buildIptablesRestore({}), IPT_DEFAULT);
  });

  void it('--dns adds the 15053 redirects and raw CT zone 1', () => {
    const text = buildIptablesRestore({ dns: true });
    assert.ok(text.includes('-A AMBIT_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff -m udp --dport 53 -j REDIRECT --to-ports 15053\n'));
    assert.ok(text.includes('-A AMBIT_OUTPUT ! -d 127.0.0.1/32 -p tcp -m tcp --dport 53 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053\n'));
    assert.ok(
      text.endsWith(`*raw
:AMBIT_PRERT - [0:0]
:AMBIT_OUTPUT - [0:0]
-A AMBIT_PRERT -p udp -m mark ! --mark 0x539/0xfff -m udp --sport 53 -j CT --zone 1
-A AMBIT_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 -j CT --zone 1
-A PREROUTING -j AMBIT_PRERT
-A OUTPUT -j AMBIT_OUTPUT
COMMIT
`),
      text,
    );
    // The DNS rules sit before the 0x111 accept, as in istio-cni.
    const nat = iptablesDesired({ dns: true }).nat;
    assert.ok(nat.findIndex((l) => l.includes('15053')) < nat.findIndex((l) => l.includes('--mark 0x111/0xfff -j ACCEPT')));
  });

  void it('ip6tables (family 6): the same rules with ::1/128 and the IPv6 probe source', () => {
    const text = buildIptablesRestore({}, undefined, 6);
    assert.equal(
      text,
      IPT_DEFAULT.replaceAll('127.0.0.1/32', '::1/128').replaceAll('169.254.7.127/32', 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128'),
    );
    assert.ok(text.includes('-A AMBIT_PRERT ! -d ::1/128 -p tcp -m tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006\n'));
    assert.ok(text.includes('-A AMBIT_OUTPUT -d fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128 -p tcp -m tcp -j ACCEPT\n'));
    assert.ok(!text.includes('127.0.0.1') && !text.includes('169.254'));
    assert.deepEqual(iptablesDesired({ dns: true }, 6).raw, iptablesDesired({ dns: true }, 4).raw, 'raw CT zone rules carry no address');
  });

  const SAVE = `# Generated by iptables-save v1.8.9 (nf_tables)
*mangle
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:AMBIT_OUTPUT - [0:0]
:AMBIT_PRERT - [0:0]
-A PREROUTING -j AMBIT_PRERT
-A PREROUTING -j SOMEONE_ELSE
-A OUTPUT -j AMBIT_OUTPUT
-A AMBIT_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A AMBIT_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:AMBIT_PRERT - [0:0]
-A PREROUTING -j AMBIT_PRERT
COMMIT
*filter
:AMBIT_PRERT - [0:0]
COMMIT
`;

  void it('parses iptables-save keeping only our chains and jumps, and orders them canonically', () => {
    const s = parseIptablesSave(SAVE);
    assert.deepEqual(s.mangle.chains, ['AMBIT_OUTPUT', 'AMBIT_PRERT']);
    assert.equal(s.mangle.lines.length, 4);
    assert.ok(!s.mangle.lines.some((l) => l.includes('SOMEONE_ELSE')));
    assert.deepEqual(s.raw, { chains: ['AMBIT_PRERT'], lines: ['-A PREROUTING -j AMBIT_PRERT'] });
    assert.deepEqual(s.nat, { chains: [], lines: [] });
    assert.deepEqual(canonicalLines(s.mangle.lines), iptablesDesired({}).mangle);
  });

  void it('re-install deletes existing jumps first (no duplicates) and drops chains no longer wanted', () => {
    const text = buildIptablesRestore({}, parseIptablesSave(SAVE));
    assert.equal(
      text,
      `*mangle
:AMBIT_PRERT - [0:0]
:AMBIT_OUTPUT - [0:0]
-D PREROUTING -j AMBIT_PRERT
-D OUTPUT -j AMBIT_OUTPUT
-A AMBIT_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
-A AMBIT_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A PREROUTING -j AMBIT_PRERT
-A OUTPUT -j AMBIT_OUTPUT
COMMIT
${IPT_DEFAULT.slice(IPT_DEFAULT.indexOf('*nat'))}*raw
:AMBIT_PRERT - [0:0]
-D PREROUTING -j AMBIT_PRERT
-X AMBIT_PRERT
COMMIT
`,
    );
  });

  void it('removal deletes jumps, flushes and deletes our chains; nothing present means no transaction', () => {
    assert.equal(buildIptablesRestore(null), '');
    const text = buildIptablesRestore(null, parseIptablesSave(SAVE));
    assert.ok(text.startsWith('*mangle\n:AMBIT_OUTPUT - [0:0]\n:AMBIT_PRERT - [0:0]\n-D PREROUTING -j AMBIT_PRERT\n-D OUTPUT -j AMBIT_OUTPUT\n-X AMBIT_OUTPUT\n-X AMBIT_PRERT\nCOMMIT\n'), text);
    assert.ok(!text.includes('-A '));
  });
});

void describe('policy routing', () => {
  void it('is ip rule fwmark 0x111/0xfff pref 32764 lookup 100 and a local default route in table 100', () => {
    assert.deepEqual(ipRuleAddArgs(), ['rule', 'add', 'fwmark', '0x111/0xfff', 'pref', '32764', 'lookup', '100']);
    assert.deepEqual(ipRouteReplaceArgs(), ['route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100']);
    assert.ok(isOurIpRule({ priority: 32764, src: 'all', fwmark: '0x111', fwmask: '0xfff', table: '100' }));
    assert.ok(!isOurIpRule({ priority: 32764, src: 'all', fwmark: '0x1', fwmask: '0xfff', table: '100' }));
    assert.ok(isOurRoute({ type: 'local', dst: 'default', dev: 'lo', scope: 'host' }));
    assert.ok(!isOurRoute({ type: 'unicast', dst: 'default', dev: 'lo' }));
  });

  void it('IPv6: the same with ip -6 and local ::/0; IPv6 counts as enabled when lo has an inet6 address', () => {
    assert.deepEqual(ipRuleAddArgs(6), ['-6', 'rule', 'add', 'fwmark', '0x111/0xfff', 'pref', '32764', 'lookup', '100']);
    assert.deepEqual(ipRouteReplaceArgs(6), ['-6', 'route', 'replace', 'local', '::/0', 'dev', 'lo', 'table', '100']);
    assert.deepEqual(ipRouteShowArgs(6), ['-6', '-j', 'route', 'show', 'table', '100']);
    assert.deepEqual(ipRuleShowArgs(6), ['-6', '-j', 'rule', 'show', 'pref', '32764']);
    // What ip -6 -j route show table 100 prints for our route.
    assert.ok(isOurRoute({ type: 'local', dst: 'default', dev: 'lo', metric: 1024, flags: [], pref: 'medium' }));
    assert.ok(isOurRoute({ type: 'local', dst: '::/0', dev: 'lo' }));
    assert.ok(loHasIpv6([{ ifname: 'lo', addr_info: [{ family: 'inet6', local: '::1', prefixlen: 128 }] }]));
    assert.ok(!loHasIpv6([]), 'disable_ipv6=1: ip -6 addr show dev lo prints []');
    assert.ok(!loHasIpv6([{ ifname: 'lo', addr_info: [] }]));
  });
});
