// Loop devices through their ioctls (include/uapi/linux/loop.h): find a free device, attach a
// backing file, read and change its status, detach, re-read capacity, and find the device
// that already backs a file. No losetup.
import { readdirSync, statSync } from 'node:fs';
import { LO_FLAGS, LOOP_CONFIG_LAYOUT, LOOP_INFO64_LAYOUT, LOOP_REQUESTS, LO_NAME_SIZE } from './loop-abi.js';
import { decodeLoopInfo64, encodeLoopConfig, encodeLoopInfo64 } from './loop-codec.js';
import { truncateUtf8 } from './byte-codec.js';
import { O_CLOEXEC, O_RDONLY, O_RDWR, type LibcBinding } from './ffi/binding.js';
import { Kernel, type KernelOptions } from './kernel.js';
import { ioctl, ioctlInt } from './syscall.js';
import { DmSystemError, InvalidArgumentError } from '../errors.js';

export const LOOP_CONTROL_PATH = '/dev/loop-control';

export interface LoopAttachOptions {
  readOnly?: boolean;
  /** Detach by itself when the last opener closes (LO_FLAGS_AUTOCLEAR): a crash leaves nothing attached. */
  autoclear?: boolean;
  directIo?: boolean;
  /** Bytes into the backing file where the device starts. */
  offset?: bigint;
  /** Bytes the device exposes; 0 = up to the end of the file. */
  sizeLimit?: bigint;
  /** Logical block size (512 .. 4096); 0 = the default. */
  blockSize?: number;
}

export interface LoopStatus {
  /** /dev/loopN */
  path: string;
  index: number;
  /** The backing file's name as the kernel keeps it (at most 63 bytes: may be cut). */
  backingFile: string;
  /** st_dev and st_ino of the backing file: the reliable way to recognise it. */
  backingDevice: bigint;
  backingInode: bigint;
  offset: bigint;
  sizeLimit: bigint;
  readOnly: boolean;
  autoclear: boolean;
  partscan: boolean;
  directIo: boolean;
}

/** EBUSY races with other attachers on LOOP_CTL_GET_FREE are retried this many times. */
const ATTACH_ATTEMPTS = 8;

export class LoopDevices {
  /** The handle these calls go through. */
  readonly kernel: Kernel;
  readonly #binding: LibcBinding;

  /** `{ ffi }` picks the backend ('ffi-rs' by default, DEVMAPPER_FFI); `{ kernel }` passes a handle made before. */
  constructor(options: KernelOptions = {}) {
    this.kernel = Kernel.from(options);
    this.#binding = this.kernel.libc;
  }

