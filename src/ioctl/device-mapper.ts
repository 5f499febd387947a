// DeviceMapper: the public handle on /dev/mapper/control. One method per kernel command,
// named after dmsetup's command where one exists. Every call goes through DmIoctlEngine.
import {
  DM_COMMANDS,
  DM_FLAGS,
  DM_NAME_LIST_UUID_VERSION,
  decodeDev,
  encodeDev,
  versionAtLeast,
  type DmCommand,
  type DmVersion,
} from './abi.js';
import {
  decodeNameList,
  decodeStringPayload,
  decodeTargetDeps,
  decodeTargetSpecs,
  decodeTargetVersions,
  encodeStringPayload,
  encodeTargetMessage,
  encodeTargets,
  targetMessageSize,
  targetsSize,
  type TargetSpec,
  type TargetStatus,
  type TargetVersion,
} from './dm-codec.js';
import { validateDeviceName, validateTargetType, validateUuid } from './byte-codec.js';
import { DmIoctlEngine, type DmReply, type DmRequest } from './engine.js';
import { O_CLOEXEC, O_RDWR, POLLIN, type FfiBackendName, type LibcBinding } from './ffi/binding.js';
import { Kernel, type KernelOptions } from './kernel.js';
import { DevmapperError, DmSystemError, InvalidArgumentError, IoctlError, ParseError } from '../errors.js';

export const DM_CONTROL_PATH = '/dev/mapper/control';

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

export type Target = TargetSpec;
export type { TargetStatus, TargetVersion };

export interface OpenOptions extends KernelOptions {
  /** The control node, normally /dev/mapper/control. */
  controlPath?: string;
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
  /** Remove when the last opener closes (DM_DEFERRED_REMOVE). */ deferred?: boolean;
}
export interface SuspendOptions {
  /** Do not flush queued I/O (DM_NOFLUSH_FLAG). */ noFlush?: boolean /** Do not freeze filesystems (DM_SKIP_LOCKFS_FLAG). */;
  skipLockfs?: boolean;
}
export interface StatusOptions {
  /** Ask the inactive table (DM_QUERY_INACTIVE_TABLE_FLAG). */ inactive?: boolean /** DM_NOFLUSH_FLAG: a thin-pool then skips committing metadata first. */;
  noFlush?: boolean;
}
export interface Geometry {
  cylinders: number;
  heads: number;
  sectors: number;
  start: number;
}

