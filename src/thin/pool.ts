// ThinPool: one dm-thin pool (Documentation/admin-guide/device-mapper/thin-provisioning.rst).
// `create` builds a new pool on a metadata and a data block device; `adopt` takes over one that
// is already active and checks its table. Pool messages, status and growth live here too.
import type { DeviceMapper, DeviceRef } from '../ioctl/device-mapper.js';
import { DevmapperError, InvalidArgumentError } from '../errors.js';
import { crashPoint } from '../crash-points.js'; // test-only hook (a no-op unless DEVMAPPER_TEST_CRASH_AT is set)
import { blockDevice, blockDeviceById, zeroStart, type BlockDevice } from './block-device.js';
import {
  assertThinId,
  createSnapMessage,
  createThinMessage,
  deleteMessage,
  releaseMetadataSnapMessage,
  reserveMetadataSnapMessage,
  setTransactionIdMessage,
} from './messages.js';
import { parsePoolStatus, type PoolStatus } from './status.js';
import { formatPoolTable, parsePoolTable, type PoolTable, type PoolTableFeatures } from './tables.js';
import { removeQuietly, removeWithRetry } from './remove.js';
import { assertDataBlockSize, dataBlocks, sectors, type DataBlocks, type Sectors } from './units.js';

/** dm-thin uses at most this many 4 KiB metadata blocks of a device (THIN_METADATA_MAX_SECTORS). */
const MAX_METADATA_BLOCKS = 255n * 16384n;

export interface ThinPoolOptions {
  /** Data block size in sectors: a multiple of 128 from 128 to 2097152. Default 128 (64 KiB). */
  dataBlockSize?: Sectors | number;
  /** When free data blocks fall to this many, the pool raises a dm event. Default 0 (never). */
  lowWaterMark?: DataBlocks | number;
  features?: Partial<PoolTableFeatures>;
}

export interface CreatePoolOptions extends ThinPoolOptions {
  /** The metadata block device (its first 4 KiB are zeroed: this makes a brand-new pool). */
  metadataDevice: string;
  /** The data block device. */
  dataDevice: string;
  /** dm uuid for the pool device. */
  uuid?: string;
}

export const DEFAULT_DATA_BLOCK_SIZE = 128;

interface ResolvedOptions {
  dataBlockSize: Sectors;
  lowWaterMark: DataBlocks;
  features: PoolTableFeatures;
}

export class ThinPool {
  readonly dm: DeviceMapper;
  readonly name: string;
  #table: PoolTable;
  #length: Sectors;
  /** Read once: a dm device keeps its number for as long as it exists. */
  #devno: string | undefined;

  private constructor(dm: DeviceMapper, name: string, table: PoolTable, length: Sectors) {
    this.dm = dm;
    this.name = name;
    this.#table = table;
    this.#length = length;
  }

  /**
   * Creates a brand-new pool: zeroes the metadata device's first 4 KiB, creates the dm device,
   * loads the thin-pool table and resumes it. Any failure after the dm device exists removes it.
   */
  static create(dm: DeviceMapper, name: string, options: CreatePoolOptions): ThinPool {
    return ThinPool.#activate(dm, name, options, true);
  }

  /**
   * Activates a pool over devices that already hold pool metadata (after a reboot or a
   * deactivation): like create(), but the metadata is kept.
   */
  static reopen(dm: DeviceMapper, name: string, options: CreatePoolOptions): ThinPool {
    return ThinPool.#activate(dm, name, options, false);
  }