  /** LOOP_CTL_GET_FREE: the index of a free loop device (the kernel creates one if needed). */
  findFree(): number {
    return this.#withFd(LOOP_CONTROL_PATH, O_RDWR, (fd) =>
      ioctlInt(this.#binding, fd, LOOP_REQUESTS.LOOP_CTL_GET_FREE, 0, {
        operation: 'LOOP_CTL_GET_FREE',
        device: LOOP_CONTROL_PATH,
      }),
    );
  }

  /**
   * Attaches `file` to a free loop device and returns its status; the loop device's fd is
   * closed again (attachAndHold() keeps it, as autoclear needs until something else holds it).
   */
  attach(file: string, options: LoopAttachOptions = {}): LoopStatus {
    return this.#attach(file, options, false).status;
  }

  /** attach(), returning the loop device open: with autoclear it stays attached until `fd` is closed via close(). */
  attachAndHold(file: string, options: LoopAttachOptions = {}): { status: LoopStatus; fd: number } {
    const { status, fd } = this.#attach(file, options, true);
    return { status, fd: fd! };
  }

  /** Closes an fd returned by attachAndHold. */
  release(fd: number): void {
    this.#binding.close(fd);
  }

  #attach(file: string, options: LoopAttachOptions, hold: boolean): { status: LoopStatus; fd?: number } {
    if (typeof file !== 'string' || file === '' || file.includes('\0'))
      throw new InvalidArgumentError('file', 'must be a non-empty path');
    const backing = this.#binding.open(file, (options.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (backing < 0) throw new DmSystemError({ errno: -backing, syscall: 'open', device: file });
    try {
      let flags = 0;
      if (options.readOnly) flags |= LO_FLAGS.LO_FLAGS_READ_ONLY;
      if (options.autoclear) flags |= LO_FLAGS.LO_FLAGS_AUTOCLEAR;
      if (options.directIo) flags |= LO_FLAGS.LO_FLAGS_DIRECT_IO;
      const info = {
        offset: options.offset ?? 0n,
        sizeLimit: options.sizeLimit ?? 0n,
        flags,
        fileName: truncateUtf8(file, LO_NAME_SIZE - 1),
      };
      for (let attempt = 1; ; attempt++) {
        const index = this.findFree();
        const path = `/dev/loop${index}`;
        const fd = this.#binding.open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) throw new DmSystemError({ errno: -fd, syscall: 'open', device: path });
        try {
          this.#configure(fd, path, backing, info, options.blockSize ?? 0);
        } catch (error) {
          this.#binding.close(fd);
          // Another process took this device between GET_FREE and our configure: try the next.
          if (error instanceof DmSystemError && error.code === 'EBUSY' && attempt < ATTACH_ATTEMPTS) continue;
          throw error;
        }
        const status = this.#statusOf(fd, path);
        if (hold) return { status, fd };
        this.#binding.close(fd);
        return { status };
      }
    } finally {
      this.#binding.close(backing);
    }
  }

  /** LOOP_CONFIGURE (5.8+) in one call; on older kernels LOOP_SET_FD then LOOP_SET_STATUS64. */
  #configure(
    fd: number,
    path: string,
    backing: number,
    info: { offset: bigint; sizeLimit: bigint; flags: number; fileName: string },
    blockSize: number,
  ): void {
    const config = Buffer.alloc(LOOP_CONFIG_LAYOUT.size);
    encodeLoopConfig(config, 0, { fd: backing, blockSize, info });
    try {
      ioctl(this.#binding, fd, LOOP_REQUESTS.LOOP_CONFIGURE, config, { operation: 'LOOP_CONFIGURE', device: path });
      return;
    } catch (error) {
      if (!(error instanceof DmSystemError) || (error.code !== 'EINVAL' && error.code !== 'ENOTTY')) throw error;
    }
    ioctlInt(this.#binding, fd, LOOP_REQUESTS.LOOP_SET_FD, backing, { operation: 'LOOP_SET_FD', device: path });
    try {
      const status = Buffer.alloc(LOOP_INFO64_LAYOUT.size);
      encodeLoopInfo64(status, 0, { ...info, flags: info.flags & ~LO_FLAGS.LO_FLAGS_READ_ONLY });
      ioctl(this.#binding, fd, LOOP_REQUESTS.LOOP_SET_STATUS64, status, {
        operation: 'LOOP_SET_STATUS64',
        device: path,
      });
    } catch (error) {
      this.#binding.ioctlInt(fd, LOOP_REQUESTS.LOOP_CLR_FD, 0);
      throw error;
    }
  }

  /** LOOP_GET_STATUS64 of /dev/loopN (a path or an index). ENXIO when nothing is attached. */
  status(device: string | number): LoopStatus {
    const path = loopPath(device);
    return this.#withFd(path, O_RDONLY, (fd) => this.#statusOf(fd, path));
  }

  #statusOf(fd: number, path: string): LoopStatus {
    const buffer = Buffer.alloc(LOOP_INFO64_LAYOUT.size);
    ioctl(this.#binding, fd, LOOP_REQUESTS.LOOP_GET_STATUS64, buffer, { operation: 'LOOP_GET_STATUS64', device: path });
    const info = decodeLoopInfo64(buffer, 0);
    return {
      path,
      index: info.number,
      backingFile: info.fileName,
      backingDevice: info.device,
      backingInode: info.inode,
      offset: info.offset,
      sizeLimit: info.sizeLimit,
      readOnly: (info.flags & LO_FLAGS.LO_FLAGS_READ_ONLY) !== 0,
      autoclear: (info.flags & LO_FLAGS.LO_FLAGS_AUTOCLEAR) !== 0,
      partscan: (info.flags & LO_FLAGS.LO_FLAGS_PARTSCAN) !== 0,
      directIo: (info.flags & LO_FLAGS.LO_FLAGS_DIRECT_IO) !== 0,
    };
  }

  /** Turns autoclear on or off (LOOP_SET_STATUS64 keeps the other fields as they are). */
  setAutoclear(device: string | number, on: boolean): LoopStatus {
    const path = loopPath(device);
    return this.#withFd(path, O_RDONLY, (fd) => {
      const buffer = Buffer.alloc(LOOP_INFO64_LAYOUT.size);
      ioctl(this.#binding, fd, LOOP_REQUESTS.LOOP_GET_STATUS64, buffer, {
        operation: 'LOOP_GET_STATUS64',
        device: path,
      });
      const info = decodeLoopInfo64(buffer, 0);
      const flags = on ? info.flags | LO_FLAGS.LO_FLAGS_AUTOCLEAR : info.flags & ~LO_FLAGS.LO_FLAGS_AUTOCLEAR;
      encodeLoopInfo64(buffer, 0, { ...info, flags });
      ioctl(this.#binding, fd, LOOP_REQUESTS.LOOP_SET_STATUS64, buffer, {
        operation: 'LOOP_SET_STATUS64',
        device: path,
      });
      return this.#statusOf(fd, path);
    });
  }

  /** LOOP_CLR_FD. A device still open elsewhere detaches when that opener closes. */
  detach(device: string | number): void {
    const path = loopPath(device);
    this.#withFd(path, O_RDONLY, (fd) =>
      ioctlInt(this.#binding, fd, LOOP_REQUESTS.LOOP_CLR_FD, 0, { operation: 'LOOP_CLR_FD', device: path }),
    );
  }

  /** LOOP_SET_CAPACITY: picks up a grown (or shrunk) backing file. */
  refreshCapacity(device: string | number): void {
    const path = loopPath(device);
    this.#withFd(path, O_RDONLY, (fd) =>
      ioctlInt(this.#binding, fd, LOOP_REQUESTS.LOOP_SET_CAPACITY, 0, { operation: 'LOOP_SET_CAPACITY', device: path }),
    );
  }

  /** Every attached loop device (those with a backing file). */
  list(): LoopStatus[] {
    const found: LoopStatus[] = [];
    for (const index of loopIndexes()) {
      try {
        found.push(this.status(index));
      } catch (error) {
        if (error instanceof DmSystemError && (error.code === 'ENXIO' || error.code === 'ENOENT')) continue;
        throw error;
      }
    }
    return found;
  }

  /** The loop device already backing `file` (compared by st_dev and st_ino, not by name). */
  findByBackingFile(file: string): LoopStatus | undefined {
    const st = statSync(file, { bigint: true });
    return this.list().find((loop) => loop.backingDevice === st.dev && loop.backingInode === st.ino);
  }

  #withFd<T>(path: string, flags: number, body: (fd: number) => T): T {
    const fd = this.#binding.open(path, flags | O_CLOEXEC);
    if (fd < 0) throw new DmSystemError({ errno: -fd, syscall: 'open', device: path });
    try {
      return body(fd);
    } finally {
      this.#binding.close(fd);
    }
  }
}

function loopPath(device: string | number): string {
  if (typeof device === 'number') {
    if (!Number.isInteger(device) || device < 0)
      throw new InvalidArgumentError('device', `${device} is not a loop index`);
    return `/dev/loop${device}`;
  }
  if (!/^\/dev\/loop\d+$/.test(device))
    throw new InvalidArgumentError('device', `${JSON.stringify(device)} is not a /dev/loopN path`);
  return device;
}

/** Indexes of the loop nodes in /dev (devtmpfs makes them; no udev needed). */
function loopIndexes(): number[] {
  return readdirSync('/dev')
    .map((name) => /^loop(\d+)$/.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}
