// Pool and layer commands over a home directory. The options given to `init` are kept in
// <home>/cli-options.json so later commands open the home the same way (while init runs they
// are in cli-options.init.json, so a command that finds an interrupted init can say so and
// `cleanup` can bring down what it left).
//
// Mounts across processes: each command is its own process and lets go of the home with
// Driver.close(), which leaves mounts in place; the next command adopts each with one reference.
// So for the CLI a layer is mounted or not: `mount` of a mounted layer prints its path and adds
// nothing, and one `umount` unmounts it. (Counting CLI mounts would need the count persisted and
// a crashed or killed holder would keep it up forever; a layer shared by several users is
// what the library's get()/put() counts in one long-lived process, such as `serve containerd`.)
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../driver/driver.js';
import type { LayerMetadata } from '../driver/device-set.js';
import { assertLayerId, assertMountLabel, resolveOptions, type DriverOptions } from '../driver/options.js';
import { parseSize } from '../thin/units.js';
import { DevmapperError, InvalidArgumentError, MetadataError } from '../errors.js';
import { checkArgument, expectPositionals, parseArgs, UsageError, type Parsed } from './args.js';
import { assertHome, PENDING_OPTIONS, RECORDED_OPTIONS, unfinishedInit } from './home.js';
import { requireDeviceMapper } from './host.js';
import { withFlagNames } from './messages.js';
import { humanBytes, keyValues, Progress, progress, table, toJson } from './output.js';
import { fromLayer } from '../containerd/records.js';

export interface Io {
  out: (text: string) => void;
  json: boolean;
  home: string;
  /** --wait: how long to wait for a home another process holds (DriverOptions.lockTimeoutMs). */
  lockTimeoutMs?: number;
}

const INIT_OPTIONS = {
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

function optionsFile(home: string): string {
  return join(home, RECORDED_OPTIONS);
}

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
  if (bytes % 512n !== 0n)
    throw new UsageError(`${flag}: ${JSON.stringify(value)} is ${bytes} bytes, not a whole number of 512-byte sectors`);
  if (bytes < min) throw new UsageError(`${flag}: ${JSON.stringify(value)} is below the minimum of ${humanBytes(min)}`);
  if (bytes / 512n > MAX_DEVICE_SECTORS) {
    throw new UsageError(
      `${flag}: ${JSON.stringify(value)} is more than the kernel takes for a device (at most ${MAX_DEVICE_SECTORS} sectors, 8 EiB - 512 bytes)`,
    );
  }
  return bytes;
}

