// DeviceSet: the pool, the layers' thin devices, their metadata and their mounts (the role of
// moby's devmapper DeviceSet). Every pool change follows the crash protocol: write the intent,
// change the pool, commit with set_transaction_id, write the metadata, close the intent.
import { rmSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { DeviceMapper } from '../ioctl/device-mapper.js';
import { Kernel } from '../ioctl/kernel.js';
import { discardBlockDevice } from '../ioctl/block.js';
import { DevmapperError, DmSystemError, InvalidArgumentError, LayerBusyError, PoolModeError } from '../errors.js';
import { logger } from '../log.js';
import type { LoopbackStorage } from '../thin/loopback.js';
import { LayerRecords, type LayerMetadata } from './layer-records.js';
import type { ThinPool } from '../thin/pool.js';
import { ThinDevice } from '../thin/thin-device.js';
import { parseThinStatus, poolModeOf } from '../thin/status.js';
import { sectorsToBytes, type Bytes } from '../thin/units.js';
import { growFilesystem } from './filesystem.js';
import { HomeLock } from './home-lock.js';
import { HomeLayout } from './home-layout.js';
import { KeyedMutex } from './keyed-mutex.js';
import { BASE_LAYER, MetadataStore, type DeviceSetState, type LayerRecord } from './metadata-store.js';
import { resolveOptions, type DriverOptions, type ResolvedOptions } from './options.js';
import { runCheck, type CheckReport } from './check.js';
import { driverStatus, type DriverStatus } from './driver-status.js';
import { Mounts } from './mounts.js';
import { LayerDevices } from './layer-devices.js';
import { ensureBaseDevice } from './base-device.js';
import {
  adoptOrRemoveLeftovers,
  checkTransactionId,
  openPool,
  recoverTransaction,
  releaseQuietly,
  resumeSuspended,
  type RecoveryContext,
} from './recovery.js';
import { PoolTransactions } from './transaction.js';
import {
  assertFreeSpace,
  assertNotQueueing,
  assertWritable,
  explainFailure,
  isOutOfMetadataSpace,
  metadataFullError,
  readPoolStatus,
  takesMessages,
  type MetadataDeviceInfo,
} from './pool-guard.js';
import { thinCheckLive, thinLsLive } from './thin-check.js';

export type { LayerMetadata } from './layer-records.js';

/** An active layer device for a user that mounts it itself. */
export interface ActiveLayer {
  /** A block device node that exists without udev (/dev/dm-N, or one the library made). */
  path: string;
  deviceName: string;
}

const POOL_LOCK = '\0pool';

export class DeviceSet {
  readonly options: ResolvedOptions;
  /** The one kernel handle (made from options.ffi): everything below calls the kernel through it. */
  readonly kernel: Kernel;
  readonly dm: DeviceMapper;
  readonly pool: ThinPool;
  readonly store: MetadataStore;
  /** Loop files, when the driver made its own pool on them. */
  readonly storage: LoopbackStorage | undefined;
  /** Every path under the home and every dm name of this home's devices. */
  readonly layout: HomeLayout;
  readonly #ownsPool: boolean;
  readonly #lock: HomeLock;
  readonly #tx: PoolTransactions;
  readonly #layers: LayerRecords;
  readonly #mounts: Mounts;
  readonly #devices: LayerDevices;
  readonly #locks = new KeyedMutex();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** What init found in the layer records (damaged files and thin-id conflicts only in inspect mode). */
  #scan: ReturnType<MetadataStore['scanLayers']> = { records: [], damaged: [], conflicts: [] };

  private constructor(args: {
    options: ResolvedOptions;
    dm: DeviceMapper;
    pool: ThinPool;
    store: MetadataStore;
    storage: LoopbackStorage | undefined;
    layout: HomeLayout;
    ownsPool: boolean;
    lock: HomeLock;
    state: DeviceSetState;
  }) {
    this.options = args.options;
    this.kernel = args.dm.kernel;
    this.dm = args.dm;
    this.pool = args.pool;
    this.store = args.store;
    this.storage = args.storage;
    this.layout = args.layout;
    this.#ownsPool = args.ownsPool;
    this.#lock = args.lock;
    this.#tx = new PoolTransactions(args.pool, args.store, args.state);
    this.#layers = new LayerRecords(args.store);
    const { filesystem, mountOptions } = args.options;
    this.#devices = new LayerDevices(args.dm, args.pool, args.layout, args.options.deferredRemoval);
    this.#mounts = new Mounts(args.layout, { filesystem, mountOptions, kernel: this.kernel }, this.#devices);
  }

  // ------------------------------------------------------------------------------------------
  // Start-up

  /**
   * `inspect` (for Driver.check): open even when the transaction ids disagree, and leave stray
   * devices, stale mounts and pending deferred deletions in place so check() can report them
   * (mounts of known layers are still adopted, so they count as held).
   */
  static async init(input: DriverOptions, mode: { inspect?: boolean } = {}): Promise<DeviceSet> {
    const options = resolveOptions(input);
    const layout = HomeLayout.create(options.home);
    const kernel = Kernel.for(options.ffi); // created once here; everything below gets it from the DeviceMapper
    const lock = await HomeLock.acquire(options.home, { timeoutMs: options.lockTimeoutMs, kernel });
    let dm: DeviceMapper | undefined;
    let store: MetadataStore | undefined;
    let activatedPool: ThinPool | undefined;
    try {
      dm = DeviceMapper.open({ kernel });
      store = new MetadataStore(layout.metadataDir);
      store.removeStaleTempFiles();
      const savedState = store.readState();
      const { pool, storage, ownsPool, activated } = openPool(dm, options, layout, savedState === undefined);
      if (activated) activatedPool = pool;
      const state: DeviceSetState = savedState ?? {
        formatVersion: 1,
        nextDeviceId: 1,
        transactionId: String(readPoolStatus(pool).transactionId),
      };
      if (!savedState) store.writeState(state);
      const set = new DeviceSet({ options, dm, pool, store, storage, layout, ownsPool, lock, state });
      const recovery = set.#recoveryContext();
      resumeSuspended(recovery);
      recoverTransaction(recovery, mode.inspect === true);
      if (!mode.inspect) checkTransactionId(recovery);
      // Normal init refuses damaged records (a MetadataError naming file and field); check's
      // inspect mode loads what it can and reports the rest.
      set.#scan = mode.inspect ? store.scanLayers() : { records: store.readAllLayers(), damaged: [], conflicts: [] };
      // A long journal goes into the pack now that the scan was clean (records unchanged).
      if (!mode.inspect) store.compactIfLong();
      for (const record of set.#scan.records) set.#layers.set(record.id, record);
      adoptOrRemoveLeftovers(recovery, !mode.inspect);
      await ensureBaseDevice({
        options,
        store,
        tx: set.#tx,
        layers: set.#layers,
        devices: set.#devices,
        mounts: set.#mounts,
        createBase: () =>
          set.#locks.run(POOL_LOCK, () =>
            set.#tx.createLayer({
              id: BASE_LAYER,
              parent: null,
              size: options.baseSize,
              ownsThinId: (thinId) => set.#layers.ownsThinId(thinId),
            }),
          ),
        baseRecordDamaged: () => set.#scan.damaged.some((d) => d.name === `${BASE_LAYER}.layer.json`),
      });
      if (!mode.inspect) await set.#retryDeferredDeletions();
      if (options.deferredDeletion && options.deferredDeletionIntervalMs > 0) {
        const retry = (): void =>
          void set.#retryDeferredDeletions().catch((e) => logger.warn(`deferred deletion: ${e}`));
        set.#timer = setInterval(retry, options.deferredDeletionIntervalMs);
        set.#timer.unref();
      }
      return set;
    } catch (error) {
      // A pool this init activated goes again (its loops detach with it), so a failed init
      // leaves nothing active; a pool that was already active is left as it was.
      if (dm && activatedPool) releaseQuietly(dm, layout, activatedPool);
      dm?.close();
      store?.close();
      lock.release();
      throw error;
    }
  }

  #recoveryContext(): RecoveryContext {
    return {
      dm: this.dm,
      pool: this.pool,
      ownsPool: this.#ownsPool,
      layout: this.layout,
      store: this.store,
      tx: this.#tx,
      mounts: this.#mounts,
      hasDevice: (id) => this.hasDevice(id),
      isActivated: (id) => this.#layers.get(id)?.activated === true,
      deactivateIfActive: (layerId) => this.#devices.deactivateIfActive(layerId),
      thinIdMayBeClaimed: (deviceId, except) => this.#thinIdMayBeClaimed(deviceId, except),
    };
  }

  /** Whether a record other than `except`'s names the thin id, or a damaged/quarantined one might. */
  #thinIdMayBeClaimed(deviceId: number, except: string): boolean {
    const scan = this.store.scanLayers();
    if (scan.records.some((r) => r.deviceId === deviceId && r.id !== except)) return true;
    const unsure = [...scan.damaged.map((d) => d.claimedDeviceId), ...this.store.quarantinedThinIds()];
    return unsure.some((id) => id === undefined || id === deviceId);
  }

  // ------------------------------------------------------------------------------------------
  // Layers

  thinName(layerId: string): string {
    return this.layout.thinName(layerId);
  }

  hasDevice(id: string): boolean {
    return this.#layers.isLive(id);
  }

  layer(id: string): LayerMetadata | undefined {
    return this.#layers.metadata(id, { deviceName: this.thinName(id), mounted: this.#mounts.has(id) });
  }

  layers(): LayerMetadata[] {
    return [...this.#layers.keys()].map((id) => this.layer(id)).filter((l): l is LayerMetadata => l !== undefined);
  }

  mountCount(id: string): number {
    return this.#mounts.count(id);
  }

  /** A new thin device that snapshots `parent` (the base device when null). */
  addDevice(id: string, parent: string | null, size: Bytes | undefined, meta?: Record<string, unknown>): Promise<void> {
    return this.#locks.run(id, async () => {
      this.#assertOpen();
      if (this.#layers.has(id)) throw new DevmapperError('ERR_DM_LAYER_EXISTS', `layer ${id} already exists`);
      const origin = parent === null ? this.#layers.get(BASE_LAYER)! : this.#layers.get(parent);
      if (!origin || (parent !== null && !this.hasDevice(parent))) {
        throw new DevmapperError('ERR_DM_UNKNOWN_PARENT', `parent layer ${parent} does not exist`);
      }
      const originSize = BigInt(origin.size);
      if (size !== undefined && size < originSize) {
        throw new DevmapperError(
          'ERR_DM_INVALID_ARGUMENT',
          `size: ${size} bytes is smaller than the parent's ${originSize}`,
        );
      }
      const full = metadataFullError(this.pool, 'create', this.#metadataDeviceInfo());
      if (full) throw full;
      assertFreeSpace(this.pool, this.options.minFreeSpacePercent);
      const record = await this.#locks
        .run(POOL_LOCK, () =>
          this.#tx.createLayer({
            id,
            parent,
            size: originSize,
            meta,
            origin: { deviceId: origin.deviceId, activeDevice: this.#devices.activeName(origin.id) },
            ownsThinId: (thinId) => this.#layers.ownsThinId(thinId),
          }),
        )
        .catch((error: unknown) => {
          // The create itself used the last metadata blocks: the kernel turned the pool read-only
          // (its intent stays open: the next growPool, or an init on a writable pool, rolls it back).
          throw metadataFullError(this.pool, 'create', this.#metadataDeviceInfo(), error) ?? error;
        });
      this.#layers.set(id, record);
      if (size !== undefined && size > originSize) {
        const grown: LayerRecord = { ...record, size: String(size) };
        try {
          await this.#mounts.withPrivateMount(grown, (device, mountPoint) =>
            growFilesystem(device.path, mountPoint, this.options.filesystem),
          );
        } catch (error) {
          await this.#deleteLayer(record).catch(() => undefined);
          throw error;
        }
        this.#layers.write(grown);
      }
    });
  }

  /** remove: a no-op for an unknown id. A busy device is an EBUSY error, or deferred when enabled. */
  deleteDevice(id: string): Promise<void> {
    return this.#locks.run(id, async () => {
      this.#assertOpen();
      const record = this.#layers.get(id);
      if (!record || id === BASE_LAYER || record.deferredDelete) return;
      // Deleting frees data blocks: on a full pool it is the way out (the kernel takes the
      // delete in out_of_data_space and goes back to rw once blocks are free).
      assertWritable(this.pool, 'remove', { outOfDataSpaceOk: true });
      if (this.#mounts.has(id)) {
        if (this.options.deferredDeletion) return this.#markDeferred(record);
        throw new LayerBusyError({ layer: id, users: this.#mounts.count(id), device: this.thinName(id) });
      }
      try {
        await this.#deleteLayer(record);
      } catch (error) {
        if (this.options.deferredDeletion && error instanceof DmSystemError && error.code === 'EBUSY')
          return this.#markDeferred(record);
        throw error;
      }
      rmSync(this.layout.mountPoint(id), { recursive: true, force: true });
    });
  }

  #markDeferred(record: LayerRecord): void {
    this.#layers.update(record, { deferredDelete: true });
    logger.info(`layer ${record.id} is busy: deletion deferred`);
  }

  /** Deactivate (discarding first if asked), then the delete under the crash protocol. */
  async #deleteLayer(record: LayerRecord): Promise<void> {
    if (this.options.discardOnDelete) {
      const device = this.#devices.activate(record);
      try {
        discardBlockDevice(this.kernel, device.path);
      } finally {
        this.#devices.deactivate(device);
      }
    } else {
      this.#devices.deactivateIfActive(record.id);
    }
    await this.#locks.run(POOL_LOCK, () => {
      this.#tx.deleteLayer(record);
      this.#layers.delete(record.id);
    });
  }

  async #retryDeferredDeletions(): Promise<void> {
    if (!takesMessages(this.pool)) return; // a read-only or failed pool: retried once it is rw again
    for (const record of this.#layers.deferred()) {
      await this.#locks.run(record.id, async () => {
        if (this.#mounts.has(record.id)) return;
        try {
          await this.#deleteLayer(record);
          rmSync(this.layout.mountPoint(record.id), { recursive: true, force: true });
          logger.info(`deferred deletion of ${record.id} done`);
        } catch (error) {
          if (!(error instanceof DmSystemError && error.code === 'EBUSY')) throw error;
        }
      });
    }
  }

  get deferredDeletedCount(): number {
    return this.#layers.deferred().length;
  }

  // ------------------------------------------------------------------------------------------
  // Layers held active for users that mount them themselves (engine adapters)

  /** Replaces what is attached to a layer (one atomic rewrite of its record). */
  setMeta(id: string, meta: Record<string, unknown> | undefined): Promise<void> {
    return this.#locks.run(id, async () => {
      this.#assertOpen();
      this.#layers.update(this.#layers.require(id), { meta });
    });
  }

  /**
   * Activates a layer's device and keeps it active across processes: the hold is recorded
   * first, so an init after a crash keeps the device (or activate() makes it again).
   */
  activateLayer(id: string): Promise<ActiveLayer> {
    return this.#locks.run(id, async () => {
      this.#assertOpen();
      let record = this.#layers.require(id);
      if (!record.activated) {
        assertWritable(this.pool, 'activate');
        record = this.#layers.update(record, { activated: true });
      }
      try {
        const device = this.#devices.activate(record);
        return { path: device.path, deviceName: device.name };
      } catch (error) {
        throw explainFailure(this.pool, 'activate', error);
      }
    });
  }

  /**
   * Ends activate()'s hold. A device still open (a mount not yet gone) is removed by the
   * kernel at its last close (deferred removal), so this never fails for being busy.
   */
  deactivateLayer(id: string): Promise<void> {
    return this.#locks.run(id, async () => {
      this.#assertOpen();
      const record = this.#layers.require(id);
      if (!this.#mounts.has(id)) {
        const name = this.thinName(id);
        if (this.dm.exists(name)) ThinDevice.adopt(this.dm, name).deactivate({ deferred: true });
      }
      if (record.activated) this.#layers.update(record, { activated: undefined });
    });
  }

  /** Bytes of the pool's data the layer maps (its own and those shared with its origin). */
  activeMappedBytes(id: string): bigint | null {
    const name = this.thinName(id);
    if (!this.dm.exists(name)) return null;
    const status = parseThinStatus(this.dm.status(name, { noFlush: true })[0]?.params ?? 'Fail');
    return status.kind === 'ok' ? sectorsToBytes(status.mappedSectors) : null;
  }

  mappedBytes(id: string): Promise<bigint> {
    return this.#locks.run(id, async () => {
      this.#assertOpen();
      const record = this.#layers.require(id);
      const name = this.thinName(id);
      const wasActive = this.dm.exists(name);
      const device = this.#devices.activate(record);
      try {
        const status = device.status();
        if (status.kind !== 'ok') {
          throw new PoolModeError({
            pool: this.pool.name,
            ...poolModeOf(this.pool.status()),
            operation: `reading the status of layer ${id}`,
          });
        }
        return sectorsToBytes(status.mappedSectors);
      } finally {
        if (!wasActive) this.#devices.deactivate(device);
      }
    });
  }

  /** Runs `body` with the layer's filesystem root mounted at a private, temporary mount point. */
  withLayerMounted<T>(id: string, body: (root: string) => Promise<T> | T): Promise<T> {
    return this.#locks.run(id, async () => {
      this.#assertOpen();
      assertWritable(this.pool, 'mount');
      return this.#mounts.withPrivateMount(this.#layers.require(id), async (_device, mountPoint) => body(mountPoint));
    });
  }

  // ------------------------------------------------------------------------------------------
  // Mounts

  /** get: activate, mount, and set up rootfs and the id file; undone on any failure. */
  mountDevice(id: string, mountLabel: string | undefined): Promise<string> {
    return this.#locks.run(id, async () => {
      this.#assertOpen();
      const rootfs = this.#mounts.addReference(id);
      if (rootfs !== undefined) return rootfs;
      const record = this.#layers.require(id);
      assertWritable(this.pool, 'get');
      try {
        return this.#mounts.mount(record, mountLabel);
      } catch (error) {
        throw explainFailure(this.pool, 'get', error);
      }
    });
  }
  /** put: the last user unmounts and deactivates. Not mounted: a warning, as in Docker. */
  unmountDevice(id: string): Promise<void> {
    return this.#locks.run(id, async () => {
      // The last put unmounts, and umount2 writes back the layer's dirty pages and journal. On
      // a pool out of data space that queues I/O (errorIfNoSpace: false) those writes wait for
      // the kernel's no_space_timeout (60 s), with the calling thread blocked in umount2 and
      // then the data lost: refuse at once instead; the layer stays mounted.
      if (this.#mounts.count(id) === 1) assertNotQueueing(this.pool, `put ${id}`);
      this.#mounts.release(id);
    });
  }

  // ------------------------------------------------------------------------------------------
  // Space, status, shutdown

  /** Driver.status(): the pool's usage and mode (Fail and Error read as zeros), storage and settings. */
  status(): DriverStatus {
    return driverStatus({
      dm: this.dm,
      pool: this.pool,
      storage: this.storage,
      options: this.options,
      backingFreeBytes: this.backingFreeBytes(),
      deferredDeletedCount: this.deferredDeletedCount,
      layerCount: this.layers().length,
    });
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
    return this.#locks.run(POOL_LOCK, () => {
      this.#assertOpen();
      if (!this.#ownsPool)
        throw new InvalidArgumentError('thinPoolDevice', 'an adopted pool is grown by whoever manages it');
      const metadataFull = isOutOfMetadataSpace(this.pool);
      // The kernel refuses to resize a read-only or failed pool (at resume, after the suspend),
      // except one out of metadata space, which a bigger metadata device puts back to rw.
      if (!metadataFull) assertWritable(this.pool, 'growPool', { outOfDataSpaceOk: true });
      if ((size !== undefined || metadataSize !== undefined) && !this.storage) {
        throw new InvalidArgumentError(
          size !== undefined ? 'dataSize' : 'metadataSize',
          "only the driver's own loop files can be grown by size: grow dataDevice or metadataDevice yourself, then call growPool() without a size",
        );
      }
      const metadataTarget =
        metadataSize ?? (metadataFull && this.storage ? this.storage.metadataSize() * 2n : undefined);
      if (metadataTarget !== undefined || metadataFull) {
        // metadataDevice: the caller grew it, or did not (then the pool is left as it is, still
        // full, and a data device grown too waits for a growPool once the metadata has room).
        if (metadataTarget !== undefined) this.storage?.growMetadata(metadataTarget);
        this.pool.refreshMetadata(); // same table, same data length: preresume picks up the metadata device
        const stillFull = metadataFullError(this.pool, 'growPool', this.#metadataDeviceInfo());
        if (stillFull) throw stillFull;
      }
      if (size !== undefined) this.storage!.growData(size);
      const grown = sectorsToBytes(this.pool.grow());
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
    const open = this.store.readTransaction();
    if (open?.op !== 'create' || !takesMessages(this.pool)) return;
    if (readPoolStatus(this.pool).transactionId !== BigInt(open.transactionId) - 1n) return; // committed: left to init
    recoverTransaction(this.#recoveryContext(), false);
  }

  /** The metadata device as an error names it, and how to grow it. */
  #metadataDeviceInfo(): MetadataDeviceInfo {
    if (this.storage) {
      return {
        device: `${this.storage.metadata.file} (${this.storage.metadata.loop.path})`,
        remedy:
          'growPool(undefined, { metadataSize }) grows the metadata file (without a size it is doubled) and the pool goes back to rw; removing layers cannot help, the pool refuses deletes until then',
      };
    }
    if (this.options.metadataDevice) {
      return { device: this.options.metadataDevice, remedy: 'grow the metadata device, then call growPool()' };
    }
    return {
      device: `of pool ${this.pool.name}`,
      remedy: 'the pool is adopted: whoever manages it must grow its metadata device',
    };
  }

  /** Free bytes of the filesystem holding the loop files (caps what the pool can really use). */
  backingFreeBytes(): bigint | undefined {
    if (!this.storage) return undefined;
    const fs = statfsSync(dirname(this.storage.data.file), { bigint: true });
    return fs.bavail * fs.bsize;
  }

  /** cleanup: unmount everything, deactivate every device and (if ours) the pool; data stays. */
  async shutdown(): Promise<void> {
    if (this.#closed) return;
    // As in put: each unmount would block in umount2 until the kernel's no_space_timeout (60 s)
    // and then drop the layer's unwritten pages. Refused before anything changes.
    const mounted = [...this.#mounts.ids()];
    if (mounted.length > 0)
      assertNotQueueing(
        this.pool,
        'cleanup',
        `unmounting ${mounted.join(', ')} would block until the kernel's no_space_timeout and lose their unwritten data; growPool() first, or close() to let go of the home and leave the mounts (nothing was changed)`,
      );
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    try {
      for (const id of mounted) await this.#locks.run(id, () => this.#mounts.unmountNow(id));
      this.#mounts.clear();
      this.#devices.deactivateAll();
      if (this.#ownsPool) this.pool.deactivate(); // autoclear then detaches the loop devices
    } finally {
      this.dm.close();
      this.store.close();
      this.#lock.release();
    }
  }

  /** Compares metadata, pool and kernel; with `repair`, fixes what it safely can (see check.ts). */
  async check(repair: boolean, options: { thinCheck?: boolean } = {}): Promise<CheckReport> {
    this.#assertOpen();
    readPoolStatus(this.pool); // a failed pool cannot be looked into: a PoolModeError naming it
    const records = [...this.#layers.values()];
    const next = this.#tx.state.nextDeviceId;
    const highest = Math.max(next - 1, ...records.map((r) => r.deviceId));
    return runCheck(
      {
        dm: this.dm,
        pool: this.pool,
        layout: this.layout,
        records,
        highestAllocatedId: highest,
        metadataTransactionId: BigInt(this.#tx.state.transactionId),
        mountedLayers: this.#mounts.ids(),
        mounts: this.#mounts.found(),
        deleteThin: (deviceId) => this.#tx.deleteThinIfPresent(deviceId),
        damaged: this.#scan.damaged,
        conflicts: this.#scan.conflicts,
        quarantinedThinIds: this.store.quarantinedThinIds(),
        quarantinedFiles: this.store.quarantined(),
        ...(options.thinCheck ? { thinCheck: () => thinCheckLive(this.pool, { kernel: this.kernel }) } : {}),
        thinLs: () => thinLsLive(this.pool, { kernel: this.kernel }),
        quarantine: (name) => {
          const path = this.store.quarantine(name);
          const layer = name.replace(/\.layer\.json$/, '');
          this.#scan = { ...this.#scan, damaged: this.#scan.damaged.filter((d) => d.name !== name) };
          // A base record rebuilt from deviceset.json takes the damaged one's place.
          if (layer === BASE_LAYER && this.#layers.get(BASE_LAYER))
            this.store.writeLayer(this.#layers.get(BASE_LAYER)!);
          else this.#layers.delete(layer);
          return path;
        },
        unmount: (mountPoint) => this.#mounts.unmountDetached(mountPoint),
        setMetadataTransactionId: (id) => this.#tx.updateState({ transactionId: String(id) }),
        retryDeferred: async () => {
          await this.#retryDeferredDeletions();
          return this.#layers.deferred().map((r) => r.id);
        },
      },
      repair,
    );
  }

  /**
   * Lets go of the home without tearing anything down: mounts and active devices stay, and the
   * next init adopts them (what a CLI command does between invocations).
   */
  release(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.dm.close();
    this.store.close();
    this.#lock.release();
  }

  #assertOpen(): void {
    if (this.#closed) throw new DevmapperError('ERR_DM_CLOSED', 'the driver was cleaned up');
  }
}
