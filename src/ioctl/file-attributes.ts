// What Node's fs cannot do for layer entries, through the libc binding: device and fifo nodes
// (mknod(2)) and extended attributes (l*xattr(2), which never follow a symlink).
import { closeSync, openSync } from 'node:fs';
import { S_IFBLK, S_IFCHR, S_IFIFO } from './ffi/binding.js';
import type { Kernel } from './kernel.js';
import { DmSystemError } from '../errors.js';

export type SpecialNodeKind = 'character-device' | 'block-device' | 'fifo';

/** glibc's makedev(): the dev_t mknod(2) takes and stat(2) reports as st_rdev. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return (mi & 0xffn) | ((ma & 0xfffn) << 8n) | ((mi & ~0xffn) << 12n) | ((ma & ~0xfffn) << 32n);
}

/** glibc's major()/minor() of an st_rdev. */
export function splitDev(rdev: bigint | number): { major: number; minor: number } {
  const dev = BigInt(rdev);
  return {
    major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn)),
  };
}

/** Makes a device node or fifo at `path` with permission bits `mode` (the umask applies; chmod after). */
export function makeSpecialNode(
  kernel: Kernel,
  path: string,
  kind: SpecialNodeKind,
  mode: number,
  major = 0,
  minor = 0,
): void {
  const type = kind === 'fifo' ? S_IFIFO : kind === 'block-device' ? S_IFBLK : S_IFCHR;
  const rc = kernel.libc.mknod(path, type | (mode & 0o7777), kind === 'fifo' ? 0n : makedev(major, minor));
  if (rc < 0) throw new DmSystemError({ errno: -rc, syscall: 'mknod', device: path });
}

/**
 * Writes back everything dirty on the filesystem holding `path` and reports a writeback error
 * (EIO, ENOSPC: a full thin pool under a filesystem shows up only here, buffered writes succeed).
 */
export function syncFilesystem(kernel: Kernel, path: string): void {
  const fd = openSync(path, 'r');
  try {
    const rc = kernel.libc.syncfs(fd);
    if (rc < 0) throw new DmSystemError({ errno: -rc, syscall: 'syncfs', device: path });
  } finally {
    closeSync(fd);
  }
}

export function setXattr(kernel: Kernel, path: string, name: string, value: Buffer): void {
  const rc = kernel.libc.lsetxattr(path, name, value, 0);
  if (rc < 0) throw new DmSystemError({ errno: -rc, syscall: 'lsetxattr', device: path, detail: name });
}

/** The names of `path`'s extended attributes (the ones this process may see). */
export function listXattrs(kernel: Kernel, path: string): string[] {
  const binding = kernel.libc;
  for (;;) {
    const size = binding.llistxattr(path, Buffer.alloc(0));
    if (size < 0) throw new DmSystemError({ errno: -size, syscall: 'llistxattr', device: path });
    if (size === 0) return [];
    const buffer = Buffer.alloc(size);
    const got = binding.llistxattr(path, buffer);
    if (got === -34) continue; // ERANGE: the list grew between the two calls
    if (got < 0) throw new DmSystemError({ errno: -got, syscall: 'llistxattr', device: path });
    return buffer
      .subarray(0, got)
      .toString('utf8')
      .split('\0')
      .filter((name) => name !== '');
  }
}

export function getXattr(kernel: Kernel, path: string, name: string): Buffer {
  const binding = kernel.libc;
  for (;;) {
    const size = binding.lgetxattr(path, name, Buffer.alloc(0));
    if (size < 0) throw new DmSystemError({ errno: -size, syscall: 'lgetxattr', device: path, detail: name });
    if (size === 0) return Buffer.alloc(0);
    const buffer = Buffer.alloc(size);
    const got = binding.lgetxattr(path, name, buffer);
    if (got === -34) continue; // ERANGE: the value grew between the two calls
    if (got < 0) throw new DmSystemError({ errno: -got, syscall: 'lgetxattr', device: path, detail: name });
    return buffer.subarray(0, got);
  }
}