  static #activate(dm: DeviceMapper, name: string, options: CreatePoolOptions, fresh: boolean): ThinPool {
    const resolved = resolveOptions(options);
    if (fresh && resolved.features.readOnly)
      throw new InvalidArgumentError('features.readOnly', 'a new pool cannot be created read-only');
    const metadata = blockDevice(options.metadataDevice);
    const data = blockDevice(options.dataDevice);
    const table: PoolTable = { metadataDev: metadata.id, dataDev: data.id, ...resolved };
    const params = formatPoolTable(table); // validates before anything is touched
    const length = poolLength(data, resolved.dataBlockSize);
    dm.create(name, { uuid: options.uuid }); // first: a taken name must not cost the metadata
    try {
      if (fresh) zeroStart(metadata.path, 4096);
      dm.load(name, [{ start: 0n, length, type: 'thin-pool', params }]);
      dm.resume(name);
    } catch (error) {
      removeQuietly(dm, name);
      throw error;
    }
    return new ThinPool(dm, name, table, sectors(length));
  }

  /** Takes over an active pool: checks that its live table is a single thin-pool target. */
  static adopt(dm: DeviceMapper, name: string, expect: ThinPoolOptions = {}): ThinPool {
    const targets = dm.table(name);
    const target = targets[0];
    if (targets.length !== 1 || !target || target.type !== 'thin-pool') {
      throw new DevmapperError(
        'ERR_DM_NOT_A_POOL',
        `${name} is not a thin pool (its table: ${targets.map((t) => t.type).join(', ') || 'empty'})`,
      );
    }
    const table = parsePoolTable(target.params);
    const mismatch = (what: string, have: unknown, want: unknown): never => {
      throw new DevmapperError('ERR_DM_POOL_MISMATCH', `${name} has ${what} ${String(have)}, expected ${String(want)}`);
    };
    if (expect.dataBlockSize !== undefined && BigInt(expect.dataBlockSize) !== table.dataBlockSize) {
      mismatch('data block size', table.dataBlockSize, expect.dataBlockSize);
    }
    if (expect.lowWaterMark !== undefined && BigInt(expect.lowWaterMark) !== table.lowWaterMark) {
      mismatch('low water mark', table.lowWaterMark, expect.lowWaterMark);
    }
    for (const [feature, want] of Object.entries(expect.features ?? {})) {
      const have = table.features[feature as keyof PoolTableFeatures];
      if (have !== want) mismatch(`feature ${feature} =`, have, want);
    }
    return new ThinPool(dm, name, table, sectors(target.length));
  }

  get table(): Readonly<PoolTable> {
    return this.#table;
  }

  get dataBlockSize(): Sectors {
    return this.#table.dataBlockSize;
  }

  /** The pool's length in sectors (its data device's usable size). */
  get length(): Sectors {
    return this.#length;
  }

  /** The pool device's number, `major:minor`, as thin tables name it (not a thin id). */
  get devno(): string {
    if (this.#devno === undefined) {
      const { dev } = this.dm.info(this.name);
      this.#devno = `${dev.major}:${dev.minor}`;
    }
    return this.#devno;
  }

  /**
   * Pool status. By default read with DM_NOFLUSH_FLAG: otherwise the kernel commits the pool's
   * metadata before answering (hundreds of µs instead of ~10). `committed: true` asks for that.
   */
  status(options: { committed?: boolean } = {}): PoolStatus {
    const [target] = this.dm.status(this.name, { noFlush: !options.committed });
    if (!target) throw new DevmapperError('ERR_DM_NOT_A_POOL', `${this.name} has no live table`);
    return parsePoolStatus(target.params, { dataBlockSize: this.#table.dataBlockSize });
  }

  /** Sends a pool message; the kernel's refusal comes back as a DmSystemError naming the message. */
  message(text: string): string | undefined {
    return this.dm.message(this.name, 0, text);
  }

  createThin(id: number): void {
    assertThinId(id);
    this.message(createThinMessage(id));
  }

  /**
   * Snapshot `originId` as `id`. `origin` names the origin's dm device when it may be active:
   * if it is, it is suspended around the message, as the kernel requires, and resumed whatever
   * happens; if no device has that name, the message is sent alone (one ioctl, no lookup first).
   */
  createSnapshot(id: number, originId: number, origin?: DeviceRef): void {
    assertThinId(id);
    assertThinId(originId, 'originId');
    if (origin === undefined || this.dm.suspendIfPresent(origin) === undefined) {
      this.message(createSnapMessage(id, originId));
      return;
    }
    try {
      crashPoint('create:suspended'); // a crash here leaves the origin suspended: init resumes it
      this.message(createSnapMessage(id, originId));
    } finally {
      this.dm.resume(origin);
    }
  }

  deleteThin(id: number): void {
    assertThinId(id);
    this.message(deleteMessage(id));
  }

  /** Compare-and-swap of the pool's transaction id: refused (EINVAL) when `current` is stale. */
  setTransactionId(current: bigint | number, next: bigint | number): void {
    this.message(setTransactionIdMessage(current, next));
  }

  reserveMetadataSnap(): void {
    this.message(reserveMetadataSnapMessage());
  }

  releaseMetadataSnap(): void {
    this.message(releaseMetadataSnapMessage());
  }

  /**
   * Picks up a grown data device: reloads the table with the device's new length, then
   * suspends and resumes the pool (the kernel resizes at resume).
   */
  grow(): Sectors {
    const length = poolLength(blockDeviceById(this.#table.dataDev), this.#table.dataBlockSize);
    if (length < this.#length)
      throw new InvalidArgumentError(
        'dataDevice',
        `shrinking a pool is not supported (${length} < ${this.#length} sectors)`,
      );
    return this.#reload(length);
  }

  /**
   * Picks up a grown metadata device: reloads the same table at the pool's current length and
   * resumes it, so the data is not resized (a pool out of metadata space could not commit
   * that). Returns false and changes nothing when the device is no bigger than the metadata
   * space the pool has: a reload would then put a pool that is out of metadata space back to
   * write mode with no free metadata block, until its next allocation turns it read-only again.
   */
  refreshMetadata(): boolean {
    const status = this.status();
    if (status.kind === 'ok') {
      const blocks = blockDeviceById(this.#table.metadataDev).size / 8n; // 4 KiB metadata blocks
      const usable = blocks < MAX_METADATA_BLOCKS ? blocks : MAX_METADATA_BLOCKS;
      if (usable <= status.metadata.totalBlocks) return false;
    }
    this.#reload(this.#length);
    return true;
  }

  #reload(length: bigint): Sectors {
    this.dm.load(this.name, [{ start: 0n, length, type: 'thin-pool', params: formatPoolTable(this.#table) }]);
    try {
      this.dm.suspend(this.name, { noFlush: true });
    } catch (error) {
      this.dm.clear(this.name);
      throw error;
    }
    try {
      this.dm.resume(this.name);
    } catch (error) {
      // The kernel resizes in preresume and refuses a read-only or failed pool there, which
      // would leave the pool suspended and every I/O through it hanging: back to the old
      // length (the resize is skipped then), resumed, and the refusal reported.
      this.dm.load(this.name, [
        { start: 0n, length: this.#length, type: 'thin-pool', params: formatPoolTable(this.#table) },
      ]);
      this.dm.resume(this.name);
      throw error;
    }
    this.#length = sectors(length);
    return this.#length;
  }

  /** Removes the pool's dm device (thin devices on it must be gone first). Data stays on disk. */
  deactivate(options: { retries?: number } = {}): void {
    removeWithRetry(this.dm, this.name, options.retries ?? 5);
  }
}

function resolveOptions(options: ThinPoolOptions): ResolvedOptions {
  const dataBlockSize = assertDataBlockSize(options.dataBlockSize ?? DEFAULT_DATA_BLOCK_SIZE);
  const lowWaterMark = dataBlocks(options.lowWaterMark ?? 0, 'lowWaterMark');
  const features: PoolTableFeatures = {
    skipBlockZeroing: false,
    ignoreDiscard: false,
    noDiscardPassdown: false,
    readOnly: false,
    errorIfNoSpace: false,
  };
  for (const [key, value] of Object.entries(options.features ?? {})) {
    if (!(key in features)) throw new InvalidArgumentError(`features.${key}`, 'unknown thin-pool feature');
    if (typeof value !== 'boolean') throw new InvalidArgumentError(`features.${key}`, 'must be true or false');
    features[key as keyof PoolTableFeatures] = value;
  }
  return { dataBlockSize, lowWaterMark, features };
}

/** The pool covers whole data blocks of its data device. */
function poolLength(data: Pick<BlockDevice, 'path' | 'size'>, blockSize: Sectors): bigint {
  const length = (data.size / blockSize) * blockSize;
  if (length === 0n)
    throw new InvalidArgumentError('dataDevice', `${data.path} is smaller than one data block (${blockSize} sectors)`);
  return length;
}
