// Pool and layer commands over a home directory. The options given to `init` are kept in
// <home>/cli-options.json so later commands open the home the same way.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../driver/driver.js';
import type { LayerMetadata } from '../driver/device-set.js';
import { assertLayerId, assertMountLabel, resolveOptions, type DriverOptions } from '../driver/options.js';
import { parseSize } from '../thin/units.js';
import { DevmapperError, MetadataError } from '../errors.js';
import { checkArgument, expectPositionals, parseArgs, UsageError, type Parsed } from './args.js';
import { requireDeviceMapper } from './host.js';
import { humanBytes, keyValues, progress, table, toJson } from './output.js';
import { fromLayer } from '../containerd/records.js';

export interface Io {
  out: (text: string) => void;
  json: boolean;
  home: string;
  /** --wait: how long to wait for a home another process holds (DriverOptions.lockTimeoutMs). */
  lockTimeoutMs?: number;
}

const INIT_OPTIONS = {
  values: ['base-size', 'loop-data-size', 'loop-metadata-size', 'fs', 'mount-opt', 'data-dev', 'metadata-dev', 'thin-pool-dev', 'block-size', 'min-free-space', 'ffi'],
  flags: ['blkdiscard', 'deferred-removal', 'deferred-deletion', 'queue-if-no-space'],
  repeated: ['mkfs-arg'],
} as const;

function optionsFile(home: string): string {
  return join(home, 'cli-options.json');
}

export function driverOptionsFrom(parsed: Parsed, home: string): DriverOptions {
  const v = (name: string): string | undefined => parsed.values.get(name);
  const options: DriverOptions = { home };
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

function recordedOptions(home: string, lockTimeoutMs?: number): DriverOptions {
  const file = optionsFile(home);
  if (!existsSync(file)) throw new DevmapperError('ERR_DM_NOT_INITIALISED', `${home} is not initialised: run \`devmapper init --home ${home}\` first`);
  let recorded: unknown;
  try {
    recorded = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new MetadataError(file, undefined, `cannot be read as JSON (${(error as Error).message}): it holds the options \`devmapper init\` was given; fix or rewrite it with the same options`, { cause: error });
  }
  if (typeof recorded !== 'object' || recorded === null || Array.isArray(recorded)) {
    throw new MetadataError(file, undefined, `holds ${recorded === null ? 'null' : Array.isArray(recorded) ? 'an array' : typeof recorded}, not the options object \`devmapper init\` wrote`);
  }
  if ('home' in recorded) throw new MetadataError(file, 'home', 'is not an option kept here (the home is --home)');
  const options: DriverOptions = { ...(recorded as DriverOptions), home, ...(lockTimeoutMs === undefined ? {} : { lockTimeoutMs }) };
  try {
    resolveOptions(options);
  } catch (error) {
    const argument = (error as { argument?: string }).argument;
    throw new MetadataError(file, argument, (error as Error).message, { cause: error });
  }
  return options;
}

/** Opens the home with the options `init` recorded (and --wait's lock timeout). */
export async function openDriver(home: string, lockTimeoutMs?: number): Promise<Driver> {
  requireDeviceMapper();
  return Driver.init(recordedOptions(home, lockTimeoutMs));
}

async function withDriver<T>(io: Io, body: (driver: Driver) => Promise<T>): Promise<T> {
  const driver = await openDriver(io.home, io.lockTimeoutMs);
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
  checkArgument(() => resolveOptions(options));
  requireDeviceMapper();
  progress(`initialising ${io.home} (formatting the base device may take a while)`);
  const driver = await Driver.init(io.lockTimeoutMs === undefined ? options : { ...options, lockTimeoutMs: io.lockTimeoutMs });
  try {
    const { home: _home, ...rest } = options;
    writeFileSync(optionsFile(io.home), toJson(rest) + '\n', { mode: 0o600 });
    const status = await driver.status();
    io.out(io.json ? toJson(status) + '\n' : `initialised ${io.home}: pool ${status.poolName}, base ${humanBytes(status.baseDeviceSize)} ${status.backingFilesystem}\n`);
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
    if (parent !== undefined) assertLayerId(parent, 'parent');
    if (size !== undefined) parseSize(size, 'size');
  });
  await withDriver(io, async (driver) => {
    await driver.create(id!, parent, { size });
    const layer = await driver.metadata(id!);
    io.out(io.json ? toJson(layer) + '\n' : `created ${id} (thin id ${layer.deviceId}, ${humanBytes(layer.size)})\n`);
  });
}

