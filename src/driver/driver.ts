// Driver: Docker's devicemapper graph driver operations over a DeviceSet (see the seed in
// docs/architecture.md): create, remove, get, put, exists, status, metadata, cleanup.
import { DeviceSet, type ActiveLayer, type LayerMetadata } from './device-set.js';
import { assertLayerId, assertLayerMeta, assertMountLabel, type DriverOptions, type Filesystem } from './options.js';
import { parseSize } from '../thin/units.js';
import { DevmapperError, MetadataError } from '../errors.js';
import type { Kernel } from '../ioctl/kernel.js';
import { PoolWatcher } from '../thin/events.js';
import type { CheckReport } from './check.js';
import { repairNeedsCheck, type NeedsCheckRepair } from './thin-repair.js';
import type { DriverStatus } from './driver-status.js';
import * as naiveDiff from './diff/layer-diff.js';
import type { Change } from './diff/changes.js';
import { teardownUnread } from './teardown.js';

export type { DriverStatus, SpaceUsage } from './driver-status.js';

export class Driver {
  readonly #set: DeviceSet;

  private constructor(set: DeviceSet) {
    this.#set = set;
  }

  /** Creates or reopens <home>: pool, base device, metadata; recovers from a crash. */
  static async init(options: DriverOptions): Promise<Driver> {
    return new Driver(await DeviceSet.init(options));
  }

  get home(): string {
    return this.#set.options.home;
  }

  /**
   * The kernel handle made from the `ffi` option at init: every call of this driver (ioctls,
   * mounts, flock, xattrs) goes through it. `kernel.ffi` names the FFI backend.
   */
  get kernel(): Kernel {
    return this.#set.kernel;
  }

