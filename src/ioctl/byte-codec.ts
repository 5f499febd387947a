// Byte-level helpers shared by the dm and loop codecs: range checks of the numbers and C
// strings an encoder writes (InvalidArgumentError naming the argument, before any byte is
// written), and the bounds checks a decoder applies to untrusted kernel output (ParseError,
// never RangeError).
import { InvalidArgumentError, ParseError } from '../errors.js';
import { DM_CONTROL_NODE, DM_MAX_TYPE_NAME, DM_NAME_LEN, DM_UUID_LEN } from './abi.js';

const U32_MAX = 0xffff_ffff;
const I32_MIN = -0x8000_0000;
const I32_MAX = 0x7fff_ffff;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

// ---------------------------------------------------------------------------------------------
// Input checks
// ---------------------------------------------------------------------------------------------

export function checkU32(value: unknown, argument: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new InvalidArgumentError(argument, `${String(value)} is not an unsigned 32-bit integer`);
  }
  return value;
}

export function checkI32(value: unknown, argument: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < I32_MIN || value > I32_MAX) {
    throw new InvalidArgumentError(argument, `${String(value)} is not a signed 32-bit integer`);
  }
  return value;
}

export function checkU64(value: unknown, argument: string): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) {
    throw new InvalidArgumentError(argument, `${String(value)} is not an unsigned 64-bit bigint`);
  }
  return value;
}

/** A write of `size` bytes at `offset` must stay inside `buf`. */
export function checkRoom(buf: Buffer, offset: number, size: number, argument = 'offset'): void {
  if (!Number.isInteger(offset) || offset < 0) {
    throw new InvalidArgumentError(argument, `${offset} is not a non-negative integer`);
  }
  if (offset + size > buf.length) {
    throw new InvalidArgumentError(
      'buffer',
      `${size} bytes at offset ${offset} do not fit in a ${buf.length}-byte buffer`,
    );
  }
}

/**
 * A string bound for a fixed-size, NUL-terminated kernel field: no NUL inside (the kernel
 * would silently cut it there) and at most `maxBytes` UTF-8 bytes, the NUL not counted.
 * Returns the UTF-8 byte length.
 */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

export function checkCString(value: unknown, argument: string, maxBytes: number): number {
  if (typeof value !== 'string') throw new InvalidArgumentError(argument, 'must be a string');
  if (value.includes('\0')) throw new InvalidArgumentError(argument, 'must not contain a NUL character');
  // A lone surrogate has no UTF-8 form: Buffer would send U+FFFD, a name the caller never gave.
  if (LONE_SURROGATE.test(value))
    throw new InvalidArgumentError(argument, 'must be well-formed Unicode (it has a lone surrogate)');
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) {
    throw new InvalidArgumentError(
      argument,
      `is ${bytes} bytes in UTF-8; at most ${maxBytes} fit (plus the terminating NUL)`,
    );
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
export function hex(buf: Buffer, start: number, end: number): string {
  const s = Math.max(0, Math.min(start, buf.length));
  const e = Math.max(s, Math.min(end, buf.length, s + 48));
  return buf.toString('hex', s, e) + (e < Math.min(end, buf.length) ? '…' : '');
}

/** The payload range comes from the kernel's data_start / data_size: check it against buf. */
export function checkArea(buf: Buffer, dataStart: number, dataEnd: number, what: string): void {
  if (
    !Number.isInteger(dataStart) ||
    !Number.isInteger(dataEnd) ||
    dataStart < 0 ||
    dataEnd < dataStart ||
    dataEnd > buf.length
  ) {
    throw new ParseError(
      what,
      `data ${dataStart}..${dataEnd}`,
      `payload range is not inside the ${buf.length}-byte buffer`,
    );
  }
}

/**
 * The NUL-terminated string at `start`, whose NUL must come before `end`. Offsets past the
 * string must use its length in bytes as stored (PayloadStrings keeps it in `bytes`), never
 * the decoded string's UTF-8 length: kernel strings are bytes, and invalid UTF-8 decodes to
 * U+FFFD, which re-encodes longer than the bytes it replaced.
 */
export function readCString(buf: Buffer, start: number, end: number, what: string): string {
  const limit = Math.min(end, buf.length);
  if (start >= limit)
    throw new ParseError(what, hex(buf, start, end), `string at offset ${start} lies outside its record`);
  const nul = buf.indexOf(0, start);
  if (nul < 0 || nul >= limit)
    throw new ParseError(what, hex(buf, start, limit), `string at offset ${start} has no NUL before offset ${limit}`);
  return buf.toString('utf8', start, nul);
}

/** Payloads from this many bytes on are scanned a word at a time. */
const WORD_SCAN_MIN = 256;

/**
 * The strings of one kernel payload, for decoders that walk many of them (readCString() for
 * one). The payload is decoded once as latin1; a string whose bytes are ASCII is cut out of
 * that text (a substring, no native call per string), others decode as UTF-8. The NUL is
 * looked for a 32-bit word at a time when the string starts 4-aligned in memory: under emulation
 * (QEMU TCG) each loop iteration costs tens of native ones, and a listing walks every byte.
 */
export class PayloadStrings {
  /**
   * Bytes (NUL not counted) of the string read() returned last. Offsets past a string use
   * this, never the decoded string's UTF-8 length: invalid UTF-8 decodes to U+FFFD, which
   * re-encodes longer than the bytes it replaced.
   */
  bytes = 0;
  readonly #buf: Buffer;
  readonly #text: string;
  readonly #base: number;
  /** buf's bytes as native-endian 32-bit words, when its offset in its ArrayBuffer allows. */
  readonly #words: Uint32Array | undefined;

  /** The payload is [start, end) of buf. */
  constructor(buf: Buffer, start: number, end: number) {
    this.#buf = buf;
    this.#text = buf.toString('latin1', start, end);
    this.#base = start;
    // The view costs more than it saves on a short payload (one pool status line).
    this.#words =
      end - start >= WORD_SCAN_MIN && buf.byteOffset % 4 === 0
        ? new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2)
        : undefined;
  }

  /** The NUL-terminated string at `start`, whose NUL must come before `end`. */
  read(start: number, end: number, what: string): string {
    const buf = this.#buf;
    const limit = Math.min(end, buf.length);
    if (start >= limit)
      throw new ParseError(what, hex(buf, start, end), `string at offset ${start} lies outside its record`);
    let high = 0;
    let i = start;
    const words = this.#words;
    // Every string the kernel writes in these payloads starts 4-aligned; others take the byte loop.
    if (words !== undefined && (i & 3) === 0) {
      // Stops at the first word holding a zero byte; the byte loop below finds which one.
      for (; i + 4 <= limit; i += 4) {
        const w = words[i >>> 2]!;
        if (((w - 0x01010101) & ~w & 0x80808080) !== 0) break;
        high |= w;
      }
    }
    for (; i < limit; i++) {
      const c = buf[i]!;
      if (c === 0) return this.#cut(start, i, high);
      high |= c;
    }
    throw new ParseError(what, hex(buf, start, limit), `string at offset ${start} has no NUL before offset ${limit}`);
  }

  /**
   * [start, end) of the payload as a string; `high` is the OR of its bytes (or of words
   * holding them), so any byte at or above 0x80 means UTF-8.
   */
  text(start: number, end: number, high: number): string {
    return (high & 0x80808080) === 0
      ? this.#text.substring(start - this.#base, end - this.#base)
      : this.#buf.toString('utf8', start, end);
  }

  #cut(start: number, end: number, high: number): string {
    this.bytes = end - start;
    return this.text(start, end, high);
  }
}