/** Driver option checks (resolveOptions) as usage errors that name the CLI's flags. */
function checkOptions<T>(check: () => T): T {
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

function recordedOptions(home: string, lockTimeoutMs?: number, file = optionsFile(home)): DriverOptions {
  if (!existsSync(file)) {
    const unfinished = unfinishedInit(home);
    if (unfinished) throw new DevmapperError('ERR_DM_NOT_INITIALISED', unfinished.message);
    throw new DevmapperError(
      'ERR_DM_NOT_INITIALISED',
      `${home} is not initialised: run \`devmapper init --home ${home}\` first`,
    );
  }
  let recorded: unknown;
  try {
    recorded = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new MetadataError(
      file,
      undefined,
      `cannot be read as JSON (${(error as Error).message}): it holds the options \`devmapper init\` was given; fix or rewrite it with the same options`,
      { cause: error },
    );
  }
  if (typeof recorded !== 'object' || recorded === null || Array.isArray(recorded)) {
    throw new MetadataError(
      file,
      undefined,
      `holds ${recorded === null ? 'null' : Array.isArray(recorded) ? 'an array' : typeof recorded}, not the options object \`devmapper init\` wrote`,
    );
  }
  if ('home' in recorded) throw new MetadataError(file, 'home', 'is not an option kept here (the home is --home)');
  const options: DriverOptions = {
    ...(recorded as DriverOptions),
    home,
    ...(lockTimeoutMs === undefined ? {} : { lockTimeoutMs }),
  };
  try {
    resolveOptions(options);
  } catch (error) {
    const argument = (error as { argument?: string }).argument;
    throw new MetadataError(file, argument, (error as Error).message, { cause: error });
  }
  return options;
}

/**
 * Opens the home with the options `init` recorded (and --wait's lock timeout). `command` names
 * the command in messages; `write: false` for the commands that work on a read-only home.
 */
export async function openDriver(
  home: string,
  lockTimeoutMs?: number,
  access: { command: string; write: boolean } = { command: 'this command', write: true },
): Promise<Driver> {
  assertHome(home, access);
  requireDeviceMapper();
  return Driver.init(recordedOptions(home, lockTimeoutMs));
}

async function withDriver<T>(
  io: Io,
  body: (driver: Driver) => Promise<T>,
  access: { command: string; write: boolean },
): Promise<T> {
  const driver = await openDriver(io.home, io.lockTimeoutMs, access);
  try {
    return await body(driver);
  } finally {
    await driver.close(); // keeps mounts and devices: the next command adopts them
  }
}

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

export async function createCommand(argv: string[], io: Io): Promise<void> {
  const parsed = parseArgs(argv, { values: ['parent', 'size'] });
  const [id] = expectPositionals(parsed, 1, 1, 'devmapper create <id> [--parent <id>] [--size <size>]');
  const parent = parsed.values.get('parent');
  const size = parsed.values.get('size');
  checkArgument(() => {
    assertLayerId(id);
    if (parent !== undefined) assertLayerId(parent, '--parent');
  });
  if (size !== undefined) cliSize(size, '--size');
  await withDriver(
    io,
    async (driver) => {
      try {
        await driver.create(id!, parent, { size });
      } catch (error) {
        // Only the home knows the parent's size: a smaller --size is still a usage error.
        if (
          (error as { code?: string }).code === 'ERR_DM_INVALID_ARGUMENT' &&
          /^size: /.test((error as Error).message)
        ) {
          throw new UsageError(`--size: ${(error as Error).message.slice('size: '.length)}`);
        }
        // The device takes any size the kernel does; the filesystem may not grow that far (ext4
        // reserves descriptor blocks for about 1024 times its size at mkfs). The layer is rolled back.
        if (
          size !== undefined &&
          (error as { code?: string }).code === 'ERR_DM_TOOL_FAILED' &&
          /^(resize2fs|xfs_growfs) /.test((error as Error).message)
        ) {
          throw new UsageError(
            `--size: ${JSON.stringify(size)} is more than the layer's filesystem can grow to (nothing was created): ${(error as Error).message}`,
          );
        }
        throw error;
      }
      const layer = await driver.metadata(id!);
      io.out(io.json ? `${toJson(layer)}\n` : `created ${id} (thin id ${layer.deviceId}, ${humanBytes(layer.size)})\n`);
    },
    { command: 'create', write: true },
  );
}

export async function mountCommand(argv: string[], io: Io): Promise<void> {
  const parsed = parseArgs(argv, { values: ['label'] });
  const [id] = expectPositionals(parsed, 1, 1, 'devmapper mount <id> [--label <selinux context>]');
  const label = parsed.values.get('label');
  checkArgument(() => {
    assertLayerId(id);
    if (label !== undefined) assertMountLabel(label);
  });
  await withDriver(
    io,
    async (driver) => {
      // Mounted by an earlier command (adopted): the same path, nothing added (see the top of this file).
      const already = driver.mountCount(id!) > 0 && (await driver.exists(id!));
      const rootfs = await driver.get(id!, label);
      if (already) {
        await driver.put(id!); // back to the one reference the mount has across commands
        if (!io.json) progress(`${id} was already mounted (one \`devmapper umount ${id}\` unmounts it)`);
      }
      io.out(io.json ? `${toJson({ id, rootfs, alreadyMounted: already })}\n` : `${rootfs}\n`);
    },
    { command: 'mount', write: true },
  );
}

export async function umountCommand(argv: string[], io: Io): Promise<void> {
  const [id] = expectPositionals(parseArgs(argv, {}), 1, 1, 'devmapper umount <id>');
  checkArgument(() => assertLayerId(id));
  await withDriver(
    io,
    async (driver) => {
      if (!(await driver.exists(id!)))
        throw new DevmapperError(
          'ERR_DM_UNKNOWN_LAYER',
          `layer ${id} does not exist (\`devmapper ls\` lists the layers)`,
        );
      const wasMounted = driver.mountCount(id!) > 0;
      if (wasMounted) await driver.put(id!);
      else if (!io.json) progress(`${id} is not mounted: nothing to do`);
      io.out(io.json ? `${toJson({ id, mounted: driver.mountCount(id!) > 0, wasMounted })}\n` : '');
    },
    { command: 'umount', write: true },
  );
}

export async function rmCommand(argv: string[], io: Io): Promise<void> {
  const [id] = expectPositionals(parseArgs(argv, {}), 1, 1, 'devmapper rm <id>');
  checkArgument(() => assertLayerId(id));
  await withDriver(
    io,
    async (driver) => {
      const layer = (await driver.exists(id!)) ? await driver.metadata(id!) : undefined;
      const discards = recordedOptions(io.home).discardOnDelete === true;
      // Discarding a layer's blocks (--blkdiscard) takes time in proportion to its size: say so at
      // once; otherwise only a removal that takes over a second shows a line.
      await Progress.run(
        `removing ${id}${discards && layer ? ` (discarding its ${humanBytes(layer.size)} of blocks first)` : ''}`,
        () => driver.remove(id!),
        { delayMs: discards && layer ? 0 : 1000 },
      );
      io.out(io.json ? `${toJson({ id, removed: !(await driver.exists(id!)) })}\n` : '');
    },
    { command: 'rm', write: true },
  );
}

/** What `ls` shows per layer: the library's view plus the bytes mapped (null when inactive). */
export type LayerRow = LayerMetadata & { mappedBytes: bigint | null; parentRemoved: boolean };

/**
 * What `ls` shows per layer: the library's view plus the bytes mapped (null when inactive) and
 * whether the recorded parent is gone. A parent can be removed while its snapshots live on (thin
 * snapshots do not depend on their origin), and its id can then be taken by a new layer: the
 * parent counts as gone when no layer has its id, or when the layer that has it now got a later
 * thin id than the child (thin ids are handed out in increasing order, so a real parent's is
 * lower; only after 2^24 creates, when the ids wrap, could this misjudge).
 */
export async function layerRows(driver: Driver): Promise<LayerRow[]> {
  const layers = await driver.list();
  const byId = new Map(layers.map((l) => [l.id, l]));
  const rows: LayerRow[] = [];
  for (const layer of layers) {
    const parent = layer.parent === null ? undefined : byId.get(layer.parent);
    const parentRemoved = layer.parent !== null && (parent === undefined || parent.deviceId > layer.deviceId);
    rows.push({ ...layer, mappedBytes: await driver.activeMappedBytes(layer.id), parentRemoved });
  }
  return rows;
}

export function formatLayerRows(rows: Awaited<ReturnType<typeof layerRows>>): string {
  const snapshots = rows.map(snapshotLabel);
  const anySnapshot = snapshots.some((label) => label !== null); // the column only where containerd uses the home
  return table(
    ['ID', 'PARENT', 'THIN ID', 'SIZE', 'MAPPED', 'MOUNTED', ...(anySnapshot ? ['CONTAINERD SNAPSHOT'] : [])],
    rows.map((r, i) => [
      r.id,
      r.parentRemoved ? '(removed)' : r.parent,
      r.deviceId,
      humanBytes(r.size),
      r.mappedBytes === null ? null : humanBytes(r.mappedBytes),
      r.mounted ? 'yes' : 'no',
      ...(anySnapshot ? [snapshots[i]] : []),
    ]),
  );
}

/** `<kind> <name>` of the containerd snapshot a layer holds (null for a plain layer). */
function snapshotLabel(layer: LayerMetadata): string | null {
  try {
    const snapshot = fromLayer(layer);
    return snapshot ? `${snapshot.kind} ${snapshot.name}` : null;
  } catch {
    return 'damaged record';
  }
}

export async function lsCommand(argv: string[], io: Io): Promise<void> {
  expectPositionals(parseArgs(argv, {}), 0, 0, 'devmapper ls');
  await withDriver(
    io,
    async (driver) => {
      const rows = await layerRows(driver);
      io.out(io.json ? `${toJson(rows)}\n` : formatLayerRows(rows));
    },
    { command: 'ls', write: false },
  );
}

export async function statusCommand(argv: string[], io: Io): Promise<void> {
  expectPositionals(parseArgs(argv, {}), 0, 0, 'devmapper status');
  await withDriver(
    io,
    async (driver) => {
      io.out(formatStatus(await driver.status(), io.json));
    },
    { command: 'status', write: false },
  );
}

export function formatStatus(s: Awaited<ReturnType<Driver['status']>>, json: boolean): string {
  if (json) return `${toJson(s)}\n`;
  const space = (u: { used: bigint; total: bigint; available: bigint }): string =>
    `${humanBytes(u.used)} used, ${humanBytes(u.total)} total, ${humanBytes(u.available)} available`;
  return keyValues([
    ['Pool Name', s.poolName],
    ['Pool Blocksize', humanBytes(s.poolBlockSize)],
    ['Base Device Size', humanBytes(s.baseDeviceSize)],
    ['Backing Filesystem', s.backingFilesystem],
    ['Data file', s.dataFile],
    ['Metadata file', s.metadataFile],
    ['Data loop device', s.dataLoopDevice],
    ['Metadata loop device', s.metadataLoopDevice],
    ['Data Space', space(s.dataSpace)],
    ['Metadata Space', space(s.metadataSpace)],
    ['Min Free Space', `${s.minFreeSpacePercent}%`],
    ['Deferred Removal Enabled', s.deferredRemovalEnabled],
    ['Deferred Deletion Enabled', s.deferredDeletionEnabled],
    ['Deferred Deleted Device Count', s.deferredDeletedDeviceCount],
    ['Library Version', `kernel dm ${s.driverVersion}`],
    ['Pool Mode', s.poolMode],
    ['Needs Check', s.needsCheck],
    ['Transaction Id', s.transactionId],
    ['Layers', s.layerCount],
  ]);
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

/** Exit status 3 when problems remain (1 is for a check that could not run). */
export const CHECK_PROBLEMS = 3;

export async function checkCommand(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, { flags: ['repair', 'thin-check'] });
  expectPositionals(parsed, 0, 0, 'devmapper check [--repair] [--thin-check]');
  assertHome(io.home, {
    command: parsed.flags.has('repair') ? 'check --repair' : 'check',
    write: parsed.flags.has('repair'),
  });
  requireDeviceMapper();
  const options = recordedOptions(io.home, io.lockTimeoutMs);
  progress('probing the pool for every thin id ever allocated');
  const report = await Driver.check(options, {
    repair: parsed.flags.has('repair'),
    thinCheck: parsed.flags.has('thin-check'),
  });
  if (io.json) {
    io.out(`${toJson(report)}\n`);
  } else {
    const list = (items: unknown[]): string =>
      items.length === 0
        ? 'none'
        : items.map((i) => (typeof i === 'object' ? JSON.stringify(i) : String(i))).join(', ');
    // A layer that holds a containerd snapshot is named by it too: `ctrd-7 (active "default/3/x")`.
    const named = (layer: string): string => {
      const label = report.layerMeta[layer]
        ? snapshotLabel({ id: layer, meta: report.layerMeta[layer] } as LayerMetadata)
        : null;
      return label === null ? layer : `${layer} (${label})`;
    };
    io.out(
      keyValues([
        ['Pool mode', `${report.poolMode}${report.needsCheck ? ', needs_check' : ''}`],
        ['Leaked thin ids', list(report.leakedThinIds)],
        [
          'Layers with missing thin ids',
          list(report.missingThinIds.map((m) => `${named(m.layer)} thin id ${m.deviceId}`)),
        ],
        ['Damaged records', list(report.damagedRecords.map((d) => d.reason))],
        [
          'Thin ids claimed twice',
          list(report.thinIdConflicts.map((c) => `${c.deviceId} (${c.layers.map(named).join(', ')})`)),
        ],
        ['Quarantined files', list(report.quarantined)],
        ['Stray dm devices', list(report.strayDevices)],
        ['Unheld mounts', list(report.unheldMounts)],
        ['Pending deferred deletions', list(report.pendingDeferredDeletions.map(named))],
        [
          'Transaction id (pool / metadata)',
          `${report.transactionId.pool} / ${report.transactionId.metadata}${report.transactionId.consistent ? '' : '  MISMATCH'}`,
        ],
        ...(report.thinCheck ? [['thin_check', report.thinCheck.summary] as const] : []),
      ]),
    );
    if (report.thinCheck?.ran && !report.thinCheck.ok)
      io.out(`${report.thinCheck.output.replace(/^/gm, 'thin_check: ')}\n`);
    for (const line of report.repairs) io.out(`repaired: ${line}\n`);
    for (const line of report.skipped) io.out(`left alone: ${line}\n`);
    io.out(report.clean ? 'clean\n' : 'problems found (run with --repair to fix them)\n');
  }
  return report.clean ? 0 : CHECK_PROBLEMS;
}
