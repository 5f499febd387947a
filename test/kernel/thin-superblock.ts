// The thin-pool superblock's needs_check flag, set and cleared by hand for tests. The test bed
// has no thin-provisioning-tools, and a real failed commit is hard to stage on demand.
// Layout (drivers/md/dm-thin-metadata.c, struct thin_disk_superblock): csum at 0 (crc32c of
// bytes 4..4095, seed ~0, no final inversion, xor SUPERBLOCK_CSUM_XOR), flags at 4, magic at 32.
// The pool must be inactive.

import { execFileSync } from 'node:child_process';
import { closeSync, fsyncSync, openSync, readSync, statSync, writeSync } from 'node:fs';

const SUPERBLOCK_CSUM_XOR = 160774;
const THIN_SUPERBLOCK_MAGIC = 27022010n;
const THIN_METADATA_NEEDS_CHECK_FLAG = 1;
const BLOCK = 4096;

let crcTable: Uint32Array | undefined;
/** CRC-32C (Castagnoli) as dm_bm_checksum takes it: seed ~0, no final inversion. */
function crc32c(data: Buffer): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = crcTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return crc >>> 0;
}

const checksum = (block: Buffer): number => (crc32c(block.subarray(4)) ^ SUPERBLOCK_CSUM_XOR) >>> 0;

// A block device is read and written with O_DIRECT (dd): dm-bufio bypasses the page cache, so a
// buffered read could be stale. A file (tmpfs, hostfs) takes no O_DIRECT, so plain I/O + fsync.
function readSuperblock(path: string, device: boolean): Buffer {
  if (device) return execFileSync('dd', [`if=${path}`, `bs=${BLOCK}`, 'count=1', 'iflag=direct', 'status=none']);
  const block = Buffer.alloc(BLOCK);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, block, 0, BLOCK, 0);
  } finally {
    closeSync(fd);
  }
  return block;
}

function writeSuperblock(path: string, device: boolean, block: Buffer): void {
  if (device) {
    execFileSync('dd', [`of=${path}`, `bs=${BLOCK}`, 'count=1', 'oflag=direct', 'conv=notrunc', 'status=none'], {
      input: block,
    });
    return;
  }
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, block, 0, BLOCK, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Sets (as a failed commit leaves it) or clears (as `thin_check --clear-needs-check-flag` does
 * once the metadata checks out) the needs_check flag of the superblock at `path`, a metadata
 * device or file. Throws when there is no superblock or its checksum does not verify as computed
 * here, so a wrong crc can never be written back.
 */
export function setNeedsCheck(path: string, on: boolean): void {
  const device = statSync(path).isBlockDevice();
  const block = readSuperblock(path, device);
  if (block.length !== BLOCK || block.readBigUInt64LE(32) !== THIN_SUPERBLOCK_MAGIC)
    throw new Error(`${path}: no thin-pool superblock`);
  if (checksum(block) !== block.readUInt32LE(0))
    throw new Error(`${path}: the superblock checksum does not verify as the kernel computes it`);
  const flags = block.readUInt32LE(4);
  block.writeUInt32LE(on ? flags | THIN_METADATA_NEEDS_CHECK_FLAG : flags & ~THIN_METADATA_NEEDS_CHECK_FLAG, 4);
  block.writeUInt32LE(checksum(block), 0);
  writeSuperblock(path, device, block);
}
