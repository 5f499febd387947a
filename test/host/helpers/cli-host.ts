// What the host CLI tests share: the project root, the built CLI run as its own process (bin.js
// through execFile, never a shell; test/cli-process.ts), and a fresh home per test file.
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
