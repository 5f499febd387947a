// Block device ioctls (include/uapi/linux/fs.h), through the same choke point as dm and loop.
import { BLOCK_REQUESTS } from './abi.js';
import { O_CLOEXEC, O_RDWR, type LibcBinding } from './ffi/binding.js';
import type { Kernel } from './kernel.js';
import { ioctl } from './syscall.js';
import { DmSystemError } from '../errors.js';

function withDevice<T>(path: string, flags: number, binding: LibcBinding, body: (fd: number) => T): T {
  const fd = binding.open(path, flags | O_CLOEXEC);
  if (fd < 0) throw new DmSystemError({ errno: -fd, syscall: 'open', device: path });
  try {
    return body(fd);
  } finally {
    binding.close(fd);
  }
}

function readSize(binding: LibcBinding, fd: number, path: string): bigint {
  const out = Buffer.alloc(8);
  ioctl(binding, fd, BLOCK_REQUESTS.BLKGETSIZE64, out, { operation: 'BLKGETSIZE64', device: path });
  return out.readBigUInt64LE(0);
}

/** BLKDISCARD of [start, start + length) bytes (the whole device by default). */
export function discardBlockDevice(kernel: Kernel, path: string, range?: { start: bigint; length: bigint }): void {
  const binding = kernel.libc;
  withDevice(path, O_RDWR, binding, (fd) => {
    const arg = Buffer.alloc(16);
    arg.writeBigUInt64LE(range?.start ?? 0n, 0);
    arg.writeBigUInt64LE(range?.length ?? readSize(binding, fd, path), 8);
    ioctl(binding, fd, BLOCK_REQUESTS.BLKDISCARD, arg, { operation: 'BLKDISCARD', device: path });
  });
}
