// What the DeviceSet's parts share: the home's handles (kernel, control fd, pool, store, loop
// files, names), the layer records, mounts and devices, and the per-id and pool locks. The
// DeviceSet builds one SetParts at init and hands it to each part (layer-lifecycle.ts,
// layer-access.ts, pool-space.ts, set-reports.ts); none of them keeps state of its own.
import type { DeviceMapper } from '../ioctl/device-mapper.js';
import type { Kernel } from '../ioctl/kernel.js';
import type { LoopbackStorage } from '../thin/loopback.js';
import type { ThinPool } from '../thin/pool.js';
import type { HomeLayout } from './home-layout.js';
import type { KeyedMutex } from './keyed-mutex.js';
import type { LayerDevices } from './layer-devices.js';
import type { LayerRecords } from './layer-records.js';
import { BASE_LAYER, type DeviceSetState, type MetadataStore } from './metadata-store.js';
import type { Mounts } from './mounts.js';
import type { ResolvedOptions } from './options.js';
import type { RecoveryContext } from './recovery.js';
import type { PoolTransactions } from './transaction.js';

/** The lock key every pool change (create, delete, grow) takes after the layer's own. */
export const POOL_LOCK = '\0pool';

export interface SetParts {
  readonly options: ResolvedOptions;
  readonly kernel: Kernel;
  readonly dm: DeviceMapper;
  readonly pool: ThinPool;
  readonly store: MetadataStore;
  /** Loop files, when the driver made its own pool on them. */
  readonly storage: LoopbackStorage | undefined;
  readonly layout: HomeLayout;
  /** The pool is the driver's own (not an adopted thinPoolDevice). */
  readonly ownsPool: boolean;
  readonly tx: PoolTransactions;
  readonly layers: LayerRecords;
  readonly mounts: Mounts;
  readonly devices: LayerDevices;
  /** Per layer id, and POOL_LOCK for the pool. */
  readonly locks: KeyedMutex;
  /** Throws ERR_DM_CLOSED once the driver was cleaned up or closed. */
  assertOpen(): void;
}

/** What recovery.ts needs of the set (at init, and when growPool rolls back a failed create). */
export function recoveryContextOf(parts: SetParts): RecoveryContext {
  return {
    dm: parts.dm,
    pool: parts.pool,
    ownsPool: parts.ownsPool,
    layout: parts.layout,
    store: parts.store,
    tx: parts.tx,
    mounts: parts.mounts,
    hasDevice: (id) => parts.layers.isLive(id),
    isActivated: (id) => parts.layers.isActivated(id),
    deactivateIfActive: (layerId) => parts.devices.deactivateIfActive(layerId),
    thinIdMayBeClaimed: (deviceId, except) => thinIdMayBeClaimed(parts.store, parts.tx.state, deviceId, except),
  };
}

/**
 * Whether a record other than `except`'s names the thin id, or a damaged/quarantined one might,
 * or it is the base's in deviceset.json (whose record init rebuilds when it is lost).
 */
function thinIdMayBeClaimed(
  store: MetadataStore,
  state: Readonly<DeviceSetState>,
  deviceId: number,
  except: string,
): boolean {
  if (state.base?.deviceId === deviceId && except !== BASE_LAYER) return true;
  const scan = store.scanLayers();
  if (scan.records.some((r) => r.deviceId === deviceId && r.id !== except)) return true;
  const unsure = [...scan.damaged.map((d) => d.claimedDeviceId), ...store.quarantinedThinIds()];
  return unsure.some((id) => id === undefined || id === deviceId);
}
