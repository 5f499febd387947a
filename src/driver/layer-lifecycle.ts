// A layer's birth and death: create (a snapshot of its parent, grown to a larger size when
// asked), remove (deactivate, discard if asked, then the delete under the crash protocol), and
// deferred deletion of busy layers with its retries. The thin ids change only through
// PoolTransactions (transaction.ts), under the layer's lock and then the pool's.
import { DevmapperError, DmSystemError, LayerBusyError } from '../errors.js';
import { discardBlockDevice } from '../ioctl/block.js';
import { logger } from '../log.js';
import type { Bytes } from '../thin/units.js';
import { growFilesystem } from './filesystem.js';
import { BASE_LAYER, type LayerRecord } from './metadata-store.js';
import { removeMountPoint } from './mounts.js';
import { assertCreatable, assertWritable, metadataFullError, takesMessages } from './pool-guard.js';
import type { PoolSpace } from './pool-space.js';
import { POOL_LOCK, type SetParts } from './set-parts.js';

export class LayerLifecycle {
  readonly #parts: SetParts;
  readonly #space: PoolSpace;

  constructor(parts: SetParts, space: PoolSpace) {
    this.#parts = parts;
    this.#space = space;
  }

  /** A new thin device that snapshots `parent` (the base device when null). */
  addDevice(id: string, parent: string | null, size: Bytes | undefined, meta?: Record<string, unknown>): Promise<void> {
    const { locks, layers, pool, options, tx, layout, mounts } = this.#parts;
    return locks.run(id, async () => {
      this.#parts.assertOpen();
      if (layers.has(id)) throw new DevmapperError('ERR_DM_LAYER_EXISTS', `layer ${id} already exists`);
      const origin = parent === null ? layers.get(BASE_LAYER)! : layers.get(parent);
      if (!origin || (parent !== null && !layers.isLive(parent))) {
        throw new DevmapperError('ERR_DM_UNKNOWN_PARENT', `parent layer ${parent} does not exist`);
      }
      const originSize = BigInt(origin.size);
      if (size !== undefined && size < originSize) {
        throw new DevmapperError(
          'ERR_DM_INVALID_ARGUMENT',
          `size: ${size} bytes is smaller than the parent's ${originSize}`,
        );
      }
      assertCreatable(pool, options.minFreeSpacePercent, this.#space.metadataDeviceInfo());
      const record = await locks
        .run(POOL_LOCK, () =>
          tx.createLayer({
            id,
            parent,
            size: originSize,
            meta,
            origin: { deviceId: origin.deviceId, device: layout.thinName(origin.id) }, // suspended if active
            ownsThinId: (thinId) => layers.ownsThinId(thinId),
          }),
        )
        .catch((error: unknown) => {
          // The create itself used the last metadata blocks: the kernel turned the pool read-only
          // (its intent stays open: the next growPool, or an init on a writable pool, rolls it back).
          throw metadataFullError(pool, 'create', this.#space.metadataDeviceInfo(), error) ?? error;
        });
      layers.set(id, record);
      if (size !== undefined && size > originSize) {
        const grown: LayerRecord = { ...record, size: String(size) };
        try {
          await mounts.withPrivateMount(grown, (device, mountPoint) =>
            growFilesystem(device.path, mountPoint, options.filesystem),
          );
        } catch (error) {
          await this.#deleteLayer(record).catch(() => undefined);
          throw error;
        }
        layers.write(grown);
      }
    });
  }

  /** remove: a no-op for an unknown id. A busy device is an EBUSY error, or deferred when enabled. */
  deleteDevice(id: string): Promise<void> {
    const { locks, layers, pool, options, mounts, layout } = this.#parts;
    return locks.run(id, async () => {
      this.#parts.assertOpen();
      const record = layers.get(id);
      if (!record || id === BASE_LAYER || record.deferredDelete) return;
      // Deleting frees data blocks: on a full pool it is the way out (the kernel takes the
      // delete in out_of_data_space and goes back to rw once blocks are free).
      assertWritable(pool, 'remove', { outOfDataSpaceOk: true });
      if (mounts.has(id)) {
        if (options.deferredDeletion) return this.#markDeferred(record);
        throw new LayerBusyError({ layer: id, users: mounts.count(id), device: layout.thinName(id) });
      }
      try {
        await this.#deleteLayer(record);
      } catch (error) {
        if (options.deferredDeletion && error instanceof DmSystemError && error.code === 'EBUSY')
          return this.#markDeferred(record);
        throw error;
      }
      removeMountPoint(layout.mountPoint(id));
    });
  }

  #markDeferred(record: LayerRecord): void {
    this.#parts.layers.update(record, { deferredDelete: true });
    logger.info(`layer ${record.id} is busy: deletion deferred`);
  }

  /** Deactivate (discarding first if asked), then the delete under the crash protocol. */
  async #deleteLayer(record: LayerRecord): Promise<void> {
    const { devices, options, kernel, locks, tx, layers } = this.#parts;
    if (options.discardOnDelete) {
      const device = devices.activate(record);
      try {
        discardBlockDevice(kernel, device.path);
      } finally {
        devices.deactivate(device);
      }
    } else {
      devices.deactivateIfActive(record.id);
    }
    await locks.run(POOL_LOCK, () => {
      tx.deleteLayer(record);
      layers.delete(record.id);
    });
  }

  /** Deletes the layers whose deletion was deferred and that nothing holds any more. */
  async retryDeferredDeletions(): Promise<void> {
    const { pool, layers, locks, mounts, layout } = this.#parts;
    if (!takesMessages(pool)) return; // a read-only or failed pool: retried once it is rw again
    for (const record of layers.deferred()) {
      await locks.run(record.id, async () => {
        if (mounts.has(record.id)) return;
        try {
          await this.#deleteLayer(record);
          removeMountPoint(layout.mountPoint(record.id));
          logger.info(`deferred deletion of ${record.id} done`);
        } catch (error) {
          if (!(error instanceof DmSystemError && error.code === 'EBUSY')) throw error;
        }
      });
    }
  }

  get deferredDeletedCount(): number {
    return this.#parts.layers.deferred().length;
  }
}
