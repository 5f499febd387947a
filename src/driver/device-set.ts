// DeviceSet: the pool, the layers' thin devices, their metadata and their mounts (the role of
// moby's devmapper DeviceSet). It opens the home (init: lock, control fd, pool, recovery, base
// device) and composes the parts that do the work, each over the same SetParts: layer
// lifecycle (layer-lifecycle.ts), layer access (layer-access.ts), pool space (pool-space.ts)
// and the status and check reports (set-reports.ts). Every pool change follows the crash
// protocol of transaction.ts.
import { DeviceMapper } from '../ioctl/device-mapper.js';
import { Kernel } from '../ioctl/kernel.js';
import { DevmapperError, MetadataError } from '../errors.js';
import { logger } from '../log.js';
import type { LoopbackStorage } from '../thin/loopback.js';
import { LayerRecords, type LayerMetadata, type ViewContext } from './layer-records.js';
import type { ThinPool } from '../thin/pool.js';
import type { Bytes } from '../thin/units.js';
import { HomeLock } from './home-lock.js';
import { HomeLayout } from './home-layout.js';
import { KeyedMutex } from './keyed-mutex.js';
import { BASE_LAYER, MetadataStore, type DeviceSetState } from './metadata-store.js';
import { resolveOptions, type DriverOptions, type ResolvedOptions } from './options.js';
import type { CheckReport } from './check.js';
import type { DriverStatus } from './driver-status.js';
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
} from './recovery.js';
import { PoolTransactions } from './transaction.js';
import { assertNotQueueing, readPoolStatus } from './pool-guard.js';
import { POOL_LOCK, recoveryContextOf, type SetParts } from './set-parts.js';
import { LayerLifecycle } from './layer-lifecycle.js';
import { LayerAccess, type ActiveLayer } from './layer-access.js';
import { PoolSpace } from './pool-space.js';
import { SetReports } from './set-reports.js';

