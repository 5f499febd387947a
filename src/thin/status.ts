// Parsers for thin-pool and thin target status lines. Grammar sources (the kernel is the truth,
// the doc is its summary): Documentation/admin-guide/device-mapper/thin-provisioning.rst
// ("Status"), and drivers/md/dm-thin.c: pool_status(), emit_flags(), thin_status(). Table
// parameters (both directions) are in tables.ts.
//
// Every field the kernel prints is followed by a space (DMEMIT("%s ", ...)), so lines may end in
// a space; fields are separated by whitespace. Anything that is not a token the grammar allows
// at that position is a ParseError quoting the whole line; nothing is silently defaulted.
import { ParseError } from '../errors.js';
import { tokens, u64 } from './tokens.js';
import {
  assertDataBlockSize,
  METADATA_BLOCK_SIZE,
  SECTOR_SIZE,
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
const SECTOR_BYTES = BigInt(SECTOR_SIZE);
const METADATA_BLOCK_BYTES = BigInt(METADATA_BLOCK_SIZE);
const THIN_STATUS = 'thin status';

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

function oneOf<T extends string>(
  token: string | undefined,
  allowed: Record<string, T>,
  field: string,
  what: string,
  line: string,
): T {
  if (token === undefined) throw new ParseError(what, line, `missing ${field}`);
  const value = Object.hasOwn(allowed, token) ? allowed[token] : undefined;
  if (value === undefined) {
    throw new ParseError(
      what,
      line,
      `unknown ${field} ${JSON.stringify(token)} (expected ${Object.keys(allowed).join(' | ')})`,
    );
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
  return parseUsualPoolStatus(line, opts) ?? parsePoolStatusByTokens(line, opts);
}

/**
 * The whole 7-, 8- or 9-field grammar in one anchored expression: each number 1–20 digits, each
 * word one the kernel prints. `\s` is the set trim() and tokens() strip, so a line it matches
 * has the same fields the tokenizer would see.
 */
const USUAL_POOL_LINE =
  /^\s*(\d{1,20})\s+(\d{1,20})\/(\d{1,20})\s+(\d{1,20})\/(\d{1,20})\s+(-|\d{1,20})\s+(rw|ro|out_of_data_space)\s+(ignore_discard|discard_passdown|no_discard_passdown)\s+(error|queue)_if_no_space(?:\s+(needs_check|-)(?:\s+(\d{1,20}))?)?\s*$/;

/** A decimal of at most 20 digits, or undefined above 2^64 - 1 (only 20 digits can be). */
function u64Digits(digits: string): bigint | undefined {
  const n = BigInt(digits);
  return digits.length === 20 && n > U64_MAX ? undefined : n;
}

/**
 * parsePoolStatus() for a line of the usual form, with one regular expression and no token
 * array (a status read is on every create, get and remove, where cold JavaScript is dear under
 * emulation). undefined for anything else, including every line that is wrong:
 * parsePoolStatusByTokens() then gives the same value or names the field in its ParseError.
 */
function parseUsualPoolStatus(line: string, opts: ParsePoolStatusOptions): PoolStatusOk | undefined {
  const m = USUAL_POOL_LINE.exec(line);
  if (m === null) return undefined;
  const transactionId = u64Digits(m[1]!);
  const usedMeta = u64Digits(m[2]!);
  const totalMeta = u64Digits(m[3]!);
  const usedData = u64Digits(m[4]!);
  const totalData = u64Digits(m[5]!);
  const held = m[6] === '-' ? null : u64Digits(m[6]!);
  const watermark = m[11] === undefined ? undefined : u64Digits(m[11]);
  if (
    transactionId === undefined ||
    usedMeta === undefined ||
    totalMeta === undefined ||
    usedData === undefined ||
    totalData === undefined ||
    held === undefined ||
    (m[11] !== undefined && watermark === undefined) ||
    usedMeta > totalMeta ||
    usedData > totalData
  ) {
    return undefined;
  }
  let blockSize: Sectors | undefined;
  if (opts.dataBlockSize !== undefined) {
    blockSize = assertDataBlockSize(opts.dataBlockSize, 'dataBlockSize');
    if (totalData * blockSize > U64_MAX) return undefined;
  }
  return poolStatusOk(
    {
      transactionId,
      usedMeta,
      totalMeta,
      usedData,
      totalData,
      heldMetadataRoot: held,
      mode: m[7] as PoolMode,
      discard: m[8] as PoolDiscardMode,
      noSpace: m[9] as PoolNoSpaceMode,
      needsCheck: m[10] === undefined ? undefined : m[10] === 'needs_check',
      metadataLowWatermark: watermark,
    },
    blockSize,
  );
}

/** A pool status line's fields, as either path reads them. */
interface PoolLineFields {
  transactionId: bigint;
  usedMeta: bigint;
  totalMeta: bigint;
  usedData: bigint;
  totalData: bigint;
  heldMetadataRoot: bigint | null;
  mode: PoolMode;
  discard: PoolDiscardMode;
  noSpace: PoolNoSpaceMode;
  needsCheck: boolean | undefined;
  metadataLowWatermark: bigint | undefined;
}

/**
 * The status from fields both paths have checked (each a u64, used ≤ total, the data device
 * within 2^64 sectors at a valid `blockSize`), so the byte figures need no unit checks again.
 */
function poolStatusOk(f: PoolLineFields, blockSize: Sectors | undefined): PoolStatusOk {
  const freeMeta = f.totalMeta - f.usedMeta;
  const freeData = f.totalData - f.usedData;
  const bytes = blockSize === undefined ? undefined : blockSize * SECTOR_BYTES; // of one data block
  return {
    kind: 'ok',
    transactionId: f.transactionId,
    metadata: {
      usedBlocks: f.usedMeta as MetadataBlocks,
      totalBlocks: f.totalMeta as MetadataBlocks,
      freeBlocks: freeMeta as MetadataBlocks,
      usedBytes: (f.usedMeta * METADATA_BLOCK_BYTES) as Bytes,
      totalBytes: (f.totalMeta * METADATA_BLOCK_BYTES) as Bytes,
      freeBytes: (freeMeta * METADATA_BLOCK_BYTES) as Bytes,
    },
    data: {
      usedBlocks: f.usedData as DataBlocks,
      totalBlocks: f.totalData as DataBlocks,
      freeBlocks: freeData as DataBlocks,
      blockSize,
      usedBytes: bytes === undefined ? undefined : ((f.usedData * bytes) as Bytes),
      totalBytes: bytes === undefined ? undefined : ((f.totalData * bytes) as Bytes),
      freeBytes: bytes === undefined ? undefined : ((freeData * bytes) as Bytes),
    },
    heldMetadataRoot: f.heldMetadataRoot,
    mode: f.mode,
    discard: f.discard,
    noSpace: f.noSpace,
    needsCheck: f.needsCheck,
    metadataLowWatermark: f.metadataLowWatermark as MetadataBlocks | undefined,
  };
}

/**
 * The grammar token by token: the reference parsePoolStatus() falls back to, for Fail, Error
 * and every line its fast path does not take, so that a ParseError names the field at fault.
 * Exported for the property test that holds the two paths to the same answers.
 */
export function parsePoolStatusByTokens(line: string, opts: ParsePoolStatusOptions = {}): PoolStatus {
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
  const needsCheck =
    t.length > 7 ? oneOf(t[7], NEEDS_CHECK, 'needs_check field', POOL_STATUS, line) === 'yes' : undefined;
  const metadataLowWatermark = t.length > 8 ? u64(t[8], 'metadata low watermark', POOL_STATUS, line) : undefined;

  let blockSize: Sectors | undefined;
  if (opts.dataBlockSize !== undefined) {
    blockSize = assertDataBlockSize(opts.dataBlockSize, 'dataBlockSize');
    // Sector counts are u64 in the kernel: a larger data device is a corrupt line, not a size.
    if (totalData * blockSize > U64_MAX) {
      throw new ParseError(POOL_STATUS, line, `${totalData} data blocks of ${blockSize} sectors exceed 2^64 sectors`);
    }
  }
  return poolStatusOk(
    {
      transactionId,
      usedMeta,
      totalMeta,
      usedData,
      totalData,
      heldMetadataRoot,
      mode,
      discard,
      noSpace,
      needsCheck,
      metadataLowWatermark,
    },
    blockSize,
  );
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
    throw new ParseError(
      THIN_STATUS,
      line,
      `expected <nr mapped sectors> <highest mapped sector | -> (or Fail / Error), got ${t.length} fields`,
    );
  }
  const mappedSectors = u64(t[0], 'nr mapped sectors', THIN_STATUS, line) as Sectors;
  const highestMappedSector = t[1] === '-' ? null : (u64(t[1], 'highest mapped sector', THIN_STATUS, line) as Sectors);
  return { kind: 'ok', mappedSectors, highestMappedSector };
}

// The table grammar lives in tables.ts; re-exported here for the importers of this module.
export * from './tables.js';
