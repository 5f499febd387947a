// The DeviceSet's questions to the pool before and after it acts: is the pool in a mode that
// takes this operation, is there room for a create, and (after a failure) was the pool's mode
// the real reason. Every answer is one status read with DM_NOFLUSH_FLAG (~10 µs).
import { DevmapperError, MetadataSpaceError, PoolModeError } from '../errors.js';
import type { ThinPool } from '../thin/pool.js';
import { type PoolStatus, poolModeOf, poolTakesMessages, type PoolStatusOk } from '../thin/status.js';
import { parsePoolTable } from '../thin/tables.js';

/** The pool's status; Fail or Error is a PoolModeError naming the mode. */
export function readPoolStatus(pool: ThinPool, operation = 'reading the pool status'): PoolStatusOk {
  const status = pool.status();
  if (status.kind !== 'ok') throw new PoolModeError({ pool: pool.name, ...poolModeOf(status), operation });
  return status;
}

/** Whether the pool takes messages (create, delete, set_transaction_id): rw or out of data space. */
export function takesMessages(pool: ThinPool): boolean {
  return poolTakesMessages(poolModeOf(pool.status()));
}

/** A PoolModeError naming the mode unless the pool is rw (or out of data space, when that is fine). */
export function assertWritable(
  pool: ThinPool,
  operation: string,
  options: { outOfDataSpaceOk?: boolean } = {},
  status: PoolStatus = pool.status(),
): PoolStatusOk {
  const { mode, needsCheck } = poolModeOf(status);
  const modeOk = mode === 'rw' || (options.outOfDataSpaceOk === true && mode === 'out_of_data_space');
  if (status.kind !== 'ok' || !modeOk || needsCheck)
    throw new PoolModeError({ pool: pool.name, mode, needsCheck, operation });
  return status;
}

/**
 * create's guard, on one status read (a create's every ioctl counts: UML pays 40–90 µs each): a
 * MetadataSpaceError when the metadata device is full, else a writable pool with at least
 * `minFreeSpacePercent` of its data and metadata free.
 */
export function assertCreatable(pool: ThinPool, minFreeSpacePercent: number, metadata: MetadataDeviceInfo): void {
  const read = pool.status();
  const full = metadataFullError(pool, 'create', metadata, undefined, read);
  if (full) throw full;
  const status = assertWritable(pool, 'create', { outOfDataSpaceOk: true }, read);
  if (status.mode === 'out_of_data_space') {
    throw new DevmapperError(
      'ERR_DM_NO_SPACE',
      `create: pool ${pool.name} is out_of_data_space: remove layers or growPool() first`,
    );
  }
  const min = BigInt(minFreeSpacePercent);
  const check = (what: string, free: bigint, total: bigint): void => {
    if (total > 0n && free * 100n < total * min) {
      throw new DevmapperError(
        'ERR_DM_NO_SPACE',
        `pool ${pool.name}: only ${free} of ${total} ${what} blocks free, below the ${min}% minimum`,
      );
    }
  };
  check('data', status.data.freeBlocks, status.data.totalBlocks);
  check('metadata', status.metadata.freeBlocks, status.metadata.totalBlocks);
}

/**
 * A pool call or a mount failed: if the pool has meanwhile left rw (a metadata error turned
 * it read-only or failed, it ran out of space), the mode is the real reason, so the error
 * becomes a PoolModeError (the original as its cause); otherwise it is returned as it was.
 */
export function explainFailure(pool: ThinPool, operation: string, error: unknown): unknown {
  if (error instanceof PoolModeError) return error;
  let state: { mode: string; needsCheck: boolean };
  try {
    state = poolModeOf(pool.status());
  } catch {
    return error;
  }
  if (state.mode === 'rw' && !state.needsCheck) return error;
  return new PoolModeError({ pool: pool.name, ...state, operation, cause: error });
}

/** Names the pool's metadata device and says how to grow it (the error's text). */
export interface MetadataDeviceInfo {
  device: string;
  remedy: string;
}

/**
 * Whether the pool is read-only because its metadata device is full (the kernel's
 * out-of-metadata-space mode, which its status prints as `ro`): every metadata block used, no
 * needs_check, and no `read_only` feature in the live table. Such a pool goes back to rw when
 * its metadata device grows (pool_preresume, maybe_resize_metadata_dev).
 */
export function isOutOfMetadataSpace(pool: ThinPool, read?: PoolStatus): boolean {
  let status: PoolStatus;
  try {
    status = read ?? pool.status();
  } catch {
    return false;
  }
  if (status.kind !== 'ok' || status.mode !== 'ro' || status.needsCheck === true) return false;
  if (status.metadata.totalBlocks === 0n || status.metadata.freeBlocks !== 0n) return false;
  try {
    const [target] = pool.dm.table(pool.name);
    return target !== undefined && !parsePoolTable(target.params).features.readOnly;
  } catch {
    return false;
  }
}

/** A MetadataSpaceError when the pool is out of metadata space; otherwise undefined. */
export function metadataFullError(
  pool: ThinPool,
  operation: string,
  metadata: MetadataDeviceInfo,
  cause?: unknown,
  status?: PoolStatus,
): MetadataSpaceError | undefined {
  if (!isOutOfMetadataSpace(pool, status)) return undefined;
  return new MetadataSpaceError({
    pool: pool.name,
    metadataDevice: metadata.device,
    operation,
    remedy: metadata.remedy,
    cause,
  });
}

/**
 * Whether the pool is out of data space and queues I/O (queue_if_no_space). A pool whose live
 * table has error_if_no_space never queues, so no status is read for it: in dm-thin.c the
 * pool's pf.error_if_no_space comes from the table at bind, and do_no_space_timeout() only
 * ever turns queueing into erroring. The table is the one this process loaded or adopted.
 */
export function isQueueing(pool: ThinPool): boolean {
  if (pool.table.features.errorIfNoSpace) return false;
  let status: PoolStatus;
  try {
    status = pool.status();
  } catch {
    return false;
  }
  return status.kind === 'ok' && status.mode === 'out_of_data_space' && status.noSpace === 'queue';
}

/**
 * ERR_DM_NO_SPACE when the pool is out of data space and queues I/O (queue_if_no_space): a
 * call that writes through it (an unmount's write-back) would block until the kernel's
 * no_space_timeout instead of failing. `what` names what would block and what stays.
 */
export function assertNotQueueing(
  pool: ThinPool,
  operation: string,
  what = "the unmount would block until the kernel's no_space_timeout and lose the layer's unwritten data; growPool() first (the layer stays mounted)",
): void {
  if (isQueueing(pool)) {
    throw new DevmapperError(
      'ERR_DM_NO_SPACE',
      `${operation}: pool ${pool.name} is out_of_data_space and queues I/O (errorIfNoSpace: false): ${what}`,
    );
  }
}
