// Shared pieces of the CLI's kernel tests (the cli-*.test.ts files): the CLI run as its own process (the built bin.js through execFile, never
// a shell), its --json output and errors read back, the library opened on the same home after
// the CLI process has exited (one driver per home at a time), and each file's hooks: the kernel
// check before; after, the leak check (for the files that do not end with it as a test) and the
// cleanup of every home the file made.
import test, { type ExecutionContext } from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import type { DriverOptions } from '../../src/driver/options.js';
import { type CliRun, runCli } from '../cli-process.js';
import { SMALL, allHomes, dmNames, loopLines, mountsUnder, removeHomes } from './driver-helpers.js';
import { assertKernelTestBed } from './reference-tools.js';

export type Run = CliRun;

/** Runs the CLI (node bin.js ...), never through a shell; resolves with whatever it exited with. */
export const cli = (...args: string[]): Promise<Run> => runCli(args);

/** Exit status 0, and its stdout parsed as JSON. */
export function json(t: ExecutionContext, run: Run, what: string): any {
  t.is(run.code, 0, `${what}: exit status (stderr: ${run.stderr})`);
  try {
    return JSON.parse(run.stdout);
  } catch {
    t.fail(`${what}: stdout is not JSON: ${run.stdout}`);
    return undefined;
  }
}

/** The error a failed --json run printed on stderr: { code, message }. */
export function jsonError(
  t: ExecutionContext,
  run: Run,
  status: number,
  what: string,
): { code: string; message: string } {
  t.is(run.code, status, `${what}: exit status (stderr: ${run.stderr})`);
  t.is(run.stdout, '', `${what}: nothing on stdout`);
  const error = errorOf(run);
  t.is(typeof error.code, 'string');
  t.true(error.message.length > 0, `${what}: a message`);
  return error;
}

/** The { code, message } of the --json error line a failed run printed last on stderr. */
export function errorOf(run: Run): { code: string; message: string } {
  const line = run.stderr.trim().split('\n').at(-1) ?? '';
  return (JSON.parse(line) as { error: { code: string; message: string } }).error;
}

/** The library's values the way the CLI's JSON writes them (bigints as decimal strings). */
export const plain = (value: unknown): any =>
  JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));

export const codeOf = (error: unknown): string => (error as { code?: string } | undefined)?.code ?? '(no code)';

/** The options `init` recorded in <home>/cli-options.json, with the home. */
export function recorded(home: string): DriverOptions {
  return { ...(JSON.parse(readFileSync(join(home, 'cli-options.json'), 'utf8')) as DriverOptions), home };
}

/** Opens the home with the library (after the CLI let go of it), runs `body`, lets go again. */
export async function library<T>(home: string, body: (driver: Driver) => Promise<T>): Promise<T> {
  const driver = await Driver.init(recorded(home));
  try {
    return await body(driver);
  } finally {
    await driver.close();
  }
}

// Every CLI run is a fresh node process, which in the UML guest costs seconds (2-10 s on a busy
// host; about 30 runs in these files): the tests spend their runs where each checks something new.
export const LONG = 300_000;
export const initArgs = [
  'init',
  '--base-size',
  SMALL.baseSize,
  '--loop-data-size',
  SMALL.loopDataSize,
  '--loop-metadata-size',
  SMALL.loopMetadataSize,
];

/**
 * Registers the file's hooks: the kernel check before its tests; after them (serially, in this
 * order) the leak check when `leakCheckHook` (cli-layers.test.ts and cli-grow-pool.test.ts
 * have one as their last test instead), then the cleanup of every home the file made.
 */
export function useCliBed(options: { leakCheckHook: boolean }): void {
  test.before(() => assertKernelTestBed());
  if (options.leakCheckHook) {
    test.serial.after.always('nothing leaked: no driver dm device, no loop device, no mount under any home', (t) =>
      assertNothingLeftByCli(t),
    );
  }
  test.serial.after.always(async () => {
    // A test that failed half-way may have left a pool or mounts: undo them before the homes go.
    for (const home of allHomes()) {
      if (!existsSync(join(home, 'cli-options.json'))) continue;
      try {
        await (await Driver.init(recorded(home))).cleanup();
      } catch {
        // the leak test reports what is left
      }
    }
    removeHomes();
  });
}

/** The end-of-file check: no driver dm device, no loop device, no mount under any home of this file. */
export function assertNothingLeftByCli(t: ExecutionContext): void {
  t.deepEqual(
    dmNames().filter((n) => n.startsWith('devmapper-')),
    [],
  );
  t.deepEqual(loopLines(), []);
  for (const dir of allHomes()) t.deepEqual(mountsUnder(dir), [], dir);
}
