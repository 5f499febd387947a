// The Driver's options, mirroring Docker's `dm.*` storage options, typed and validated before
// anything is touched.
import { InvalidArgumentError } from '../errors.js';
import type { FfiBackendName } from '../ioctl/ffi/binding.js';
import { assertFfiBackend } from '../ioctl/kernel.js';
import {
  assertDataBlockSize,
  bytes,
  bytesToSectors,
  isSectorAligned,
  parseSize,
  type Bytes,
  type Sectors,
} from '../thin/units.js';

export type Filesystem = 'ext4' | 'xfs';

export interface DriverOptions {
  /** The driver's root directory (Docker: /var/lib/docker/devicemapper). */
  home: string;
  /** dm.basesize: size of the base device every layer descends from. Default 10 GiB. */
  baseSize?: string | number | bigint;
  /** dm.loopdatasize: sparse size of the loopback data file. Default 100 GiB. */
  loopDataSize?: string | number | bigint;
  /** dm.loopmetadatasize: sparse size of the loopback metadata file. Default 2 GiB. */
  loopMetadataSize?: string | number | bigint;
  /** dm.fs: filesystem of the base device. Default ext4. */
  filesystem?: Filesystem;
  /** dm.mkfsarg: extra arguments for mkfs. */
  mkfsArgs?: string[];
  /** dm.mountopt: extra mount options (comma-separated words). */
  mountOptions?: string;
  /** dm.datadev: an existing block device for data (with metadataDevice) instead of loop files. */
  dataDevice?: string;
  /** dm.metadatadev: an existing block device for metadata. */
  metadataDevice?: string;
  /** dm.thinpooldev: an existing, active thin pool to adopt (the driver never deactivates it). */
  thinPoolDevice?: string;
  /** dm.blocksize: data block size of a new pool. Default 64 KiB. */
  blockSize?: string | number | bigint;
  /** dm.blkdiscard: discard a device's blocks before deleting it (gives space back to loop files). */
  discardOnDelete?: boolean;
  /** dm.use_deferred_removal: a busy device is removed by the kernel at last close. */
  deferredRemoval?: boolean;
  /** dm.use_deferred_deletion: a busy device's deletion is retried later instead of failing. */
  deferredDeletion?: boolean;
  /** dm.min_free_space: create refuses when less than this percent of data or metadata is free. Default 10. */
  minFreeSpacePercent?: number;
  /**
   * A full pool fails writes at once (ENOSPC) instead of queueing them for the kernel's
   * no_space_timeout (60 s by default), during which writers, suspends and unmounts hang. Default
   * true. Applies when the driver activates the pool (an already active pool keeps its table).
   */
  errorIfNoSpace?: boolean;
  /**
   * FFI backend for every call to the kernel: 'ffi-rs' (default; DEVMAPPER_FFI sets the default) or
   * 'koffi'. The Driver makes one Kernel handle from it (Driver.kernel) and passes it to every layer.
   */
  ffi?: FfiBackendName;
  /** How often pending deferred deletions are retried, in ms. Default 10 s; 0 disables the timer. */
  deferredDeletionIntervalMs?: number;
  /** How long init waits for a home another process holds (<home>/lock), in ms. Default 0: fail at once with ERR_DM_HOME_LOCKED; Infinity waits forever. */
  lockTimeoutMs?: number;
}

export interface ResolvedOptions {
  home: string;
  baseSize: Bytes;
  loopDataSize: Bytes;
  loopMetadataSize: Bytes;
  filesystem: Filesystem;
  mkfsArgs: string[];
  mountOptions: string[];
  dataDevice: string | undefined;
  metadataDevice: string | undefined;
  thinPoolDevice: string | undefined;
  blockSize: Sectors;
  discardOnDelete: boolean;
  deferredRemoval: boolean;
  deferredDeletion: boolean;
  minFreeSpacePercent: number;
  errorIfNoSpace: boolean;
  ffi: FfiBackendName | undefined;
  deferredDeletionIntervalMs: number;
  lockTimeoutMs: number;
}

const GiB = 1024n ** 3n;

/** A value for an error message: strings quoted, anything else by type (JSON.stringify throws on a bigint). */
function shown(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : typeof value;
}

const MOUNT_OPTION = /^[A-Za-z0-9_.+\-/:=@]+$/;
const KNOWN = new Set([
  'home',
  'baseSize',
  'loopDataSize',
  'loopMetadataSize',
  'filesystem',
  'mkfsArgs',
  'mountOptions',
  'dataDevice',
  'metadataDevice',
  'thinPoolDevice',
  'blockSize',
  'discardOnDelete',
  'deferredRemoval',
  'deferredDeletion',
  'minFreeSpacePercent',
  'ffi',
  'deferredDeletionIntervalMs',
  'errorIfNoSpace',
  'lockTimeoutMs',
]);

