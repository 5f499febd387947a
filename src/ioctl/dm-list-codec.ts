// The listing payloads of linux/dm-ioctl.h: dm_name_list (DM_LIST_DEVICES),
// dm_target_versions (DM_LIST_VERSIONS, DM_GET_TARGET_VERSION) and dm_target_deps
// (DM_TABLE_DEPS). The buffer is untrusted kernel output: every range is checked (ParseError,
// never RangeError) and every loop moves strictly forward, so a hostile `next` cannot make it
// spin. A listing decodes its payload's text once and cuts each name out of it.
import { ParseError } from '../errors.js';
import {
  DM_NAME_LIST_EVENT_NR_VERSION,
  DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID,
  DM_NAME_LIST_FLAG_HAS_UUID,
  DM_NAME_LIST_LAYOUT,
  DM_NAME_LIST_UUID_VERSION,
  DM_TARGET_DEPS_LAYOUT,
  DM_TARGET_VERSIONS_LAYOUT,
  align8,
  versionAtLeast,
} from './abi.js';
import { PayloadStrings, checkArea, hex } from './byte-codec.js';
import { devFromWords } from './dm-header.js';
import type { ListedDevice } from './dm-types.js';

const NL = DM_NAME_LIST_LAYOUT.fields;
const VERS = DM_TARGET_VERSIONS_LAYOUT.fields;
const DEPS = DM_TARGET_DEPS_LAYOUT.fields;
const UUID_FLAGS = DM_NAME_LIST_FLAG_HAS_UUID | DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID;

// ---------------------------------------------------------------------------------------------
// struct dm_name_list: DM_LIST_DEVICES output
// ---------------------------------------------------------------------------------------------

/** One device from DM_LIST_DEVICES, its number as the kernel encodes it. */
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
  return walkNameList(buf, dataStart, dataEnd, options.interfaceVersion, false) as NameListEntry[];
}

/** decodeNameList() with each dev as { major, minor }: what DeviceMapper.list() returns. */
export function decodeDeviceList(
  buf: Buffer,
  dataStart: number,
  dataEnd: number,
  interfaceVersion: readonly number[] | undefined,
): ListedDevice[] {
  return walkNameList(buf, dataStart, dataEnd, interfaceVersion, true) as ListedDevice[];
}

/** One walker for both forms; `dev` is whichever the caller asked for. */
type NameListRecord = Omit<NameListEntry, 'dev'> & { dev: bigint | ListedDevice['dev'] };

function walkNameList(
  buf: Buffer,
  dataStart: number,
  dataEnd: number,
  version: readonly number[] | undefined,
  devNumbers: boolean,
): NameListRecord[] {
  const what = 'dm_name_list';
  checkArea(buf, dataStart, dataEnd, what);
  const len = dataEnd - dataStart;
  const out: NameListRecord[] = [];
  if (len === 0) return out;
  if (len < NL.next.offset) {
    throw new ParseError(what, hex(buf, dataStart, dataEnd), `${len} payload bytes cannot hold a record`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  if (view.getUint32(dataStart, true) === 0 && view.getUint32(dataStart + 4, true) === 0) return out;

  const tailKnown = version !== undefined;
  const hasTail = version !== undefined && versionAtLeast(version, DM_NAME_LIST_EVENT_NR_VERSION);
  const hasUuidFlags = version === undefined || versionAtLeast(version, DM_NAME_LIST_UUID_VERSION);
  const strings = new PayloadStrings(buf, dataStart, dataEnd);

  let off = 0;
  for (;;) {
    const at = dataStart + off;
    if (off + NL.name.offset + 1 > len) {
      throw new ParseError(what, hex(buf, at, dataEnd), `record at offset ${off} runs past the ${len}-byte payload`);
    }
    const next = view.getUint32(at + NL.next.offset, true);
    // The smallest record is a 1-character name: align8(12 + 2) = 16 bytes.
    if (next !== 0 && (next < DM_NAME_LIST_LAYOUT.size || next % 8 !== 0 || off + next > len)) {
      throw new ParseError(
        what,
        hex(buf, at, at + 16),
        `record at offset ${off}: next ${next} is not a forward, 8-aligned offset inside the payload`,
      );
    }
    const recordLen = next === 0 ? len - off : next;
    const name = strings.read(at + NL.name.offset, at + recordLen, what);
    const nameBytes = strings.bytes;
    const lo = view.getUint32(at + NL.dev.offset, true);
    const hi = view.getUint32(at + NL.dev.offset + 4, true);
    const entry: NameListRecord = {
      name,
      dev: devNumbers ? devFromWords(lo, hi) : (BigInt(hi) << 32n) | BigInt(lo),
    };

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
      entry.eventNr = view.getUint32(at + tail, true);
      const flags = view.getUint32(at + tail + 4, true) & UUID_FLAGS;
      if (hasUuidFlags && flags === DM_NAME_LIST_FLAG_HAS_UUID) {
        if (recordLen > tail + 8) {
          entry.uuid = strings.read(at + tail + 8, at + recordLen, what);
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
  const strings = new PayloadStrings(buf, dataStart, dataEnd);
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
    const name = strings.read(at + VERS.name.offset, at + recordLen, what);
    // A record that does not reach past its own name would make `next` go backwards or stall.
    if (next !== 0 && next < VERS.name.offset + strings.bytes + 1) {
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
