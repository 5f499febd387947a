// Parsers for thin-pool and thin target status lines, and both directions of their table
// parameters. Grammar sources (the kernel is the truth, the doc is its summary):
//   Documentation/admin-guide/device-mapper/thin-provisioning.rst ("Status", "Thin provisioning"
//     table lines, "Messages"), and drivers/md/dm-thin.c: pool_status(), emit_flags(),
//     parse_pool_features(), pool_ctr(), thin_status(), thin_ctr().
//
// Every field the kernel prints is followed by a space (DMEMIT("%s ", ...)), so lines may end in
// a space; fields are separated by whitespace. Anything that is not a token the grammar allows
// at that position is a ParseError quoting the whole line; nothing is silently defaulted.
import { InvalidArgumentError, ParseError } from '../errors.js';
import { assertThinId, MAX_THIN_ID } from './messages.js';
import {
  assertDataBlockSize,
  dataBlocks,
  DATA_BLOCK_SIZE_MAX_SECTORS,
  DATA_BLOCK_SIZE_MIN_SECTORS,
  metadataBlocksToBytes,
  sectorsToBytes,
  dataBlocksToSectors,
  U64_MAX,
  type Bytes,
  type DataBlocks,
  type MetadataBlocks,
  type Sectors,
} from './units.js';

// ---------------------------------------------------------------------------------------------
// thin-pool status

/** Pool I/O mode: pool_status() prints out_of_data_space, ro (read-only modes) or rw. */
export type PoolMode = 'rw' | 'ro' | 'out_of_data_space';
/** Discard handling: ignore_discard, discard_passdown or no_discard_passdown. */
export type PoolDiscardMode = 'discard_passdown' | 'no_discard_passdown' | 'ignore_discard';
/** What writes do when the data device is full: error_if_no_space or queue_if_no_space. */
export type PoolNoSpaceMode = 'error' | 'queue';

export interface PoolMetadataUsage {
  usedBlocks: MetadataBlocks;
  totalBlocks: MetadataBlocks;
  freeBlocks: MetadataBlocks;
  /** The same figures in bytes (metadata blocks are 4096 bytes). */
  usedBytes: Bytes;
  totalBytes: Bytes;
  freeBytes: Bytes;
}

export interface PoolDataUsage {
  usedBlocks: DataBlocks;
  totalBlocks: DataBlocks;
  freeBlocks: DataBlocks;
  /** The data block size passed in `opts.dataBlockSize`; the status line does not carry it. */
  blockSize: Sectors | undefined;
  /** Byte figures, present only when `opts.dataBlockSize` was given. */
  usedBytes: Bytes | undefined;
  totalBytes: Bytes | undefined;
  freeBytes: Bytes | undefined;
}

/** A working pool's status. */
export interface PoolStatusOk {
  kind: 'ok';
  /** u64 set by userspace through set_transaction_id. */
  transactionId: bigint;
  metadata: PoolMetadataUsage;
  data: PoolDataUsage;
  /** Block location of the metadata snapshot held by reserve_metadata_snap; null for '-'. */
  heldMetadataRoot: bigint | null;
  mode: PoolMode;
  discard: PoolDiscardMode;
  noSpace: PoolNoSpaceMode;
  /**
   * true for 'needs_check' (metadata must be repaired offline with thin_check before the pool
   * can be switched back to rw), false for '-'. undefined only on old kernels whose status line
   * ends after the no-space field and so do not report the flag at all.
   */
  needsCheck: boolean | undefined;
  /**
   * Free-metadata threshold, in metadata blocks, below which the kernel raises a dm event;
   * undefined on kernels that do not print it (it is the last field, added in 4.19).
   */
  metadataLowWatermark: MetadataBlocks | undefined;
}

/** The pool is in fail mode: pool_status() prints just `Fail`. */
export interface PoolStatusFail {
  kind: 'fail';
}

/** The kernel could not read the pool's metadata to report status: it prints just `Error`. */
export interface PoolStatusError {
  kind: 'error';
}

export type PoolStatus = PoolStatusOk | PoolStatusFail | PoolStatusError;

/** A pool's mode: 'rw', 'ro', 'out_of_data_space', or 'fail' / 'error' for a pool that prints Fail / Error. */
export function poolModeOf(status: PoolStatus): { mode: string; needsCheck: boolean } {
  if (status.kind !== 'ok') return { mode: status.kind, needsCheck: false };
  return { mode: status.mode, needsCheck: status.needsCheck === true };
}

/**
 * Whether a pool in this state takes messages (create_thin, delete, set_transaction_id): rw, or
 * out of data space (a delete is how space comes back); not read-only, failed or needs_check.
 */
