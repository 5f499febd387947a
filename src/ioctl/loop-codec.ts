// The loop device ioctl interface (linux/loop.h) in bytes: struct loop_info64 (LOOP_GET_STATUS64,
// LOOP_SET_STATUS64) and struct loop_config (LOOP_CONFIGURE), encoded and decoded in place.
import { InvalidArgumentError, ParseError } from '../errors.js';
import { LO_KEY_SIZE, LO_NAME_SIZE, LOOP_CONFIG_LAYOUT, LOOP_INFO64_LAYOUT } from './loop-abi.js';
import { checkU32, checkU64, checkRoom, checkCString, readCString } from './byte-codec.js';

const LI = LOOP_INFO64_LAYOUT.fields;
const LC = LOOP_CONFIG_LAYOUT.fields;
const I32_MAX = 0x7fff_ffff;

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
    throw new ParseError(
      what,
      `offset ${offset}`,
      `${LOOP_INFO64_LAYOUT.size} bytes at offset ${offset} exceed the ${buf.length}-byte buffer`,
    );
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
    fileName: readCString(
      buf,
      offset + LI.lo_file_name.offset,
      offset + LI.lo_file_name.offset + LO_NAME_SIZE,
      'loop_info64.lo_file_name',
    ),
    cryptName: readCString(
      buf,
      offset + LI.lo_crypt_name.offset,
      offset + LI.lo_crypt_name.offset + LO_NAME_SIZE,
      'loop_info64.lo_crypt_name',
    ),
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
    throw new ParseError(
      'loop_config',
      `offset ${offset}`,
      `${LOOP_CONFIG_LAYOUT.size} bytes at offset ${offset} exceed the ${buf.length}-byte buffer`,
    );
  }
  return {
    fd: buf.readUInt32LE(offset + LC.fd.offset),
    blockSize: buf.readUInt32LE(offset + LC.block_size.offset),
    info: decodeLoopInfo64(buf, offset + LC.info.offset),
  };
}
