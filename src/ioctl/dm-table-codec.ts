// The table payloads of linux/dm-ioctl.h: dm_target_spec lists (DM_TABLE_LOAD input,
// DM_TABLE_STATUS output), dm_target_msg (DM_TARGET_MSG input) and the plain string payloads
// (DM_DEV_RENAME, DM_DEV_SET_GEOMETRY input; a message's answer), encoded in place on the
// engine's buffer. Encoders validate everything before writing a byte; decoders treat the
// buffer as untrusted kernel output, and every loop moves strictly forward.
import { InvalidArgumentError, ParseError } from '../errors.js';
import { DM_MAX_TYPE_NAME, DM_TARGET_MSG_LAYOUT, DM_TARGET_SPEC_LAYOUT, align8 } from './abi.js';
import {
  checkArea,
  checkCString,
  checkRoom,
  checkU64,
  hex,
  PayloadStrings,
  readCString,
  validateTargetType,
} from './byte-codec.js';

const SPEC = DM_TARGET_SPEC_LAYOUT.fields;
const SPEC_SIZE = DM_TARGET_SPEC_LAYOUT.size;
const MSG = DM_TARGET_MSG_LAYOUT.fields;
const U32_MAX = 0xffff_ffff;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

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
function readTargetType(buf: Buffer, strings: PayloadStrings, at: number, what: string): string {
  const limit = at + DM_MAX_TYPE_NAME - 1;
  let high = 0;
  let i = at;
  for (; i < limit; i++) {
    const c = buf[i]!;
    if (c === 0) break;
    high |= c;
  }
  if (i === at) throw new ParseError(what, hex(buf, at, at + DM_MAX_TYPE_NAME), 'empty target type');
  return strings.text(at, i, high);
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
  if (count === 0) return out;
  const strings = new PayloadStrings(buf, dataStart, dataEnd);
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
    const params = strings.read(at + SPEC_SIZE, dataEnd, what);
    const paramBytes = strings.bytes;
    out.push({
      start: buf.readBigUInt64LE(at + SPEC.sector_start.offset),
      length: buf.readBigUInt64LE(at + SPEC.length.offset),
      status: buf.readInt32LE(at + SPEC.status.offset),
      type: readTargetType(buf, strings, at + SPEC.target_type.offset, what),
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
