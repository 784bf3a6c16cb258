#!/usr/bin/env node
// The `ambit-cni` chained CNI plugin executable (see src/cni/plugin.ts). The node component installs a copy into /opt/cni/bin.
import { pluginMain } from '../dist/src/cni/plugin.js';

await pluginMain();
