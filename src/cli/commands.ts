/** The command table. Each command lives in its own module under src/cli/. */
import { agentCommand } from './agent-command.js';
import { caCommand } from './ca-command.js';
import { checkCommand } from './check-command.js';
import { cniCommand } from './cni-command.js';
import type { Command } from './command.js';
import { configDumpCommand } from './config-dump-command.js';
import { controlPlaneCommand } from './control-plane-command.js';
import { demoCommand } from './demo-command.js';
import { enrollCommand, unenrollCommand } from './enroll-command.js';
import { installCommand } from './install-command.js';
import { labCommand } from './lab-command.js';
import { metricsCommand } from './metrics-command.js';
import { redirectCommand } from './redirect-command.js';
import { statusCommand } from './status-command.js';
import { versionCommand } from './version-command.js';
import { waypointCommand } from './waypoint-command.js';

export const commands: Command[] = [agentCommand, configDumpCommand, controlPlaneCommand, demoCommand, labCommand, metricsCommand, redirectCommand, statusCommand, versionCommand, cniCommand, installCommand, enrollCommand, unenrollCommand, checkCommand, waypointCommand, caCommand];
