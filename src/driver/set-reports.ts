// The DeviceSet's two reports: status() (the pool's usage and mode, storage and settings) and
// check() (metadata, pool and kernel compared, and repaired; see check.ts). It keeps what init
// found in the layer records, since check reports (and quarantines) the damaged ones.
import { runCheck, type CheckReport } from './check.js';
import { driverStatus, type DriverStatus } from './driver-status.js';
import type { LayerLifecycle } from './layer-lifecycle.js';
import { BASE_LAYER, type MetadataStore } from './metadata-store.js';
import { readPoolStatus } from './pool-guard.js';
import type { PoolSpace } from './pool-space.js';
import type { SetParts } from './set-parts.js';
import { thinCheckLive, thinLsLive } from './thin-check.js';

export type LayerScan = ReturnType<MetadataStore['scanLayers']>;

export class SetReports {
  readonly #parts: SetParts;
  readonly #space: PoolSpace;
  readonly #lifecycle: LayerLifecycle;
  /** What init found in the layer records (damaged files and thin-id conflicts only in inspect mode). */
  scan: LayerScan = { records: [], damaged: [], conflicts: [] };

  constructor(parts: SetParts, space: PoolSpace, lifecycle: LayerLifecycle) {
    this.#parts = parts;
    this.#space = space;
    this.#lifecycle = lifecycle;
  }

  /** Driver.status(): the pool's usage and mode (Fail and Error read as zeros), storage and settings. */
  status(): DriverStatus {
    const { dm, pool, storage, options, layers } = this.#parts;
    return driverStatus({
      dm,
      pool,
      storage,
      options,
      backingFreeBytes: this.#space.backingFreeBytes(),
      deferredDeletedCount: this.#lifecycle.deferredDeletedCount,
      layerCount: [...layers.keys()].filter((id) => layers.isLive(id)).length,
    });
  }

  /** Compares metadata, pool and kernel; with `repair`, fixes what it safely can (see check.ts). */
  async check(repair: boolean, options: { thinCheck?: boolean } = {}): Promise<CheckReport> {
    const { dm, pool, layout, layers, tx, mounts, store, kernel } = this.#parts;
    this.#parts.assertOpen();
    readPoolStatus(pool); // a failed pool cannot be looked into: a PoolModeError naming it
    const records = [...layers.values()];
    const next = tx.state.nextDeviceId;
    const highest = Math.max(next - 1, ...records.map((r) => r.deviceId));
    return runCheck(
      {
        dm,
        pool,
        layout,
        records,
        highestAllocatedId: highest,
        metadataTransactionId: BigInt(tx.state.transactionId),
        mountedLayers: mounts.ids(),
        mounts: mounts.found(),
        deleteThin: (deviceId) => tx.deleteThinIfPresent(deviceId),
        damaged: this.scan.damaged,
        conflicts: this.scan.conflicts,
        quarantinedThinIds: store.quarantinedThinIds(),
        quarantinedFiles: store.quarantined(),
        ...(options.thinCheck ? { thinCheck: () => thinCheckLive(pool, { kernel }) } : {}),
        thinLs: () => thinLsLive(pool, { kernel }),
        quarantine: (name) => {
          const path = store.quarantine(name);
          const layer = name.replace(/\.layer\.json$/, '');
          this.scan = { ...this.scan, damaged: this.scan.damaged.filter((d) => d.name !== name) };
          // A base record rebuilt from deviceset.json takes the damaged one's place.
          if (layer === BASE_LAYER && layers.get(BASE_LAYER)) store.writeLayer(layers.get(BASE_LAYER)!);
          else layers.delete(layer);
          return path;
        },
        unmount: (mountPoint) => mounts.unmountDetached(mountPoint),
        setMetadataTransactionId: (id) => tx.updateState({ transactionId: String(id) }),
        retryDeferred: async () => {
          await this.#lifecycle.retryDeferredDeletions();
          return layers.deferred().map((r) => r.id);
        },
      },
      repair,
    );
  }
}
