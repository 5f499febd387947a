// The device-mapper ioctl interface (linux/dm-ioctl.h) in bytes: struct dm_ioctl, and the
// payloads after it (string payloads, dm_target_spec lists, dm_name_list, dm_target_versions,
// dm_target_deps, dm_target_msg), encoded in place on a caller's Buffer (the engine reuses one
// buffer per ioctl). Encoders validate everything before writing a byte; decoders treat the
// buffer as untrusted kernel output, and every decoder loop moves strictly forward, so a
// hostile `next` cannot make it spin.
import { InvalidArgumentError, ParseError } from '../errors.js';
import {
  DM_IOCTL_LAYOUT,
  DM_IOCTL_SIZE,
  DM_MAX_TYPE_NAME,
  DM_NAME_LIST_EVENT_NR_VERSION,
  DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID,
  DM_NAME_LIST_FLAG_HAS_UUID,
  DM_NAME_LIST_LAYOUT,
  DM_NAME_LIST_UUID_VERSION,
  DM_TARGET_DEPS_LAYOUT,
  DM_TARGET_MSG_LAYOUT,
  DM_TARGET_SPEC_LAYOUT,
  DM_TARGET_VERSIONS_LAYOUT,
  align8,
  versionAtLeast,
  type DmVersion,
} from './abi.js';
import {
  checkArea,
  checkCString,
  checkI32,
  checkRoom,
  checkU32,
  checkU64,
  hex,
  readCString,
  readCStringBytes,
  validateDeviceName,
  validateTargetType,
  validateUuid,
} from './byte-codec.js';

const HDR = DM_IOCTL_LAYOUT.fields;
const SPEC = DM_TARGET_SPEC_LAYOUT.fields;
const SPEC_SIZE = DM_TARGET_SPEC_LAYOUT.size;
const NL = DM_NAME_LIST_LAYOUT.fields;
const VERS = DM_TARGET_VERSIONS_LAYOUT.fields;
const DEPS = DM_TARGET_DEPS_LAYOUT.fields;
const MSG = DM_TARGET_MSG_LAYOUT.fields;
const U32_MAX = 0xffff_ffff;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

// ---------------------------------------------------------------------------------------------
// struct dm_ioctl
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
  buf.writeUInt32LE(major, HDR.version.offset);
  buf.writeUInt32LE(minor, HDR.version.offset + 4);
  buf.writeUInt32LE(patch, HDR.version.offset + 8);
  buf.writeUInt32LE(dataSize, HDR.data_size.offset);
  buf.writeUInt32LE(dataStart, HDR.data_start.offset);
  buf.writeUInt32LE(targetCount, HDR.target_count.offset);
  buf.writeInt32LE(openCount, HDR.open_count.offset);
  buf.writeUInt32LE(flags, HDR.flags.offset);
  buf.writeUInt32LE(eventNr, HDR.event_nr.offset);
  buf.writeBigUInt64LE(dev, HDR.dev.offset);
  buf.write(name, HDR.name.offset, 'utf8');
  buf.write(uuid, HDR.uuid.offset, 'utf8');
}

/** Reads every field of the struct dm_ioctl at the start of `buf`. */
export function readDmIoctlHeader(buf: Buffer): DmIoctlHeader {
  if (buf.length < DM_IOCTL_SIZE) {
    throw new ParseError('dm_ioctl', hex(buf, 0, buf.length), `only ${buf.length} of ${DM_IOCTL_SIZE} header bytes`);
  }
  return {
    version: [
      buf.readUInt32LE(HDR.version.offset),
      buf.readUInt32LE(HDR.version.offset + 4),
      buf.readUInt32LE(HDR.version.offset + 8),
    ],
    dataSize: buf.readUInt32LE(HDR.data_size.offset),
    dataStart: buf.readUInt32LE(HDR.data_start.offset),
    targetCount: buf.readUInt32LE(HDR.target_count.offset),
    openCount: buf.readInt32LE(HDR.open_count.offset),
    flags: buf.readUInt32LE(HDR.flags.offset),
    eventNr: buf.readUInt32LE(HDR.event_nr.offset),
    dev: buf.readBigUInt64LE(HDR.dev.offset),
    name: readCString(buf, HDR.name.offset, HDR.name.offset + HDR.name.size, 'dm_ioctl.name'),
    uuid: readCString(buf, HDR.uuid.offset, HDR.uuid.offset + HDR.uuid.size, 'dm_ioctl.uuid'),
  };
}