export class DeviceMapper {
  /** The handle this DeviceMapper's calls go through; what is built on it (pools, thin devices) uses it too. */
  readonly kernel: Kernel;
  readonly #binding: LibcBinding;
  readonly #engine: DmIoctlEngine;
  #fd: number;
  #kernelVersion: DmVersion | undefined;

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
    const rc = this.#binding.close(fd);
    if (rc < 0) throw new DmSystemError({ errno: -rc, syscall: 'close', device: DM_CONTROL_PATH });
  }

  #run(command: DmCommand, request?: DmRequest): DmReply {
    if (this.#fd < 0) throw new DevmapperError('ERR_DM_CLOSED', `${command.name}: the DeviceMapper handle is closed`);
    return this.#engine.run(command, request);
  }

  #runAsync(command: DmCommand, request?: DmRequest): Promise<DmReply> {
    if (this.#fd < 0)
      return Promise.reject(new DevmapperError('ERR_DM_CLOSED', `${command.name}: the DeviceMapper handle is closed`));
    return this.#engine.runAsync(command, request);
  }

  /** dmsetup version: the kernel's dm interface version. */
  version(): DmVersion {
    const { header } = this.#run(DM_COMMANDS.DM_VERSION);
    this.#kernelVersion = header.version;
    return header.version;
  }

  #kernel(): DmVersion {
    return this.#kernelVersion ?? this.version();
  }

  /** dmsetup ls: every dm device, with event numbers and uuids where the kernel reports them. */
  list(): ListedDevice[] {
    const withUuids = versionAtLeast(this.#kernel(), DM_NAME_LIST_UUID_VERSION);
    const reply = this.#run(DM_COMMANDS.DM_LIST_DEVICES, {
      expectsOutput: true,
      flags: withUuids ? DM_FLAGS.DM_UUID_FLAG : 0,
    });
    return decodeNameList(reply.buffer, reply.dataStart, reply.dataEnd, { interfaceVersion: reply.header.version }).map(
      (entry) => ({
        ...entry,
        dev: decodeDev(entry.dev),
      }),
    );
  }

  /** dmsetup create (without a table): a new device with no table; load() and resume() follow. */
  create(name: string, options: CreateOptions = {}): DeviceInfo {
    validateDeviceName(name);
    if (options.uuid !== undefined) validateUuid(options.uuid);
    let flags = options.readOnly ? DM_FLAGS.DM_READONLY_FLAG : 0;
    let dev: bigint | undefined;
    if (options.minor !== undefined) {
      if (!Number.isInteger(options.minor) || options.minor < 0 || options.minor > 0xfffff)
        throw new InvalidArgumentError('minor', `${options.minor} is not a valid minor number`);
      flags |= DM_FLAGS.DM_PERSISTENT_DEV_FLAG;
      dev = encodeDev(0, options.minor); // the kernel takes MINOR(huge_decode_dev(dev))
    }
    return toInfo(this.#run(DM_COMMANDS.DM_DEV_CREATE, { name, uuid: options.uuid, flags, dev }));
  }

  /** dmsetup remove. With `deferred`, a busy device is removed when its last opener closes. */
  remove(device: DeviceRef, options: RemoveOptions = {}): void {
    this.#run(DM_COMMANDS.DM_DEV_REMOVE, { ...ref(device), flags: options.deferred ? DM_FLAGS.DM_DEFERRED_REMOVE : 0 });
  }

  /** remove() off the main thread (removal waits for outstanding I/O). */
  async removeAsync(device: DeviceRef, options: RemoveOptions = {}): Promise<void> {
    await this.#runAsync(DM_COMMANDS.DM_DEV_REMOVE, {
      ...ref(device),
      flags: options.deferred ? DM_FLAGS.DM_DEFERRED_REMOVE : 0,
    });
  }

  /** dmsetup remove_all: removes every device that is not open (with `deferred`, marks busy ones). */
  removeAll(options: RemoveOptions = {}): void {
    this.#run(DM_COMMANDS.DM_REMOVE_ALL, { flags: options.deferred ? DM_FLAGS.DM_DEFERRED_REMOVE : 0 });
  }

  /** dmsetup rename: a new name, or (`{ uuid }`) set the uuid of a device that has none. */
  rename(device: DeviceRef, to: string | { uuid: string }): DeviceInfo {
    const setUuid = typeof to !== 'string';
    const value = setUuid ? to.uuid : to;
    if (setUuid) validateUuid(value, 'uuid');
    else validateDeviceName(value, 'newName');
    const size = Buffer.byteLength(value) + 1;
    return toInfo(
      this.#run(DM_COMMANDS.DM_DEV_RENAME, {
        ...ref(device),
        flags: setUuid ? DM_FLAGS.DM_UUID_FLAG : 0,
        payloadSize: size,
        writePayload: (buffer, offset) => encodeStringPayload(buffer, offset, value, setUuid ? 'uuid' : 'newName'),
      }),
    );
  }

  /** dmsetup suspend. Without noFlush this waits for in-flight I/O: prefer suspendAsync then. */
  suspend(device: DeviceRef, options: SuspendOptions = {}): DeviceInfo {
    return toInfo(this.#run(DM_COMMANDS.DM_DEV_SUSPEND, { ...ref(device), flags: suspendFlags(options) }));
  }

  async suspendAsync(device: DeviceRef, options: SuspendOptions = {}): Promise<DeviceInfo> {
    return toInfo(await this.#runAsync(DM_COMMANDS.DM_DEV_SUSPEND, { ...ref(device), flags: suspendFlags(options) }));
  }

  /** dmsetup resume: swaps in a loaded inactive table, and lets I/O flow again. */
  resume(device: DeviceRef): DeviceInfo {
    return toInfo(this.#run(DM_COMMANDS.DM_DEV_SUSPEND, ref(device)));
  }

  async resumeAsync(device: DeviceRef): Promise<DeviceInfo> {
    return toInfo(await this.#runAsync(DM_COMMANDS.DM_DEV_SUSPEND, ref(device)));
  }

  /** dmsetup info. A missing device is a DmSystemError with code ENXIO. */
  info(device: DeviceRef): DeviceInfo {
    return toInfo(this.#run(DM_COMMANDS.DM_DEV_STATUS, ref(device)));
  }

  /** True when a device of that name (or uuid) exists. */
  exists(device: DeviceRef): boolean {
    try {
      this.info(device);
      return true;
    } catch (error) {
      if (error instanceof DmSystemError && error.code === 'ENXIO') return false;
      throw error;
    }
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
    return toInfo(
      await this.#runAsync(DM_COMMANDS.DM_DEV_WAIT, { dev, eventNr: eventNr ?? info.eventNr, expectsOutput: true }),
    );
  }

  /** dmsetup load: fills the device's inactive table slot. resume() makes it live. */
  load(device: DeviceRef, targets: readonly Target[], options: { readOnly?: boolean } = {}): DeviceInfo {
    for (const t of targets) validateTargetType(t.type);
    const size = targetsSize(targets);
    return toInfo(
      this.#run(DM_COMMANDS.DM_TABLE_LOAD, {
        ...ref(device),
        flags: options.readOnly ? DM_FLAGS.DM_READONLY_FLAG : 0,
        targetCount: targets.length,
        payloadSize: size,
        writePayload: (buffer, offset) => encodeTargets(buffer, offset, targets),
      }),
    );
  }

  /** dmsetup clear: drops the inactive table. */
  clear(device: DeviceRef): DeviceInfo {
    return toInfo(this.#run(DM_COMMANDS.DM_TABLE_CLEAR, ref(device)));
  }

  /** dmsetup deps: the devices the live table uses. */
  deps(device: DeviceRef, options: { inactive?: boolean } = {}): DeviceNumber[] {
    const reply = this.#run(DM_COMMANDS.DM_TABLE_DEPS, {
      ...ref(device),
      expectsOutput: true,
      flags: options.inactive ? DM_FLAGS.DM_QUERY_INACTIVE_TABLE_FLAG : 0,
    });
    if (reply.dataEnd <= reply.dataStart) return []; // no table: the kernel writes no dm_target_deps
    return decodeTargetDeps(reply.buffer, reply.dataStart, reply.dataEnd).map(decodeDev);
  }

  /** dmsetup status: each target's status line. */
  status(device: DeviceRef, options: StatusOptions = {}): TargetStatus[] {
    return this.#tableStatus(device, options, 0);
  }

  /** dmsetup table: each target's table line. */
  table(device: DeviceRef, options: { inactive?: boolean } = {}): TargetStatus[] {
    return this.#tableStatus(device, options, DM_FLAGS.DM_STATUS_TABLE_FLAG);
  }

  #tableStatus(device: DeviceRef, options: StatusOptions, flags: number): TargetStatus[] {
    if (options.inactive) flags |= DM_FLAGS.DM_QUERY_INACTIVE_TABLE_FLAG;
    if (options.noFlush) flags |= DM_FLAGS.DM_NOFLUSH_FLAG;
    const reply = this.#run(DM_COMMANDS.DM_TABLE_STATUS, { ...ref(device), flags, expectsOutput: true });
    return decodeTargetSpecs(reply.buffer, reply.dataStart, reply.dataEnd, reply.header.targetCount);
  }

  /** dmsetup targets: the target types the kernel has loaded, with versions. */
  targets(): TargetVersion[] {
    const reply = this.#run(DM_COMMANDS.DM_LIST_VERSIONS, { expectsOutput: true });
    return decodeTargetVersions(reply.buffer, reply.dataStart, reply.dataEnd);
  }

  /** The version of one target type; the kernel loads its module if needed (4.41+). */
  targetVersion(type: string): DmVersion {
    validateTargetType(type, 'type');
    // dm-ioctl.c get_target_version() takes the type in dm_ioctl.name and answers with one
    // dm_target_versions record.
    const reply = this.#run(DM_COMMANDS.DM_GET_TARGET_VERSION, { name: type, expectsOutput: true });
    const [found] = decodeTargetVersions(reply.buffer, reply.dataStart, reply.dataEnd);
    if (!found) throw new ParseError('DM_GET_TARGET_VERSION reply for', type, 'it holds no dm_target_versions record');
    return found.version;
  }

  /**
   * dmsetup message: sends `text` to the target at `sector`. Returns the kernel's reply text
   * when it gave one (DM_DATA_OUT_FLAG), else undefined.
   */
  message(device: DeviceRef, sector: bigint | number, text: string): string | undefined {
    const at = BigInt(sector);
    const size = targetMessageSize(text);
    let reply: DmReply;
    try {
      reply = this.#run(DM_COMMANDS.DM_TARGET_MSG, {
        ...ref(device),
        expectsOutput: true,
        payloadSize: size,
        writePayload: (buffer, offset) => encodeTargetMessage(buffer, offset, at, text),
      });
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
    if (!(reply.header.flags & DM_FLAGS.DM_DATA_OUT_FLAG)) return undefined;
    return decodeStringPayload(reply.buffer, reply.dataStart, reply.dataEnd);
  }

  /** dmsetup setgeometry. */
  setGeometry(device: DeviceRef, geometry: Geometry): DeviceInfo {
    for (const key of ['cylinders', 'heads', 'sectors', 'start'] as const) {
      const v = geometry[key];
      if (!Number.isInteger(v) || v < 0)
        throw new InvalidArgumentError(`geometry.${key}`, `${v} is not a non-negative integer`);
    }
    const text = `${geometry.cylinders} ${geometry.heads} ${geometry.sectors} ${geometry.start}`;
    return toInfo(
      this.#run(DM_COMMANDS.DM_DEV_SET_GEOMETRY, {
        ...ref(device),
        payloadSize: Buffer.byteLength(text) + 1,
        writePayload: (buffer, offset) => encodeStringPayload(buffer, offset, text, 'geometry'),
      }),
    );
  }

  /**
   * DM_DEV_ARM_POLL: from now on poll() on the control fd reports POLLIN when any dm device
   * raises an event. Re-arm after each wake-up.
   */
  armPoll(): void {
    this.#run(DM_COMMANDS.DM_DEV_ARM_POLL);
  }

  /** Waits (off the main thread) until an armed control fd reports an event: true, or false on timeout. */
  async pollEvent(timeoutMs: number): Promise<boolean> {
    if (this.#fd < 0) throw new DevmapperError('ERR_DM_CLOSED', 'pollEvent: the DeviceMapper handle is closed');
    const revents = await this.#binding.pollAsync(this.#fd, POLLIN, timeoutMs);
    if (revents < 0) throw new DmSystemError({ errno: -revents, syscall: 'poll', device: DM_CONTROL_PATH });
    return (revents & POLLIN) !== 0;
  }
}

