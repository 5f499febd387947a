// Block device nodes for dm devices without udev. devtmpfs (always mounted on the hosts and
// test kernels this project targets) creates /dev/dm-<minor> by itself; where it is missing,
// the library makes /dev/mapper/<name> with mknod(2) and removes it again before the device
// goes away.
import { existsSync, lstatSync, mkdirSync, type Stats, unlinkSync } from 'node:fs';
import { encodeDev } from './abi.js';
import { S_IFBLK } from './ffi/binding.js';
import type { Kernel } from './kernel.js';
import { DmSystemError } from '../errors.js';
import type { DeviceNumber } from './device-mapper.js';

export interface DeviceNode {
  path: string;
  /** True when the library made the node and must remove it (removeDeviceNode). */
  owned: boolean;
}

/** A block device node for `dev`: devtmpfs's /dev/dm-N when it is the right one, else one we make. */
export function ensureDeviceNode(kernel: Kernel, name: string, dev: DeviceNumber): DeviceNode {
  const devtmpfsPath = `/dev/dm-${dev.minor}`;
  if (isNodeFor(devtmpfsPath, dev)) return { path: devtmpfsPath, owned: false };
  const path = `/dev/mapper/${name}`;
  if (isNodeFor(path, dev)) return { path, owned: false };
  mkdirSync('/dev/mapper', { recursive: true, mode: 0o755 });
  if (existsSync(path)) unlinkSync(path); // a stale node for an older device of that name
  const rc = kernel.libc.mknod(path, S_IFBLK | 0o600, encodeDev(dev.major, dev.minor));
  if (rc < 0) throw new DmSystemError({ errno: -rc, syscall: 'mknod', device: path });
  return { path, owned: true };
}

/** Removes a node ensureDeviceNode made; nothing for devtmpfs's own. */
export function removeDeviceNode(node: DeviceNode): void {
  if (node.owned) {
    try {
      unlinkSync(node.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}

function isNodeFor(path: string, dev: DeviceNumber): boolean {
  // A number stat, not a bigint one: in an emulated guest the BigIntStats cost ~5x the syscall.
  let st: Stats | undefined;
  try {
    st = lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return false; // ENOTDIR, EACCES...: not a node to use
  }
  if (!st?.isBlockDevice()) return false;
  // st_rdev in glibc's makedev form; for majors < 4096 and minors < 2^20 it equals encodeDev,
  // which is then below 2^32 and exact as a double (a larger st_rdev can never round to it).
  return st.rdev === Number(encodeDev(dev.major, dev.minor));
}