// ---------------------------------------------------------------------------------------------
// Payload strings: DM_DEV_RENAME / DM_DEV_SET_GEOMETRY input, DM_TARGET_MSG output
// ---------------------------------------------------------------------------------------------

/**
 * Writes `value` and its NUL at `offset` (the payload of DM_DEV_RENAME: new name or, with
 * DM_UUID_FLAG, new uuid; of DM_DEV_SET_GEOMETRY: "cyl heads sectors start"). The kernel
 * refuses an empty string. Validate names/uuids with validateDeviceName/validateUuid first.
 * Returns the bytes written.
 */
export function encodeStringPayload(buf: Buffer, offset: number, value: string, argument = 'value'): number {
  const bytes = checkCString(value, argument, U32_MAX - 1);
  if (bytes === 0) throw new InvalidArgumentError(argument, 'must not be empty');
  checkRoom(buf, offset, bytes + 1);
  buf.write(value, offset, 'utf8');
  buf[offset + bytes] = 0;
  return bytes + 1;
}

/**
 * The NUL-terminated text a command left at data_start (DM_TARGET_MSG with DM_DATA_OUT_FLAG);
 * '' when the payload is empty.
 */
export function decodeStringPayload(buf: Buffer, dataStart: number, dataEnd: number): string {
  checkArea(buf, dataStart, dataEnd, 'string payload');
  if (dataEnd === dataStart) return '';
  return readCString(buf, dataStart, dataEnd, 'string payload');
}

// ---------------------------------------------------------------------------------------------
// struct dm_target_spec: DM_TABLE_LOAD input, DM_TABLE_STATUS output
// ---------------------------------------------------------------------------------------------

/** One line of a dm table: `start length type params`, in 512-byte sectors. */
export interface TargetSpec {
  start: bigint;
  length: bigint;
  type: string;
  params: string;
}

/** A target as DM_TABLE_STATUS reports it; `params` is the status or, with DM_STATUS_TABLE_FLAG, the table line. */
export interface TargetStatus extends TargetSpec {
  /** dm_target_spec.status (__s32); the kernel currently always writes 0. */
  status: number;
}

/**
 * Validates a table for DM_TABLE_LOAD and returns the bytes its specs take. Mirrors the
 * kernel's checks (dm-table.c): at least one target, each non-empty, the first starting at
 * sector 0 and each next one where the previous ended.
 */
export function targetsSize(targets: readonly TargetSpec[]): number {
  if (!Array.isArray(targets) || targets.length === 0) {
    throw new InvalidArgumentError('targets', 'a table needs at least one target');
  }
  let total = 0;
  let expectedStart = 0n;
  targets.forEach((t, i) => {
    const start = checkU64(t.start, `targets[${i}].start`);
    const length = checkU64(t.length, `targets[${i}].length`);
    if (length === 0n) throw new InvalidArgumentError(`targets[${i}].length`, 'must not be 0');
    if (start !== expectedStart) {
      throw new InvalidArgumentError(
        `targets[${i}].start`,
        `is ${start}, but the table is contiguous from 0 and this target must start at ${expectedStart}`,
      );
    }
    expectedStart = start + length;
    if (expectedStart > U64_MAX + 1n)
      throw new InvalidArgumentError(`targets[${i}].length`, 'table end overflows 64 bits');
    validateTargetType(t.type, 'targetType');
    const paramBytes = checkCString(t.params, 'params', U32_MAX - SPEC_SIZE - 8);
    total += SPEC_SIZE + align8(paramBytes + 1);
  });
  if (total > U32_MAX) throw new InvalidArgumentError('targets', `${total} bytes exceed a 32-bit data_size`);
  return total;
}

/**
 * Lays out `targets` at `offset` (8-aligned; normally data_start) for DM_TABLE_LOAD: each
 * dm_target_spec followed by its NUL-terminated params, zero-padded to 8 bytes, with `next`
 * counted from the current spec (dm-ioctl.h). Returns the bytes written (= targetsSize()).
 * Set dm_ioctl.target_count to targets.length and data_size to cover the result.
 */