  /** How a layer's device is mounted: the home's filesystem and its extra mount options (dm.fs, dm.mountopt). */
  mountSettings(): { filesystem: Filesystem; mountOptions: readonly string[] } {
    return { filesystem: this.#set.options.filesystem, mountOptions: [...this.#set.options.mountOptions] };
  }

  /** A new layer: a snapshot of `parent`, or of the base device when there is none. */
  async create(
    id: string,
    parent?: string | null,
    options: { size?: string | number | bigint; meta?: Record<string, unknown> } = {},
  ): Promise<void> {
    assertLayerId(id);
    if (parent !== undefined && parent !== null && parent !== '') assertLayerId(parent, 'parent');
    const size = options.size === undefined ? undefined : parseSize(options.size, 'size');
    if (options.meta !== undefined) assertLayerMeta(options.meta);
    await this.#set.addDevice(id, parent || null, size, options.meta);
  }

  /** Replaces the fields attached to a layer (`meta` of create()); one atomic write. */
  async setMeta(id: string, meta: Record<string, unknown> | undefined): Promise<void> {
    assertLayerId(id);
    if (meta !== undefined) assertLayerMeta(meta);
    await this.#set.setMeta(id, meta);
  }

  /**
   * Activates the layer's dm device without mounting it, for a caller that mounts it itself
   * (an engine such as containerd). The device stays active across processes until
   * deactivate(): init does not remove it as a leftover.
   */
  async activate(id: string): Promise<ActiveLayer> {
    assertLayerId(id);
    return this.#set.activateLayer(id);
  }

  /** Ends activate(); a device still open goes when its last opener closes it. */
  async deactivate(id: string): Promise<void> {
    assertLayerId(id);
    await this.#set.deactivateLayer(id);
  }

  /** Bytes of pool data the layer maps, shared ones with its parent included (thin status). */
  async mappedBytes(id: string): Promise<bigint> {
    assertLayerId(id);
    return this.#set.mappedBytes(id);
  }

  /** mappedBytes() of a layer whose device is active now; null when it is not (nothing is activated). */
  async activeMappedBytes(id: string): Promise<bigint | null> {
    assertLayerId(id);
    return this.#set.activeMappedBytes(id);
  }

  /**
   * Runs `body` with the layer's filesystem root (not the `rootfs/` that get() returns)
   * mounted privately; unmounted and deactivated again afterwards.
   */
  async withMounted<T>(id: string, body: (root: string) => Promise<T> | T): Promise<T> {
    assertLayerId(id);
    return this.#set.withLayerMounted(id, body);
  }

  // ---- Docker's naive diff (src/driver/diff/): layer tars in and out of mounted layers ----

  /**
   * Fills layer `id` from a layer tar (gzip, zstd or plain; OCI whiteouts and opaque dirs),
   * creating it on `parent` unless it exists; returns the bytes of file content written. A tar
   * entry that would land outside the layer is a LayerTarError (ERR_DM_LAYER_TAR_UNSAFE); on
   * any failure the layer is removed.
   */
  async applyDiff(id: string, parent: string | null | undefined, tar: naiveDiff.LayerTarSource): Promise<bigint> {
    this.#assertDiffIds(id, parent);
    return (await naiveDiff.applyDiffDetailed(this.#diffHost(), id, parent || null, tar)).bytes;
  }

  /** A layer tar of what `id` changed over `parent` (none: everything); the layers stay mounted until the stream ends. */
  async diff(id: string, parent?: string | null): Promise<naiveDiff.DiffStream> {
    this.#assertDiffIds(id, parent);
    return naiveDiff.diff(this.#diffHost(), id, parent || null);
  }

  /** Paths `id` added, modified or deleted over `parent`, sorted. */
  async changes(id: string, parent?: string | null): Promise<Change[]> {
    this.#assertDiffIds(id, parent);
    return naiveDiff.changes(this.#diffHost(), id, parent || null);
  }

  /** Bytes of the regular files `id` added or modified over `parent`. */
  async diffSize(id: string, parent?: string | null): Promise<bigint> {
    this.#assertDiffIds(id, parent);
    return naiveDiff.diffSize(this.#diffHost(), id, parent || null);
  }

  #assertDiffIds(id: string, parent: string | null | undefined): void {
    assertLayerId(id);
    if (parent) assertLayerId(parent, 'parent');
  }

  #diffHost(): naiveDiff.DiffHost {
    return {
      create: (id, parent) => this.create(id, parent),
      remove: (id) => this.remove(id),
      exists: (id) => this.exists(id),
      get: (id) => this.get(id),
      put: (id) => this.put(id),
      metadata: (id) => this.metadata(id),
      setMeta: (id, meta) => this.setMeta(id, meta),
      kernel: this.#set.kernel,
    };
  }

  /** Deletes a layer. An id that does not exist is a no-op. */
  async remove(id: string): Promise<void> {
    assertLayerId(id);
    await this.#set.deleteDevice(id);
  }

  /** Mounts the layer (reference-counted) and returns <home>/mnt/<id>/rootfs. */
  async get(id: string, mountLabel?: string): Promise<string> {
    assertLayerId(id);
    if (mountLabel !== undefined && mountLabel !== '') assertMountLabel(mountLabel);
    return this.#set.mountDevice(id, mountLabel || undefined);
  }

  /** Releases one get(); the last one unmounts. Not mounted: a logged warning. */
  async put(id: string): Promise<void> {
    assertLayerId(id);
    await this.#set.unmountDevice(id);
  }

  async exists(id: string): Promise<boolean> {
    assertLayerId(id);
    return this.#set.hasDevice(id);
  }

  /** Thin id, size and dm device name of a layer. */
  async metadata(id: string): Promise<LayerMetadata> {
    assertLayerId(id);
    const layer = this.#set.layer(id);
    if (!layer) throw new DevmapperError('ERR_DM_UNKNOWN_LAYER', `layer ${id} does not exist`);
    return layer;
  }

  /** Every layer with its metadata. */
  async list(): Promise<LayerMetadata[]> {
    return this.#set.layers();
  }

  /** How many get()s a layer has outstanding. */
  mountCount(id: string): number {
    return this.#set.mountCount(id);
  }

  async status(): Promise<DriverStatus> {
    return this.#set.status();
  }

  /**
   * Compares the metadata, the pool and the kernel (leaked or missing thin ids, stray devices,
   * unheld mounts, pending deferred deletions, transaction ids). With `repair`, fixes them;
   * it never deletes a device that metadata says is in use.
   */
  async check(options: { repair?: boolean; thinCheck?: boolean } = {}): Promise<CheckReport> {
    return this.#set.check(options.repair === true, { thinCheck: options.thinCheck === true });
  }

  /**
   * check() on a home without a running driver, opening it even when its transaction ids
   * disagree (which init refuses). Without `repair` nothing is changed: unlike init, stray
   * devices, stale mounts and pending deferred deletions are reported, not cleaned up (an
   * open transaction a crash left is still completed or rolled back first). Mounts and
   * devices are left as they are afterwards.
   */
  static async check(
    options: DriverOptions,
    check: { repair?: boolean; thinCheck?: boolean } = {},
  ): Promise<CheckReport> {
    let kernel: Kernel | undefined;
    const inspect = async (): Promise<CheckReport> => {
      const set = await DeviceSet.init(options, { inspect: true });
      kernel = set.kernel;
      try {
        return await set.check(check.repair === true, { thinCheck: check.thinCheck === true });
      } finally {
        set.release();
      }
    };
    const report = await inspect();
    if (!check.repair || !report.needsCheck) return report;
    // needs_check: on the driver's own loop files, thin_repair into new metadata and swap it
    // in (thin-repair.ts), then check again on the pool reopened over it.
    let repaired: NeedsCheckRepair;
    try {
      repaired = await repairNeedsCheck(options, kernel!, async () => (await Driver.init(options)).cleanup());
    } catch (error) {
      repaired = { done: false, lines: [`repairing the needs_check metadata failed: ${(error as Error).message}`] };
    }
    if (!repaired.done) return { ...report, skipped: [...report.skipped, ...repaired.lines] };
    const after = await inspect(); // once: a pool still in needs_check is reported, not retried
    return { ...after, repairs: [...report.repairs, ...repaired.lines, ...after.repairs] };
  }

  /**
   * Grows the pool: the loop data file to `dataSize` and the pool with it; with dataDevice,
   * grow the device yourself and call this without a size. A pool out of data space goes back
   * to rw. `metadataSize` grows the loop metadata file too; a pool that is read-only because
   * its metadata device is full (MetadataSpaceError, ERR_DM_METADATA_FULL) goes back to rw,
   * and for it the loop metadata file is doubled when no `metadataSize` is given (with
   * metadataDevice, grow that device yourself and call this without sizes). Returns the pool's
   * new data size in bytes.
   */
  async growPool(
    dataSize?: string | number | bigint,
    options: { metadataSize?: string | number | bigint } = {},
  ): Promise<bigint> {
    const size = dataSize === undefined ? undefined : parseSize(dataSize, 'dataSize');
    const metadataSize =
      options.metadataSize === undefined ? undefined : parseSize(options.metadataSize, 'metadataSize');
    return this.#set.growPool(size, metadataSize);
  }

  /** Watches the pool's dm events (low water, out of space, read-only, fail); stop() it when done. */
  watch(): PoolWatcher {
    return new PoolWatcher(this.#set.pool, { kernel: this.#set.kernel });
  }

  /**
   * Releases <home> and the control fd but leaves mounts and devices as they are; the next
   * init adopts the mounts (each with one reference). For short-lived processes such as the CLI.
   */
  async close(): Promise<void> {
    this.#set.release();
  }

  /**
   * Unmounts and deactivates everything and releases <home>; the data stays for the next init.
   * On a pool that is out of data space and queues I/O (errorIfNoSpace: false) with layers
   * mounted it refuses at once with ERR_DM_NO_SPACE and changes nothing (each unmount would
   * block until the kernel's no_space_timeout): growPool() first, or close().
   */
  async cleanup(): Promise<void> {
    await this.#set.shutdown();
  }

  /**
   * cleanup() of a home that no driver holds and whose layer records do not all validate
   * (init refuses such a home): opened the way check() opens it, then everything is unmounted
   * and deactivated; the records are left for `check --repair`. When even that cannot read the
   * metadata (a damaged transactions.log or deviceset.json), the home's mounts, devices and pool
   * are brought down by their names alone (teardown.ts), the metadata untouched.
   */
  static async cleanupDamaged(options: DriverOptions): Promise<void> {
    let set: DeviceSet;
    try {
      set = await DeviceSet.init(options, { inspect: true });
    } catch (error) {
      if (!(error instanceof MetadataError)) throw error;
      await teardownUnread(options);
      return;
    }
    await set.shutdown();
  }
}
