// Start-up: the pool opened (made, reopened or adopted), and what a crash or an earlier
// process left behind settled before the DeviceSet serves calls: suspended devices resumed, an
// open transaction completed or rolled back, the transaction ids compared, and leftover mounts
// and devices adopted or removed. Failure of a start-up undoes what it activated.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DevmapperError, DmSystemError, MetadataError, PoolModeError } from '../errors.js';
import type { DeviceMapper } from '../ioctl/device-mapper.js';
import { logger } from '../log.js';
import { LoopbackStorage } from '../thin/loopback.js';
import { ThinPool } from '../thin/pool.js';
import { poolModeOf, poolTakesMessages } from '../thin/status.js';
import { ThinDevice } from '../thin/thin-device.js';
import type { HomeLayout } from './home-layout.js';
import type { MetadataStore, OpenTransaction } from './metadata-store.js';
import type { Mounts } from './mounts.js';
import type { ResolvedOptions } from './options.js';
import { isOutOfMetadataSpace, readPoolStatus } from './pool-guard.js';
import type { PoolTransactions } from './transaction.js';

/** What recovery needs from the DeviceSet being opened. */
export interface RecoveryContext {
  dm: DeviceMapper;
  pool: ThinPool;
  /** The pool is the driver's own (not an adopted thinPoolDevice). */
  ownsPool: boolean;
  layout: HomeLayout;
  store: MetadataStore;
  tx: PoolTransactions;
  mounts: Mounts;
  /** A layer with a live record (not the base, not pending deletion). */
  hasDevice(id: string): boolean;
  /** Held active by activate(): its device is not a leftover. */
  isActivated(id: string): boolean;
  deactivateIfActive(layerId: string): void;
  /** Whether a record other than `except`'s owns, or may own, the thin id (never delete it then). */
  thinIdMayBeClaimed(deviceId: number, except: string): boolean;
}

/** The pool, and whether this call activated it (false: adopted, already active). */
export function openPool(
  dm: DeviceMapper,
  options: ResolvedOptions,
  layout: HomeLayout,
  fresh: boolean,
): {
  pool: ThinPool;
  storage: LoopbackStorage | undefined;
  ownsPool: boolean;
  activated: boolean;
} {
  if (options.thinPoolDevice)
    return { pool: ThinPool.adopt(dm, options.thinPoolDevice), storage: undefined, ownsPool: false, activated: false };
  const name = layout.poolName;
  // An active pool is adopted whatever its no-space mode (one made before errorIfNoSpace existed).
  const poolOptions = { dataBlockSize: options.blockSize, features: { skipBlockZeroing: true } };
  const tableOptions = {
    dataBlockSize: options.blockSize,
    features: { skipBlockZeroing: true, errorIfNoSpace: options.errorIfNoSpace },
  };
  const activate = (devices: { metadataDevice: string; dataDevice: string }, brandNew: boolean): ThinPool => {
    const args = { ...devices, ...tableOptions };
    return brandNew ? ThinPool.create(dm, name, args) : ThinPool.reopen(dm, name, args);
  };
  if (options.dataDevice && options.metadataDevice) {
    if (dm.exists(name))
      return { pool: ThinPool.adopt(dm, name, poolOptions), storage: undefined, ownsPool: true, activated: false };
    const pool = activate({ metadataDevice: options.metadataDevice, dataDevice: options.dataDevice }, fresh);
    return { pool, storage: undefined, ownsPool: true, activated: true };
  }
  // A home with a deviceset.json had its pool on these files: one that is gone is not made
  // anew (an empty metadata file is a new, empty pool over the old data; a new data file, the
  // old mappings over zeros). Refused before anything is created.
  if (!fresh)
    for (const name of ['metadata', 'data'])
      if (!existsSync(join(layout.loopDir, name)))
        throw new MetadataError(
          join(layout.loopDir, name),
          undefined,
          `the pool's ${name} file is missing in a home that has a pool: nothing is made in its place (restore it; to give the layers up, remove the home)`,
        );
  const storage = LoopbackStorage.open({
    dir: layout.loopDir,
    dataSize: options.loopDataSize,
    metadataSize: options.loopMetadataSize,
    kernel: dm.kernel,
  });
  try {
    if (dm.exists(name))
      return { pool: ThinPool.adopt(dm, name, poolOptions), storage, ownsPool: true, activated: false };
    const pool = activate(
      { metadataDevice: storage.metadata.loop.path, dataDevice: storage.data.loop.path },
      fresh || storage.metadata.created,
    );
    return { pool, storage, ownsPool: true, activated: true };
  } finally {
    storage.release(); // the pool holds the loops now; autoclear detaches them when it goes
  }
}