export function encodeTargets(buf: Buffer, offset: number, targets: readonly TargetSpec[]): number {
  const total = targetsSize(targets);
  checkRoom(buf, offset, total);
  if (offset % 8 !== 0)
    throw new InvalidArgumentError('offset', `${offset} is not 8-aligned; the kernel rejects misaligned specs`);
  let at = offset;
  for (const t of targets) {
    const paramBytes = Buffer.byteLength(t.params, 'utf8');
    const recordSize = SPEC_SIZE + align8(paramBytes + 1);
    buf.fill(0, at, at + recordSize); // status, the type's tail, the params' NUL and padding
    buf.writeBigUInt64LE(t.start, at + SPEC.sector_start.offset);
    buf.writeBigUInt64LE(t.length, at + SPEC.length.offset);
    buf.writeUInt32LE(recordSize, at + SPEC.next.offset);
    buf.write(t.type, at + SPEC.target_type.offset, 'utf8');
    buf.write(t.params, at + SPEC_SIZE, 'utf8');
    at += recordSize;
  }
  return total;
}

/**
 * The target type the kernel wrote: retrieve_status() copies it with
 * strncpy(..., DM_MAX_TYPE_NAME - 1), so the name ends at the first NUL among the first 15
 * bytes, or is exactly 15 bytes (byte 16 is left untouched and may hold anything).
 */
function readTargetType(buf: Buffer, at: number, what: string): string {
  const field = buf.subarray(at, at + DM_MAX_TYPE_NAME - 1);
  const nul = field.indexOf(0);
  const type = field.toString('utf8', 0, nul < 0 ? field.length : nul);
  if (type === '') throw new ParseError(what, hex(buf, at, at + DM_MAX_TYPE_NAME), 'empty target type');
  return type;
}

/**
 * Decodes `count` (dm_ioctl.target_count) specs from DM_TABLE_STATUS output in
 * [dataStart, dataEnd). Here `next` counts from the start of the data area, not from the
 * spec (dm-ioctl.h); the last spec's `next` may point past data_size, which only covers its
 * string, so it is not followed. Check DM_BUFFER_FULL_FLAG before calling.
 */
