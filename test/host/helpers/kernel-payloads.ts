// Kernel payloads built byte by byte, in the layouts drivers/md/dm-ioctl.c writes them
// (include/uapi/linux/dm-ioctl.h): DM_LIST_DEVICES, DM_TABLE_STATUS and DM_LIST_VERSIONS output.
import { DM_IOCTL_SIZE } from '../../../src/ioctl/abi.js';

export const align8 = (n: number) => Math.ceil(n / 8) * 8;

/** Writes a NUL-terminated ASCII/UTF-8 string; returns the offset after the NUL. */
export function putString(buf: Buffer, at: number, s: string): number {
  const n = buf.write(s, at, 'utf8');
  buf[at + n] = 0;
  return at + n + 1;
}

export interface NameRecord {
  dev: bigint;
  name: string;
  eventNr?: number;
  flags?: number;
  uuid?: string;
}

/**
 * A DM_LIST_DEVICES payload as list_devices() writes it. `style`:
 * 'pre437' - old kernels: next = align8(16 + strlen + 1) (they stepped past sizeof, 16);
 * '437'    - event_nr after the aligned name, the flags word left as found;
 * '445'    - event_nr, flags and, with HAS_UUID, the uuid.
 * Returns the buffer and the data area [start, end).
 */
export function nameListPayload(
  records: NameRecord[],
  style: 'pre437' | '437' | '445',
  fill = 0,
): { buf: Buffer; start: number; end: number } {
  const start = 16; // a nonzero data_start, to catch offsets taken from the buffer's start
  const buf = Buffer.alloc(4096, fill);
  let at = start;
  let prev = -1;
  for (const r of records) {
    if (prev >= 0) buf.writeUInt32LE(at - prev, prev + 8);
    buf.writeBigUInt64LE(r.dev, at);
    buf.writeUInt32LE(0, at + 8);
    const nameEnd = putString(buf, at + 12, r.name);
    prev = at;
    if (style === 'pre437') {
      at = start + align8(at - start + 16 + Buffer.byteLength(r.name) + 1);
      continue;
    }
    const tail = start + align8(nameEnd - start);
    buf.fill(0, nameEnd, tail);
    buf.writeUInt32LE(r.eventNr ?? 0, tail);
    if (style === '445') buf.writeUInt32LE(r.flags ?? 0, tail + 4);
    else if (r.flags !== undefined) buf.writeUInt32LE(r.flags, tail + 4); // stale word
    at = tail + 8;
    if (style === '445' && r.uuid !== undefined) at = start + align8(putString(buf, at, r.uuid) - start);
  }
  return { buf, start, end: at };
}

/** A DM_TABLE_STATUS payload as retrieve_status() writes it: `next` from the data area. */
export function statusPayload(
  specs: Array<{ start: bigint; length: bigint; type: string; params: string; status?: number }>,
) {
  const start = DM_IOCTL_SIZE;
  const buf = Buffer.alloc(4096, 0xaa); // stale bytes everywhere the kernel does not write
  let off = 0;
  let used = 0;
  for (const s of specs) {
    const at = start + off;
    buf.writeBigUInt64LE(s.start, at);
    buf.writeBigUInt64LE(s.length, at + 8);
    buf.writeInt32LE(s.status ?? 0, at + 16);
    buf.fill(0, at + 24, at + 39); // strncpy(..., 15) pads with NULs but leaves byte 15 alone
    buf.write(s.type, at + 24, 'utf8');
    const strEnd = putString(buf, at + 40, s.params) - start;
    used = strEnd;
    off = align8(strEnd);
    buf.writeUInt32LE(off, at + 20);
  }
  // data_size covers only up to the last string's NUL, not the padding after it.
  return { buf, start, end: start + used };
}

export function versionsPayload(records: Array<{ name: string; version: [number, number, number] }>) {
  const start = 24;
  const buf = Buffer.alloc(2048, 0x55);
  let at = start;
  let prev = -1;
  for (const r of records) {
    if (prev >= 0) buf.writeUInt32LE(at - prev, prev);
    buf.writeUInt32LE(0, at);
    for (const [i, v] of r.version.entries()) buf.writeUInt32LE(v, at + 4 + i * 4);
    putString(buf, at + 16, r.name);
    prev = at;
    at = start + align8(at - start + 16 + Buffer.byteLength(r.name) + 1);
  }
  // list_versions() sizes data with slack (ALIGN_MASK per record): end past the last record.
  return { buf, start, end: at + 7 };
}