export type { LayerMetadata } from './layer-records.js';
export type { ActiveLayer } from './layer-access.js';

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
  readonly #parts: SetParts;
  readonly #lock: HomeLock;
  readonly #lifecycle: LayerLifecycle;
  readonly #access: LayerAccess;
  readonly #space: PoolSpace;
  readonly #reports: SetReports;
  /** What a layer's view takes from outside its record (LayerRecords caches the views). */
  readonly #viewContext: ViewContext;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

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
    const { options, dm, pool, store, storage, layout } = args;
    this.options = options;
    this.kernel = dm.kernel;
    this.dm = dm;
    this.pool = pool;
    this.store = store;
    this.storage = storage;
    this.layout = layout;
    this.#lock = args.lock;
    const devices = new LayerDevices(dm, pool, layout, options.deferredRemoval);
    const layers = new LayerRecords(store);
    const mountSettings = { filesystem: options.filesystem, mountOptions: options.mountOptions, kernel: this.kernel };
    this.#parts = {
      options,
      kernel: this.kernel,
      dm,
      pool,
      store,
      storage,
      layout,
      ownsPool: args.ownsPool,
      tx: new PoolTransactions(pool, store, args.state),
      layers,
      mounts: new Mounts(layout, mountSettings, devices, (id) => layers.isActivated(id)),
      devices,
      locks: new KeyedMutex(),
      assertOpen: () => this.#assertOpen(),
    };
    this.#space = new PoolSpace(this.#parts);
    this.#lifecycle = new LayerLifecycle(this.#parts, this.#space);
    this.#access = new LayerAccess(this.#parts);
    this.#reports = new SetReports(this.#parts, this.#space, this.#lifecycle);
    const { mounts } = this.#parts;
    this.#viewContext = { isMounted: (id) => mounts.has(id), deviceName: (id) => layout.thinName(id) };
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
      // Without deviceset.json the pool would be made anew, its metadata zeroed: every thin
      // device of the records gone. Only a home that never had a record is new.
      if (!savedState && store.holdsRecords())
        throw new MetadataError(
          store.statePath,
          undefined,
          'missing while the home holds layer records: a new pool would wipe their thin devices, so nothing is done (restore the file; to give the layers up, remove the home)',
        );
      const { pool, storage, ownsPool, activated } = openPool(dm, options, layout, savedState === undefined);
      if (activated) activatedPool = pool;
      const state: DeviceSetState = savedState ?? {
        formatVersion: 1,
        nextDeviceId: 1,
        transactionId: String(readPoolStatus(pool).transactionId),
      };
      if (!savedState) store.writeState(state);
      const set = new DeviceSet({ options, dm, pool, store, storage, layout, ownsPool, lock, state });
      const parts = set.#parts;
      const recovery = recoveryContextOf(parts);
      resumeSuspended(recovery);
      recoverTransaction(recovery, mode.inspect === true);
      // What a crashed process logged goes into the files now that its intent is settled.
      if (!mode.inspect) store.fold();
      if (!mode.inspect) checkTransactionId(recovery);
      // Normal init refuses damaged records (a MetadataError naming file and field); check's
      // inspect mode loads what it can and reports the rest.
      const scan = mode.inspect ? store.scanLayers() : { records: store.readAllLayers(), damaged: [], conflicts: [] };
      set.#reports.scan = scan;
      // A long journal goes into the pack now that the scan was clean (records unchanged).
      if (!mode.inspect) store.compactIfLong();
      for (const record of scan.records) parts.layers.set(record.id, record);
      adoptOrRemoveLeftovers(recovery, !mode.inspect);
      await ensureBaseDevice({
        options,
        store,
        tx: parts.tx,
        layers: parts.layers,
        devices: parts.devices,
        mounts: parts.mounts,
        createBase: () =>
          parts.locks.run(POOL_LOCK, () =>
            parts.tx.createLayer({
              id: BASE_LAYER,
              parent: null,
              size: options.baseSize,
              ownsThinId: (thinId) => parts.layers.ownsThinId(thinId),
            }),
          ),
        baseRecordDamaged: () => set.#reports.scan.damaged.some((d) => d.name === `${BASE_LAYER}.layer.json`),
        baseThinIdShared: (deviceId, sharing) => {
          const conflict = { deviceId, layers: [BASE_LAYER, ...sharing].sort() };
          if (mode.inspect) {
            const scan = set.#reports.scan;
            set.#reports.scan = { ...scan, conflicts: [...scan.conflicts, conflict] };
            return;
          }
          throw new MetadataError(
            parts.store.statePath,
            'base.deviceId',
            `thin id ${deviceId} of the base device (its record ${BASE_LAYER}.layer.json is lost) is named by layer ${sharing.join(', ')}'s record too: at most one owns it; fix that record by hand (check reports the conflict)`,
          );
        },
      });
      if (!mode.inspect) await set.#lifecycle.retryDeferredDeletions();
      if (options.deferredDeletion && options.deferredDeletionIntervalMs > 0) {
        const retry = (): void =>
          void set.#lifecycle.retryDeferredDeletions().catch((e) => logger.warn(`deferred deletion: ${e}`));
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

  // ------------------------------------------------------------------------------------------
  // Layers: lookups here, the rest in the parts

  thinName(layerId: string): string {
    return this.layout.thinName(layerId);
  }

  hasDevice(id: string): boolean {
    return this.#parts.layers.isLive(id);
  }

  layer(id: string): LayerMetadata | undefined {
    return this.#parts.layers.metadata(id, this.#viewContext);
  }

  layers(): LayerMetadata[] {
    return this.#parts.layers.views(this.#viewContext);
  }

  mountCount(id: string): number {
    return this.#parts.mounts.count(id);
  }

  addDevice(id: string, parent: string | null, size: Bytes | undefined, meta?: Record<string, unknown>): Promise<void> {
    return this.#lifecycle.addDevice(id, parent, size, meta);
  }

  deleteDevice(id: string): Promise<void> {
    return this.#lifecycle.deleteDevice(id);
  }

  get deferredDeletedCount(): number {
    return this.#lifecycle.deferredDeletedCount;
  }

  setMeta(id: string, meta: Record<string, unknown> | undefined): Promise<void> {
    return this.#access.setMeta(id, meta);
  }

  activateLayer(id: string): Promise<ActiveLayer> {
    return this.#access.activateLayer(id);
  }

  deactivateLayer(id: string): Promise<void> {
    return this.#access.deactivateLayer(id);
  }

  activeMappedBytes(id: string): bigint | null {
    return this.#access.activeMappedBytes(id);
  }

  mappedBytes(id: string): Promise<bigint> {
    return this.#access.mappedBytes(id);
  }

  withLayerMounted<T>(id: string, body: (root: string) => Promise<T> | T): Promise<T> {
    return this.#access.withLayerMounted(id, body);
  }

  mountDevice(id: string, mountLabel: string | undefined): Promise<string> {
    return this.#access.mountDevice(id, mountLabel);
  }

  unmountDevice(id: string): Promise<void> {
    return this.#access.unmountDevice(id);
  }

  // ------------------------------------------------------------------------------------------
  // Space, reports, shutdown

  status(): DriverStatus {
    return this.#reports.status();
  }

  check(repair: boolean, options: { thinCheck?: boolean } = {}): Promise<CheckReport> {
    return this.#reports.check(repair, options);
  }

  growPool(size: Bytes | undefined, metadataSize?: Bytes): Promise<bigint> {
    return this.#space.growPool(size, metadataSize);
  }

  backingFreeBytes(): bigint | undefined {
    return this.#space.backingFreeBytes();
  }

  /** cleanup: unmount everything, deactivate every device and (if ours) the pool; data stays. */
  async shutdown(): Promise<void> {
    if (this.#closed) return;
    const { mounts, locks, devices, ownsPool } = this.#parts;
    // As in put: each unmount would block in umount2 until the kernel's no_space_timeout (60 s)
    // and then drop the layer's unwritten pages. Refused before anything changes.
    const mounted = [...mounts.ids()];
    if (mounted.length > 0)
      assertNotQueueing(
        this.pool,
        'cleanup',
        `unmounting ${mounted.join(', ')} would block until the kernel's no_space_timeout and lose their unwritten data; growPool() first, or close() to let go of the home and leave the mounts (nothing was changed)`,
      );
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    try {
      for (const id of mounted) await locks.run(id, () => mounts.unmountNow(id));
      mounts.clear();
      devices.deactivateAll();
      if (ownsPool) this.pool.deactivate(); // autoclear then detaches the loop devices
    } finally {
      this.dm.close();
      this.store.close();
      this.#lock.release();
    }
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
