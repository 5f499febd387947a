// Encoders and decoders for the structs of ./abi.ts, working in place on a caller's Buffer
// (the engine reuses one buffer per ioctl). Encoders validate everything before writing a
// byte and throw InvalidArgumentError naming the argument; decoders treat the buffer as
// untrusted kernel output and throw ParseError, never RangeError, on anything out of bounds.
// Every decoder loop moves strictly forward, so a hostile `next` cannot make it spin.
import { InvalidArgumentError, ParseError } from '../errors.js';
import {
  DM_CONTROL_NODE,
  DM_IOCTL_LAYOUT,
  DM_IOCTL_SIZE,
  DM_MAX_TYPE_NAME,
  DM_NAME_LEN,
  DM_NAME_LIST_EVENT_NR_VERSION,
  DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID,
  DM_NAME_LIST_FLAG_HAS_UUID,
  DM_NAME_LIST_LAYOUT,
  DM_NAME_LIST_UUID_VERSION,
  DM_TARGET_DEPS_LAYOUT,
  DM_TARGET_MSG_LAYOUT,
  DM_TARGET_SPEC_LAYOUT,
  DM_TARGET_VERSIONS_LAYOUT,
  DM_UUID_LEN,
  LO_KEY_SIZE,
  LO_NAME_SIZE,
  LOOP_CONFIG_LAYOUT,
  LOOP_INFO64_LAYOUT,
  align8,
  versionAtLeast,
  type DmVersion,
} from './abi.js';

const HDR = DM_IOCTL_LAYOUT.fields;
const SPEC = DM_TARGET_SPEC_LAYOUT.fields;
const SPEC_SIZE = DM_TARGET_SPEC_LAYOUT.size;
const NL = DM_NAME_LIST_LAYOUT.fields;
const VERS = DM_TARGET_VERSIONS_LAYOUT.fields;
const DEPS = DM_TARGET_DEPS_LAYOUT.fields;
const MSG = DM_TARGET_MSG_LAYOUT.fields;
const LI = LOOP_INFO64_LAYOUT.fields;
const LC = LOOP_CONFIG_LAYOUT.fields;

const U32_MAX = 0xffff_ffff;
const I32_MIN = -0x8000_0000;
const I32_MAX = 0x7fff_ffff;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

// ---------------------------------------------------------------------------------------------
// Input checks
// ---------------------------------------------------------------------------------------------

function checkU32(value: unknown, argument: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new InvalidArgumentError(argument, `${String(value)} is not an unsigned 32-bit integer`);
  }
  return value;
}

function checkI32(value: unknown, argument: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < I32_MIN || value > I32_MAX) {
    throw new InvalidArgumentError(argument, `${String(value)} is not a signed 32-bit integer`);
  }
  return value;
}

function checkU64(value: unknown, argument: string): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) {
    throw new InvalidArgumentError(argument, `${String(value)} is not an unsigned 64-bit bigint`);
  }
  return value;
}

/** A write of `size` bytes at `offset` must stay inside `buf`. */
function checkRoom(buf: Buffer, offset: number, size: number, argument = 'offset'): void {
  if (!Number.isInteger(offset) || offset < 0) {
    throw new InvalidArgumentError(argument, `${offset} is not a non-negative integer`);
  }
  if (offset + size > buf.length) {
    throw new InvalidArgumentError('buffer', `${size} bytes at offset ${offset} do not fit in a ${buf.length}-byte buffer`);
  }
}

/**
 * A string bound for a fixed-size, NUL-terminated kernel field: no NUL inside (the kernel
 * would silently cut it there) and at most `maxBytes` UTF-8 bytes, the NUL not counted.
 * Returns the UTF-8 byte length.
 */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

function checkCString(value: unknown, argument: string, maxBytes: number): number {
  if (typeof value !== 'string') throw new InvalidArgumentError(argument, 'must be a string');
  if (value.includes('\0')) throw new InvalidArgumentError(argument, 'must not contain a NUL character');
  // A lone surrogate has no UTF-8 form: Buffer would send U+FFFD, a name the caller never gave.
  if (LONE_SURROGATE.test(value)) throw new InvalidArgumentError(argument, 'must be well-formed Unicode (it has a lone surrogate)');
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) {
    throw new InvalidArgumentError(argument, `is ${bytes} bytes in UTF-8; at most ${maxBytes} fit (plus the terminating NUL)`);
  }
  return bytes;
}

