/**
 * `ambit redirect <install|remove|status> <netns>`: the in-pod capture rules
 * (istio-cni semantics) for one network namespace, given by `ip netns` name
 * or by path (/proc/<pid>/ns/net). Flags that do not apply to a subcommand
 * are rejected (exit 64).
 */
import { ConfigError } from '../common/errors.js';
import { BACKENDS, type Backend } from '../redirect/constants.js';
import { formatRedirectStatus, install, remove, status } from '../redirect/installer.js';
import { boolFlag, enumFlag, type Command, type ParsedArgs } from './command.js';

const SUBCOMMAND_FLAGS: Record<string, readonly string[]> = {
  install: ['backend', 'dns', 'json'],
  remove: ['backend', 'json'],
  status: ['backend', 'dns', 'json'],
};

function parse(args: ParsedArgs): { sub: string; netns: string; backend: Backend | undefined; dns: boolean; json: boolean } {
  const sub = args.positionals[0];
  if (sub === undefined) throw new ConfigError("ambit redirect: needs a subcommand: install, remove or status; see 'ambit redirect --help'");
  const allowed = SUBCOMMAND_FLAGS[sub];
  if (!allowed) throw new ConfigError(`ambit redirect: unknown subcommand '${sub}'; use install, remove or status`);
  for (const [flag, value] of Object.entries(args.values)) {
    if (value === undefined || flag === 'help') continue;
    if (!allowed.includes(flag)) throw new ConfigError(`ambit redirect: --${flag} does not apply to 'redirect ${sub}'; see 'ambit redirect --help'`);
  }
  const netns = args.positionals[1];
  if (netns === undefined || netns === '') throw new ConfigError(`ambit redirect: 'redirect ${sub}' needs <netns>, an ip-netns name or a path such as /proc/<pid>/ns/net`);
  if (args.positionals.length > 2) throw new ConfigError(`ambit redirect: unexpected argument '${args.positionals[2] ?? ''}'`);
  const backend = args.values.backend === undefined ? undefined : enumFlag(args, 'backend', BACKENDS, 'nftables');
  return { sub, netns, backend, dns: boolFlag(args, 'dns'), json: boolFlag(args, 'json') };
}

async function run(args: ParsedArgs): Promise<number> {
  const { sub, netns, backend, dns, json } = parse(args);
  const out = (v: unknown, text: string): void => {
    process.stdout.write(json ? JSON.stringify(v, null, 2) + '\n' : text);
  };
  if (sub === 'install') {
    const r = await install(netns, { ...(backend ? { backend } : {}), dns });
    out(r, `netns ${r.netns}: capture rules installed (${r.backend}, ${r.ipv6 ? 'ipv4+ipv6' : 'ipv4 only'}${r.dns ? ', dns' : ''})\n${r.notes.map((n) => `  note: ${n}\n`).join('')}`);
    return 0;
  }
  if (sub === 'remove') {
    const r = await remove(netns, backend ? { backend } : {});
    out(r, `netns ${r.netns}: ${r.removed ? 'capture rules removed' : 'nothing to remove'}\n`);
    return 0;
  }
  const s = await status(netns, { ...(backend ? { backend } : {}), dns });
  out(s, formatRedirectStatus(s));
  // Like `diff`: 0 when installed and up to date, 1 otherwise (scripts can check).
  return s.matches ? 0 : 1;
}

export const redirectCommand: Command = {
  name: 'redirect',
  summary: 'install, remove or check the in-pod traffic capture rules of a network namespace',
  usage: '<install|remove|status> <netns-name-or-path> [flags]',
  flags: {
    backend: { type: 'string', help: 'nftables or iptables (iptables-restore)', default: 'nftables, or iptables when nft is missing' },
    dns: { type: 'boolean', help: 'install/status: also capture DNS (port 53) to 15053' },
    json: { type: 'boolean', help: 'print JSON' },
  },
  details: `Subcommands:
  install <netns> [--backend nftables|iptables] [--dns]
      Install istio-cni's in-pod rules in one transaction (re-running replaces
      them): outbound TCP -> 15001, inbound TCP -> 15006 (except 15008),
      sockets marked 0x539 bypass capture, connmark 0x111 + ip rule 32764 +
      table 100 local route for replies; kubelet probes from 169.254.7.127
      bypass capture. IPv4 and IPv6 (ip6 rules, ip6tables, ip -6 rule/route
      with local ::/0); IPv6 is skipped with a note when the netns has no
      IPv6 on lo (disable_ipv6=1 or lo down).
  remove <netns> [--backend nftables|iptables]
      Remove the rules, ip rule and route; nothing there is not an error.
  status <netns> [--backend nftables|iptables] [--dns]
      Show what is installed and whether it is what install would write
      (exit 0 when installed and up to date, 1 otherwise).

<netns> is an 'ip netns' name (/run/netns/<name>) or a path like
/proc/<pid>/ns/net. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
`,
  run,
};
