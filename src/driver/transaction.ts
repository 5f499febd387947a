// The crash protocol, in one place. Every change to the pool's thin ids goes:
//
//   1. intent      one line in transactions.log names the change, the transaction id it
//                  commits with and (create) the record; fdatasync'd before the pool changes
//   2. change      create_thin / create_snap, or delete, as a pool message
//   3. commit      set_transaction_id <current> <current + 1>: the kernel commits its
//                  metadata before the message returns (pool_message() -> commit()), then a
//                  DM_NOFLUSH_FLAG status read confirms the commit held
//   4. done        one more line, the record (or its removal) and the new state, not synced
//                  (MetadataStore.finishTransaction)
//
// One durable write per operation: the intent's. Step 4 needs no sync because the intent
// already holds everything it writes: lost in a power cut, it leaves an intent the pool has
// committed, which init finishes again with the same record and state. The layer files and
// deviceset.json are written from the log later (MetadataStore.fold), durably, before it goes.
//
// A crash anywhere leaves the intent open for the next init (recovery.ts), which tells from the
// pool's transaction id whether step 3 happened and completes or undoes the change. This module
// owns the set's state (transaction id, next thin id, the base device) and the intents.
import { DevmapperError, DmSystemError, PoolModeError } from '../errors.js';
import { crashPoint } from '../crash-points.js';
import type { ThinPool } from '../thin/pool.js';
import { poolModeOf, poolTakesMessages } from '../thin/status.js';
import type { DeviceSetState, LayerRecord, MetadataStore, OpenTransaction } from './metadata-store.js';
import { explainFailure } from './pool-guard.js';

/** What createLayer needs to know about the layer being made. */
export interface NewLayer {
  id: string;
  parent: string | null;
  /** Virtual size in bytes. */
  size: bigint;
  meta?: Record<string, unknown> | undefined;
  /** The layer it snapshots (none: a fresh thin device, the base). */
  origin?: { deviceId: number; device: string } | undefined;
  /** Whether a known layer already owns a thin id (it is skipped without asking the pool). */
  ownsThinId(deviceId: number): boolean;
}

/** Crash-point names (DEVMAPPER_TEST_CRASH_AT) of each step, per operation. */
const STEPS = {
  create: { name: 'create', changed: 'create:snapshot' },
  delete: { name: 'remove', changed: 'remove:delete' },
} as const;

export class PoolTransactions {
  readonly #pool: ThinPool;
  readonly #store: MetadataStore;
  #state: DeviceSetState;

  constructor(pool: ThinPool, store: MetadataStore, state: DeviceSetState) {
    this.#pool = pool;
    this.#store = store;
    this.#state = state;
  }

  /** deviceset.json as last written. */
  get state(): Readonly<DeviceSetState> {
    return this.#state;
  }

  /** Writes deviceset.json with `change` applied (the base device's record, a repaired transaction id). */
  updateState(change: Partial<DeviceSetState>): void {
    this.#state = { ...this.#state, ...change };
    this.#store.writeState(this.#state);
  }

  /**
   * create: a new thin device (a snapshot of `origin`, or a fresh one) under the crash protocol.
   * Thin ids the pool already uses (EEXIST) are skipped and the intent rewritten with the next.
   */
  createLayer(layer: NewLayer): LayerRecord {
    const transactionId = String(BigInt(this.#state.transactionId) + 1n);
    let deviceId = this.#state.nextDeviceId;
    for (let attempts = 0; ; attempts++, deviceId = nextThinId(deviceId)) {
      if (attempts > 1000) throw new DevmapperError('ERR_DM_NO_THIN_ID', 'no free thin id found after 1000 tries');
      if (layer.ownsThinId(deviceId)) continue;
      const record: LayerRecord = {
        id: layer.id,
        parent: layer.parent,
        deviceId,
        size: String(layer.size),
        transactionId,
        ...(layer.meta ? { meta: layer.meta } : {}),
      };
      const thinId = deviceId;
      const transaction: OpenTransaction = { transactionId, op: 'create', layerId: layer.id, deviceId, record };
      const made = this.#run(transaction, () => {
        try {
          if (layer.origin) this.#pool.createSnapshot(thinId, layer.origin.deviceId, layer.origin.device);
          else this.#pool.createThin(thinId);
          return true;
        } catch (error) {
          if (error instanceof DmSystemError && error.code === 'EEXIST') return false; // used by someone: skip it
          this.#store.abandonTransaction(transaction); // the pool refused: nothing changed, nothing to recover
          throw error;
        }
      });
      if (made) return record;
    }
  }