/**
 * A dm device name: 1..127 UTF-8 bytes (DM_NAME_LEN with its NUL), no '/' (dm-ioctl.c
 * check_name(): the name becomes /dev/mapper/<name>), and not '.', '..' or 'control'
 * (refused by newer kernels; 'control' is DM_CONTROL_NODE). Returns the byte length.
 */
export function validateDeviceName(name: string, argument = 'name'): number {
  const bytes = checkCString(name, argument, DM_NAME_LEN - 1);
  if (bytes === 0) throw new InvalidArgumentError(argument, 'must not be empty');
  if (name.includes('/')) throw new InvalidArgumentError(argument, "must not contain '/'");
  if (name === '.' || name === '..' || name === DM_CONTROL_NODE) {
    throw new InvalidArgumentError(argument, `must not be '.', '..' or '${DM_CONTROL_NODE}'`);
  }
  return bytes;
}

/** A dm uuid: at most 128 UTF-8 bytes (DM_UUID_LEN with its NUL); '' means "no uuid". */
export function validateUuid(uuid: string, argument = 'uuid'): number {
  return checkCString(uuid, argument, DM_UUID_LEN - 1);
}

/** A target type ('thin-pool', 'linear'...): 1..15 bytes (DM_MAX_TYPE_NAME with its NUL). */
export function validateTargetType(type: string, argument = 'targetType'): number {
  const bytes = checkCString(type, argument, DM_MAX_TYPE_NAME - 1);
  if (bytes === 0) throw new InvalidArgumentError(argument, 'must not be empty');
  return bytes;
}

/**
 * Cuts `value` to at most `maxBytes` UTF-8 bytes without splitting a character, e.g. to fit a
 * backing-file path into lo_file_name (63 bytes) the way losetup does.
 */
export function truncateUtf8(value: string, maxBytes: number): string {
  if (Buffer.byteLength(value, 'utf8') <= maxBytes) return value;
  const bytes = Buffer.from(value, 'utf8');
  let cut = maxBytes;
  while (cut > 0 && ((bytes[cut] ?? 0) & 0xc0) === 0x80) cut--; // back off continuation bytes
  return bytes.toString('utf8', 0, cut);
}

// ---------------------------------------------------------------------------------------------
// Output checks
// ---------------------------------------------------------------------------------------------

/** A short hex excerpt of untrusted bytes, for ParseError's `input`. */
function hex(buf: Buffer, start: number, end: number): string {
  const s = Math.max(0, Math.min(start, buf.length));
  const e = Math.max(s, Math.min(end, buf.length, s + 48));
  return buf.toString('hex', s, e) + (e < Math.min(end, buf.length) ? '…' : '');
}

/** The payload range comes from the kernel's data_start / data_size: check it against buf. */
function checkArea(buf: Buffer, dataStart: number, dataEnd: number, what: string): void {
  if (
    !Number.isInteger(dataStart) ||
    !Number.isInteger(dataEnd) ||
    dataStart < 0 ||
    dataEnd < dataStart ||
    dataEnd > buf.length
  ) {
    throw new ParseError(what, `data ${dataStart}..${dataEnd}`, `payload range is not inside the ${buf.length}-byte buffer`);
  }
}

/**
 * The NUL-terminated string at `start`, whose NUL must come before `end`, and its length in
 * bytes as stored (NUL not counted). Offsets past the string must use `bytes`, never the
 * decoded string's UTF-8 length: kernel strings are bytes, and invalid UTF-8 decodes to
 * U+FFFD, which re-encodes longer than the bytes it replaced.
 */
function readCStringBytes(buf: Buffer, start: number, end: number, what: string): { value: string; bytes: number } {
  const limit = Math.min(end, buf.length);
  if (start >= limit) throw new ParseError(what, hex(buf, start, end), `string at offset ${start} lies outside its record`);
  const nul = buf.subarray(start, limit).indexOf(0);
  if (nul < 0) throw new ParseError(what, hex(buf, start, limit), `string at offset ${start} has no NUL before offset ${limit}`);
  return { value: buf.toString('utf8', start, start + nul), bytes: nul };
}