export function decodeTargetSpecs(buf: Buffer, dataStart: number, dataEnd: number, count: number): TargetStatus[] {
  const what = 'dm_target_spec list';
  checkArea(buf, dataStart, dataEnd, what);
  const len = dataEnd - dataStart;
  if (!Number.isInteger(count) || count < 0 || count > U32_MAX) {
    throw new ParseError(what, String(count), 'target count is not an unsigned 32-bit integer');
  }
  // Every spec takes its 40 bytes plus at least the NUL of its string.
  if (count * (SPEC_SIZE + 1) > len) {
    throw new ParseError(what, hex(buf, dataStart, dataEnd), `${count} targets cannot fit in ${len} payload bytes`);
  }
  const out: TargetStatus[] = [];
  let off = 0;
  for (let i = 0; i < count; i++) {
    if (off + SPEC_SIZE + 1 > len) {
      throw new ParseError(
        what,
        hex(buf, dataStart + off, dataEnd),
        `spec ${i} at offset ${off} runs past the ${len}-byte payload`,
      );
    }
    const at = dataStart + off;
    const { value: params, bytes: paramBytes } = readCStringBytes(buf, at + SPEC_SIZE, dataEnd, what);
    out.push({
      start: buf.readBigUInt64LE(at + SPEC.sector_start.offset),
      length: buf.readBigUInt64LE(at + SPEC.length.offset),
      status: buf.readInt32LE(at + SPEC.status.offset),
      type: readTargetType(buf, at + SPEC.target_type.offset, what),
      params,
    });
    if (i === count - 1) break;
    const next = buf.readUInt32LE(at + SPEC.next.offset);
    const paramsEnd = off + SPEC_SIZE + paramBytes + 1;
    if (next < paramsEnd) {
      throw new ParseError(
        what,
        hex(buf, at, at + SPEC_SIZE),
        `spec ${i}: next ${next} points back into the spec at ${off}..${paramsEnd}`,
      );
    }
    off = next;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// struct dm_name_list: DM_LIST_DEVICES output
// ---------------------------------------------------------------------------------------------

/** One device from DM_LIST_DEVICES. */
export interface NameListEntry {
  name: string;
  /** huge_encode_dev() form; see decodeDev() in abi.ts. */
  dev: bigint;
  /** The device's event counter, when the kernel reports it (interface 4.37+). */
  eventNr?: number;
  /**
   * The uuid when the kernel reports uuids (4.45+, asked with DM_UUID_FLAG): '' when it says
   * the device has none, undefined when it said nothing.
   */
  uuid?: string;
}

export interface DecodeNameListOptions {
  /**
   * The interface version the kernel answered with (dm_ioctl.version). With it, the
   * event_nr/flags/uuid tail is read exactly when the kernel writes it. Without it, the tail
   * is assumed present when the record has room for it after the aligned name; that guess can
   * be wrong on kernels before 4.37, whose records carry slack.
   */
  interfaceVersion?: readonly number[];
}

/**
 * Decodes DM_LIST_DEVICES output in [dataStart, dataEnd). Records are struct dm_name_list:
 * dev, next (from this record; 0 ends the list), the NUL-terminated name at offset 12, then
 * on newer kernels, at the next 8-byte boundary, __u32 event_nr, __u32 flags and, with
 * DM_NAME_LIST_FLAG_HAS_UUID, the NUL-terminated uuid (see DM_NAME_LIST_*_VERSION in abi.ts).
 * An empty payload, or a first record with dev 0 (list_devices() "flags no data"), is [].
 */
export function decodeNameList(
  buf: Buffer,
  dataStart: number,
  dataEnd: number,
  options: DecodeNameListOptions = {},
): NameListEntry[] {
  const what = 'dm_name_list';
  checkArea(buf, dataStart, dataEnd, what);
  const len = dataEnd - dataStart;
  if (len === 0) return [];
  if (len < NL.next.offset) {
    throw new ParseError(what, hex(buf, dataStart, dataEnd), `${len} payload bytes cannot hold a record`);
  }
  if (buf.readBigUInt64LE(dataStart + NL.dev.offset) === 0n) return [];

  const version = options.interfaceVersion;
  const tailKnown = version !== undefined;
  const hasTail = version !== undefined && versionAtLeast(version, DM_NAME_LIST_EVENT_NR_VERSION);
  const hasUuidFlags = version === undefined || versionAtLeast(version, DM_NAME_LIST_UUID_VERSION);

  const out: NameListEntry[] = [];
  let off = 0;
  for (;;) {
    const at = dataStart + off;
    if (off + NL.name.offset + 1 > len) {
      throw new ParseError(what, hex(buf, at, dataEnd), `record at offset ${off} runs past the ${len}-byte payload`);
    }
    const next = buf.readUInt32LE(at + NL.next.offset);
    // The smallest record is a 1-character name: align8(12 + 2) = 16 bytes.
    if (next !== 0 && (next < DM_NAME_LIST_LAYOUT.size || next % 8 !== 0 || off + next > len)) {
      throw new ParseError(
        what,
        hex(buf, at, at + 16),
        `record at offset ${off}: next ${next} is not a forward, 8-aligned offset inside the payload`,
      );
    }
    const recordLen = next === 0 ? len - off : next;
    const { value: name, bytes: nameBytes } = readCStringBytes(buf, at + NL.name.offset, at + recordLen, what);
    const entry: NameListEntry = { name, dev: buf.readBigUInt64LE(at + NL.dev.offset) };

    const tail = align8(NL.name.offset + nameBytes + 1);
    const roomForTail = recordLen >= tail + 8;
    if (tailKnown && hasTail && !roomForTail) {
      throw new ParseError(
        what,
        hex(buf, at, at + recordLen),
        `record at offset ${off} has no room for event_nr and flags`,
      );
    }
    if (tailKnown ? hasTail : roomForTail) {
      entry.eventNr = buf.readUInt32LE(at + tail);
      const flags = buf.readUInt32LE(at + tail + 4) & (DM_NAME_LIST_FLAG_HAS_UUID | DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID);
      if (hasUuidFlags && flags === DM_NAME_LIST_FLAG_HAS_UUID) {
        if (recordLen > tail + 8) {
          entry.uuid = readCString(buf, at + tail + 8, at + recordLen, what);
        } else if (tailKnown) {
          throw new ParseError(
            what,
            hex(buf, at, at + recordLen),
            `record at offset ${off} flags a uuid but has no room for one`,
          );
        }
        // Otherwise: an old kernel left that word unwritten; there is no uuid to read.
      } else if (hasUuidFlags && flags === DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID) {
        entry.uuid = '';
      }
    }
    out.push(entry);
    if (next === 0) return out;
    off += next;
  }
}

// ---------------------------------------------------------------------------------------------
// struct dm_target_versions: DM_LIST_VERSIONS / DM_GET_TARGET_VERSION output
// ---------------------------------------------------------------------------------------------

export interface TargetVersion {
  name: string;
  version: [number, number, number];
}

/**
 * Decodes DM_LIST_VERSIONS (or DM_GET_TARGET_VERSION) output in [dataStart, dataEnd):
 * records of next (from this record; 0 ends), version[3], then the NUL-terminated name at 16.
 */
export function decodeTargetVersions(buf: Buffer, dataStart: number, dataEnd: number): TargetVersion[] {
  const what = 'dm_target_versions';
  checkArea(buf, dataStart, dataEnd, what);
  const len = dataEnd - dataStart;
  const out: TargetVersion[] = [];
  if (len === 0) return out;
  let off = 0;
  for (;;) {
    const at = dataStart + off;
    if (off + VERS.name.offset + 1 > len) {
      throw new ParseError(what, hex(buf, at, dataEnd), `record at offset ${off} runs past the ${len}-byte payload`);
    }
    const next = buf.readUInt32LE(at + VERS.next.offset);
    if (next !== 0 && (next % 8 !== 0 || off + next > len)) {
      throw new ParseError(
        what,
        hex(buf, at, at + 24),
        `record at offset ${off}: next ${next} is not an 8-aligned offset inside the payload`,
      );
    }
    const recordLen = next === 0 ? len - off : next;
    const { value: name, bytes: nameBytes } = readCStringBytes(buf, at + VERS.name.offset, at + recordLen, what);
    // A record that does not reach past its own name would make `next` go backwards or stall.
    if (next !== 0 && next < VERS.name.offset + nameBytes + 1) {
      throw new ParseError(
        what,
        hex(buf, at, at + 24),
        `record at offset ${off}: next ${next} points into its own name`,
      );
    }
    out.push({
      name,
      version: [
        buf.readUInt32LE(at + VERS.version.offset),
        buf.readUInt32LE(at + VERS.version.offset + 4),
        buf.readUInt32LE(at + VERS.version.offset + 8),
      ],
    });
    if (next === 0) return out;
    off += next;
  }
}

// ---------------------------------------------------------------------------------------------
// struct dm_target_deps: DM_TABLE_DEPS output
// ---------------------------------------------------------------------------------------------

/** Decodes DM_TABLE_DEPS output: count, padding, then count huge_encode_dev() values. */
export function decodeTargetDeps(buf: Buffer, dataStart: number, dataEnd: number): bigint[] {
  const what = 'dm_target_deps';
  checkArea(buf, dataStart, dataEnd, what);
  const len = dataEnd - dataStart;
  if (len < DM_TARGET_DEPS_LAYOUT.size) {
    throw new ParseError(what, hex(buf, dataStart, dataEnd), `${len} payload bytes cannot hold the count`);
  }
  const count = buf.readUInt32LE(dataStart + DEPS.count.offset);
  if (DEPS.dev.offset + count * 8 > len) {
    throw new ParseError(what, hex(buf, dataStart, dataEnd), `${count} devices do not fit in ${len} payload bytes`);
  }
  const devs: bigint[] = [];
  for (let i = 0; i < count; i++) devs.push(buf.readBigUInt64LE(dataStart + DEPS.dev.offset + i * 8));
  return devs;
}

// ---------------------------------------------------------------------------------------------
// struct dm_target_msg: DM_TARGET_MSG input
// ---------------------------------------------------------------------------------------------

/** Bytes encodeTargetMessage() writes for `message` (validates it). */
export function targetMessageSize(message: string): number {
  const bytes = checkCString(message, 'message', U32_MAX - MSG.message.offset - 1);
  if (bytes === 0) throw new InvalidArgumentError('message', 'must not be empty'); // the kernel refuses one
  return MSG.message.offset + bytes + 1;
}

/**
 * Writes struct dm_target_msg at `offset` (8-aligned; normally data_start): the u64 sector of
 * the target to address, then the NUL-terminated message. Returns the bytes written.
 */
export function encodeTargetMessage(buf: Buffer, offset: number, sector: bigint, message: string): number {
  checkU64(sector, 'sector');
  const size = targetMessageSize(message);
  checkRoom(buf, offset, size);
  if (offset % 8 !== 0) throw new InvalidArgumentError('offset', `${offset} is not 8-aligned`);
  buf.writeBigUInt64LE(sector, offset + MSG.sector.offset);
  buf.write(message, offset + MSG.message.offset, 'utf8');
  buf[offset + size - 1] = 0;
  return size;
}
