// DeviceMapper: the public handle on /dev/mapper/control. One method per kernel command,
// named after dmsetup's command where one exists. Every call goes through DmIoctlEngine, which
// leaves the kernel's answer in the handle's buffer; each method reads back only what it returns.
import {
  DM_COMMANDS,
  DM_FLAGS,
  DM_NAME_LIST_UUID_VERSION,
  decodeDev,
  encodeDev,
  versionAtLeast,
  type DmVersion,
} from './abi.js';
import { constants as osConstants } from 'node:os';
import { validateDeviceName, validateTargetType, validateUuid } from './byte-codec.js';
import { readDeviceInfo, readHeaderFlags, readHeaderTargetCount, readHeaderVersion, refName } from './dm-header.js';
import { decodeDeviceList, decodeTargetDeps, decodeTargetVersions, type TargetVersion } from './dm-list-codec.js';
import {
  decodeStringPayload,
  decodeTargetSpecs,
  encodeStringPayload,
  encodeTargetMessage,
  encodeTargets,
  targetMessageSize,
  targetsSize,
  type TargetSpec,
  type TargetStatus,
} from './dm-table-codec.js';
import type {
  CreateOptions,
  DeviceInfo,
  DeviceNumber,
  DeviceRef,
  Geometry,
  ListedDevice,
  RemoveOptions,
  StatusOptions,
  SuspendOptions,
} from './dm-types.js';
import { DmIoctlEngine, type DmAsyncReply } from './engine.js';
import { O_CLOEXEC, O_RDWR, POLLIN, type FfiBackendName, type LibcBinding } from './ffi/binding.js';
import { Kernel, type KernelOptions } from './kernel.js';
import { DevmapperError, DmSystemError, InvalidArgumentError, IoctlError, ParseError } from '../errors.js';

export const DM_CONTROL_PATH = '/dev/mapper/control';

export type {
  CreateOptions,
  DeviceInfo,
  DeviceNumber,
  DeviceRef,
  Geometry,
  ListedDevice,
  RemoveOptions,
  StatusOptions,
  SuspendOptions,
} from './dm-types.js';
export type Target = TargetSpec;
export type { TargetStatus, TargetVersion };

export interface OpenOptions extends KernelOptions {
  /** The control node, normally /dev/mapper/control. */
  controlPath?: string;
}

const F = DM_FLAGS;
const C = DM_COMMANDS;

export class DeviceMapper {
  /** The handle this DeviceMapper's calls go through; what is built on it (pools, thin devices) uses it too. */
  readonly kernel: Kernel;
  readonly #binding: LibcBinding;
  readonly #engine: DmIoctlEngine;
  #fd: number;
  #kernelVersion: DmVersion | undefined;
  /** DM_LIST_DEVICES asks for uuids (4.45+): known after the first version(). */
  #listFlags = -1;

  private constructor(kernel: Kernel, binding: LibcBinding, fd: number) {
    this.kernel = kernel;
    this.#binding = binding;
    this.#fd = fd;
    this.#engine = new DmIoctlEngine(binding, fd);
  }

