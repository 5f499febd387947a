// The pool's space: growing its data and metadata devices (growPool), the metadata device as an
// error names it, and the free bytes of the filesystem under the loop files. A create that a
// full metadata device interrupted is rolled back here once the pool takes messages again.
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { sectorsToBytes, type Bytes } from '../thin/units.js';
import {
  assertWritable,
  isOutOfMetadataSpace,
  metadataFullError,
  readPoolStatus,
  takesMessages,
  type MetadataDeviceInfo,
} from './pool-guard.js';
import { recoverTransaction } from './recovery.js';
import { POOL_LOCK, recoveryContextOf, type SetParts } from './set-parts.js';

export class PoolSpace {
  readonly #parts: SetParts;

  constructor(parts: SetParts) {
    this.#parts = parts;
  }

  /**
   * Grows the pool's data device: the loop data file to `size` (only when the driver made its
   * own loop files), then the pool's table to the device's new size. Without `size`, picks up a
   * data device the caller grew. A pool out of data space goes back to rw. `metadataSize` grows
   * the loop metadata file the same way; a pool that is read-only because its metadata device
   * is full is let in here (it is the way out), and when no `metadataSize` is given its loop
   * metadata file is doubled. The metadata grows first, in a resume of its own: the kernel
   * resizes data, then metadata, at resume, and a data resize on a pool that is still out of
   * metadata space would fail and abort its transaction. Returns the new data size in bytes.
   */
  growPool(size: Bytes | undefined, metadataSize?: Bytes): Promise<bigint> {
    const { pool, storage, locks } = this.#parts;
    return locks.run(POOL_LOCK, () => {
      this.#parts.assertOpen();
      if (!this.#parts.ownsPool)
        throw new InvalidArgumentError('thinPoolDevice', 'an adopted pool is grown by whoever manages it');
      const metadataFull = isOutOfMetadataSpace(pool);
      // The kernel refuses to resize a read-only or failed pool (at resume, after the suspend),
      // except one out of metadata space, which a bigger metadata device puts back to rw.
      if (!metadataFull) assertWritable(pool, 'growPool', { outOfDataSpaceOk: true });
      if ((size !== undefined || metadataSize !== undefined) && !storage) {
        throw new InvalidArgumentError(
          size !== undefined ? 'dataSize' : 'metadataSize',
          "only the driver's own loop files can be grown by size: grow dataDevice or metadataDevice yourself, then call growPool() without a size",
        );
      }
      const metadataTarget = metadataSize ?? (metadataFull && storage ? storage.metadataSize() * 2n : undefined);
      if (metadataTarget !== undefined || metadataFull) {
        // metadataDevice: the caller grew it, or did not (then the pool is left as it is, still
        // full, and a data device grown too waits for a growPool once the metadata has room).
        if (metadataTarget !== undefined) storage?.growMetadata(metadataTarget);
        pool.refreshMetadata(); // same table, same data length: preresume picks up the metadata device
        const stillFull = metadataFullError(pool, 'growPool', this.metadataDeviceInfo());
        if (stillFull) throw stillFull;
      }
      if (size !== undefined) storage!.growData(size);
      const grown = sectorsToBytes(pool.grow());
      this.#rollBackFailedCreate();
      return grown;
    });
  }

  /**
   * A create whose thin id was made but whose set_transaction_id the pool refused (the create
   * used the last metadata blocks, so the kernel turned the pool read-only between the two
   * messages) leaves its intent open with the thin id in the pool. Once the pool takes messages
   * again, it is rolled back here as init would roll it back, so the id does not leak. Run
   * under POOL_LOCK: no other transaction is in flight then.
   */
  #rollBackFailedCreate(): void {
    const { pool, store } = this.#parts;
    const open = store.readTransaction();
    if (open?.op !== 'create' || !takesMessages(pool)) return;
    if (readPoolStatus(pool).transactionId !== BigInt(open.transactionId) - 1n) return; // committed: left to init
    recoverTransaction(recoveryContextOf(this.#parts), false);
  }

  /** The metadata device as an error names it, and how to grow it. */
  metadataDeviceInfo(): MetadataDeviceInfo {
    const { storage, options, pool } = this.#parts;
    if (storage) {
      return {
        device: `${storage.metadata.file} (${storage.metadata.loop.path})`,
        remedy:
          'growPool(undefined, { metadataSize }) grows the metadata file (without a size it is doubled) and the pool goes back to rw; removing layers cannot help, the pool refuses deletes until then',
      };
    }
    if (options.metadataDevice) {
      return { device: options.metadataDevice, remedy: 'grow the metadata device, then call growPool()' };
    }
    return {
      device: `of pool ${pool.name}`,
      remedy: 'the pool is adopted: whoever manages it must grow its metadata device',
    };
  }

  /** Free bytes of the filesystem holding the loop files (caps what the pool can really use). */
  backingFreeBytes(): bigint | undefined {
    const { storage } = this.#parts;
    if (!storage) return undefined;
    const fs = statfsSync(dirname(storage.data.file), { bigint: true });
    return fs.bavail * fs.bsize;
  }
}
