#!/usr/bin/env node
// The `devmapper` executable (package.json "bin"); the command itself is main.ts.
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
