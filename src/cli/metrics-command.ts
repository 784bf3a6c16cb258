/** `ambit metrics`: the agent's /metrics (127.0.0.1:15020) summarized per destination, or raw. */
import { DEFAULT_METRICS_PORT } from '../agent/config.js';
import { fetchOk, parseAddress } from './agent-client.js';
import { boolFlag, stringFlag, type Command, type ParsedArgs } from './command.js';
import { heading, paint, processOutput, table, type Output } from './format.js';
import { parsePromText } from './prom-text.js';
import { summarizeTraffic, trafficTable } from './traffic-summary.js';

/** Samples outside the Istio TCP families worth a line in the summary (gauges and counters without labels). */
function otherRows(samples: ReturnType<typeof parsePromText>['samples']): string[][] {
  return samples
    .filter((s) => !s.name.startsWith('istio_tcp_') || s.name === 'istio_tcp_sockets_open')
    .filter((s) => !s.name.startsWith('process_') && !s.name.startsWith('nodejs_'))
    .map((s) => [s.name, Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(','), String(s.value)]);
}

export async function runMetrics(args: ParsedArgs, out: Output): Promise<number> {
  const ep = parseAddress(stringFlag(args, 'address', `127.0.0.1:${DEFAULT_METRICS_PORT}`) as string, 'metrics');
  const openMetrics = boolFlag(args, 'openmetrics');
  const text = await fetchOk(ep, '/metrics', openMetrics ? { accept: 'application/openmetrics-text; version=1.0.0' } : {});
  if (boolFlag(args, 'raw') || openMetrics) {
    out.write(text);
    return 0;
  }
  const scrape = parsePromText(text);
  if (boolFlag(args, 'json')) {
    out.write(JSON.stringify({ samples: scrape.samples, types: scrape.types }, null, 2) + '\n');
    return 0;
  }
  const c = out.colour;
  out.write(heading(c, 'Connections (istio_tcp_*)').trimStart());
  out.write(trafficTable(summarizeTraffic(scrape.samples), c));
  out.write(heading(c, 'Other metrics'));
  out.write(table(['NAME', 'LABELS', 'VALUE'], otherRows(scrape.samples), c));
  if (scrape.badLines.length > 0) out.write(paint(c, 'yellow', `\n${scrape.badLines.length} line(s) did not parse (first: line ${scrape.badLines[0]}); see --raw\n`));
  return 0;
}

export const metricsCommand: Command = {
  name: 'metrics',
  summary: "summarize a running agent's Istio metrics per destination (reads /metrics on 15020)",
  usage: '[--address host:port] [--json | --raw | --openmetrics]',
  flags: {
    address: { type: 'string', help: 'agent metrics endpoint', default: `127.0.0.1:${DEFAULT_METRICS_PORT}` },
    json: { type: 'boolean', help: 'print the parsed samples as JSON' },
    raw: { type: 'boolean', help: 'print the Prometheus text as served' },
    openmetrics: { type: 'boolean', help: 'print the OpenMetrics text as served (Accept: application/openmetrics-text)' },
  },
  details: 'In the lab: ambit lab exec --node <node> -- ambit metrics',
  run: (args) => runMetrics(args, processOutput()),
};