export function poolTakesMessages(state: { mode: string; needsCheck: boolean }): boolean {
  return (state.mode === 'rw' || state.mode === 'out_of_data_space') && !state.needsCheck;
}

export interface ParsePoolStatusOptions {
  /** The pool's data block size, to report data usage in bytes as well as blocks. */
  dataBlockSize?: Sectors;
}

const POOL_STATUS = 'thin-pool status';
const THIN_STATUS = 'thin status';
const POOL_TABLE = 'thin-pool table';
const THIN_TABLE = 'thin table';

const DECIMAL = /^[0-9]+$/;

/** Splits a kernel line into tokens; leading/trailing whitespace (the trailing space) is dropped. */
function tokens(line: string): string[] {
  const t = line.trim();
  return t === '' ? [] : t.split(/\s+/);
}

/** A u64 printed with %llu / %lu. */
function u64(token: string | undefined, field: string, what: string, line: string): bigint {
  if (token === undefined) throw new ParseError(what, line, `missing ${field}`);
  if (!DECIMAL.test(token)) throw new ParseError(what, line, `${field} ${JSON.stringify(token)} is not a decimal number`);
  const n = BigInt(token);
  if (n > U64_MAX) throw new ParseError(what, line, `${field} ${token} does not fit in 64 bits`);
  return n;
}

/** `<used>/<total>` as printed by pool_status(), where used = total - free (unsigned). */
function usedTotal(token: string | undefined, field: string, line: string): [bigint, bigint] {
  if (token === undefined) throw new ParseError(POOL_STATUS, line, `missing ${field} used/total`);
  const parts = token.split('/');
  if (parts.length !== 2) {
    throw new ParseError(POOL_STATUS, line, `${field} ${JSON.stringify(token)} is not <used>/<total>`);
  }
  const used = u64(parts[0], `used ${field} blocks`, POOL_STATUS, line);
  const total = u64(parts[1], `total ${field} blocks`, POOL_STATUS, line);
  // The kernel computes used as total - free in unsigned arithmetic, so used > total can only be
  // a wrapped (corrupt) free count: there is no meaningful free figure to report, so reject it.
  if (used > total) {
    throw new ParseError(POOL_STATUS, line, `used ${field} blocks ${used} exceed the total ${total}`);
  }
  return [used, total];
}

function oneOf<T extends string>(token: string | undefined, allowed: Record<string, T>, field: string, what: string, line: string): T {
  if (token === undefined) throw new ParseError(what, line, `missing ${field}`);
  const value = Object.prototype.hasOwnProperty.call(allowed, token) ? allowed[token] : undefined;
  if (value === undefined) {
    throw new ParseError(what, line, `unknown ${field} ${JSON.stringify(token)} (expected ${Object.keys(allowed).join(' | ')})`);
  }
  return value;
}

const MODES: Record<string, PoolMode> = { rw: 'rw', ro: 'ro', out_of_data_space: 'out_of_data_space' };
const DISCARDS: Record<string, PoolDiscardMode> = {
  discard_passdown: 'discard_passdown',
  no_discard_passdown: 'no_discard_passdown',
  ignore_discard: 'ignore_discard',
};
const NO_SPACE: Record<string, PoolNoSpaceMode> = { error_if_no_space: 'error', queue_if_no_space: 'queue' };
const NEEDS_CHECK: Record<string, 'yes' | 'no'> = { needs_check: 'yes', '-': 'no' };

/**
 * Parses the params of a thin-pool status line (what DM_TABLE_STATUS returns for the target,
 * without `<start> <length> thin-pool`). dm-thin.c pool_status() prints:
 *
 *   <transaction id> <used metadata blocks>/<total metadata blocks>
 *   <used data blocks>/<total data blocks> <held metadata root | ->
 *   <out_of_data_space | ro | rw> <ignore_discard | discard_passdown | no_discard_passdown>
 *   <error_if_no_space | queue_if_no_space> <needs_check | -> <metadata low watermark>
 *
 * or just `Fail` (pool in fail mode) or `Error` (metadata could not be read). Older kernels end
 * the line earlier: before 4.19 without the metadata low watermark (8 fields), and before the
 * needs_check field was added without it (7 fields). Those three field counts are accepted;
 * older forms (no error_if_no_space field, from before 3.14) are a ParseError.
 */