export function resolveOptions(options: DriverOptions): ResolvedOptions {
  if (!options || typeof options !== 'object') throw new InvalidArgumentError('options', 'must be an object');
  for (const key of Object.keys(options))
    if (!KNOWN.has(key)) throw new InvalidArgumentError(key, 'unknown driver option');
  const home = options.home;
  if (typeof home !== 'string' || !home.startsWith('/') || home.includes('\0') || home.includes('\n')) {
    throw new InvalidArgumentError('home', 'must be an absolute path');
  }
  // its lock, metadata/ and mnt/ would land in the root directory itself
  if (/^\/+$/.test(home)) throw new InvalidArgumentError('home', 'must be a directory of its own, not /');
  const size = (
    value: string | number | bigint | undefined,
    fallback: bigint,
    argument: string,
    min: bigint,
  ): Bytes => {
    const b = value === undefined ? bytes(fallback) : parseSize(value, argument);
    if (b < min) throw new InvalidArgumentError(argument, `${b} bytes is below the minimum of ${min}`);
    if (!isSectorAligned(b)) throw new InvalidArgumentError(argument, 'must be a multiple of 512 bytes');
    return b;
  };
  const filesystem = options.filesystem ?? 'ext4';
  if (filesystem !== 'ext4' && filesystem !== 'xfs')
    throw new InvalidArgumentError('filesystem', `${shown(filesystem)} is not ext4 or xfs`);
  const mkfsArgs = options.mkfsArgs ?? [];
  if (!Array.isArray(mkfsArgs) || mkfsArgs.some((a) => typeof a !== 'string' || a.includes('\0'))) {
    throw new InvalidArgumentError('mkfsArgs', 'must be an array of strings');
  }
  if (options.mountOptions !== undefined && options.mountOptions !== null && typeof options.mountOptions !== 'string') {
    throw new InvalidArgumentError('mountOptions', 'must be a string of comma-separated options');
  }
  const mountOptions = (options.mountOptions ?? '').split(',').filter((o) => o !== '');
  for (const option of mountOptions) {
    // A comma or newline inside one option could smuggle extra options into mount(2)'s data.
    if (!MOUNT_OPTION.test(option))
      throw new InvalidArgumentError('mountOptions', `${JSON.stringify(option)} is not a plain mount option`);
  }
  if ((options.dataDevice === undefined) !== (options.metadataDevice === undefined)) {
    throw new InvalidArgumentError(
      options.dataDevice === undefined ? 'dataDevice' : 'metadataDevice',
      'dataDevice and metadataDevice go together',
    );
  }
  if (options.thinPoolDevice !== undefined && options.dataDevice !== undefined) {
    throw new InvalidArgumentError('thinPoolDevice', 'an adopted pool and data/metadata devices exclude each other');
  }
  for (const key of ['dataDevice', 'metadataDevice'] as const) {
    const v = options[key];
    if (v !== undefined && (typeof v !== 'string' || !v.startsWith('/dev/')))
      throw new InvalidArgumentError(key, 'must be a /dev/ path');
  }
  if (
    options.thinPoolDevice !== undefined &&
    (typeof options.thinPoolDevice !== 'string' || options.thinPoolDevice === '')
  ) {
    throw new InvalidArgumentError('thinPoolDevice', 'must be the dm name of a thin pool');
  }
  const blockBytes = size(options.blockSize, 64n * 1024n, 'blockSize', 64n * 1024n);
  const blockSize = assertDataBlockSize(bytesToSectors(blockBytes, 'blockSize'), 'blockSize');
  const minFree = options.minFreeSpacePercent ?? 10;
  if (typeof minFree !== 'number' || !Number.isInteger(minFree) || minFree < 0 || minFree > 99) {
    throw new InvalidArgumentError('minFreeSpacePercent', 'must be an integer from 0 to 99');
  }
  const interval = options.deferredDeletionIntervalMs ?? 10_000;
  if (typeof interval !== 'number' || !Number.isInteger(interval) || interval < 0) {
    throw new InvalidArgumentError('deferredDeletionIntervalMs', 'must be a non-negative integer');
  }
  const lockTimeoutMs = options.lockTimeoutMs ?? 0;
  if (
    typeof lockTimeoutMs !== 'number' ||
    !(lockTimeoutMs === Infinity || (Number.isInteger(lockTimeoutMs) && lockTimeoutMs >= 0))
  ) {
    throw new InvalidArgumentError('lockTimeoutMs', 'must be a non-negative integer or Infinity');
  }
  for (const key of ['discardOnDelete', 'deferredRemoval', 'deferredDeletion', 'errorIfNoSpace'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean')
      throw new InvalidArgumentError(key, 'must be true or false');
  }
  if (options.ffi !== undefined) assertFfiBackend(options.ffi);
  return {
    home: home.replace(/\/+$/, ''),
    baseSize: size(options.baseSize, 10n * GiB, 'baseSize', 16n * 1024n * 1024n),
    loopDataSize: size(options.loopDataSize, 100n * GiB, 'loopDataSize', 16n * 1024n * 1024n),
    loopMetadataSize: size(options.loopMetadataSize, 2n * GiB, 'loopMetadataSize', 2n * 1024n * 1024n),
    filesystem,
    mkfsArgs,
    mountOptions,
    dataDevice: options.dataDevice,
    metadataDevice: options.metadataDevice,
    thinPoolDevice: options.thinPoolDevice,
    blockSize,
    discardOnDelete: options.discardOnDelete ?? false,
    deferredRemoval: options.deferredRemoval ?? false,
    deferredDeletion: options.deferredDeletion ?? false,
    minFreeSpacePercent: minFree,
    errorIfNoSpace: options.errorIfNoSpace ?? true,
    ffi: options.ffi,
    deferredDeletionIntervalMs: interval,
    lockTimeoutMs,
  };
}

/** Layer ids: a safe character set and length, so no id can name a path outside <home>. */
const LAYER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$/;
/** Ids whose dm name `<prefix>-<id>` is taken by the driver itself (the pool is `<prefix>-pool`). */
export const RESERVED_LAYER_IDS: ReadonlySet<string> = new Set(['pool']);

export function assertLayerId(id: unknown, argument = 'id'): asserts id is string {
  if (typeof id !== 'string' || !LAYER_ID.test(id) || id === '.' || id === '..' || id.includes('..')) {
    throw new InvalidArgumentError(
      argument,
      `${shown(id)} is not a valid layer id (1-80 of A-Z a-z 0-9 _ . -, not starting with a separator, no '..')`,
    );
  }
  if (RESERVED_LAYER_IDS.has(id))
    throw new InvalidArgumentError(argument, `${shown(id)} is reserved (the pool's dm name ends in -pool)`);
}

/**
 * An SELinux context for context="...": user:role:type:level, where the only commas allowed are
 * those of an MLS category list (`s0:c1,c2`), each followed by a category (`c<digits>`). The
 * kernel splits mount data at every comma unless an LSM that honours the quotes is active, so
 * anything else after a comma ("x,dev,suid") could become a mount option of its own; no mount
 * option starts with c<digit>. Quotes and newlines are refused too.
 */
const MOUNT_LABEL = /^[A-Za-z0-9_.:-]+(,c[0-9][A-Za-z0-9_.:-]*)*$/;

export function assertMountLabel(label: unknown): asserts label is string {
  if (typeof label !== 'string' || label.length > 4096 || !MOUNT_LABEL.test(label)) {
    throw new InvalidArgumentError(
      'mountLabel',
      `${shown(label)} is not a valid SELinux context (no quotes, newlines, or commas other than between MLS categories)`,
    );
  }
}

/** The most a layer's attached fields may take as JSON (they live in its record file). */
export const MAX_LAYER_META_BYTES = 256 * 1024;

/** `meta` for create()/setMeta(): a plain JSON object of bounded size. */
export function assertLayerMeta(meta: unknown): asserts meta is Record<string, unknown> {
  if (
    meta === null ||
    typeof meta !== 'object' ||
    Array.isArray(meta) ||
    Object.getPrototypeOf(meta) !== Object.prototype
  ) {
    throw new InvalidArgumentError('meta', 'must be a plain object');
  }
  let text: string;
  try {
    text = JSON.stringify(meta);
  } catch (error) {
    throw new InvalidArgumentError('meta', `cannot be stored as JSON: ${(error as Error).message}`);
  }
  if (Buffer.byteLength(text) > MAX_LAYER_META_BYTES)
    throw new InvalidArgumentError(
      'meta',
      `takes ${Buffer.byteLength(text)} bytes as JSON, more than ${MAX_LAYER_META_BYTES}`,
    );
}
