// `devmapper init` and `devmapper cleanup`: bringing a home's pool up (or finishing an init that
// was interrupted) and down again.
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../driver/driver.js';
import { resolveOptions } from '../driver/options.js';
import { MetadataError } from '../errors.js';
import { expectPositionals, parseArgs } from './args.js';
import { checkOptions, driverOptionsFrom, INIT_OPTIONS } from './driver-flags.js';
import { type Io, openDriver, optionsFile, recordedOptions } from './command-context.js';
import { assertHome, PENDING_OPTIONS, unfinishedInit } from './home.js';
import { requireDeviceMapper } from './host.js';
import { humanBytes, Progress, progress, toJson } from './output.js';

export async function initCommand(argv: string[], io: Io): Promise<void> {
  const parsed = parseArgs(argv, INIT_OPTIONS);
  expectPositionals(parsed, 0, 0, 'devmapper init [options]');
  const options = driverOptionsFrom(parsed, io.home);
  const resolved = checkOptions(() => resolveOptions(options));
  assertHome(io.home, { command: 'init', write: true });
  requireDeviceMapper();
  const unfinished = existsSync(optionsFile(io.home)) ? undefined : unfinishedInit(io.home);
  if (unfinished) progress(`an earlier \`devmapper init\` on ${io.home} did not finish: finishing it`);
  const { home: _home, ...rest } = options;
  // Before anything is made: a command that finds the home half-made (init killed) says so, and
  // cleanup brings down what it left with these options. Renamed into place once init is done.
  const pending = join(io.home, PENDING_OPTIONS);
  const driver = await Progress.run(
    `initialising ${io.home}: ${resolved.thinPoolDevice ? `adopting pool ${resolved.thinPoolDevice}` : resolved.dataDevice ? 'creating the pool' : `creating the pool on sparse loop files (${humanBytes(resolved.loopDataSize)} data)`}, ` +
      `formatting the ${humanBytes(resolved.baseSize)} base device (${resolved.filesystem})`,
    async () => {
      mkdirSync(io.home, { recursive: true, mode: 0o700 });
      writeFileSync(pending, `${toJson(rest)}\n`, { mode: 0o600 });
      try {
        return await Driver.init(
          io.lockTimeoutMs === undefined ? options : { ...options, lockTimeoutMs: io.lockTimeoutMs },
        );
      } catch (error) {
        // A failed init undoes what it activated; the record stays only for a home that was
        // already half-made (its pool may still be up, for cleanup to bring down).
        if (!unfinished) rmSync(pending, { force: true });
        throw error;
      }
    },
  );
  try {
    renameSync(pending, optionsFile(io.home));
    const status = await driver.status();
    io.out(
      io.json
        ? `${toJson(status)}\n`
        : `initialised ${io.home}: pool ${status.poolName}, base ${humanBytes(status.baseDeviceSize)} ${status.backingFilesystem}\n`,
    );
  } finally {
    await driver.close();
  }
}

export async function cleanupCommand(argv: string[], io: Io): Promise<void> {
  expectPositionals(parseArgs(argv, {}), 0, 0, 'devmapper cleanup');
  let driver: Driver | undefined;
  assertHome(io.home, { command: 'cleanup', write: true });
  const unfinished = existsSync(optionsFile(io.home)) ? undefined : unfinishedInit(io.home);
  if (unfinished?.pendingOptions) {
    // An init that was killed: open the home with the options it was given (which finishes what
    // it started, as the next init would) and bring everything down.
    requireDeviceMapper();
    progress(`an earlier \`devmapper init\` on ${io.home} did not finish: deactivating what it left`);
    await (await Driver.init(recordedOptions(io.home, io.lockTimeoutMs, unfinished.pendingOptions))).cleanup();
    rmSync(unfinished.pendingOptions, { force: true });
    io.out(
      io.json
        ? `${toJson({ home: io.home, cleanedUp: true, unfinishedInit: true })}\n`
        : `unmounted and deactivated everything under ${io.home} (the interrupted init's pool included); run \`devmapper init\` to use it again, or remove it\n`,
    );
    return;
  }
  try {
    driver = await openDriver(io.home, io.lockTimeoutMs, { command: 'cleanup', write: true });
  } catch (error) {
    // Damaged layer records stop every other command; cleanup still brings the home down.
    if (!(error instanceof MetadataError && error.file.endsWith('.layer.json'))) throw error;
    progress(
      `${error.message}\ncleaning up all the same (the damaged records are left for \`devmapper check --repair\`)`,
    );
    await Driver.cleanupDamaged(recordedOptions(io.home, io.lockTimeoutMs));
  }
  await driver?.cleanup();
  io.out(
    io.json
      ? `${toJson({ home: io.home, cleanedUp: true })}\n`
      : `unmounted and deactivated everything under ${io.home}\n`,
  );
}