export function parsePoolStatus(line: string, opts: ParsePoolStatusOptions = {}): PoolStatus {
  const t = tokens(line);
  if (t.length === 1 && t[0] === 'Fail') return { kind: 'fail' };
  if (t.length === 1 && t[0] === 'Error') return { kind: 'error' };
  if (t.length < 7) {
    throw new ParseError(POOL_STATUS, line, `expected 7 to 9 fields (or Fail / Error), got ${t.length}`);
  }
  if (t.length > 9) {
    throw new ParseError(POOL_STATUS, line, `unexpected extra fields ${JSON.stringify(t.slice(9).join(' '))}`);
  }

  const transactionId = u64(t[0], 'transaction id', POOL_STATUS, line);
  const [usedMeta, totalMeta] = usedTotal(t[1], 'metadata', line);
  const [usedData, totalData] = usedTotal(t[2], 'data', line);
  const heldMetadataRoot = t[3] === '-' ? null : u64(t[3], 'held metadata root', POOL_STATUS, line);
  const mode = oneOf(t[4], MODES, 'mode', POOL_STATUS, line);
  const discard = oneOf(t[5], DISCARDS, 'discard mode', POOL_STATUS, line);
  const noSpace = oneOf(t[6], NO_SPACE, 'no-space mode', POOL_STATUS, line);
  const needsCheck = t.length > 7 ? oneOf(t[7], NEEDS_CHECK, 'needs_check field', POOL_STATUS, line) === 'yes' : undefined;
  const metadataLowWatermark =
    t.length > 8 ? (u64(t[8], 'metadata low watermark', POOL_STATUS, line) as MetadataBlocks) : undefined;

  let blockSize: Sectors | undefined;
  if (opts.dataBlockSize !== undefined) {
    blockSize = assertDataBlockSize(opts.dataBlockSize, 'dataBlockSize');
    // Sector counts are u64 in the kernel: a larger data device is a corrupt line, not a size.
    if (totalData * blockSize > U64_MAX) {
      throw new ParseError(POOL_STATUS, line, `${totalData} data blocks of ${blockSize} sectors exceed 2^64 sectors`);
    }
  }
  const usedD = usedData as DataBlocks;
  const totalD = totalData as DataBlocks;
  const freeD = (totalData - usedData) as DataBlocks;
  const inBytes = (b: DataBlocks): Bytes | undefined =>
    blockSize === undefined ? undefined : sectorsToBytes(dataBlocksToSectors(b, blockSize));

  const usedM = usedMeta as MetadataBlocks;
  const totalM = totalMeta as MetadataBlocks;
  const freeM = (totalMeta - usedMeta) as MetadataBlocks;

  return {
    kind: 'ok',
    transactionId,
    metadata: {
      usedBlocks: usedM,
      totalBlocks: totalM,
      freeBlocks: freeM,
      usedBytes: metadataBlocksToBytes(usedM),
      totalBytes: metadataBlocksToBytes(totalM),
      freeBytes: metadataBlocksToBytes(freeM),
    },
    data: {
      usedBlocks: usedD,
      totalBlocks: totalD,
      freeBlocks: freeD,
      blockSize,
      usedBytes: inBytes(usedD),
      totalBytes: inBytes(totalD),
      freeBytes: inBytes(freeD),
    },
    heldMetadataRoot,
    mode,
    discard,
    noSpace,
    needsCheck,
    metadataLowWatermark,
  };
}

// ---------------------------------------------------------------------------------------------
// thin status

/** A thin device's status: mapped sectors and the last sector of the highest mapped block. */
export interface ThinStatusOk {
  kind: 'ok';
  /** Sectors mapped (allocated) to this device: mapped blocks times the data block size. */
  mappedSectors: Sectors;
  /** Last sector of the highest mapped block; null ('-') when nothing is mapped. */
  highestMappedSector: Sectors | null;
}

export type ThinStatus =
  | ThinStatusOk
  /** The pool is in fail mode: `Fail`. */
  | { kind: 'fail' }
  /** The kernel could not read the device's mappings: `Error`. */
  | { kind: 'error' }
  /** thin_status() prints a bare `-` when the thin device is not open in the pool metadata. */
  | { kind: 'unopened' };

/**
 * Parses the params of a thin target status line. dm-thin.c thin_status() prints
 * `<nr mapped sectors> <highest mapped sector | ->`, or `Fail` (pool in fail mode), `Error`
 * (metadata lookup failed) or a bare `-` (no open thin device).
 */