  /** delete: the layer's thin id goes under the crash protocol (a failure leaves the intent for init to finish). */
  deleteLayer(record: LayerRecord): void {
    const transactionId = String(BigInt(this.#state.transactionId) + 1n);
    this.#run({ transactionId, op: 'delete', layerId: record.id, deviceId: record.deviceId }, () => {
      this.deleteThinIfPresent(record.deviceId);
      return true;
    });
  }

  /** Steps 1 to 4; false when `change` found its thin id taken (the intent is then left to be rewritten). */
  #run(transaction: OpenTransaction, change: () => boolean): boolean {
    const steps = STEPS[transaction.op];
    const current = BigInt(this.#state.transactionId);
    this.#store.openTransaction(transaction);
    crashPoint(`${steps.name}:intent`);
    try {
      if (!change()) return false;
      crashPoint(steps.changed);
      this.#pool.setTransactionId(current, BigInt(transaction.transactionId));
    } catch (error) {
      throw explainFailure(this.#pool, steps.name, error);
    }
    crashPoint(`${steps.name}:commit`);
    this.#commitPool(steps.name, BigInt(transaction.transactionId));
    this.finish(transaction);
    crashPoint(`${steps.name}:done`);
    return true;
  }

  /**
   * Step 4 of a transaction the pool has committed (at once, or found committed by recovery):
   * the layer's record written (create) or removed (delete), deviceset.json, intent closed.
   */
  finish(transaction: OpenTransaction): void {
    const create = transaction.op === 'create';
    const nextDeviceId = create ? nextThinId(transaction.deviceId) : this.#state.nextDeviceId;
    this.#state = { ...this.#state, transactionId: transaction.transactionId, nextDeviceId };
    const change = !create
      ? { remove: transaction.layerId }
      : transaction.record
        ? { write: transaction.record }
        : undefined;
    this.#store.finishTransaction(change, this.#state);
  }

  /** Undoes an uncommitted create (recovery): its record (if written) and its intent go. */
  abandon(transaction: OpenTransaction): void {
    this.#store.abandonTransaction(transaction);
  }

  /** The kernel answers ENODATA for a thin id it does not have: already deleted, not an error. */
  deleteThinIfPresent(deviceId: number): void {
    try {
      this.#pool.deleteThin(deviceId);
    } catch (error) {
      if (!(error instanceof DmSystemError && error.code === 'ENODATA')) throw error;
    }
  }

  /**
   * Checks that the commit of the set_transaction_id message held. No second commit is asked for:
   * in drivers/md/dm-thin.c, pool_message() ends every message that succeeded with
   * `(void) commit(pool)` (dm_pool_commit_metadata(): space maps, superblock, flushes), so the
   * transaction is on the metadata device when the ioctl returns; a flushing status read
   * (pool_status() without DM_STATUS_NOFLUSH_FLAG, which the driver sent here before) only
   * committed an empty transaction a second time. pool_message() drops commit()'s result, but a
   * commit that fails goes through metadata_operation_failed(): abort_transaction()
   * (dm_pool_abort_metadata() re-reads the superblock, so the in-core transaction id falls back
   * to the last committed one, and needs_check is set) and set_pool_mode(PM_READ_ONLY), or
   * PM_FAIL when the abort fails too. A no-flush status shows all of that (mode ro/Fail,
   * needs_check, the old transaction id), so a failed commit still ends the operation with a
   * PoolModeError before any record is written, the intent left for the next init. Kernels
   * since 3.x do this (the UML and QEMU test kernels are 6.1).
   */
  #commitPool(operation: string, transactionId: bigint): void {
    const status = this.#pool.status();
    const { mode, needsCheck } = poolModeOf(status);
    if (status.kind !== 'ok' || !poolTakesMessages({ mode, needsCheck })) {
      throw new PoolModeError({
        pool: this.#pool.name,
        mode,
        needsCheck,
        operation: `${operation}: committing the pool's metadata`,
      });
    }
    if (status.transactionId !== transactionId) {
      throw new DevmapperError(
        'ERR_DM_TRANSACTION_MISMATCH',
        `${operation}: pool ${this.#pool.name} committed transaction id ${status.transactionId}, not ${transactionId}`,
      );
    }
  }
}

/** Thin ids are 24-bit; wrap past the top (id 0 stays unused, as Docker does). */
export function nextThinId(id: number): number {
  return id >= 0xffffff ? 1 : id + 1;
}
