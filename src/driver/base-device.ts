// The base device every layer without a parent snapshots: made and formatted on the first
// start, checked against the recorded filesystem and UUID on every later one, grown when
// dm.basesize grows, and its record rebuilt from deviceset.json when the record is lost.
import { DevmapperError } from '../errors.js';
import { logger } from '../log.js';
import type { Bytes } from '../thin/units.js';
import { filesystemUuid, growFilesystem, makeFilesystem } from './filesystem.js';
import type { LayerDevices } from './layer-devices.js';
import type { LayerRecords } from './layer-records.js';
import { BASE_LAYER, type LayerRecord, type MetadataStore } from './metadata-store.js';
import type { Mounts } from './mounts.js';
import type { ResolvedOptions } from './options.js';
import type { PoolTransactions } from './transaction.js';

export interface BaseDeviceContext {
  options: ResolvedOptions;
  store: MetadataStore;
  tx: PoolTransactions;
  layers: LayerRecords;
  devices: LayerDevices;
  mounts: Mounts;
  /** Makes the base's thin device under the crash protocol (the caller holds the pool lock). */
  createBase(): Promise<LayerRecord>;
  /** Whether the base's record file is there but damaged (left for check --repair). */
  baseRecordDamaged(): boolean;
  /**
   * The base's record is being rebuilt and `layers` (other records) name its thin id too: init
   * throws (a MetadataError naming deviceset.json); check's inspect mode reports the conflict.
   */
  baseThinIdShared(deviceId: number, layers: string[]): void;
}

export async function ensureBaseDevice(ctx: BaseDeviceContext): Promise<void> {
  const { options, tx, layers, devices } = ctx;
  let base = layers.get(BASE_LAYER);
  if (!base && tx.state.base) {
    // The base's record is missing or damaged but deviceset.json knows its thin id: rebuild
    // it rather than make a second base (whose filesystem UUID would never match). A damaged
    // file is left for check --repair to quarantine; a missing one is written back.
    base = {
      id: BASE_LAYER,
      parent: null,
      deviceId: tx.state.base.deviceId,
      size: tx.state.base.size,
      transactionId: '0',
    };
    // A record naming the same thin id would be a second owner: removing that layer would
    // delete the base. Nothing is rebuilt or written while they conflict.
    const sharing = [...layers.values()].filter((r) => r.deviceId === tx.state.base!.deviceId).map((r) => r.id);
    if (sharing.length > 0) ctx.baseThinIdShared(tx.state.base.deviceId, sharing);
    else if (!ctx.baseRecordDamaged()) ctx.store.writeLayer(base);
    logger.warn(`base device record rebuilt from deviceset.json (thin id ${base.deviceId})`);
    layers.set(BASE_LAYER, base);
  }
  if (!base) {
    base = await ctx.createBase();
    layers.set(BASE_LAYER, base);
  }
  const fs = options.filesystem;
  const recorded = tx.state.base;
  if (!recorded) {
    // New (or its mkfs never finished): format it and record the filesystem.
    const device = devices.activate(base);
    try {
      await makeFilesystem(device.path, fs, options.mkfsArgs);
      tx.updateState({
        base: {
          deviceId: base.deviceId,
          size: base.size,
          filesystem: fs,
          filesystemUuid: filesystemUuid(device.path, fs),
        },
      });
    } finally {
      devices.deactivate(device);
    }
    return;
  }
  if (recorded.filesystem !== fs) {
    throw new DevmapperError(
      'ERR_DM_BASE_MISMATCH',
      `the base device holds ${recorded.filesystem}, not ${fs}: the filesystem cannot change after the first start`,
    );
  }
  const device = devices.activate(base);
  try {
    const uuid = filesystemUuid(device.path, fs);
    if (uuid !== recorded.filesystemUuid) {
      throw new DevmapperError(
        'ERR_DM_BASE_MISMATCH',
        `base device filesystem UUID ${uuid} is not the recorded ${recorded.filesystemUuid}`,
      );
    }
  } finally {
    devices.deactivate(device);
  }
  if (options.baseSize > BigInt(base.size)) await growBase(ctx, base, options.baseSize);
}

/** A larger dm.basesize on a later start: the base device and its filesystem grow. */
async function growBase(ctx: BaseDeviceContext, base: LayerRecord, size: Bytes): Promise<void> {
  const grown: LayerRecord = { ...base, size: String(size) };
  await ctx.mounts.withPrivateMount(grown, (device, mountPoint) =>
    growFilesystem(device.path, mountPoint, ctx.options.filesystem),
  );
  ctx.layers.write(grown);
  ctx.tx.updateState({ base: { ...ctx.tx.state.base!, size: String(size) } });
}