/** Undoes a failed init's activation: our thin devices on the pool, then the pool. Errors are dropped (the init's own is reported). */
export function releaseQuietly(dm: DeviceMapper, layout: HomeLayout, pool: ThinPool): void {
  try {
    for (const device of dm.list()) if (layout.isLayerDevice(device.name, pool.name)) dm.remove(device.name);
    pool.deactivate();
  } catch (error) {
    logger.warn(`failed init: cannot deactivate ${pool.name}: ${error}`);
  }
}

/**
 * A process killed between suspend and resume (a snapshot of an active layer, a pool grown)
 * leaves the device suspended, and every I/O to it, the mount on it included, would hang:
 * the pool (when it is ours) and this home's thin devices are resumed first.
 */
export function resumeSuspended(ctx: RecoveryContext): void {
  const { dm, pool } = ctx;
  const ours = dm
    .list()
    .map((d) => d.name)
    .filter((name) => (name === pool.name && ctx.ownsPool) || ctx.layout.isLayerDevice(name, pool.name))
    .sort((a, b) => Number(b === pool.name) - Number(a === pool.name));
  for (const name of ours) {
    if (!dm.info(name).suspended) continue;
    logger.warn(`resuming ${name}, left suspended by a crash`);
    dm.resume(name);
  }
}

/**
 * Completes a committed transaction, or rolls back one the pool never committed. A pool that
 * takes no messages (read-only, needs_check) cannot do either: init refuses, and `inspect`
 * leaves the transaction open for a later init.
 */
export function recoverTransaction(ctx: RecoveryContext, inspect: boolean): void {
  const { pool, tx } = ctx;
  const open = ctx.store.readTransaction();
  if (!open) return;
  const state = poolModeOf(pool.status());
  if (!poolTakesMessages(state)) {
    // A create that used the last metadata blocks (its thin id made, its set_transaction_id
    // refused): nothing of it is visible (no record), and the pool cannot take the delete
    // until its metadata device grows, so init lets the home open for growPool(), which rolls
    // the create back once the pool is rw again.
    const uncommittedCreate =
      open.op === 'create' &&
      isOutOfMetadataSpace(pool) &&
      readPoolStatus(pool).transactionId === BigInt(open.transactionId) - 1n;
    if (inspect || uncommittedCreate) {
      logger.warn(
        `open transaction ${open.transactionId} (${open.op} ${open.layerId}) left open: pool is ${state.mode}`,
      );
      return;
    }
    throw new PoolModeError({
      pool: pool.name,
      ...state,
      operation: `init: completing the interrupted ${open.op} of layer ${open.layerId}`,
    });
  }
  const poolTid = readPoolStatus(pool).transactionId;
  const committed = poolTid === BigInt(open.transactionId);
  if (!committed && poolTid !== BigInt(open.transactionId) - 1n) {
    throw new DevmapperError(
      'ERR_DM_TRANSACTION_MISMATCH',
      `open transaction ${open.transactionId} (${open.op} ${open.layerId}) fits neither pool transaction id ${poolTid} nor the one before it`,
    );
  }
  assertIntentFitsRecords(ctx, open);
  logger.info(
    `recovering ${committed ? 'committed' : 'uncommitted'} ${open.op} of ${open.layerId} (thin id ${open.deviceId})`,
  );
  if (open.op === 'create') {
    if (committed) {
      tx.finish(open);
    } else {
      // Never delete a thin id that another record owns or may own (ids wrap at 2^24).
      if (!ctx.thinIdMayBeClaimed(open.deviceId, open.layerId)) tx.deleteThinIfPresent(open.deviceId);
      tx.abandon(open);
    }
  } else {
    // A delete the user asked for is finished either way; its thin id may already be gone.
    ctx.deactivateIfActive(open.layerId);
    if (!committed) {
      // As for a create: a thin id another record owns or may own is left to check to report.
      if (ctx.thinIdMayBeClaimed(open.deviceId, open.layerId))
        logger.warn(
          `interrupted delete of ${open.layerId}: thin id ${open.deviceId} may belong to another record, kept`,
        );
      else tx.deleteThinIfPresent(open.deviceId);
      pool.setTransactionId(poolTid, BigInt(open.transactionId));
    }
    tx.finish(open);
  }
}