function ref(device: DeviceRef): { name?: string; uuid?: string } {
  if (typeof device === 'string') {
    validateDeviceName(device);
    return { name: device };
  }
  if (device && typeof device === 'object') {
    if ('name' in device && typeof device.name === 'string') {
      validateDeviceName(device.name);
      return { name: device.name };
    }
    if ('uuid' in device && typeof device.uuid === 'string') {
      validateUuid(device.uuid);
      if (device.uuid === '') throw new InvalidArgumentError('uuid', 'must not be empty');
      return { uuid: device.uuid };
    }
  }
  throw new InvalidArgumentError('device', 'must be a name, { name } or { uuid }');
}

function suspendFlags(options: SuspendOptions): number {
  return (
    DM_FLAGS.DM_SUSPEND_FLAG |
    (options.noFlush ? DM_FLAGS.DM_NOFLUSH_FLAG : 0) |
    (options.skipLockfs ? DM_FLAGS.DM_SKIP_LOCKFS_FLAG : 0)
  );
}

function toInfo(reply: DmReply): DeviceInfo {
  const h = reply.header;
  return {
    name: h.name,
    uuid: h.uuid,
    dev: decodeDev(h.dev),
    openCount: h.openCount,
    eventNr: h.eventNr,
    targetCount: h.targetCount,
    active: (h.flags & DM_FLAGS.DM_ACTIVE_PRESENT_FLAG) !== 0,
    inactiveTable: (h.flags & DM_FLAGS.DM_INACTIVE_PRESENT_FLAG) !== 0,
    suspended: (h.flags & DM_FLAGS.DM_SUSPEND_FLAG) !== 0,
    readOnly: (h.flags & DM_FLAGS.DM_READONLY_FLAG) !== 0,
    deferredRemove: (h.flags & DM_FLAGS.DM_DEFERRED_REMOVE) !== 0,
    internalSuspend: (h.flags & DM_FLAGS.DM_INTERNAL_SUSPEND_FLAG) !== 0,
  };
}
