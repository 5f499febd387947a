// The shapes DeviceMapper's methods take and return. Kept apart from the class so that the
// codecs that build them (dm-header.ts, dm-list-codec.ts) need not import the handle.

/** A device is named by its dm name (a string), or by its uuid. */
export type DeviceRef = string | { name: string } | { uuid: string };

export interface DeviceNumber {
  major: number;
  minor: number;
}

export interface DeviceInfo {
  name: string;
  uuid: string;
  dev: DeviceNumber;
  /** How many openers the device has (mounts, holders, open fds). */
  openCount: number;
  eventNr: number;
  targetCount: number;
  /** A live table is loaded. */
  active: boolean;
  /** A table is loaded in the inactive slot, waiting for resume. */
  inactiveTable: boolean;
  suspended: boolean;
  readOnly: boolean;
  deferredRemove: boolean;
  internalSuspend: boolean;
}

export interface ListedDevice {
  name: string;
  dev: DeviceNumber;
  /** Present on kernels with interface 4.37+. */
  eventNr?: number;
  /** Present on kernels with interface 4.45+ ('' when the device has none). */
  uuid?: string;
}

export interface CreateOptions {
  uuid?: string;
  /**
   * Sent as DM_READONLY_FLAG, which DM_DEV_CREATE ignores (the kernel keeps no read-only state
   * for a device without a table): what makes a device read-only is load(..., { readOnly: true }).
   */
  readOnly?: boolean;
  /** Ask for this minor (DM_PERSISTENT_DEV_FLAG). A taken minor fails with ENXIO. */
  minor?: number;
}

export interface RemoveOptions {
  /** Remove when the last opener closes (DM_DEFERRED_REMOVE). */
  deferred?: boolean;
}

export interface SuspendOptions {
  /** Do not flush queued I/O (DM_NOFLUSH_FLAG). */
  noFlush?: boolean;
  /** Do not freeze filesystems (DM_SKIP_LOCKFS_FLAG). */
  skipLockfs?: boolean;
}

export interface StatusOptions {
  /** Ask the inactive table (DM_QUERY_INACTIVE_TABLE_FLAG). */
  inactive?: boolean;
  /** DM_NOFLUSH_FLAG: a thin-pool then skips committing metadata first. */
  noFlush?: boolean;
}

export interface Geometry {
  cylinders: number;
  heads: number;
  sectors: number;
  start: number;
}
