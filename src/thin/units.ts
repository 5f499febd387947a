// Units for thin provisioning, as distinct (branded) bigint types so that sectors, data blocks,
// metadata blocks and bytes cannot be mixed up by accident: a `Sectors` value is not assignable
// where `DataBlocks` is expected, and every conversion between them is an explicit call.
//
// Sizes follow the kernel: a sector is 512 bytes (SECTOR_SHIFT = 9 in include/linux/blk_types.h);
// thin-pool data blocks are a per-pool number of sectors (the <data block size> table argument,
// Documentation/admin-guide/device-mapper/thin-provisioning.rst); thin-pool metadata blocks are
// 4 KiB (THIN_METADATA_BLOCK_SIZE in drivers/md/dm-thin-metadata.h), i.e. 8 sectors.
import { InvalidArgumentError } from '../errors.js';

declare const unitBrand: unique symbol;
type Branded<Unit extends string> = bigint & { readonly [unitBrand]: Unit };

/** A count of 512-byte sectors. */
export type Sectors = Branded<'sectors'>;
/** A count of bytes. */
export type Bytes = Branded<'bytes'>;
/** A count of thin-pool data blocks (each `dataBlockSize` sectors; the size is per pool). */
export type DataBlocks = Branded<'dataBlocks'>;
/** A count of thin-pool metadata blocks (each 4096 bytes). */
export type MetadataBlocks = Branded<'metadataBlocks'>;

/** Bytes in a sector. */
export const SECTOR_SIZE = 512;
/** Bytes in a thin-pool metadata block (THIN_METADATA_BLOCK_SIZE, dm-thin-metadata.h). */
export const METADATA_BLOCK_SIZE = 4096;
/** Sectors in a thin-pool metadata block. */
export const METADATA_BLOCK_SECTORS = METADATA_BLOCK_SIZE / SECTOR_SIZE;

/** Largest unsigned 64-bit value: the kernel keeps sector and block counts in u64. */
export const U64_MAX = (1n << 64n) - 1n;

/**
 * Data block size bounds, thin-provisioning.rst ("Data block size must be between 64KiB (128
 * sectors) and 1GiB (2097152 sectors) inclusive") and DATA_DEV_BLOCK_SIZE_MIN/MAX_SECTORS in
 * dm-thin.c; the size must also be a multiple of 128 sectors.
 */
export const DATA_BLOCK_SIZE_MIN_SECTORS = 128;
export const DATA_BLOCK_SIZE_MAX_SECTORS = 2097152;

const SECTOR_SIZE_N = BigInt(SECTOR_SIZE);
const METADATA_BLOCK_SIZE_N = BigInt(METADATA_BLOCK_SIZE);
const METADATA_BLOCK_SECTORS_N = BigInt(METADATA_BLOCK_SECTORS);

/**
 * Validates a count: a bigint, or a number that is a safe integer (a larger number may already
 * have lost precision, so the caller must pass a bigint), not negative, not above `max`.
 */
function toCount(value: unknown, argument: string, max: bigint | undefined): bigint {
  let n: bigint;
  if (typeof value === 'bigint') {
    n = value;
  } else if (typeof value === 'number') {
    if (!Number.isInteger(value)) {
      throw new InvalidArgumentError(argument, `must be an integer, got ${String(value)}`);
    }
    if (!Number.isSafeInteger(value)) {
      throw new InvalidArgumentError(argument, `${value} is beyond Number.MAX_SAFE_INTEGER; pass a bigint`);
    }
    n = BigInt(value);
  } else {
    throw new InvalidArgumentError(argument, `must be a number or bigint, got ${typeof value}`);
  }
  if (n < 0n) {
    throw new InvalidArgumentError(argument, `must not be negative, got ${n}`);
  }
  if (max !== undefined && n > max) {
    throw new InvalidArgumentError(argument, `must be at most ${max}, got ${n}`);
  }
  return n;
}

