// Using a layer that exists: get/put (reference-counted mounts), activate/deactivate for users
// that mount the device themselves (engine adapters), private mounts for a body, the bytes a
// layer maps, and its attached fields. Each call holds the layer's lock; none changes thin ids.
import { PoolModeError } from '../errors.js';
import { ThinDevice } from '../thin/thin-device.js';
import { parseThinStatus, poolModeOf } from '../thin/status.js';
import { sectorsToBytes } from '../thin/units.js';
import { assertNotQueueing, assertWritable, explainFailure } from './pool-guard.js';
import type { SetParts } from './set-parts.js';

/** An active layer device for a user that mounts it itself. */
export interface ActiveLayer {
  /** A block device node that exists without udev (/dev/dm-N, or one the library made). */
  path: string;
  deviceName: string;
}

export class LayerAccess {
  readonly #parts: SetParts;

  constructor(parts: SetParts) {
    this.#parts = parts;
  }

  /** Replaces what is attached to a layer (one atomic rewrite of its record). */
  setMeta(id: string, meta: Record<string, unknown> | undefined): Promise<void> {
    const { locks, layers } = this.#parts;
    return locks.run(id, async () => {
      this.#parts.assertOpen();
      layers.update(layers.require(id), { meta });
    });
  }

  /**
   * Activates a layer's device and keeps it active across processes: the hold is recorded
   * first, so an init after a crash keeps the device (or activate() makes it again).
   */
  activateLayer(id: string): Promise<ActiveLayer> {
    const { locks, layers, pool, devices } = this.#parts;
    return locks.run(id, async () => {
      this.#parts.assertOpen();
      let record = layers.require(id);
      if (!record.activated) {
        assertWritable(pool, 'activate');
        record = layers.update(record, { activated: true });
      }
      try {
        const device = devices.activate(record);
        return { path: device.path, deviceName: device.name };
      } catch (error) {
        throw explainFailure(pool, 'activate', error);
      }
    });
  }

  /**
   * Ends activate()'s hold. A device still open (a mount not yet gone) is removed by the
   * kernel at its last close (deferred removal), so this never fails for being busy.
   */
  deactivateLayer(id: string): Promise<void> {
    const { locks, layers, mounts, dm, layout } = this.#parts;
    return locks.run(id, async () => {
      this.#parts.assertOpen();
      const record = layers.require(id);
      if (!mounts.has(id)) {
        const name = layout.thinName(id);
        if (dm.exists(name)) ThinDevice.adopt(dm, name).deactivate({ deferred: true });
      }
      if (record.activated) layers.update(record, { activated: undefined });
    });
  }

  /** Bytes of the pool's data the layer maps (its own and those shared with its origin). */
  activeMappedBytes(id: string): bigint | null {
    const { dm, layout } = this.#parts;
    const name = layout.thinName(id);
    if (!dm.exists(name)) return null;
    const status = parseThinStatus(dm.status(name, { noFlush: true })[0]?.params ?? 'Fail');
    return status.kind === 'ok' ? sectorsToBytes(status.mappedSectors) : null;
  }

  mappedBytes(id: string): Promise<bigint> {
    const { locks, layers, dm, layout, devices, pool } = this.#parts;
    return locks.run(id, async () => {
      this.#parts.assertOpen();
      const record = layers.require(id);
      const wasActive = dm.exists(layout.thinName(id));
      const device = devices.activate(record);
      try {
        const status = device.status();
        if (status.kind !== 'ok') {
          throw new PoolModeError({
            pool: pool.name,
            ...poolModeOf(pool.status()),
            operation: `reading the status of layer ${id}`,
          });
        }
        return sectorsToBytes(status.mappedSectors);
      } finally {
        if (!wasActive) devices.deactivate(device);
      }
    });
  }

  /** Runs `body` with the layer's filesystem root mounted at a private, temporary mount point. */
  withLayerMounted<T>(id: string, body: (root: string) => Promise<T> | T): Promise<T> {
    const { locks, layers, pool, mounts } = this.#parts;
    return locks.run(id, async () => {
      this.#parts.assertOpen();
      assertWritable(pool, 'mount');
      return mounts.withPrivateMount(layers.require(id), async (_device, mountPoint) => body(mountPoint));
    });
  }

  /** get: activate, mount, and set up rootfs and the id file; undone on any failure. */
  mountDevice(id: string, mountLabel: string | undefined): Promise<string> {
    const { locks, layers, pool, mounts } = this.#parts;
    return locks.run(id, async () => {
      this.#parts.assertOpen();
      const rootfs = mounts.addReference(id);
      if (rootfs !== undefined) return rootfs;
      const record = layers.require(id);
      assertWritable(pool, 'get');
      try {
        return mounts.mount(record, mountLabel);
      } catch (error) {
        throw explainFailure(pool, 'get', error);
      }
    });
  }

  /**
   * put: the last user unmounts and deactivates, unless activate() holds the device. Not
   * mounted: a warning, as in Docker.
   */
  unmountDevice(id: string): Promise<void> {
    const { locks, pool, mounts } = this.#parts;
    return locks.run(id, async () => {
      // The last put unmounts, and umount2 writes back the layer's dirty pages and journal. On
      // a pool out of data space that queues I/O (errorIfNoSpace: false) those writes wait for
      // the kernel's no_space_timeout (60 s), with the calling thread blocked in umount2 and
      // then the data lost: refuse at once instead; the layer stays mounted.
      if (mounts.count(id) === 1) assertNotQueueing(pool, `put ${id}`);
      mounts.release(id);
    });
  }
}