/**
 * An intent that contradicts the records (a hand edit, a log from another time) is not acted on:
 * rolling back a create of a layer that already has a record drops that record (and repair then
 * deletes its thin id as leaked); a delete naming another thin id than its layer's would delete
 * another layer's data; a committed create of a thin id another layer has would share it.
 */
function assertIntentFitsRecords(ctx: RecoveryContext, open: OpenTransaction): void {
  const records = ctx.store.scanLayers().records;
  const own = records.find((r) => r.id === open.layerId);
  const other = records.find((r) => r.id !== open.layerId && r.deviceId === open.deviceId);
  const clash =
    own !== undefined && own.deviceId !== open.deviceId
      ? `layer ${open.layerId}'s record names thin id ${own.deviceId}`
      : open.op === 'create' && other !== undefined
        ? `layer ${other.id} already has thin id ${open.deviceId}`
        : undefined;
  if (clash === undefined) return;
  throw new MetadataError(
    ctx.store.openTransactionFile,
    'intent',
    `open transaction ${open.transactionId} (${open.op} of layer ${open.layerId}, thin id ${open.deviceId}) contradicts the records: ${clash}. ` +
      'Not acted on (nothing changed): remove that intent by hand once you know which is right',
  );
}

/** The pool's transaction id is this driver's: one that differs from deviceset.json stops init. */
export function checkTransactionId(ctx: RecoveryContext): void {
  const poolTid = readPoolStatus(ctx.pool).transactionId;
  const recorded = ctx.tx.state.transactionId;
  if (poolTid !== BigInt(recorded)) {
    throw new DevmapperError(
      'ERR_DM_TRANSACTION_MISMATCH',
      `pool ${ctx.pool.name} has transaction id ${poolTid} but ${ctx.store.dir} says ${recorded}: ` +
        'the pool was changed by someone else; not overwriting it',
    );
  }
}

/**
 * Mounts a previous process left under <home>/mnt/<id> (a CLI command, or a crash) are
 * adopted with one reference, so put() unmounts them; anything else there is unmounted, and
 * this home's dm devices that no adopted mount uses are removed (not the pool). With
 * `remove` false, only the adoption happens.
 */
export function adoptOrRemoveLeftovers(ctx: RecoveryContext, remove: boolean): void {
  const { dm, pool, layout, mounts } = ctx;
  for (const { mountPoint, layer: id } of mounts.found().reverse()) {
    const name = id === undefined ? undefined : layout.thinName(id);
    if (id !== undefined && name !== undefined && ctx.hasDevice(id) && dm.exists(name)) {
      mounts.adopt(id, mountPoint, ThinDevice.adopt(dm, name));
      continue;
    }
    if (remove) mounts.unmountStale(mountPoint);
  }
  if (!remove) return;
  for (const device of dm.list()) {
    if (!layout.isLayerDevice(device.name, pool.name)) continue;
    const layerId = layout.layerIdOf(device.name);
    if (mounts.has(layerId) || ctx.isActivated(layerId)) continue;
    logger.warn(`removing stale device ${device.name}`);
    try {
      dm.remove(device.name);
    } catch (error) {
      if (error instanceof DmSystemError && error.code === 'EBUSY') dm.remove(device.name, { deferred: true });
      else throw error;
    }
  }
}
