/**
 * Applies one L7Config update from xDS to the engine: decode (l7-codec) →
 * compileL7Config → waypoint.updateConfig. A resource that does not decode
 * or compile is rejected with the error message (the xDS client NACKs it and
 * the previous config stays in force). Removal installs a config with no
 * services, so every CONNECT is refused as unavailable.
 */
import type { Logger } from '../common/logger.js';
import { compileL7Config, type L7Config } from '../waypoint/config.js';
import { decodeL7Config } from '../waypoint/l7-codec.js';
import type { SingleResourceUpdate } from './l7-xds-client.js';

export const EMPTY_L7_CONFIG: L7Config = compileL7Config({});

export interface ConfigTarget {
  updateConfig(config: L7Config): void;
}

export function l7ConfigApplier(target: ConfigTarget, logger: Logger, onApplied?: (c: L7Config) => void): (u: SingleResourceUpdate) => string | undefined {
  const log = logger.child({ component: 'waypoint-config' });
  return (u) => {
    if (u.kind === 'remove') {
      target.updateConfig(EMPTY_L7_CONFIG);
      log.warn('l7 config removed by the control plane; serving no services');
      onApplied?.(EMPTY_L7_CONFIG);
      return undefined;
    }
    let config: L7Config;
    try {
      config = compileL7Config(decodeL7Config(u.body));
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
    target.updateConfig(config);
    log.info({ version: u.version, configVersion: config.version, services: config.services.length, clusters: config.clusters.size, workloads: config.workloads.length }, 'l7 config applied');
    onApplied?.(config);
    return undefined;
  };
}
