// A layer's dm device: activated from its record (a `thin` table on the pool), adopted when it
// is already active, deactivated (deferred when dm.use_deferred_removal is set).
import { DevmapperError, DmSystemError } from '../errors.js';
import type { DeviceMapper } from '../ioctl/device-mapper.js';
import type { ThinPool } from '../thin/pool.js';
import { ThinDevice } from '../thin/thin-device.js';
import { bytes, bytesToSectors } from '../thin/units.js';
import type { HomeLayout } from './home-layout.js';
import type { LayerRecord } from './metadata-store.js';

export class LayerDevices {
  readonly #dm: DeviceMapper;
  readonly #pool: ThinPool;
  readonly #layout: HomeLayout;
  readonly #deferredRemoval: boolean;

  constructor(dm: DeviceMapper, pool: ThinPool, layout: HomeLayout, deferredRemoval: boolean) {
    this.#dm = dm;
    this.#pool = pool;
    this.#layout = layout;
    this.#deferredRemoval = deferredRemoval;
  }

  /**
   * The layer's device, active (adopted if it already was). Created first, adopted when
   * DM_DEV_CREATE answers EBUSY (the name is taken): one ioctl fewer than asking first, on
   * the path every get() takes.
   */
  activate(record: LayerRecord): ThinDevice {
    const name = this.#layout.thinName(record.id);
    try {
      return ThinDevice.activate(this.#pool, {
        name,
        id: record.deviceId,
        size: bytesToSectors(bytes(BigInt(record.size))),
      });
    } catch (error) {
      if (error instanceof DmSystemError && error.code === 'EBUSY' && error.operation === 'DM_DEV_CREATE')
        return ThinDevice.adopt(this.#dm, name);
      // The thin target refuses a table naming an id the pool does not have with ENODATA.
      if (!(error instanceof DmSystemError && error.code === 'ENODATA')) throw error;
      throw new DevmapperError(
        'ERR_DM_THIN_ID_MISSING',
        `layer ${record.id}: thin id ${record.deviceId} is not in pool ${this.#pool.name} (deleted behind the driver's back?); ` +
          '`devmapper check` reports it, `check --repair` quarantines the record',
        { cause: error },
      );
    }
  }

  deactivate(device: ThinDevice): void {
    device.deactivate({ deferred: this.#deferredRemoval });
  }

  /** The layer's dm name when its device is active now (to suspend it around a snapshot). */
  activeName(layerId: string): string | undefined {
    const name = this.#layout.thinName(layerId);
    return this.#dm.exists(name) ? name : undefined;
  }

  deactivateIfActive(layerId: string): void {
    const name = this.activeName(layerId);
    if (name !== undefined) this.deactivate(ThinDevice.adopt(this.#dm, name));
  }

  /** Deactivates every device of this home but the pool (cleanup). */
  deactivateAll(): void {
    for (const device of this.#dm.list()) {
      if (this.#layout.isLayerDevice(device.name, this.#pool.name))
        this.deactivate(ThinDevice.adopt(this.#dm, device.name));
    }
  }
}
