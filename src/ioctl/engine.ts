// The one choke point for every device-mapper ioctl (dm-ioctl.h): lays out the dm_ioctl
// header in place in the handle's one buffer, sizes data_size per command, retries on
// DM_BUFFER_FULL_FLAG with a doubled buffer, and turns a failed call into a DmSystemError
// (through syscall.ts). Deliberately synchronous: these calls take microseconds; the async
// form exists for the few that block on I/O.
//
// The hot path allocates nothing of its own: the request comes as arguments (no request
// object, no payload closure), the reply stays in the buffer, and the caller reads only the
// fields it needs (dm-header.ts) before the next call. Under emulation (QEMU TCG) every
// JavaScript instruction counts, and a minimal call is a few µs where an allocating one was
// tens to hundreds.
import { DM_FLAGS, DM_IOCTL_SIZE, type DmCommand } from './abi.js';
import {
  readHeaderDataSize,
  readHeaderDataStart,
  readHeaderFlags,
  viewOf,
  writeDeviceRef,
  writeHeader,
} from './dm-header.js';
import type { DeviceRef } from './dm-types.js';
import type { LibcBinding } from './ffi/binding.js';
import { DevmapperError } from '../errors.js';
import { traceEnabled } from '../log.js';
import { ioctlAsync, ioctlError, ioctlNamed } from './syscall.js';

/** The first buffer an answering command gets (libdm and devicemapper-rs use the same). */
export const INITIAL_OUTPUT_SIZE = 16 * 1024;
/** BUFFER_FULL retries stop here: no device-mapper answer is legitimately this large. */
export const MAX_BUFFER_SIZE = 64 * 1024 * 1024;

const DATA_START = DM_IOCTL_SIZE; // 312 is already 8-aligned

/** An async call's answer: a buffer of its own, valid as long as the caller keeps it. */
export interface DmAsyncReply {
  buffer: Buffer;
  view: DataView;
  dataStart: number;
  dataEnd: number;
}

export class DmIoctlEngine {
  readonly #binding: LibcBinding;
  #fd: number;
  #buffer = Buffer.alloc(INITIAL_OUTPUT_SIZE);
  #view = viewOf(this.#buffer);
  #input = Buffer.alloc(4096);
  /** data_size each answering command needed last time (by command nr), so the next call sends just that. */
  readonly #sizeHint: number[] = [];
  #dataStart: number = DATA_START;
  #dataEnd: number = DATA_START;

  constructor(binding: LibcBinding, fd: number) {
    this.#binding = binding;
    this.#fd = fd;
  }

  /** After this every call fails with ERR_DM_CLOSED (the handle closes the fd). */
  detach(): void {
    this.#fd = -1;
  }

  /** The last reply's buffer and header view: valid until the next run(). */
  get buffer(): Buffer {
    return this.#buffer;
  }

  get view(): DataView {
    return this.#view;
  }

  /** The last reply's payload is [dataStart, dataEnd) of buffer. */
  get dataStart(): number {
    return this.#dataStart;
  }

  get dataEnd(): number {
    return this.#dataEnd;
  }