/** A sector count (u64). Throws InvalidArgumentError for negatives, non-integers, NaN. */
export function sectors(n: number | bigint, argument = 'sectors'): Sectors {
  return toCount(n, argument, U64_MAX) as Sectors;
}

/** A byte count (no upper bound: u64 sectors expressed in bytes can exceed u64). */
export function bytes(n: number | bigint, argument = 'bytes'): Bytes {
  return toCount(n, argument, undefined) as Bytes;
}

/** A thin-pool data block count (u64, dm_block_t). */
export function dataBlocks(n: number | bigint, argument = 'dataBlocks'): DataBlocks {
  return toCount(n, argument, U64_MAX) as DataBlocks;
}

/** A thin-pool metadata block count (u64, dm_block_t). */
export function metadataBlocks(n: number | bigint, argument = 'metadataBlocks'): MetadataBlocks {
  return toCount(n, argument, U64_MAX) as MetadataBlocks;
}

/** Bytes to sectors; the byte count must be a whole number of 512-byte sectors. */
export function bytesToSectors(b: Bytes, argument = 'bytes'): Sectors {
  const n = toCount(b, argument, undefined);
  if (n % SECTOR_SIZE_N !== 0n) {
    throw new InvalidArgumentError(argument, `${n} bytes is not a multiple of the ${SECTOR_SIZE}-byte sector size`);
  }
  return sectors(n / SECTOR_SIZE_N, argument);
}

/** True when `b` bytes are a whole number of 512-byte sectors. */
export function isSectorAligned(b: bigint): boolean {
  return b % SECTOR_SIZE_N === 0n;
}

/** Sectors to bytes. */
export function sectorsToBytes(s: Sectors): Bytes {
  return (toCount(s, 'sectors', U64_MAX) * SECTOR_SIZE_N) as Bytes;
}

/**
 * Throws InvalidArgumentError unless `blockSize` is a valid thin-pool data block size: a
 * multiple of 128 sectors from 128 to 2097152 (thin-provisioning.rst; dm-thin.c pool_ctr).
 */
export function assertDataBlockSize(blockSize: Sectors | number | bigint, argument = 'dataBlockSize'): Sectors {
  const n = toCount(blockSize, argument, undefined);
  const min = BigInt(DATA_BLOCK_SIZE_MIN_SECTORS);
  const max = BigInt(DATA_BLOCK_SIZE_MAX_SECTORS);
  if (n < min || n > max || n % min !== 0n) {
    throw new InvalidArgumentError(
      argument,
      `must be a multiple of ${DATA_BLOCK_SIZE_MIN_SECTORS} sectors from ${DATA_BLOCK_SIZE_MIN_SECTORS} to ${DATA_BLOCK_SIZE_MAX_SECTORS}, got ${n}`,
    );
  }
  return n as Sectors;
}

function positiveBlockSize(blockSize: Sectors, argument: string): bigint {
  const n = toCount(blockSize, argument, U64_MAX);
  if (n === 0n) throw new InvalidArgumentError(argument, 'must be positive');
  return n;
}

/** Data blocks to sectors, given the pool's data block size in sectors. */
export function dataBlocksToSectors(blocks: DataBlocks, blockSize: Sectors): Sectors {
  const b = toCount(blocks, 'blocks', U64_MAX);
  return sectors(b * positiveBlockSize(blockSize, 'blockSize'), 'sectors');
}

/** How `sectorsToDataBlocks` treats a sector count that is not a whole number of blocks. */
export type BlockRounding = 'exact' | 'floor' | 'ceil';

/**
 * Sectors to data blocks, given the pool's data block size in sectors. With rounding 'exact'
 * (the default) a partial block is an InvalidArgumentError; 'floor' counts whole blocks only
 * (as the pool does with a data device whose size is not a multiple of the block size);
 * 'ceil' counts the blocks needed to hold the sectors.
 */