export function parseThinStatus(line: string): ThinStatus {
  const t = tokens(line);
  if (t.length === 1) {
    if (t[0] === 'Fail') return { kind: 'fail' };
    if (t[0] === 'Error') return { kind: 'error' };
    if (t[0] === '-') return { kind: 'unopened' };
  }
  if (t.length !== 2) {
    throw new ParseError(THIN_STATUS, line, `expected <nr mapped sectors> <highest mapped sector | -> (or Fail / Error), got ${t.length} fields`);
  }
  const mappedSectors = u64(t[0], 'nr mapped sectors', THIN_STATUS, line) as Sectors;
  const highestMappedSector = t[1] === '-' ? null : (u64(t[1], 'highest mapped sector', THIN_STATUS, line) as Sectors);
  return { kind: 'ok', mappedSectors, highestMappedSector };
}

// ---------------------------------------------------------------------------------------------
// thin-pool table

/** Optional thin-pool features (thin-provisioning.rst; parse_pool_features() in dm-thin.c). */
export interface PoolTableFeatures {
  /** skip_block_zeroing: do not zero newly provisioned blocks. */
  skipBlockZeroing: boolean;
  /** ignore_discard: disable discard support. */
  ignoreDiscard: boolean;
  /** no_discard_passdown: process discards in the pool but do not pass them to the data device. */
  noDiscardPassdown: boolean;
  /** read_only: no metadata changes (not allowed when the pool is first created). */
  readOnly: boolean;
  /** error_if_no_space: error writes instead of queueing them when out of data space. */
  errorIfNoSpace: boolean;
}

/** thin-pool table params: `<metadata dev> <data dev> <data block size> <low water mark> [<#features> <feature>...]`. */
export interface PoolTable {
  /** Metadata device: a path or `major:minor` (the kernel echoes `major:minor`). */
  metadataDev: string;
  /** Data device: a path or `major:minor`. */
  dataDev: string;
  /** Data block size: a multiple of 128 sectors from 128 to 2097152. */
  dataBlockSize: Sectors;
  /** When free data blocks fall to this many, the kernel raises a dm event. */
  lowWaterMark: DataBlocks;
  features: PoolTableFeatures;
}

/** Input to formatPoolTable: features may be partial or omitted (all off). */
export type PoolTableInput = Omit<PoolTable, 'features'> & { features?: Partial<PoolTableFeatures> };

// Feature names in the order emit_flags() prints them.
const FEATURE_NAMES: ReadonlyArray<readonly [keyof PoolTableFeatures, string]> = [
  ['skipBlockZeroing', 'skip_block_zeroing'],
  ['ignoreDiscard', 'ignore_discard'],
  ['noDiscardPassdown', 'no_discard_passdown'],
  ['readOnly', 'read_only'],
  ['errorIfNoSpace', 'error_if_no_space'],
];

/** parse_pool_features() accepts at most this many feature arguments ({0, 4, ...} dm_arg). */
export const MAX_POOL_FEATURE_ARGS = 4;

function assertDev(value: unknown, argument: string): string {
  if (typeof value !== 'string' || value === '' || /\s/.test(value)) {
    const shown = typeof value === 'string' ? JSON.stringify(value) : typeof value; // JSON.stringify throws on a bigint
    throw new InvalidArgumentError(argument, `must be a non-empty device path or major:minor without whitespace, got ${shown}`);
  }
  return value;
}

function noFeatures(): PoolTableFeatures {
  return { skipBlockZeroing: false, ignoreDiscard: false, noDiscardPassdown: false, readOnly: false, errorIfNoSpace: false };
}

/**
 * Formats thin-pool table params (without `<start> <length> thin-pool`). Features are written in
 * the kernel's own emit_flags() order, and the feature group is left out when none is set.
 */
export function formatPoolTable(table: PoolTableInput): string {
  const metadataDev = assertDev(table.metadataDev, 'metadataDev');
  const dataDev = assertDev(table.dataDev, 'dataDev');
  const blockSize = assertDataBlockSize(table.dataBlockSize, 'dataBlockSize');
  const lowWaterMark = dataBlocks(table.lowWaterMark, 'lowWaterMark');
  const features = table.features ?? {};
  if (typeof features !== 'object' || features === null) {
    throw new InvalidArgumentError('features', 'must be an object of booleans');
  }
  for (const key of Object.keys(features)) {
    const known = FEATURE_NAMES.some(([k]) => k === key);
    const value: unknown = (features as Record<string, unknown>)[key];
    if (!known) throw new InvalidArgumentError(`features.${key}`, 'is not a thin-pool feature');
    if (value !== undefined && typeof value !== 'boolean') {
      throw new InvalidArgumentError(`features.${key}`, `must be a boolean, got ${typeof value}`);
    }
  }
  const names = FEATURE_NAMES.filter(([key]) => features[key] === true).map(([, name]) => name);
  if (names.length > MAX_POOL_FEATURE_ARGS) {
    throw new InvalidArgumentError(
      'features',
      `the kernel accepts at most ${MAX_POOL_FEATURE_ARGS} feature arguments (ignoreDiscard already implies noDiscardPassdown)`,
    );
  }
  const head = `${metadataDev} ${dataDev} ${blockSize} ${lowWaterMark}`;
  return names.length === 0 ? head : `${head} ${names.length} ${names.join(' ')}`;
}

