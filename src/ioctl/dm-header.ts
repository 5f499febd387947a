// struct dm_ioctl (linux/dm-ioctl.h), the header of every device-mapper ioctl, in bytes.
// Two sets of functions: the engine's hot path (writeHeader, writeDeviceRef, readDeviceInfo:
// in place through a DataView made once per buffer, reading only the fields a method needs,
// and only the strings the caller does not already know), and the checked, whole-struct forms
// (writeDmIoctlHeader / readDmIoctlHeader) for tests, tools and the fuzzer.
import { InvalidArgumentError, ParseError } from '../errors.js';
import {
  DM_CONTROL_NODE,
  DM_FLAGS,
  DM_IOCTL_LAYOUT,
  DM_IOCTL_SIZE,
  DM_NAME_LEN,
  DM_UUID_LEN,
  type DmVersion,
} from './abi.js';
import { checkI32, checkU32, checkU64, hex, readCString, validateDeviceName, validateUuid } from './byte-codec.js';
import type { DeviceInfo, DeviceNumber, DeviceRef } from './dm-types.js';

const HDR = DM_IOCTL_LAYOUT.fields;
const VERSION = HDR.version.offset;
const DATA_SIZE = HDR.data_size.offset;
const DATA_START = HDR.data_start.offset;
const TARGET_COUNT = HDR.target_count.offset;
const OPEN_COUNT = HDR.open_count.offset;
const FLAGS = HDR.flags.offset;
const EVENT_NR = HDR.event_nr.offset;
const PADDING = HDR.padding.offset;
const DEV = HDR.dev.offset;
const NAME = HDR.name.offset;
const UUID = HDR.uuid.offset;

/** A DataView over exactly `buf`'s bytes (made once per buffer: views are not free under emulation). */
export function viewOf(buf: Buffer): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

// ---------------------------------------------------------------------------------------------
// Hot path (the engine)
// ---------------------------------------------------------------------------------------------

/**
 * Writes every numeric field of the header (name and uuid are writeDeviceRef's). No checks:
 * the values are the engine's own. `dev` undefined writes 0.
 */
export function writeHeader(
  view: DataView,
  version: DmVersion,
  dataSize: number,
  flags: number,
  eventNr: number,
  targetCount: number,
  dev: bigint | undefined,
): void {
  view.setUint32(VERSION, version[0], true);
  view.setUint32(VERSION + 4, version[1], true);
  view.setUint32(VERSION + 8, version[2], true);
  view.setUint32(DATA_SIZE, dataSize, true);
  view.setUint32(DATA_START, DM_IOCTL_SIZE, true); // 312 is 8-aligned: the payload starts right after
  view.setUint32(TARGET_COUNT, targetCount, true);
  view.setInt32(OPEN_COUNT, 0, true);
  view.setUint32(FLAGS, flags, true);
  view.setUint32(EVENT_NR, eventNr, true); // always written: a stale event_nr can make the kernel fail
  view.setUint32(PADDING, 0, true);
  if (dev === undefined) {
    view.setUint32(DEV, 0, true);
    view.setUint32(DEV + 4, 0, true);
  } else view.setBigUint64(DEV, dev, true);
}

/**
 * Writes `value` and its NUL into a fixed string field when it is plain ASCII (the usual name:
 * a byte loop costs less than a native call) with no NUL or '/', and says whether it did.
 * Anything else is left to the checked path. Bytes after the NUL stay as they were: the kernel
 * reads up to the NUL.
 */
function writeAscii(buf: Buffer, at: number, value: string, room: number): boolean {
  const n = value.length;
  if (n >= room) return false;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 0x2f || c > 0x7e) return false;
    buf[at + i] = c;
  }
  buf[at + n] = 0;
  return true;
}

function writeUtf8(buf: Buffer, at: number, value: string): void {
  buf[at + buf.write(value, at, 'utf8')] = 0;
}

/** The name field: a device name or, for DM_GET_TARGET_VERSION, a target type ('' = none). */
export function writeNameField(buf: Buffer, name: string, argument = 'name'): void {
  if (name === '') {
    buf[NAME] = 0;
    return;
  }
  if (name === '.' || name === '..' || name === DM_CONTROL_NODE || !writeAscii(buf, NAME, name, DM_NAME_LEN)) {
    validateDeviceName(name, argument); // throws what the fast path refused
    writeUtf8(buf, NAME, name);
  }
}

/** The uuid field ('' = none). */
export function writeUuidField(buf: Buffer, uuid: string, argument = 'uuid'): void {
  if (!writeAscii(buf, UUID, uuid, DM_UUID_LEN)) {
    validateUuid(uuid, argument);
    writeUtf8(buf, UUID, uuid);
  }
}

