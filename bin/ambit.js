#!/usr/bin/env node
// The `ambit` command: a thin shim so the package bin works before and after `npm run build`.
import '../dist/src/cli/main.js';
