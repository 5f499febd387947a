// What the thin layer needs to know about a block device it is given: its device number (the
// form dm tables take, `major:minor`, which needs no device node) and its size.
import {
  type BigIntStats,
  closeSync,
  constants,
  fsyncSync,
  openSync,
  readFileSync,
  statSync,
  writeSync,
} from 'node:fs';
import { decodeDev } from '../ioctl/abi.js';
import { DmSystemError, InvalidArgumentError } from '../errors.js';
import { sectors, type Sectors } from './units.js';

export interface BlockDevice {
  path: string;
  major: number;
  minor: number;
  /** `major:minor`, for dm tables. */
  id: string;
  size: Sectors;
}

export function blockDevice(path: string): BlockDevice {
  let st: BigIntStats;
  try {
    st = statSync(path, { bigint: true });
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw new DmSystemError({ errno: e.errno ? Math.abs(e.errno) : 2, syscall: 'stat', device: path });
  }
  if (!st.isBlockDevice()) throw new InvalidArgumentError('device', `${path} is not a block device`);
  const { major, minor } = decodeDev(st.rdev);
  return { path, major, minor, id: `${major}:${minor}`, size: blockDeviceSize(major, minor) };
}

/** A device named `major:minor` (as the kernel echoes tables): no node needed, sysfs knows it. */
export function blockDeviceById(id: string): BlockDevice {
  const match = /^(\d+):(\d+)$/.exec(id);
  if (!match) return blockDevice(id);
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return { path: id, major, minor, id, size: blockDeviceSize(major, minor) };
}

/** Size in sectors, from sysfs (always 512-byte units there, whatever the logical block size). */
export function blockDeviceSize(major: number, minor: number): Sectors {
  const text = readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim();
  return sectors(BigInt(text));
}

/**
 * Writes `length` zero bytes at the start of a device and syncs them (a new pool's metadata needs
 * 4 KiB). The device is opened O_EXCL: a block device that a dm table holds (a live pool's
 * metadata) or that is mounted is refused with EBUSY instead of having its start wiped.
 */
export function zeroStart(path: string, length: number): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_EXCL);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw new DmSystemError({ errno: e.errno ? Math.abs(e.errno) : 5, syscall: 'open', device: path });
  }
  try {
    writeSync(fd, Buffer.alloc(length), 0, length, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
