/** The command table. Each command lives in its own module under src/cli/. */
import type { Command } from './command.js';
import { versionCommand } from './version-command.js';
import { labCommand } from './lab-command.js';

export const commands: Command[] = [versionCommand, labCommand];