/** The NUL-terminated string at `start`, whose NUL must come before `end`. */
function readCString(buf: Buffer, start: number, end: number, what: string): string {
  return readCStringBytes(buf, start, end, what).value;
}

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
    throw new InvalidArgumentError('buffer', `${buf.length} bytes cannot hold the ${DM_IOCTL_SIZE}-byte dm_ioctl header`);
  }
  const dataSize = checkU32(header.dataSize, 'dataSize');
  if (dataSize < DM_IOCTL_SIZE || dataSize > buf.length) {
    throw new InvalidArgumentError('dataSize', `${dataSize} must be between ${DM_IOCTL_SIZE} and the buffer size ${buf.length}`);
  }
  const dataStart = checkU32(header.dataStart, 'dataStart');
  if (dataStart < DM_IOCTL_SIZE || dataStart > dataSize || dataStart % 8 !== 0) {
    throw new InvalidArgumentError('dataStart', `${dataStart} must be 8-aligned, at least ${DM_IOCTL_SIZE} and at most dataSize ${dataSize}`);
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
      throw new InvalidArgumentError(`targets[${i}].start`, `is ${start}, but the table is contiguous from 0 and this target must start at ${expectedStart}`);
    }
    expectedStart = start + length;
    if (expectedStart > U64_MAX + 1n) throw new InvalidArgumentError(`targets[${i}].length`, 'table end overflows 64 bits');
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
  if (offset % 8 !== 0) throw new InvalidArgumentError('offset', `${offset} is not 8-aligned; the kernel rejects misaligned specs`);
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
      throw new ParseError(what, hex(buf, dataStart + off, dataEnd), `spec ${i} at offset ${off} runs past the ${len}-byte payload`);
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
      throw new ParseError(what, hex(buf, at, at + SPEC_SIZE), `spec ${i}: next ${next} points back into the spec at ${off}..${paramsEnd}`);
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
      throw new ParseError(what, hex(buf, at, at + 16), `record at offset ${off}: next ${next} is not a forward, 8-aligned offset inside the payload`);
    }
    const recordLen = next === 0 ? len - off : next;
    const { value: name, bytes: nameBytes } = readCStringBytes(buf, at + NL.name.offset, at + recordLen, what);
    const entry: NameListEntry = { name, dev: buf.readBigUInt64LE(at + NL.dev.offset) };

    const tail = align8(NL.name.offset + nameBytes + 1);
    const roomForTail = recordLen >= tail + 8;
    if (tailKnown && hasTail && !roomForTail) {
      throw new ParseError(what, hex(buf, at, at + recordLen), `record at offset ${off} has no room for event_nr and flags`);
    }
    if (tailKnown ? hasTail : roomForTail) {
      entry.eventNr = buf.readUInt32LE(at + tail);
      const flags = buf.readUInt32LE(at + tail + 4) & (DM_NAME_LIST_FLAG_HAS_UUID | DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID);
      if (hasUuidFlags && flags === DM_NAME_LIST_FLAG_HAS_UUID) {
        if (recordLen > tail + 8) {
          entry.uuid = readCString(buf, at + tail + 8, at + recordLen, what);
        } else if (tailKnown) {
          throw new ParseError(what, hex(buf, at, at + recordLen), `record at offset ${off} flags a uuid but has no room for one`);
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
      throw new ParseError(what, hex(buf, at, at + 24), `record at offset ${off}: next ${next} is not an 8-aligned offset inside the payload`);
    }
    const recordLen = next === 0 ? len - off : next;
    const { value: name, bytes: nameBytes } = readCStringBytes(buf, at + VERS.name.offset, at + recordLen, what);
    // A record that does not reach past its own name would make `next` go backwards or stall.
    if (next !== 0 && next < VERS.name.offset + nameBytes + 1) {
      throw new ParseError(what, hex(buf, at, at + 24), `record at offset ${off}: next ${next} points into its own name`);
    }
    out.push({
      name,
      version: [buf.readUInt32LE(at + VERS.version.offset), buf.readUInt32LE(at + VERS.version.offset + 4), buf.readUInt32LE(at + VERS.version.offset + 8)],
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

// ---------------------------------------------------------------------------------------------
// struct loop_info64 and struct loop_config
// ---------------------------------------------------------------------------------------------

/** struct loop_info64, with the `lo_` prefix dropped and names camel-cased. */
export interface LoopInfo64 {
  device: bigint; // lo_device, r/o
  inode: bigint; // lo_inode, r/o
  rdevice: bigint; // lo_rdevice, r/o
  offset: bigint; // lo_offset, bytes into the backing file
  sizeLimit: bigint; // lo_sizelimit, bytes; 0 = to the end of the file
  number: number; // lo_number, r/o
  encryptType: number; // lo_encrypt_type, obsolete
  encryptKeySize: number; // lo_encrypt_key_size
  flags: number; // lo_flags, LO_FLAGS_*
  fileName: string; // lo_file_name, at most 63 bytes (see truncateUtf8)
  cryptName: string; // lo_crypt_name, at most 63 bytes
  encryptKey: Uint8Array; // lo_encrypt_key, at most 32 bytes
  init: readonly [bigint, bigint]; // lo_init[2]
}

/** Writes struct loop_info64 (232 bytes) at `offset`; omitted fields are 0 / ''. Returns its size. */
export function encodeLoopInfo64(buf: Buffer, offset: number, info: Partial<LoopInfo64> = {}): number {
  const device = checkU64(info.device ?? 0n, 'device');
  const inode = checkU64(info.inode ?? 0n, 'inode');
  const rdevice = checkU64(info.rdevice ?? 0n, 'rdevice');
  const loOffset = checkU64(info.offset ?? 0n, 'offset');
  const sizeLimit = checkU64(info.sizeLimit ?? 0n, 'sizeLimit');
  const number = checkU32(info.number ?? 0, 'number');
  const encryptType = checkU32(info.encryptType ?? 0, 'encryptType');
  const encryptKeySize = checkU32(info.encryptKeySize ?? 0, 'encryptKeySize');
  if (encryptKeySize > LO_KEY_SIZE) throw new InvalidArgumentError('encryptKeySize', `must be at most ${LO_KEY_SIZE}`);
  const flags = checkU32(info.flags ?? 0, 'flags');
  const fileName = info.fileName ?? '';
  checkCString(fileName, 'fileName', LO_NAME_SIZE - 1);
  const cryptName = info.cryptName ?? '';
  checkCString(cryptName, 'cryptName', LO_NAME_SIZE - 1);
  const key = info.encryptKey ?? new Uint8Array(0);
  if (!(key instanceof Uint8Array) || key.length > LO_KEY_SIZE) {
    throw new InvalidArgumentError('encryptKey', `must be a Uint8Array of at most ${LO_KEY_SIZE} bytes`);
  }
  const init = info.init ?? [0n, 0n];
  if (!Array.isArray(init) || init.length !== 2) throw new InvalidArgumentError('init', 'must be [bigint, bigint]');
  const init0 = checkU64(init[0], 'init');
  const init1 = checkU64(init[1], 'init');
  checkRoom(buf, offset, LOOP_INFO64_LAYOUT.size);

  buf.fill(0, offset, offset + LOOP_INFO64_LAYOUT.size);
  buf.writeBigUInt64LE(device, offset + LI.lo_device.offset);
  buf.writeBigUInt64LE(inode, offset + LI.lo_inode.offset);
  buf.writeBigUInt64LE(rdevice, offset + LI.lo_rdevice.offset);
  buf.writeBigUInt64LE(loOffset, offset + LI.lo_offset.offset);
  buf.writeBigUInt64LE(sizeLimit, offset + LI.lo_sizelimit.offset);
  buf.writeUInt32LE(number, offset + LI.lo_number.offset);
  buf.writeUInt32LE(encryptType, offset + LI.lo_encrypt_type.offset);
  buf.writeUInt32LE(encryptKeySize, offset + LI.lo_encrypt_key_size.offset);
  buf.writeUInt32LE(flags, offset + LI.lo_flags.offset);
  buf.write(fileName, offset + LI.lo_file_name.offset, 'utf8');
  buf.write(cryptName, offset + LI.lo_crypt_name.offset, 'utf8');
  buf.set(key, offset + LI.lo_encrypt_key.offset);
  buf.writeBigUInt64LE(init0, offset + LI.lo_init.offset);
  buf.writeBigUInt64LE(init1, offset + LI.lo_init.offset + 8);
  return LOOP_INFO64_LAYOUT.size;
}

/** Reads struct loop_info64 at `offset` (LOOP_GET_STATUS64 output). */
export function decodeLoopInfo64(buf: Buffer, offset: number): LoopInfo64 {
  const what = 'loop_info64';
  if (!Number.isInteger(offset) || offset < 0 || offset + LOOP_INFO64_LAYOUT.size > buf.length) {
    throw new ParseError(what, `offset ${offset}`, `${LOOP_INFO64_LAYOUT.size} bytes at offset ${offset} exceed the ${buf.length}-byte buffer`);
  }
  const keyAt = offset + LI.lo_encrypt_key.offset;
  return {
    device: buf.readBigUInt64LE(offset + LI.lo_device.offset),
    inode: buf.readBigUInt64LE(offset + LI.lo_inode.offset),
    rdevice: buf.readBigUInt64LE(offset + LI.lo_rdevice.offset),
    offset: buf.readBigUInt64LE(offset + LI.lo_offset.offset),
    sizeLimit: buf.readBigUInt64LE(offset + LI.lo_sizelimit.offset),
    number: buf.readUInt32LE(offset + LI.lo_number.offset),
    encryptType: buf.readUInt32LE(offset + LI.lo_encrypt_type.offset),
    encryptKeySize: buf.readUInt32LE(offset + LI.lo_encrypt_key_size.offset),
    flags: buf.readUInt32LE(offset + LI.lo_flags.offset),
    // The kernel forces lo_file_name[LO_NAME_SIZE - 1] = 0, so a missing NUL is corruption.
    fileName: readCString(buf, offset + LI.lo_file_name.offset, offset + LI.lo_file_name.offset + LO_NAME_SIZE, 'loop_info64.lo_file_name'),
    cryptName: readCString(buf, offset + LI.lo_crypt_name.offset, offset + LI.lo_crypt_name.offset + LO_NAME_SIZE, 'loop_info64.lo_crypt_name'),
    encryptKey: new Uint8Array(buf.subarray(keyAt, keyAt + LO_KEY_SIZE)), // a copy, not a view
    init: [buf.readBigUInt64LE(offset + LI.lo_init.offset), buf.readBigUInt64LE(offset + LI.lo_init.offset + 8)],
  };
}

/** struct loop_config for LOOP_CONFIGURE. */
export interface LoopConfig {
  /** The open backing file's descriptor. */
  fd: number;
  /** Logical block size; 0 keeps the default (512). */
  blockSize: number;
  info: LoopInfo64;
}

/**
 * Writes struct loop_config (304 bytes) at `offset`, __reserved zeroed. `blockSize` must be 0
 * or a power of two from 512 to 65536 (the kernel may refuse more than its page size).
 * Returns its size.
 */
export function encodeLoopConfig(
  buf: Buffer,
  offset: number,
  config: { fd: number; blockSize?: number; info?: Partial<LoopInfo64> },
): number {
  const fd = checkU32(config.fd, 'fd');
  if (fd > I32_MAX) throw new InvalidArgumentError('fd', `${fd} is not a valid file descriptor`);
  const blockSize = checkU32(config.blockSize ?? 0, 'blockSize');
  if (blockSize !== 0 && (blockSize < 512 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0)) {
    throw new InvalidArgumentError('blockSize', `${blockSize} must be 0 or a power of two from 512 to 65536`);
  }
  checkRoom(buf, offset, LOOP_CONFIG_LAYOUT.size);
  // Encode the info first: it validates its fields before anything else is written.
  encodeLoopInfo64(buf, offset + LC.info.offset, config.info ?? {});
  buf.writeUInt32LE(fd, offset + LC.fd.offset);
  buf.writeUInt32LE(blockSize, offset + LC.block_size.offset);
  buf.fill(0, offset + LC.__reserved.offset, offset + LC.__reserved.offset + LC.__reserved.size);
  return LOOP_CONFIG_LAYOUT.size;
}

/** Reads struct loop_config at `offset` (for tests and diagnostics; the kernel never writes one). */
export function decodeLoopConfig(buf: Buffer, offset: number): LoopConfig {
  if (!Number.isInteger(offset) || offset < 0 || offset + LOOP_CONFIG_LAYOUT.size > buf.length) {
    throw new ParseError('loop_config', `offset ${offset}`, `${LOOP_CONFIG_LAYOUT.size} bytes at offset ${offset} exceed the ${buf.length}-byte buffer`);
  }
  return {
    fd: buf.readUInt32LE(offset + LC.fd.offset),
    blockSize: buf.readUInt32LE(offset + LC.block_size.offset),
    info: decodeLoopInfo64(buf, offset + LC.info.offset),
  };
}
