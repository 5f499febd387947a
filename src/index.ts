export * from './errors.js';
export * from './thin/units.js';
export * from './thin/status.js';
export * from './thin/messages.js';
export { DeviceMapper, DM_CONTROL_PATH } from './ioctl/device-mapper.js';
export type {
  DeviceRef,
  DeviceNumber,
  DeviceInfo,
  ListedDevice,
  Target,
  TargetStatus,
  TargetVersion,
  OpenOptions,
  CreateOptions,
  RemoveOptions,
  SuspendOptions,
  StatusOptions,
  Geometry,
} from './ioctl/device-mapper.js';
export type { FfiBackendName } from './ioctl/ffi/binding.js';
export { Kernel } from './ioctl/kernel.js';
export type { KernelOptions } from './ioctl/kernel.js';
export { logger } from './log.js';
export { LoopDevices, LOOP_CONTROL_PATH } from './ioctl/loop.js';
export type { LoopAttachOptions, LoopStatus } from './ioctl/loop.js';
export { ThinPool, DEFAULT_DATA_BLOCK_SIZE } from './thin/pool.js';
export type { ThinPoolOptions, CreatePoolOptions } from './thin/pool.js';
export { ThinDevice } from './thin/thin-device.js';
export type { ActivateThinOptions, DeactivateOptions } from './thin/thin-device.js';
export { LoopbackStorage } from './thin/loopback.js';
export type { LoopbackOptions, LoopbackFile } from './thin/loopback.js';
export { PoolWatcher } from './thin/events.js';
export type { PoolEvent, PoolEventKind } from './thin/events.js';
export { Driver } from './driver/driver.js';
export type { DriverStatus, SpaceUsage } from './driver/driver.js';
export type { DriverOptions, Filesystem } from './driver/options.js';
export type { LayerMetadata, ActiveLayer } from './driver/device-set.js';
export type { CheckReport } from './driver/check.js';
export { serveContainerd } from './containerd/serve.js';
export type { ServeContainerdOptions, ContainerdServer } from './containerd/service.js';
export { Snapshotter } from './containerd/snapshotter.js';
export type { Mount, Usage, SnapshotInfo, SnapshotKind } from './containerd/snapshotter.js';
export { SnapshotError } from './containerd/errors.js';
export type { GrpcStatusCode, SnapshotErrorKind } from './containerd/errors.js';
export type { Change, ChangeKind } from './driver/diff/changes.js';
export type { DiffStream, LayerTarSource } from './driver/diff/layer-diff.js';
export { importImage, listImages, getImage, removeImage, imageRootfs, chainIds } from './image/images.js';
export type { ImageRecord, ImageLayerRecord, ImportOptions } from './image/images.js';
export type { ImageConfigJson } from './image/archive.js';
export { runtimeSpec } from './image/runtime-spec.js';
export type { TargetSpec } from './ioctl/dm-codec.js';
export type { DmVersion } from './ioctl/abi.js';
export type { ThinCheckResult } from './driver/thin-check.js';
export type { MountStyle } from './containerd/snapshotter.js';