/**
 * Writes the name and uuid fields for a device reference (plus `uuid` for DM_DEV_CREATE) and
 * returns the label an error names the device by.
 */
export function writeDeviceRef(buf: Buffer, device: DeviceRef | undefined, uuid: string): string | undefined {
  if (typeof device === 'string') {
    if (device === '') throw new InvalidArgumentError('name', 'must not be empty');
    writeNameField(buf, device);
    writeUuidField(buf, uuid);
    return device;
  }
  if (device === undefined) {
    buf[NAME] = 0;
    buf[UUID] = 0;
    return undefined;
  }
  if (device && typeof device === 'object') {
    if ('name' in device && typeof device.name === 'string') return writeDeviceRef(buf, device.name, uuid);
    if ('uuid' in device && typeof device.uuid === 'string') {
      if (device.uuid === '') throw new InvalidArgumentError('uuid', 'must not be empty');
      buf[NAME] = 0;
      writeUuidField(buf, device.uuid);
      return device.uuid;
    }
  }
  throw new InvalidArgumentError('device', 'must be a name, { name } or { uuid }');
}

/** The dm name a reference gives, when it gives one (lookups by name answer with that same name). */
export function refName(device: DeviceRef): string | undefined {
  if (typeof device === 'string') return device;
  return 'name' in device ? device.name : undefined;
}

/** huge_decode_dev() of the header's or a list record's dev, from its two 32-bit halves. */
export function devFromWords(lo: number, hi: number): DeviceNumber {
  return {
    major: (((lo >>> 8) & 0xfff) | (hi & 0xfffff000)) >>> 0,
    minor: ((lo & 0xff) | ((lo >>> 12) & 0xfff00) | ((hi & 0xfff) << 20)) >>> 0,
  };
}

/** A NUL-terminated field's text: '' at once for an empty field, else decoded (and checked). */
function readField(buf: Buffer, at: number, size: number, what: string): string {
  return buf[at] === 0 ? '' : readCString(buf, at, at + size, what);
}

/**
 * The DeviceInfo of a reply. `knownName`: the name the device was looked up by, which the
 * kernel copies back unchanged (dm-ioctl.c find_device(): the cell matched that exact name),
 * so it is not decoded again.
 */
export function readDeviceInfo(buf: Buffer, view: DataView, knownName: string | undefined): DeviceInfo {
  const flags = view.getUint32(FLAGS, true);
  return {
    name: knownName ?? readField(buf, NAME, HDR.name.size, 'dm_ioctl.name'),
    uuid: readField(buf, UUID, HDR.uuid.size, 'dm_ioctl.uuid'),
    dev: devFromWords(view.getUint32(DEV, true), view.getUint32(DEV + 4, true)),
    openCount: view.getInt32(OPEN_COUNT, true),
    eventNr: view.getUint32(EVENT_NR, true),
    targetCount: view.getUint32(TARGET_COUNT, true),
    active: (flags & DM_FLAGS.DM_ACTIVE_PRESENT_FLAG) !== 0,
    inactiveTable: (flags & DM_FLAGS.DM_INACTIVE_PRESENT_FLAG) !== 0,
    suspended: (flags & DM_FLAGS.DM_SUSPEND_FLAG) !== 0,
    readOnly: (flags & DM_FLAGS.DM_READONLY_FLAG) !== 0,
    deferredRemove: (flags & DM_FLAGS.DM_DEFERRED_REMOVE) !== 0,
    internalSuspend: (flags & DM_FLAGS.DM_INTERNAL_SUSPEND_FLAG) !== 0,
  };
}

/** dm_ioctl.version of a reply: the kernel's interface version. */
export function readHeaderVersion(view: DataView): DmVersion {
  return [view.getUint32(VERSION, true), view.getUint32(VERSION + 4, true), view.getUint32(VERSION + 8, true)];
}

export function readHeaderFlags(view: DataView): number {
  return view.getUint32(FLAGS, true);
}

/** data_size of a reply: the bytes the kernel used (or, with BUFFER_FULL, would need at least). */
export function readHeaderDataSize(view: DataView): number {
  return view.getUint32(DATA_SIZE, true);
}

export function readHeaderDataStart(view: DataView): number {
  return view.getUint32(DATA_START, true);
}

export function readHeaderTargetCount(view: DataView): number {
  return view.getUint32(TARGET_COUNT, true);
}

// ---------------------------------------------------------------------------------------------
// The checked, whole-struct forms
// ---------------------------------------------------------------------------------------------

