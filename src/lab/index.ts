/**
 * The lab's public API, for tests, demos and benches:
 *
 *   const lab = await labUp({ manifests: 'lab.yaml', name: 't1a2b', mesh: false });
 *   await lab.exec('demo/client', ['getent', 'hosts', 'echo']);
 *   await lab.down();
 */
export { labUp, labDown, labDownAll, labStatus, labExec, labList, openLab, resolveTarget, DEFAULT_LAB_NAME, DEFAULT_READY_TIMEOUT_MS } from './lab.js';
export type { LabHandle, LabUpOptions, LabEnvOptions, LabDownReport, StoppedProcess, LabStatus, LabTarget, ExecOptions, ExecResult } from './lab.js';
export type { AgentLaunch, AgentProcess, AgentExit, SpawnAgent } from './agents.js';
export type { CommandRunner, RunResult } from './ip.js';
export { loadManifests, parseManifests } from './manifests.js';
export type { LabSpec, LabPodSpec, LabServiceSpec, LabRanges } from './manifests.js';
export { planLab, toClusterConfig } from './topology.js';
export type { LabPlan, PlannedNode, PlannedPod, PlannedService } from './topology.js';
export { LabError, LabExistsError, LabNotFoundError, LabCommandError, LabAgentError, LabRouteConflictError, LabPrivilegeError, LabTeardownError, LabWaypointError } from './errors.js';
export { renderWaypointManifest, waypointPods, WAYPOINT_GATEWAY_LABEL, WAYPOINT_GATEWAY_CLASS } from './waypoints.js';
export type { LabWaypointPod, WaypointManifestOptions } from './waypoints.js';
