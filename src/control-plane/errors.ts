/**
 * Control plane errors. Bad resources are not errors here: they are
 * ConfigIssues (validation.ts), reported and skipped. These are for the
 * things that stop a source from working at all.
 */
import { AmbitError } from '../common/errors.js';

export class ControlPlaneError extends AmbitError {}

/** The manifest directory cannot be read (missing, not a directory, no permission). */
export class ManifestDirError extends ControlPlaneError {
  constructor(
    readonly dir: string,
    options?: { cause?: unknown },
  ) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super('AMBIT_ERR_CONTROL_PLANE_MANIFEST_DIR', `cannot read the manifest directory ${dir}${why}; pass an existing directory of .yaml files`, options);
  }
}

/** The kubeconfig could not be loaded (bad path or content, or not running in a cluster). */
export class KubeConfigError extends ControlPlaneError {
  constructor(what: string, options?: { cause?: unknown }) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super('AMBIT_ERR_CONTROL_PLANE_KUBECONFIG', `cannot load ${what}${why}; pass --kubeconfig <path> or run inside a cluster`, options);
  }
}

/** A Kubernetes list/watch failed; the informer retries, this is what gets logged and counted. */
export class KubeWatchError extends ControlPlaneError {
  constructor(
    readonly resource: string,
    options?: { cause?: unknown },
  ) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super('AMBIT_ERR_CONTROL_PLANE_KUBE_WATCH', `watching ${resource} failed${why}; retrying (check the API server and the RBAC rules for list/watch)`, options);
  }
}
