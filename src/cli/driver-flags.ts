// The CLI's flags as Driver options: the flags `init` takes, each size flag checked up front
// (usage errors that name the flag as typed), and the Driver's own option checks in flag words.
import type { DriverOptions } from '../driver/options.js';
import { InvalidArgumentError } from '../errors.js';
import { bytesToSectors, isSectorAligned, parseSize } from '../thin/units.js';
import { checkArgument, type Parsed, UsageError } from './args.js';
import { withFlagNames } from './messages.js';
import { humanBytes } from './output.js';

export const INIT_OPTIONS = {
  values: [
    'base-size',
    'loop-data-size',
    'loop-metadata-size',
    'fs',
    'mount-opt',
    'data-dev',
    'metadata-dev',
    'thin-pool-dev',
    'block-size',
    'min-free-space',
    'ffi',
  ],
  flags: ['blkdiscard', 'deferred-removal', 'deferred-deletion', 'queue-if-no-space'],
  repeated: ['mkfs-arg'],
} as const;

/**
 * The largest device the kernel takes: dm-table.c refuses a target whose start + length is
 * above LLONG_MAX >> SECTOR_SHIFT sectors ("target length overflow"), so 2^54 - 1 sectors.
 */
export const MAX_DEVICE_SECTORS = (1n << 54n) - 1n;

/**
 * A size option as the CLI checks it before anything is opened: the Docker size grammar
 * (parseSize), whole 512-byte sectors, at least `min`, and what the kernel takes for a device;
 * each error names the option as typed (`--size: ...`) and is a usage error.
 */
export function cliSize(value: string, flag: string, min = 0n): bigint {
  const bytes = checkArgument(() => parseSize(value, flag));
  if (!isSectorAligned(bytes))
    throw new UsageError(`${flag}: ${JSON.stringify(value)} is ${bytes} bytes, not a whole number of 512-byte sectors`);
  if (bytes < min) throw new UsageError(`${flag}: ${JSON.stringify(value)} is below the minimum of ${humanBytes(min)}`);
  if (bytesToSectors(bytes, flag) > MAX_DEVICE_SECTORS) {
    throw new UsageError(
      `${flag}: ${JSON.stringify(value)} is more than the kernel takes for a device (at most ${MAX_DEVICE_SECTORS} sectors, 8 EiB - 512 bytes)`,
    );
  }
  return bytes;
}

/** Driver option checks (resolveOptions) as usage errors that name the CLI's flags. */
export function checkOptions<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw new UsageError(withFlagNames(error.message));
    throw error;
  }
}

export function driverOptionsFrom(parsed: Parsed, home: string): DriverOptions {
  const v = (name: string): string | undefined => parsed.values.get(name);
  const options: DriverOptions = { home };
  // Checked here with the flag's name; kept as typed (cli-options.json records them so).
  for (const flag of ['base-size', 'loop-data-size', 'loop-metadata-size', 'block-size'] as const)
    if (v(flag) !== undefined) cliSize(v(flag)!, `--${flag}`);
  if (v('base-size')) options.baseSize = v('base-size');
  if (v('loop-data-size')) options.loopDataSize = v('loop-data-size');
  if (v('loop-metadata-size')) options.loopMetadataSize = v('loop-metadata-size');
  if (v('fs')) options.filesystem = v('fs') as DriverOptions['filesystem'];
  if (v('mount-opt')) options.mountOptions = v('mount-opt');
  if (v('data-dev')) options.dataDevice = v('data-dev');
  if (v('metadata-dev')) options.metadataDevice = v('metadata-dev');
  if (v('thin-pool-dev')) options.thinPoolDevice = v('thin-pool-dev');
  if (v('block-size')) options.blockSize = v('block-size');
  if (v('min-free-space')) {
    const n = Number(v('min-free-space'));
    if (!Number.isInteger(n)) throw new UsageError('--min-free-space takes a whole percentage');
    options.minFreeSpacePercent = n;
  }
  if (v('ffi')) options.ffi = v('ffi') as DriverOptions['ffi'];
  if (parsed.repeated.get('mkfs-arg')) options.mkfsArgs = parsed.repeated.get('mkfs-arg');
  if (parsed.flags.has('blkdiscard')) options.discardOnDelete = true;
  if (parsed.flags.has('deferred-removal')) options.deferredRemoval = true;
  if (parsed.flags.has('deferred-deletion')) options.deferredDeletion = true;
  if (parsed.flags.has('queue-if-no-space')) options.errorIfNoSpace = false;
  return options;
}
