// `devmapper init`, `devmapper cleanup` and `devmapper grow-pool`: bringing a home's pool up (or
// finishing an init that was interrupted), down again, and growing it. grow-pool is
// Driver.growPool, the way out of a pool that is out of data space or whose metadata device is
// full (README, Failure modes); its sizes are read as every other size flag (cliSize), and a
// size the home cannot take (smaller than the file, or a home on --data-dev/--metadata-dev) is
// a usage error naming the flag, found once the home is open, with nothing changed.
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../driver/driver.js';
import { writeDurably } from '../driver/metadata-files.js';
import { resolveOptions } from '../driver/options.js';
import { InvalidArgumentError, MetadataError } from '../errors.js';
import { expectPositionals, parseArgs, UsageError } from './args.js';
import { checkOptions, cliSize, driverOptionsFrom, INIT_OPTIONS } from './driver-flags.js';
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
      // Never through a symlink or into a FIFO planted there (ERR_DM_UNSAFE_PATH), as for every file of the home's.
      writeDurably(pending, `${toJson(rest)}\n`);
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
    // Damaged metadata (records, the pack, the log) stops every other command; cleanup still
    // brings the home down. cli-options.json, outside <home>/metadata, is what it opens with.
    if (!(error instanceof MetadataError && error.file.startsWith(join(io.home, 'metadata', '/')))) throw error;
    progress(
      `${error.message}\ncleaning up all the same (the damaged metadata is left for \`devmapper check --repair\` or to mend by hand)`,
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
const MiB = 1n << 20n;
const FLAG_OF: Record<string, string> = { dataSize: '--data-size', metadataSize: '--metadata-size' };

export async function growPoolCommand(argv: string[], io: Io): Promise<void> {
  const parsed = parseArgs(argv, { values: ['data-size', 'metadata-size'] });
  expectPositionals(parsed, 0, 0, 'devmapper grow-pool [--data-size S] [--metadata-size S]');
  const dataSize = parsed.values.get('data-size');
  const metadataSize = parsed.values.get('metadata-size');
  const sizes = [
    ['--data-size', dataSize === undefined ? undefined : cliSize(dataSize, '--data-size', MiB)],
    ['--metadata-size', metadataSize === undefined ? undefined : cliSize(metadataSize, '--metadata-size', MiB)],
  ] as const;
  const driver = await openDriver(io.home, io.lockTimeoutMs, { command: 'grow-pool', write: true });
  try {
    const before = await driver.status();
    // Checked before anything grows (the metadata file grows before the data file).
    const files = { '--data-size': before.dataFile, '--metadata-size': before.metadataFile };
    for (const [flag, size] of sizes) {
      if (size === undefined) continue;
      const file = files[flag];
      if (file === undefined)
        throw new UsageError(
          `${flag}: the pool of ${io.home} is not on devmapper's own loop files: grow its device yourself, then run \`devmapper grow-pool\` without sizes`,
        );
      const current = BigInt(statSync(file).size);
      if (size < current)
        throw new UsageError(
          `${flag}: ${humanBytes(size)} is smaller than ${file} (${humanBytes(current)}); a pool is never shrunk (nothing was changed)`,
        );
    }
    try {
      await driver.growPool(dataSize, metadataSize === undefined ? {} : { metadataSize });
    } catch (error) {
      // Only the home knows its files' sizes and whether it has loop files at all.
      if (error instanceof InvalidArgumentError && FLAG_OF[error.argument]) {
        throw new UsageError(`${FLAG_OF[error.argument]}: ${error.message.slice(error.argument.length + 2)}`);
      }
      throw error;
    }
    const after = await driver.status();
    if (io.json) {
      io.out(`${toJson({ before, after })}\n`);
      return;
    }
    const change = (what: string, from: bigint, to: bigint): string =>
      from === to ? `${what} ${humanBytes(to)}` : `${what} ${humanBytes(from)} -> ${humanBytes(to)}`;
    io.out(
      `grew pool ${after.poolName}: ${change('data', before.dataSpace.total, after.dataSpace.total)}, ` +
        `${change('metadata', before.metadataSpace.total, after.metadataSpace.total)}; mode ${after.poolMode}\n`,
    );
  } finally {
    await driver.close();
  }
}
