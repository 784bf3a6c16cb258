/**
 * istio-cni in-pod constants (cni/pkg/config/config.go), see
 * docs reference redirection-and-native.md §4.1. Ambit's own sockets in a pod
 * carry INPOD_MARK so the rules below never capture them twice.
 */
export const INPOD_MARK = 0x539;
export const INPOD_MASK = 0xfff;
export const INPOD_TPROXY_MARK = 0x111;
export const ROUTE_TABLE = 100;
export const IP_RULE_PREF = 32764;

export const OUTBOUND_PORT = 15001;
export const INBOUND_PLAINTEXT_PORT = 15006;
export const INBOUND_HBONE_PORT = 15008;
export const DNS_CAPTURE_PORT = 15053;

/** The SNAT source the host uses for kubelet probes; exempt from capture. */
export const PROBE_SOURCE_IP = '169.254.7.127';
/** istio-cni's IPv6 twin of PROBE_SOURCE_IP (cni/pkg/config/config.go). */
export const PROBE_SOURCE_IP6 = 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff';

export type IpFamily = 4 | 6;
/** Per family: the loopback address (never captured) and the probe source. */
export const FAMILY: Readonly<Record<IpFamily, { loopback: string; probe: string; nft: 'ip' | 'ip6' }>> = {
  4: { loopback: '127.0.0.1', probe: PROBE_SOURCE_IP, nft: 'ip' },
  6: { loopback: '::1', probe: PROBE_SOURCE_IP6, nft: 'ip6' },
};

/** Our nft table (family inet) and iptables chain names. */
export const NFT_TABLE = 'ambit';
export const IPT_PRERT = 'AMBIT_PRERT';
export const IPT_OUTPUT = 'AMBIT_OUTPUT';

export type Backend = 'nftables' | 'iptables';
export const BACKENDS: readonly Backend[] = ['nftables', 'iptables'];

export interface RuleOptions {
  /** Capture DNS (UDP and TCP port 53) to 15053; istio-cni's REDIRECT_DNS. Default off. */
  dns?: boolean;
  /**
   * Also the IPv6 rules (ip6 matches in the nft table, ip6tables, `ip -6`
   * rule/route). Builders default to true; the installer sets it from the
   * netns (false when IPv6 is disabled there: no ::1 on lo).
   */
  ipv6?: boolean;
}

/** `0x539/0xfff` as iptables writes it. */
export const hex = (n: number): string => `0x${n.toString(16)}`;
/** `0x00000539` as nft lists it. */
export const hex8 = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;