export function sectorsToDataBlocks(s: Sectors, blockSize: Sectors, rounding: BlockRounding = 'exact'): DataBlocks {
  const n = toCount(s, 'sectors', U64_MAX);
  const size = positiveBlockSize(blockSize, 'blockSize');
  const whole = n / size;
  const rest = n % size;
  if (rest === 0n || rounding === 'floor') return whole as DataBlocks;
  if (rounding === 'ceil') return (whole + 1n) as DataBlocks;
  if (rounding !== 'exact') {
    throw new InvalidArgumentError('rounding', `must be 'exact', 'floor' or 'ceil', got ${String(rounding)}`);
  }
  throw new InvalidArgumentError('sectors', `${n} sectors is not a whole number of ${size}-sector data blocks`);
}

/** Metadata blocks to bytes (4096 bytes each). */
export function metadataBlocksToBytes(blocks: MetadataBlocks): Bytes {
  return (toCount(blocks, 'blocks', U64_MAX) * METADATA_BLOCK_SIZE_N) as Bytes;
}

/** Metadata blocks to sectors (8 sectors each). */
export function metadataBlocksToSectors(blocks: MetadataBlocks): Sectors {
  return sectors(toCount(blocks, 'blocks', U64_MAX) * METADATA_BLOCK_SECTORS_N, 'sectors');
}

// parseSize reads sizes as Docker reads dm.basesize and friends (go-units RAMInBytes): the unit
// letter is always binary (k = 1024, ..., p = 1024^5), with an optional "i" and "b" after it.
const BINARY_PREFIXES = ['k', 'm', 'g', 't', 'p'];
const SIZE_PATTERN = /^([0-9]+)(?:\.([0-9]+))? ?([kmgtp])?i?b?$/i;
const INT64_MAX = (1n << 63n) - 1n;

/**
 * Parses a human size into bytes exactly as Docker's `--storage-opt dm.*` sizes are read: a
 * number, one optional space, and an optional unit `k`/`m`/`g`/`t`/`p` (any case, binary:
 * `10GB` = `10G` = `10GiB` = 10 × 2^30), optionally followed by `i` and/or `b` ('4096',
 * '4096B', '64k', '512MB', '100GiB'). A fraction is allowed and, as in Docker, the bytes are
 * truncated to a whole number ('1.5G', '0.1k' = 102). Numbers and bigints are taken as bytes.
 * What Docker refuses is refused (empty, negative, '1e3', '0x10', 'E', a unit it does not
 * know, a leading space or two before the unit), as is a size over 2^63 - 1 bytes: an InvalidArgumentError naming
 * `argument`.
 */
export function parseSize(input: string | number | bigint, argument = 'size'): Bytes {
  if (typeof input === 'number' || typeof input === 'bigint') return bytes(input, argument);
  if (typeof input !== 'string') {
    throw new InvalidArgumentError(argument, `must be a size string, number or bigint, got ${typeof input}`);
  }
  const m = SIZE_PATTERN.exec(input);
  if (!m) {
    const unit = /^[0-9]+(?:\.[0-9]+)? ?([A-Za-z]+)$/.exec(input)?.[1];
    const why = unit === undefined ? 'is not a size' : `has an unknown unit ${JSON.stringify(unit)}`;
    throw new InvalidArgumentError(
      argument,
      `${JSON.stringify(input)} ${why} (examples: 4096, 64k, 512M, 10GB, 100GiB)`,
    );
  }
  const [, whole = '', fraction = '', unit = ''] = m;
  const multiplier = unit === '' ? 1n : 1024n ** BigInt(BINARY_PREFIXES.indexOf(unit.toLowerCase()) + 1);
  const scale = 10n ** BigInt(fraction.length);
  const result = ((BigInt(whole) * scale + BigInt(fraction === '' ? '0' : fraction)) * multiplier) / scale;
  if (result > INT64_MAX)
    throw new InvalidArgumentError(argument, `${JSON.stringify(input)} is too large (at most 8 EiB - 1 byte)`);
  return result as Bytes;
}
