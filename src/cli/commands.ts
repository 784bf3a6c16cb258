/** The command table. Each command lives in its own module under src/cli/. */
import { agentCommand } from './agent-command.js';
import type { Command } from './command.js';
import { demoCommand } from './demo-command.js';
import { labCommand } from './lab-command.js';
import { redirectCommand } from './redirect-command.js';
import { versionCommand } from './version-command.js';

export const commands: Command[] = [agentCommand, demoCommand, labCommand, redirectCommand, versionCommand];
