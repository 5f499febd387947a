// Both directions of the thin-pool and thin targets' table parameters. Grammar sources:
// Documentation/admin-guide/device-mapper/thin-provisioning.rst ("Thin provisioning" table
// lines) and drivers/md/dm-thin.c: parse_pool_features(), pool_ctr(), thin_ctr(), emit_flags().
import { InvalidArgumentError, ParseError } from '../errors.js';
import { assertThinId, MAX_THIN_ID } from './messages.js';
import { tokens, u64 } from './tokens.js';
import {
  assertDataBlockSize,
  dataBlocks,
  DATA_BLOCK_SIZE_MAX_SECTORS,
  DATA_BLOCK_SIZE_MIN_SECTORS,
  type DataBlocks,
  type Sectors,
} from './units.js';

const POOL_TABLE = 'thin-pool table';
const THIN_TABLE = 'thin table';

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
    throw new InvalidArgumentError(
      argument,
      `must be a non-empty device path or major:minor without whitespace, got ${shown}`,
    );
  }
  return value;
}

function noFeatures(): PoolTableFeatures {
  return {
    skipBlockZeroing: false,
    ignoreDiscard: false,
    noDiscardPassdown: false,
    readOnly: false,
    errorIfNoSpace: false,
  };
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
    throw new ParseError(
      POOL_TABLE,
      line,
      `expected <metadata dev> <data dev> <data block size> <low water mark> [<#features> <feature>...], got ${t.length} fields`,
    );
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
      throw new ParseError(
        POOL_TABLE,
        line,
        `feature count ${count} does not match the ${rest.length} feature(s) that follow`,
      );
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
    throw new ParseError(
      THIN_TABLE,
      line,
      `expected <pool dev> <dev id> [<external origin dev>], got ${t.length} fields`,
    );
  }
  const id = u64(t[1], 'device id', THIN_TABLE, line);
  if (id > BigInt(MAX_THIN_ID)) {
    throw new ParseError(THIN_TABLE, line, `device id ${id} is above the 24-bit maximum ${MAX_THIN_ID}`);
  }
  const table: ThinTable = { poolDev: t[0] ?? '', deviceId: Number(id) };
  if (t[2] !== undefined) table.externalOriginDev = t[2];
  return table;
}