export async function mountCommand(argv: string[], io: Io): Promise<void> {
  const parsed = parseArgs(argv, { values: ['label'] });
  const [id] = expectPositionals(parsed, 1, 1, 'devmapper mount <id> [--label <selinux context>]');
  const label = parsed.values.get('label');
  checkArgument(() => {
    assertLayerId(id);
    if (label !== undefined) assertMountLabel(label);
  });
  await withDriver(io, async (driver) => {
    const rootfs = await driver.get(id!, label);
    io.out(io.json ? toJson({ id, rootfs }) + '\n' : `${rootfs}\n`);
  });
}

export async function umountCommand(argv: string[], io: Io): Promise<void> {
  const [id] = expectPositionals(parseArgs(argv, {}), 1, 1, 'devmapper umount <id>');
  checkArgument(() => assertLayerId(id));
  await withDriver(io, async (driver) => {
    await driver.put(id!);
    io.out(io.json ? toJson({ id, mounted: driver.mountCount(id!) > 0 }) + '\n' : '');
  });
}

export async function rmCommand(argv: string[], io: Io): Promise<void> {
  const [id] = expectPositionals(parseArgs(argv, {}), 1, 1, 'devmapper rm <id>');
  checkArgument(() => assertLayerId(id));
  await withDriver(io, async (driver) => {
    await driver.remove(id!);
    io.out(io.json ? toJson({ id, removed: !(await driver.exists(id!)) }) + '\n' : '');
  });
}

/** What `ls` shows per layer: the library's view plus the bytes mapped (null when inactive). */
export async function layerRows(driver: Driver): Promise<Array<LayerMetadata & { mappedBytes: bigint | null }>> {
  const rows: Array<LayerMetadata & { mappedBytes: bigint | null }> = [];
  for (const layer of await driver.list()) rows.push({ ...layer, mappedBytes: await driver.activeMappedBytes(layer.id) });
  return rows;
}

export function formatLayerRows(rows: Awaited<ReturnType<typeof layerRows>>): string {
  const snapshots = rows.map(snapshotLabel);
  const anySnapshot = snapshots.some((label) => label !== null); // the column only where containerd uses the home
  return table(['ID', 'PARENT', 'THIN ID', 'SIZE', 'MAPPED', 'MOUNTED', ...(anySnapshot ? ['CONTAINERD SNAPSHOT'] : [])],
    rows.map((r, i) => [r.id, r.parent, r.deviceId, humanBytes(r.size), r.mappedBytes === null ? null : humanBytes(r.mappedBytes), r.mounted ? 'yes' : 'no',
      ...(anySnapshot ? [snapshots[i]] : [])]));
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
  await withDriver(io, async (driver) => {
    const rows = await layerRows(driver);
    io.out(io.json ? toJson(rows) + '\n' : formatLayerRows(rows));
  });
}

export async function statusCommand(argv: string[], io: Io): Promise<void> {
  expectPositionals(parseArgs(argv, {}), 0, 0, 'devmapper status');
  await withDriver(io, async (driver) => {
    io.out(formatStatus(await driver.status(), io.json));
  });
}

