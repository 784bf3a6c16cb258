/** The command table. Each command lives in its own module under src/cli/. */
import { agentCommand } from './agent-command.js';
import type { Command } from './command.js';
import { controlPlaneCommand } from './control-plane-command.js';
import { demoCommand } from './demo-command.js';
import { labCommand } from './lab-command.js';
import { redirectCommand } from './redirect-command.js';
import { versionCommand } from './version-command.js';

export const commands: Command[] = [agentCommand, controlPlaneCommand, demoCommand, labCommand, redirectCommand, versionCommand];