  /** Opens the control node. Close the handle with close(). */
  static open(options: OpenOptions = {}): DeviceMapper {
    const kernel = Kernel.from(options);
    const binding = kernel.libc;
    const path = options.controlPath ?? DM_CONTROL_PATH;
    const fd = binding.open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) throw new DmSystemError({ errno: -fd, syscall: 'open', device: path });
    return new DeviceMapper(kernel, binding, fd);
  }

  /** Which FFI backend this handle uses. */
  get ffi(): FfiBackendName {
    return this.#binding.backend;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.#engine.detach();
    const rc = this.#binding.close(fd);
    if (rc < 0) throw new DmSystemError({ errno: -rc, syscall: 'close', device: DM_CONTROL_PATH });
  }

  /** The DeviceInfo of the last synchronous reply; `device` is what it was looked up by. */
  #info(device: DeviceRef | undefined): DeviceInfo {
    const e = this.#engine;
    return readDeviceInfo(e.buffer, e.view, device === undefined ? undefined : refName(device));
  }

  /** dmsetup version: the kernel's dm interface version. */
  version(): DmVersion {
    this.#engine.run(C.DM_VERSION, undefined, 0, false);
    const version = readHeaderVersion(this.#engine.view);
    this.#kernelVersion = version;
    return version;
  }

  #interface(): DmVersion {
    return this.#kernelVersion ?? this.version();
  }

  /** dmsetup ls: every dm device, with event numbers and uuids where the kernel reports them. */
  list(): ListedDevice[] {
    if (this.#listFlags < 0)
      this.#listFlags = versionAtLeast(this.#interface(), DM_NAME_LIST_UUID_VERSION) ? F.DM_UUID_FLAG : 0;
    const e = this.#engine;
    e.run(C.DM_LIST_DEVICES, undefined, this.#listFlags, true);
    // Every reply carries the kernel's interface version, the one version() cached.
    return decodeDeviceList(e.buffer, e.dataStart, e.dataEnd, this.#kernelVersion);
  }

  /** dmsetup create (without a table): a new device with no table; load() and resume() follow. */
  create(name: string, options: CreateOptions = {}): DeviceInfo {
    validateDeviceName(name);
    if (options.uuid !== undefined) validateUuid(options.uuid);
    let flags = options.readOnly ? F.DM_READONLY_FLAG : 0;
    let dev: bigint | undefined;
    if (options.minor !== undefined) {
      if (!Number.isInteger(options.minor) || options.minor < 0 || options.minor > 0xfffff)
        throw new InvalidArgumentError('minor', `${options.minor} is not a valid minor number`);
      flags |= F.DM_PERSISTENT_DEV_FLAG;
      dev = encodeDev(0, options.minor); // the kernel takes MINOR(huge_decode_dev(dev))
    }
    this.#engine.run(C.DM_DEV_CREATE, name, flags, false, 0, 0, 0, dev, options.uuid ?? '');
    return this.#info(name);
  }

  /** dmsetup remove. With `deferred`, a busy device is removed when its last opener closes. */
  remove(device: DeviceRef, options: RemoveOptions = {}): void {
    this.#engine.run(C.DM_DEV_REMOVE, device, options.deferred ? F.DM_DEFERRED_REMOVE : 0, false);
  }

  /** remove() off the main thread (removal waits for outstanding I/O). */
  async removeAsync(device: DeviceRef, options: RemoveOptions = {}): Promise<void> {
    await this.#engine.runAsync(C.DM_DEV_REMOVE, device, options.deferred ? F.DM_DEFERRED_REMOVE : 0, false);
  }

  /** dmsetup remove_all: removes every device that is not open (with `deferred`, marks busy ones). */
  removeAll(options: RemoveOptions = {}): void {
    this.#engine.run(C.DM_REMOVE_ALL, undefined, options.deferred ? F.DM_DEFERRED_REMOVE : 0, false);
  }

  /** dmsetup rename: a new name, or (`{ uuid }`) set the uuid of a device that has none. */
  rename(device: DeviceRef, to: string | { uuid: string }): DeviceInfo {
    const setUuid = typeof to !== 'string';
    const value = setUuid ? to.uuid : to;
    if (setUuid) validateUuid(value, 'uuid');
    else validateDeviceName(value, 'newName');
    const size = Buffer.byteLength(value) + 1;
    encodeStringPayload(this.#engine.input(size), 0, value, setUuid ? 'uuid' : 'newName');
    this.#engine.run(C.DM_DEV_RENAME, device, setUuid ? F.DM_UUID_FLAG : 0, false, size);
    return this.#info(undefined); // the answer names the device by its new name
  }

  /** dmsetup suspend. Without noFlush this waits for in-flight I/O: prefer suspendAsync then. */
  suspend(device: DeviceRef, options: SuspendOptions = {}): DeviceInfo {
    this.#engine.run(C.DM_DEV_SUSPEND, device, suspendFlags(options), false);
    return this.#info(device);
  }

  /**
   * suspend() of a device that may not exist: undefined when there is none (ENXIO), with no
   * DM_DEV_STATUS asked first and no error built.
   */
  suspendIfPresent(device: DeviceRef, options: SuspendOptions = {}): DeviceInfo | undefined {
    if (!this.#engine.runUnless(C.DM_DEV_SUSPEND, device, suspendFlags(options), osConstants.errno.ENXIO))
      return undefined;
    return this.#info(device);
  }

  async suspendAsync(device: DeviceRef, options: SuspendOptions = {}): Promise<DeviceInfo> {
    return asyncInfo(await this.#engine.runAsync(C.DM_DEV_SUSPEND, device, suspendFlags(options), false), device);
  }

  /** dmsetup resume: swaps in a loaded inactive table, and lets I/O flow again. */
  resume(device: DeviceRef): DeviceInfo {
    this.#engine.run(C.DM_DEV_SUSPEND, device, 0, false);
    return this.#info(device);
  }

  async resumeAsync(device: DeviceRef): Promise<DeviceInfo> {
    return asyncInfo(await this.#engine.runAsync(C.DM_DEV_SUSPEND, device, 0, false), device);
  }

  /** dmsetup info. A missing device is a DmSystemError with code ENXIO. */
  info(device: DeviceRef): DeviceInfo {
    this.#engine.run(C.DM_DEV_STATUS, device, 0, false);
    return this.#info(device);
  }

  /** True when a device of that name (or uuid) exists. */
  exists(device: DeviceRef): boolean {
    return this.#engine.runUnless(C.DM_DEV_STATUS, device, 0, osConstants.errno.ENXIO);
  }

  /**
   * dmsetup wait: resolves once the device's event counter passes `eventNr` (default: its
   * current value, i.e. the next event), with the device's info then. Runs off the main thread.
   */
  async wait(device: DeviceRef, eventNr?: number): Promise<DeviceInfo> {
    // Looked up by device number: a name or uuid could change (or be reused) before the
    // blocking call starts on its thread.
    const info = this.info(device);
    const dev = encodeDev(info.dev.major, info.dev.minor);
    const reply = await this.#engine.runAsync(C.DM_DEV_WAIT, undefined, 0, true, eventNr ?? info.eventNr, dev);
    return asyncInfo(reply, undefined);
  }

  /** dmsetup load: fills the device's inactive table slot. resume() makes it live. */
  load(device: DeviceRef, targets: readonly Target[], options: { readOnly?: boolean } = {}): DeviceInfo {
    for (const t of targets) validateTargetType(t.type);
    const size = targetsSize(targets);
    encodeTargets(this.#engine.input(size), 0, targets);
    this.#engine.run(
      C.DM_TABLE_LOAD,
      device,
      options.readOnly ? F.DM_READONLY_FLAG : 0,
      false,
      size,
      0,
      targets.length,
    );
    return this.#info(device);
  }

  /** dmsetup clear: drops the inactive table. */
  clear(device: DeviceRef): DeviceInfo {
    this.#engine.run(C.DM_TABLE_CLEAR, device, 0, false);
    return this.#info(device);
  }

  /** dmsetup deps: the devices the live table uses. */
  deps(device: DeviceRef, options: { inactive?: boolean } = {}): DeviceNumber[] {
    const e = this.#engine;
    e.run(C.DM_TABLE_DEPS, device, options.inactive ? F.DM_QUERY_INACTIVE_TABLE_FLAG : 0, true);
    if (e.dataEnd <= e.dataStart) return []; // no table: the kernel writes no dm_target_deps
    return decodeTargetDeps(e.buffer, e.dataStart, e.dataEnd).map(decodeDev);
  }

  /** dmsetup status: each target's status line. */
  status(device: DeviceRef, options: StatusOptions = {}): TargetStatus[] {
    return this.#tableStatus(device, options, 0);
  }

  /** dmsetup table: each target's table line. */
  table(device: DeviceRef, options: { inactive?: boolean } = {}): TargetStatus[] {
    return this.#tableStatus(device, options, F.DM_STATUS_TABLE_FLAG);
  }

  #tableStatus(device: DeviceRef, options: StatusOptions, flags: number): TargetStatus[] {
    if (options.inactive) flags |= F.DM_QUERY_INACTIVE_TABLE_FLAG;
    if (options.noFlush) flags |= F.DM_NOFLUSH_FLAG;
    const e = this.#engine;
    e.run(C.DM_TABLE_STATUS, device, flags, true);
    return decodeTargetSpecs(e.buffer, e.dataStart, e.dataEnd, readHeaderTargetCount(e.view));
  }

  /** dmsetup targets: the target types the kernel has loaded, with versions. */
  targets(): TargetVersion[] {
    const e = this.#engine;
    e.run(C.DM_LIST_VERSIONS, undefined, 0, true);
    return decodeTargetVersions(e.buffer, e.dataStart, e.dataEnd);
  }

  /** The version of one target type; the kernel loads its module if needed (4.41+). */
  targetVersion(type: string): DmVersion {
    validateTargetType(type, 'type');
    // dm-ioctl.c get_target_version() takes the type in dm_ioctl.name and answers with one
    // dm_target_versions record.
    const e = this.#engine;
    e.run(C.DM_GET_TARGET_VERSION, type, 0, true);
    const [found] = decodeTargetVersions(e.buffer, e.dataStart, e.dataEnd);
    if (!found) throw new ParseError('DM_GET_TARGET_VERSION reply for', type, 'it holds no dm_target_versions record');
    return found.version;
  }

  /**
   * dmsetup message: sends `text` to the target at `sector`. Returns the kernel's reply text
   * when it gave one (DM_DATA_OUT_FLAG), else undefined.
   */
  message(device: DeviceRef, sector: bigint | number, text: string): string | undefined {
    const size = targetMessageSize(text);
    const e = this.#engine;
    encodeTargetMessage(e.input(size), 0, typeof sector === 'bigint' ? sector : BigInt(sector), text);
    try {
      e.run(C.DM_TARGET_MSG, device, 0, true, size);
    } catch (error) {
      // The kernel's refusal says nothing of which message: name it.
      if (error instanceof DmSystemError) {
        throw new IoctlError({
          errno: error.errno,
          operation: 'DM_TARGET_MSG',
          device: error.device,
          detail: `message "${text}"`,
        });
      }
      throw error;
    }
    if (!(readHeaderFlags(e.view) & F.DM_DATA_OUT_FLAG)) return undefined;
    return decodeStringPayload(e.buffer, e.dataStart, e.dataEnd);
  }

  /** dmsetup setgeometry. */
  setGeometry(device: DeviceRef, geometry: Geometry): DeviceInfo {
    for (const key of ['cylinders', 'heads', 'sectors', 'start'] as const) {
      const v = geometry[key];
      if (!Number.isInteger(v) || v < 0)
        throw new InvalidArgumentError(`geometry.${key}`, `${v} is not a non-negative integer`);
    }
    const text = `${geometry.cylinders} ${geometry.heads} ${geometry.sectors} ${geometry.start}`;
    const size = Buffer.byteLength(text) + 1;
    encodeStringPayload(this.#engine.input(size), 0, text, 'geometry');
    this.#engine.run(C.DM_DEV_SET_GEOMETRY, device, 0, false, size);
    return this.#info(device);
  }

  /**
   * DM_DEV_ARM_POLL: from now on poll() on the control fd reports POLLIN when any dm device
   * raises an event. Re-arm after each wake-up.
   */
  armPoll(): void {
    this.#engine.run(C.DM_DEV_ARM_POLL, undefined, 0, false);
  }

  /** Waits (off the main thread) until an armed control fd reports an event: true, or false on timeout. */
  async pollEvent(timeoutMs: number): Promise<boolean> {
    if (this.#fd < 0) throw new DevmapperError('ERR_DM_CLOSED', 'pollEvent: the DeviceMapper handle is closed');
    const revents = await this.#binding.pollAsync(this.#fd, POLLIN, timeoutMs);
    if (revents < 0) throw new DmSystemError({ errno: -revents, syscall: 'poll', device: DM_CONTROL_PATH });
    return (revents & POLLIN) !== 0;
  }
}

function suspendFlags(options: SuspendOptions): number {
  return (
    F.DM_SUSPEND_FLAG | (options.noFlush ? F.DM_NOFLUSH_FLAG : 0) | (options.skipLockfs ? F.DM_SKIP_LOCKFS_FLAG : 0)
  );
}

function asyncInfo(reply: DmAsyncReply, device: DeviceRef | undefined): DeviceInfo {
  return readDeviceInfo(reply.buffer, reply.view, device === undefined ? undefined : refName(device));
}