export function formatStatus(s: Awaited<ReturnType<Driver['status']>>, json: boolean): string {
  if (json) return toJson(s) + '\n';
  const space = (u: { used: bigint; total: bigint; available: bigint }): string => `${humanBytes(u.used)} used, ${humanBytes(u.total)} total, ${humanBytes(u.available)} available`;
  return keyValues([
    ['Pool Name', s.poolName], ['Pool Blocksize', humanBytes(s.poolBlockSize)], ['Base Device Size', humanBytes(s.baseDeviceSize)],
    ['Backing Filesystem', s.backingFilesystem], ['Data file', s.dataFile], ['Metadata file', s.metadataFile],
    ['Data loop device', s.dataLoopDevice], ['Metadata loop device', s.metadataLoopDevice],
    ['Data Space', space(s.dataSpace)], ['Metadata Space', space(s.metadataSpace)],
    ['Min Free Space', `${s.minFreeSpacePercent}%`], ['Deferred Removal Enabled', s.deferredRemovalEnabled],
    ['Deferred Deletion Enabled', s.deferredDeletionEnabled], ['Deferred Deleted Device Count', s.deferredDeletedDeviceCount],
    ['Library Version', `kernel dm ${s.driverVersion}`], ['Pool Mode', s.poolMode], ['Needs Check', s.needsCheck],
    ['Transaction Id', s.transactionId], ['Layers', s.layerCount],
  ]);
}

export async function cleanupCommand(argv: string[], io: Io): Promise<void> {
  expectPositionals(parseArgs(argv, {}), 0, 0, 'devmapper cleanup');
  let driver: Driver | undefined;
  try {
    driver = await openDriver(io.home, io.lockTimeoutMs);
  } catch (error) {
    // Damaged layer records stop every other command; cleanup still brings the home down.
    if (!(error instanceof MetadataError && error.file.endsWith('.layer.json'))) throw error;
    progress(`${error.message}\ncleaning up all the same (the damaged records are left for \`devmapper check --repair\`)`);
    await Driver.cleanupDamaged(recordedOptions(io.home, io.lockTimeoutMs));
  }
  await driver?.cleanup();
  io.out(io.json ? toJson({ home: io.home, cleanedUp: true }) + '\n' : `unmounted and deactivated everything under ${io.home}\n`);
}

/** Exit status 1 when problems remain. */
export async function checkCommand(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, { flags: ['repair', 'thin-check'] });
  expectPositionals(parsed, 0, 0, 'devmapper check [--repair] [--thin-check]');
  requireDeviceMapper();
  const options = recordedOptions(io.home, io.lockTimeoutMs);
  progress('probing the pool for every thin id ever allocated');
  const report = await Driver.check(options, { repair: parsed.flags.has('repair'), thinCheck: parsed.flags.has('thin-check') });
  if (io.json) {
    io.out(toJson(report) + '\n');
  } else {
    const list = (items: unknown[]): string => (items.length === 0 ? 'none' : items.map((i) => (typeof i === 'object' ? JSON.stringify(i) : String(i))).join(', '));
    io.out(keyValues([
      ['Pool mode', `${report.poolMode}${report.needsCheck ? ', needs_check' : ''}`],
      ['Leaked thin ids', list(report.leakedThinIds)],
      ['Layers with missing thin ids', list(report.missingThinIds)],
      ['Damaged records', list(report.damagedRecords.map((d) => d.reason))],
      ['Thin ids claimed twice', list(report.thinIdConflicts.map((c) => `${c.deviceId} (${c.layers.join(', ')})`))],
      ['Quarantined files', list(report.quarantined)],
      ['Stray dm devices', list(report.strayDevices)],
      ['Unheld mounts', list(report.unheldMounts)],
      ['Pending deferred deletions', list(report.pendingDeferredDeletions)],
      ['Transaction id (pool / metadata)', `${report.transactionId.pool} / ${report.transactionId.metadata}${report.transactionId.consistent ? '' : '  MISMATCH'}`],
      ...(report.thinCheck ? [['thin_check', report.thinCheck.summary] as const] : []),
    ]));
    if (report.thinCheck?.ran && !report.thinCheck.ok) io.out(report.thinCheck.output.replace(/^/gm, 'thin_check: ') + '\n');
    for (const line of report.repairs) io.out(`repaired: ${line}\n`);
    for (const line of report.skipped) io.out(`left alone: ${line}\n`);
    io.out(report.clean ? 'clean\n' : 'problems found (run with --repair to fix them)\n');
  }
  return report.clean ? 0 : 1;
}