/** The fields of struct dm_ioctl, as read back from the kernel. */
export interface DmIoctlHeader {
  version: [number, number, number];
  /** data_size: the whole buffer (header included) on input; the bytes used on output. */
  dataSize: number;
  /** data_start: offset of the payload from the start of the header. */
  dataStart: number;
  targetCount: number;
  openCount: number;
  flags: number;
  eventNr: number;
  /** huge_encode_dev() form; see decodeDev() in abi.ts. */
  dev: bigint;
  name: string;
  uuid: string;
}

/** What writeDmIoctlHeader() needs; unused fields default to 0 / ''. */
export interface DmIoctlHeaderInput {
  version: DmVersion | readonly number[];
  dataSize: number;
  dataStart: number;
  targetCount?: number;
  openCount?: number;
  flags?: number;
  /** Cleared unless given: a stale event_nr in a reused buffer can make the kernel fail. */
  eventNr?: number;
  dev?: bigint;
  /** A device name ('' = none, for commands that take none or look up by uuid/dev). */
  name?: string;
  uuid?: string;
}

/**
 * Writes all 312 bytes of struct dm_ioctl at the start of `buf`, zeroing padding and the
 * unused tails of name and uuid. Nothing is written unless every field is valid.
 * data_size must not exceed `buf` (the kernel copies that many bytes in and out), and
 * data_start must lie after the header, 8-aligned, within data_size.
 */
export function writeDmIoctlHeader(buf: Buffer, header: DmIoctlHeaderInput): void {
  const version = header.version;
  if (!Array.isArray(version) || version.length !== 3) {
    throw new InvalidArgumentError('version', 'must be [major, minor, patchlevel]');
  }
  const [major, minor, patch] = version.map((v: unknown) => checkU32(v, 'version')) as [number, number, number];
  if (buf.length < DM_IOCTL_SIZE) {
    throw new InvalidArgumentError(
      'buffer',
      `${buf.length} bytes cannot hold the ${DM_IOCTL_SIZE}-byte dm_ioctl header`,
    );
  }
  const dataSize = checkU32(header.dataSize, 'dataSize');
  if (dataSize < DM_IOCTL_SIZE || dataSize > buf.length) {
    throw new InvalidArgumentError(
      'dataSize',
      `${dataSize} must be between ${DM_IOCTL_SIZE} and the buffer size ${buf.length}`,
    );
  }
  const dataStart = checkU32(header.dataStart, 'dataStart');
  if (dataStart < DM_IOCTL_SIZE || dataStart > dataSize || dataStart % 8 !== 0) {
    throw new InvalidArgumentError(
      'dataStart',
      `${dataStart} must be 8-aligned, at least ${DM_IOCTL_SIZE} and at most dataSize ${dataSize}`,
    );
  }
  const targetCount = checkU32(header.targetCount ?? 0, 'targetCount');
  const openCount = checkI32(header.openCount ?? 0, 'openCount');
  const flags = checkU32(header.flags ?? 0, 'flags');
  const eventNr = checkU32(header.eventNr ?? 0, 'eventNr');
  const dev = checkU64(header.dev ?? 0n, 'dev');
  const name = header.name ?? '';
  if (name !== '') validateDeviceName(name, 'name');
  const uuid = header.uuid ?? '';
  validateUuid(uuid, 'uuid');

  buf.fill(0, 0, DM_IOCTL_SIZE);
  const view = viewOf(buf);
  writeHeader(view, [major, minor, patch], dataSize, flags, eventNr, targetCount, dev);
  view.setUint32(DATA_START, dataStart, true);
  view.setInt32(OPEN_COUNT, openCount, true);
  buf.write(name, NAME, 'utf8');
  buf.write(uuid, UUID, 'utf8');
}

/** Reads every field of the struct dm_ioctl at the start of `buf`. */
export function readDmIoctlHeader(buf: Buffer): DmIoctlHeader {
  if (buf.length < DM_IOCTL_SIZE) {
    throw new ParseError('dm_ioctl', hex(buf, 0, buf.length), `only ${buf.length} of ${DM_IOCTL_SIZE} header bytes`);
  }
  const view = viewOf(buf);
  return {
    version: readHeaderVersion(view) as [number, number, number],
    dataSize: view.getUint32(DATA_SIZE, true),
    dataStart: view.getUint32(DATA_START, true),
    targetCount: view.getUint32(TARGET_COUNT, true),
    openCount: view.getInt32(OPEN_COUNT, true),
    flags: view.getUint32(FLAGS, true),
    eventNr: view.getUint32(EVENT_NR, true),
    dev: view.getBigUint64(DEV, true),
    name: readCString(buf, NAME, NAME + HDR.name.size, 'dm_ioctl.name'),
    uuid: readCString(buf, UUID, UUID + HDR.uuid.size, 'dm_ioctl.uuid'),
  };
}