  /**
   * A scratch buffer of at least `size` bytes: encode an input payload at its offset 0 and
   * pass `size` as run()'s payloadSize. The engine copies it in before each attempt (a
   * BUFFER_FULL answer overwrites the payload area).
   */
  input(size: number): Buffer {
    if (this.#input.length < size) this.#input = Buffer.alloc(Math.max(size, this.#input.length * 2));
    return this.#input;
  }

  /**
   * Runs one dm ioctl. `device` fills dm_ioctl.name or .uuid (validated as it is written);
   * `uuid` is DM_DEV_CREATE's uuid. Fields not given are written as zero. The reply is left
   * in buffer / view / dataStart / dataEnd.
   */
  run(
    command: DmCommand,
    device: DeviceRef | undefined,
    flags: number,
    output: boolean,
    payloadSize = 0,
    eventNr = 0,
    targetCount = 0,
    dev?: bigint,
    uuid = '',
  ): void {
    this.#run(command, device, flags, output, payloadSize, eventNr, targetCount, dev, uuid, 0);
  }

  /**
   * run() of a command without payload or answer that may fail with `errno`: false then,
   * with no error built (DM_DEV_STATUS of a device that may not exist, ENXIO). Other
   * failures throw as in run().
   */
  runUnless(command: DmCommand, device: DeviceRef, flags: number, errno: number): boolean {
    return this.#run(command, device, flags, false, 0, 0, 0, undefined, '', errno);
  }

  #run(
    command: DmCommand,
    device: DeviceRef | undefined,
    flags: number,
    output: boolean,
    payloadSize: number,
    eventNr: number,
    targetCount: number,
    dev: bigint | undefined,
    uuid: string,
    answerErrno: number,
  ): boolean {
    let dataSize = this.#initialSize(command, output, payloadSize);
    for (;;) {
      if (this.#buffer.length < dataSize) {
        this.#buffer = Buffer.alloc(Math.max(dataSize, this.#buffer.length * 2));
        this.#view = viewOf(this.#buffer);
      }
      const buffer = this.#buffer;
      const view = this.#view;
      writeHeader(view, command.minVersion, dataSize, flags, eventNr, targetCount, dev);
      const label = writeDeviceRef(buffer, device, uuid) ?? devLabel(dev);
      if (this.#fd < 0) throw closedError(command); // after the checks: bad input says so even then
      if (payloadSize > 0) this.#input.copy(buffer, DATA_START, 0, payloadSize);
      const rc = ioctlNamed(
        this.#binding,
        this.#fd,
        command.request,
        buffer,
        command.name,
        label,
        note(dataSize, flags),
        answerErrno,
      );
      if (rc < 0) return false;
      if (this.#finish(view, command, output, dataSize)) return true;
      dataSize = grow(command, label, dataSize);
    }
  }

  /** Like run(), on another thread, with a buffer of its own (so calls may overlap). */
  async runAsync(
    command: DmCommand,
    device: DeviceRef | undefined,
    flags: number,
    output: boolean,
    eventNr = 0,
    dev?: bigint,
  ): Promise<DmAsyncReply> {
    let dataSize = this.#initialSize(command, output, 0);
    for (;;) {
      const buffer = this.#binding.allocateAsyncBuffer(dataSize);
      const view = viewOf(buffer);
      writeHeader(view, command.minVersion, dataSize, flags, eventNr, 0, dev);
      const label = writeDeviceRef(buffer, device, '') ?? devLabel(dev);
      if (this.#fd < 0) throw closedError(command);
      await ioctlAsync(this.#binding, this.#fd, command.request, buffer, {
        operation: command.name,
        device: label,
        note: note(dataSize, flags),
      });
      if (this.#finish(view, command, output, dataSize)) {
        const dataStart = readHeaderDataStart(view);
        return { buffer, view, dataStart, dataEnd: Math.max(Math.min(readHeaderDataSize(view), dataSize), dataStart) };
      }
      dataSize = grow(command, label, dataSize);
    }
  }

  #initialSize(command: DmCommand, output: boolean, payloadSize: number): number {
    const input = DATA_START + payloadSize;
    if (!output) return input;
    return Math.max(input, this.#sizeHint[command.nr] ?? INITIAL_OUTPUT_SIZE);
  }

  /** True when the reply is complete; false when the kernel said BUFFER_FULL and the call must be repeated. */
  #finish(view: DataView, command: DmCommand, output: boolean, dataSize: number): boolean {
    if (readHeaderFlags(view) & DM_FLAGS.DM_BUFFER_FULL_FLAG) {
      this.#sizeHint[command.nr] = Math.min(dataSize * 2, MAX_BUFFER_SIZE);
      return false;
    }
    // On success data_size is what the kernel used; keep a little headroom for next time.
    const used = Math.min(readHeaderDataSize(view), dataSize);
    if (output) this.#sizeHint[command.nr] = Math.max(DATA_START + 256, used + (used >> 2));
    // A command that wrote no payload (table/status/deps of a device with no table) leaves
    // data_size at offsetof(struct dm_ioctl, data) = 305, short of data_start: an empty payload.
    const dataStart = readHeaderDataStart(view);
    this.#dataStart = dataStart;
    this.#dataEnd = Math.max(used, dataStart);
    return true;
  }
}

function closedError(command: DmCommand): DevmapperError {
  return new DevmapperError('ERR_DM_CLOSED', `${command.name}: the DeviceMapper handle is closed`);
}

function grow(command: DmCommand, device: string | undefined, dataSize: number): number {
  if (dataSize >= MAX_BUFFER_SIZE) {
    throw ioctlError(
      { operation: command.name, device },
      105 /* ENOBUFS */,
      `answer larger than ${MAX_BUFFER_SIZE} bytes`,
    );
  }
  return Math.min(dataSize * 2, MAX_BUFFER_SIZE);
}

function devLabel(dev: bigint | undefined): string | undefined {
  return dev ? `dev ${dev}` : undefined;
}

/** The trace line's words, built only when tracing is on. */
function note(dataSize: number, flags: number): string | undefined {
  return traceEnabled ? `data_size=${dataSize} flags=0x${flags.toString(16)}` : undefined;
}