/**
 * Parses thin-pool table params, as the kernel echoes them in DM_TABLE_STATUS with the table
 * flag (`<metadata dev> <data dev> <block size> <low water mark> <#features> <feature>... `) or
 * as written for a table load (feature group optional). Features may come in any order and, as
 * in parse_pool_features(), are matched case-insensitively; an unknown feature, a wrong count or
 * an out-of-range block size is a ParseError.
 */
export function parsePoolTable(line: string): PoolTable {
  const t = tokens(line);
  if (t.length < 4) {
    throw new ParseError(POOL_TABLE, line, `expected <metadata dev> <data dev> <data block size> <low water mark> [<#features> <feature>...], got ${t.length} fields`);
  }
  const [metadataDev = '', dataDev = ''] = t;
  const blockSize = u64(t[2], 'data block size', POOL_TABLE, line);
  const min = BigInt(DATA_BLOCK_SIZE_MIN_SECTORS);
  if (blockSize < min || blockSize > BigInt(DATA_BLOCK_SIZE_MAX_SECTORS) || blockSize % min !== 0n) {
    throw new ParseError(
      POOL_TABLE,
      line,
      `data block size ${blockSize} is not a multiple of ${DATA_BLOCK_SIZE_MIN_SECTORS} sectors from ${DATA_BLOCK_SIZE_MIN_SECTORS} to ${DATA_BLOCK_SIZE_MAX_SECTORS}`,
    );
  }
  const lowWaterMark = u64(t[3], 'low water mark', POOL_TABLE, line) as DataBlocks;

  const features = noFeatures();
  if (t.length > 4) {
    const count = u64(t[4], 'feature count', POOL_TABLE, line);
    const rest = t.slice(5);
    if (count !== BigInt(rest.length)) {
      throw new ParseError(POOL_TABLE, line, `feature count ${count} does not match the ${rest.length} feature(s) that follow`);
    }
    for (const name of rest) {
      // The kernel compares with strcasecmp: ASCII case only (toLowerCase would also fold e.g. the Kelvin sign to 'k').
      const folded = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
      const entry = FEATURE_NAMES.find(([, n]) => n === folded);
      if (!entry) throw new ParseError(POOL_TABLE, line, `unknown feature ${JSON.stringify(name)}`);
      features[entry[0]] = true;
    }
  }
  return { metadataDev, dataDev, dataBlockSize: blockSize as Sectors, lowWaterMark, features };
}

// ---------------------------------------------------------------------------------------------
// thin table

/** thin table params: `<pool dev> <dev id> [<external origin dev>]`. */
export interface ThinTable {
  /** The pool device: a path or `major:minor`. */
  poolDev: string;
  /** The thin device id inside the pool (24-bit). */
  deviceId: number;
  /** A read-only device outside the pool that unprovisioned blocks are read from. */
  externalOriginDev?: string | undefined;
}

/** Formats thin table params (without `<start> <length> thin`). */
export function formatThinTable(table: ThinTable): string {
  const poolDev = assertDev(table.poolDev, 'poolDev');
  assertThinId(table.deviceId, 'deviceId');
  if (table.externalOriginDev === undefined) return `${poolDev} ${table.deviceId}`;
  return `${poolDev} ${table.deviceId} ${assertDev(table.externalOriginDev, 'externalOriginDev')}`;
}

/** Parses thin table params; thin_ctr() takes 2 or 3 arguments and a 24-bit device id. */
export function parseThinTable(line: string): ThinTable {
  const t = tokens(line);
  if (t.length !== 2 && t.length !== 3) {
    throw new ParseError(THIN_TABLE, line, `expected <pool dev> <dev id> [<external origin dev>], got ${t.length} fields`);
  }
  const id = u64(t[1], 'device id', THIN_TABLE, line);
  if (id > BigInt(MAX_THIN_ID)) {
    throw new ParseError(THIN_TABLE, line, `device id ${id} is above the 24-bit maximum ${MAX_THIN_ID}`);
  }
  const table: ThinTable = { poolDev: t[0] ?? '', deviceId: Number(id) };
  if (t[2] !== undefined) table.externalOriginDev = t[2];
  return table;
}
