// What Driver.status() reports, assembled from the DeviceSet's pool, storage and options.
import type { DeviceMapper } from '../ioctl/device-mapper.js';
import type { LoopbackStorage } from '../thin/loopback.js';
import type { ThinPool } from '../thin/pool.js';
import { poolModeOf } from '../thin/status.js';
import { sectorsToBytes } from '../thin/units.js';
import type { Filesystem, ResolvedOptions } from './options.js';

export interface SpaceUsage {
  used: bigint;
  total: bigint;
  /** total - used, capped by what the filesystem holding the loop files can still give. */
  available: bigint;
}

/** What `docker info` showed for devicemapper, plus the pool's mode. Sizes in bytes. */
export interface DriverStatus {
  poolName: string;
  poolBlockSize: bigint;
  baseDeviceSize: bigint;
  backingFilesystem: Filesystem;
  dataFile: string | undefined;
  metadataFile: string | undefined;
  dataLoopDevice: string | undefined;
  metadataLoopDevice: string | undefined;
  dataSpace: SpaceUsage;
  metadataSpace: SpaceUsage;
  minFreeSpacePercent: number;
  deferredRemovalEnabled: boolean;
  deferredDeletionEnabled: boolean;
  deferredDeletedDeviceCount: number;
  /** The kernel's device-mapper interface version, e.g. '4.47.0'. */
  driverVersion: string;
  /** 'rw', 'ro', 'out_of_data_space', or 'fail' / 'error' when the pool reports Fail / Error (usage then reads 0). */
  poolMode: string;
  needsCheck: boolean;
  /** -1 when the pool reports Fail / Error. */
  transactionId: bigint;
  layerCount: number;
}

/** What the status is made of: the DeviceSet's parts and counts. */
export interface StatusSources {
  dm: DeviceMapper;
  pool: ThinPool;
  storage: LoopbackStorage | undefined;
  options: ResolvedOptions;
  /** Free bytes of the filesystem holding the loop files (undefined: no loop files). */
  backingFreeBytes: bigint | undefined;
  deferredDeletedCount: number;
  layerCount: number;
}

export function driverStatus(from: StatusSources): DriverStatus {
  const { dm, pool, storage, options } = from;
  // A failed pool (Fail / Error) reports no usage: zeros, and poolMode says why.
  const status = pool.status();
  const { mode, needsCheck } = poolModeOf(status);
  const none = { usedBlocks: 0n, totalBlocks: 0n, usedBytes: 0n, totalBytes: 0n };
  const data = status.kind === 'ok' ? status.data : none;
  const metadata = status.kind === 'ok' ? status.metadata : none;
  const blockBytes = sectorsToBytes(pool.dataBlockSize);
  const backingFree = from.backingFreeBytes;
  const usage = (used: bigint, total: bigint): SpaceUsage => {
    const free = total - used;
    return { used, total, available: backingFree === undefined || backingFree > free ? free : backingFree };
  };
  const [major, minor, patch] = dm.version();
  return {
    poolName: pool.name,
    poolBlockSize: blockBytes,
    baseDeviceSize: BigInt(options.baseSize),
    backingFilesystem: options.filesystem,
    dataFile: storage?.data.file,
    metadataFile: storage?.metadata.file,
    dataLoopDevice: storage?.data.loop.path,
    metadataLoopDevice: storage?.metadata.loop.path,
    dataSpace: usage(data.usedBlocks * blockBytes, data.totalBlocks * blockBytes),
    metadataSpace: usage(metadata.usedBytes, metadata.totalBytes),
    minFreeSpacePercent: options.minFreeSpacePercent,
    deferredRemovalEnabled: options.deferredRemoval,
    deferredDeletionEnabled: options.deferredDeletion,
    deferredDeletedDeviceCount: from.deferredDeletedCount,
    driverVersion: `${major}.${minor}.${patch}`,
    poolMode: mode,
    needsCheck,
    transactionId: status.kind === 'ok' ? status.transactionId : -1n,
    layerCount: from.layerCount,
  };
}
