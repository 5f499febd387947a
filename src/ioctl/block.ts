// Block device ioctls (include/uapi/linux/fs.h), through the same choke point as dm and loop.
import { BLOCK_REQUESTS } from './abi.js';
import { O_CLOEXEC, O_RDWR, type FfiBackendName } from './ffi/binding.js';
import { libcBinding } from './ffi/select.js';
import { ioctl } from './syscall.js';
import { DmSystemError } from '../errors.js';

function withDevice<T>(path: string, flags: number, ffi: FfiBackendName | undefined, body: (fd: number) => T): T {
  const binding = libcBinding(ffi);
  const fd = binding.open(path, flags | O_CLOEXEC);
  if (fd < 0) throw new DmSystemError({ errno: -fd, syscall: 'open', device: path });
  try {
    return body(fd);
  } finally {
    binding.close(fd);
  }
}

function readSize(fd: number, path: string, ffi: FfiBackendName | undefined): bigint {
  const out = Buffer.alloc(8);
  ioctl(libcBinding(ffi), fd, BLOCK_REQUESTS.BLKGETSIZE64, out, { operation: 'BLKGETSIZE64', device: path });
  return out.readBigUInt64LE(0);
}

/** BLKDISCARD of [start, start + length) bytes (the whole device by default). */
export function discardBlockDevice(
  path: string,
  range?: { start: bigint; length: bigint },
  ffi?: FfiBackendName,
): void {
  withDevice(path, O_RDWR, ffi, (fd) => {
    const arg = Buffer.alloc(16);
    arg.writeBigUInt64LE(range?.start ?? 0n, 0);
    arg.writeBigUInt64LE(range?.length ?? readSize(fd, path, ffi), 8);
    ioctl(libcBinding(ffi), fd, BLOCK_REQUESTS.BLKDISCARD, arg, { operation: 'BLKDISCARD', device: path });
  });
}
