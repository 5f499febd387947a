// ThinDevice: one activated thin volume of a pool (table `thin <pool dev> <dev id>
// [<external origin dev>]`, thin-provisioning.rst). It owns its dm device and, where the
// library had to make one, its device node.
import { ensureDeviceNode, removeDeviceNode, type DeviceNode } from '../ioctl/device-node.js';
import type { DeviceMapper, DeviceInfo } from '../ioctl/device-mapper.js';
import type { DeviceNumber } from '../ioctl/dm-types.js';
import { DevmapperError, DmSystemError, InvalidArgumentError } from '../errors.js';
import { assertThinId } from './messages.js';
import type { ThinPool } from './pool.js';
import { removeQuietly, removeWithRetry } from './remove.js';
import { parseThinStatus, type ThinStatus } from './status.js';
import { formatThinTable, parseThinTable } from './tables.js';
import { sectors, type Sectors } from './units.js';

export interface ActivateThinOptions {
  /** The dm name for the device. */
  name: string;
  /** The thin id inside the pool (created earlier with pool.createThin or createSnapshot). */
  id: number;
  /** Virtual size in sectors. */
  size: Sectors | number | bigint;
  /** A read-only device outside the pool that unprovisioned blocks read from (`major:minor` or path). */
  externalOrigin?: string;
  readOnly?: boolean;
  uuid?: string;
}

export interface DeactivateOptions {
  /** Busy device: let the kernel remove it when its last opener closes (DM_DEFERRED_REMOVE). */
  deferred?: boolean;
  /** EBUSY retries before giving up with a typed error. Default 5. */
  retries?: number;
}

export class ThinDevice {
  readonly dm: DeviceMapper;
  readonly name: string;
  readonly id: number;
  readonly size: Sectors;
  #node: DeviceNode | undefined;
  /** The device number when a reply already told it (activate's resume): path needs no lookup. */
  #dev: DeviceNumber | undefined;

  private constructor(dm: DeviceMapper, name: string, id: number, size: Sectors, dev?: DeviceNumber) {
    this.dm = dm;
    this.name = name;
    this.id = id;
    this.size = size;
    this.#dev = dev;
  }

  /** Creates the dm device with a thin table and resumes it; removes it again if that fails. */
  static activate(pool: ThinPool, options: ActivateThinOptions): ThinDevice {
    assertThinId(options.id);
    const size = sectors(options.size, 'size');
    if (size === 0n) throw new InvalidArgumentError('size', 'must be at least one sector');
    const params = formatThinTable({
      poolDev: pool.devno,
      deviceId: options.id,
      externalOriginDev: options.externalOrigin,
    });
    const dm = pool.dm;
    dm.create(options.name, { uuid: options.uuid, readOnly: options.readOnly });
    let dev: DeviceNumber;
    try {
      dm.load(options.name, [{ start: 0n, length: size, type: 'thin', params }], { readOnly: options.readOnly });
      dev = dm.resume(options.name).dev;
    } catch (error) {
      removeQuietly(dm, options.name);
      throw error;
    }
    return new ThinDevice(dm, options.name, options.id, size, dev);
  }

  /** Takes over an active thin device by name, reading its id and size from its table. */
  static adopt(dm: DeviceMapper, name: string): ThinDevice {
    const [target, ...rest] = dm.table(name);
    if (!target || rest.length > 0 || target.type !== 'thin') {
      throw new DevmapperError('ERR_DM_NOT_A_THIN_DEVICE', `${name} is not a thin device`);
    }
    const table = parseThinTable(target.params);
    return new ThinDevice(dm, name, table.deviceId, sectors(target.length));
  }

  info(): DeviceInfo {
    return this.dm.info(this.name);
  }

  /** A block device node to open or mount: /dev/dm-N from devtmpfs, or one the library made. */
  get path(): string {
    if (!this.#node) this.#node = ensureDeviceNode(this.dm.kernel, this.name, this.#dev ?? this.info().dev);
    return this.#node.path;
  }

  /** `<mapped sectors> <highest mapped sector>` (or Fail), read without flushing. */
  status(): ThinStatus {
    const [target] = this.dm.status(this.name, { noFlush: true });
    if (!target) throw new DevmapperError('ERR_DM_NOT_A_THIN_DEVICE', `${this.name} has no live table`);
    return parseThinStatus(target.params);
  }

  suspend(options: { noFlush?: boolean } = {}): void {
    this.dm.suspend(this.name, options);
  }

  resume(): void {
    this.dm.resume(this.name);
  }

  /**
   * Removes the dm device (its thin id stays in the pool). EBUSY is retried a few times, then
   * with `deferred` the kernel is asked to remove it at last close, else the error is thrown.
   */
  deactivate(options: DeactivateOptions = {}): 'removed' | 'deferred' {
    try {
      removeWithRetry(this.dm, this.name, options.retries ?? 5);
    } catch (error) {
      if (options.deferred && error instanceof DmSystemError && error.code === 'EBUSY') {
        this.dm.remove(this.name, { deferred: true });
        return 'deferred'; // a node of ours stays until then: the opener still uses it
      }
      throw error;
    }
    if (this.#node) {
      removeDeviceNode(this.#node);
      this.#node = undefined;
    }
    return 'removed';
  }
}
