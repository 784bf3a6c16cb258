/** In-pod traffic capture rules (istio-cni in-pod semantics): builders and installer. */
export * from './constants.js';
export * from './errors.js';
export { buildIptablesRestore, iptablesDesired, parseIptablesSave } from './iptables-rules.js';
export { buildNftInstall, buildNftRemove, buildNftTable, familiesOf } from './nft-rules.js';
export {
  formatRedirectStatus,
  install,
  remove,
  selectBackend,
  status,
  type InstallResult,
  type RedirectOptions,
  type RedirectStatus,
  type RedirectStatusV6,
  type RemoveResult,
} from './installer.js';
export { resolveNetns, type RedirectDeps } from './exec.js';
