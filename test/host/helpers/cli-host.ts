// What the host CLI tests share: the project root, the built CLI run as its own process (bin.js
// through execFile, never a shell; test/cli-process.ts), a fresh home per test file, and the
// command names the help and completion tests expect.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CliRun, runCli } from '../../cli-process.js';

export const ROOT = fileURLToPath(new URL('../../../..', import.meta.url));

export const cli = (...args: string[]): Promise<CliRun> => runCli(args, 60_000);

/** A new empty directory for --home, removed when the test file is done. */
export function freshHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'devmapper-cli-host-'));
  test.after.always(() => rmSync(home, { recursive: true, force: true }));
  return home;
}

/** The layer and pool commands, in the order the global --help lists them. */
export const LAYER_COMMANDS: readonly string[] = [
  'init',
  'create',
  'mount',
  'umount',
  'rm',
  'ls',
  'status',
  'cleanup',
  'check',
];

/** The `dm` sub-commands, each as `dm <name>`, in the order the global --help lists them. */
export const DM_SUBCOMMANDS: readonly string[] = [
  'dm version',
  'dm ls',
  'dm info',
  'dm table',
  'dm status',
  'dm targets',
  'dm message',
];
