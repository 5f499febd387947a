// The one choke point for every device-mapper ioctl (dm-ioctl.h): lays out the dm_ioctl
// header, sizes data_size per command, retries on DM_BUFFER_FULL_FLAG with a doubled buffer,
// and turns a failed call into a DmSystemError. Deliberately synchronous: these calls take
// microseconds; the async form exists for the few that block on I/O.
import { DM_FLAGS, DM_IOCTL_SIZE, type DmCommand } from './abi.js';
import { readDmIoctlHeader, writeDmIoctlHeader, type DmIoctlHeader } from './dm-codec.js';
import type { LibcBinding } from './ffi/binding.js';
import { traceEnabled } from '../log.js';
import { ioctl, ioctlAsync, ioctlError, type IoctlContext } from './syscall.js';

/** What one dm ioctl sends. Fields left out are zero: a stale event_nr can make the kernel fail. */
export interface DmRequest {
  name?: string;
  uuid?: string;
  dev?: bigint;
  flags?: number;
  eventNr?: number;
  targetCount?: number;
  /** Bytes of input payload after the header. */
  payloadSize?: number;
  /** Writes the input payload at `offset` (= data_start). */
  writePayload?: (buffer: Buffer, offset: number) => void;
  /** The command answers with a payload (list, status, deps, versions, message). */
  expectsOutput?: boolean;
}

/** The kernel's answer: its header, and the buffer holding the payload in [dataStart, dataEnd). */
export interface DmReply {
  header: DmIoctlHeader;
  buffer: Buffer;
  dataStart: number;
  dataEnd: number;
}

/** The first buffer an answering command gets (libdm and devicemapper-rs use the same). */
export const INITIAL_OUTPUT_SIZE = 16 * 1024;
/** BUFFER_FULL retries stop here: no device-mapper answer is legitimately this large. */
export const MAX_BUFFER_SIZE = 64 * 1024 * 1024;

const DATA_START = DM_IOCTL_SIZE; // 312 is already 8-aligned

export class DmIoctlEngine {
  readonly #binding: LibcBinding;
  readonly #fd: number;
  #buffer: Buffer;
  /** data_size that each answering command needed last time, so the next call sends just that. */
  readonly #sizeHint = new Map<number, number>();

  constructor(binding: LibcBinding, fd: number) {
    this.#binding = binding;
    this.#fd = fd;
    this.#buffer = Buffer.alloc(INITIAL_OUTPUT_SIZE);
  }

  /**
   * Runs one dm ioctl. The reply's buffer belongs to the engine and is only valid until the
   * next call: decode what you need before calling again.
   */
  run(command: DmCommand, request: DmRequest = {}): DmReply {
    let dataSize = this.#initialSize(command, request);
    for (;;) {
      if (this.#buffer.length < dataSize) this.#buffer = Buffer.alloc(Math.max(dataSize, this.#buffer.length * 2));
      const buffer = this.#buffer;
      this.#prepare(buffer, command, request, dataSize);
      ioctl(this.#binding, this.#fd, command.request, buffer, context(command, request, dataSize));
      const reply = this.#finish(buffer, command, request, dataSize);
      if (reply) return reply;
      dataSize = grow(command, request, dataSize);
    }
  }

  /** Like run(), on a libuv pool thread, with a buffer of its own (so calls may overlap). */
  async runAsync(command: DmCommand, request: DmRequest = {}): Promise<DmReply> {
    let dataSize = this.#initialSize(command, request);
    for (;;) {
      const buffer = this.#binding.allocateAsyncBuffer(dataSize);
      this.#prepare(buffer, command, request, dataSize);
      await ioctlAsync(this.#binding, this.#fd, command.request, buffer, context(command, request, dataSize));
      const reply = this.#finish(buffer, command, request, dataSize);
      if (reply) return reply;
      dataSize = grow(command, request, dataSize);
    }
  }

  #initialSize(command: DmCommand, request: DmRequest): number {
    const input = DATA_START + (request.payloadSize ?? 0);
    if (!request.expectsOutput) return input;
    return Math.max(input, this.#sizeHint.get(command.nr) ?? INITIAL_OUTPUT_SIZE);
  }

  #prepare(buffer: Buffer, command: DmCommand, request: DmRequest, dataSize: number): void {
    writeDmIoctlHeader(buffer, {
      version: command.minVersion,
      dataSize,
      dataStart: DATA_START,
      targetCount: request.targetCount,
      flags: request.flags,
      eventNr: request.eventNr,
      dev: request.dev,
      name: request.name,
      uuid: request.uuid,
    });
    request.writePayload?.(buffer, DATA_START);
  }

  /** The reply, or undefined when the kernel said BUFFER_FULL and the call must be repeated. */
  #finish(buffer: Buffer, command: DmCommand, request: DmRequest, dataSize: number): DmReply | undefined {
    const header = readDmIoctlHeader(buffer);
    if (header.flags & DM_FLAGS.DM_BUFFER_FULL_FLAG) {
      this.#sizeHint.set(command.nr, Math.min(dataSize * 2, MAX_BUFFER_SIZE));
      return undefined;
    }
    // On success data_size is what the kernel used; keep a little headroom for next time.
    const used = Math.min(header.dataSize, dataSize);
    if (request.expectsOutput) this.#sizeHint.set(command.nr, Math.max(DATA_START + 256, used + (used >> 2)));
    // A command that wrote no payload (table/status/deps of a device with no table) leaves
    // data_size at offsetof(struct dm_ioctl, data) = 305, short of data_start: an empty payload.
    return { header, buffer, dataStart: header.dataStart, dataEnd: Math.max(used, header.dataStart) };
  }
}

function grow(command: DmCommand, request: DmRequest, dataSize: number): number {
  if (dataSize >= MAX_BUFFER_SIZE) {
    throw ioctlError(
      { operation: command.name, device: deviceLabel(request) },
      105 /* ENOBUFS */,
      `answer larger than ${MAX_BUFFER_SIZE} bytes`,
    );
  }
  return Math.min(dataSize * 2, MAX_BUFFER_SIZE);
}

function deviceLabel(request: DmRequest): string | undefined {
  return request.name || request.uuid || (request.dev ? `dev ${request.dev}` : undefined);
}

/** Built per call only for what the error or the trace line needs: cheap strings, no formatting. */
function context(command: DmCommand, request: DmRequest, dataSize: number): IoctlContext {
  return {
    operation: command.name,
    device: deviceLabel(request),
    note: traceEnabled ? `data_size=${dataSize} flags=0x${(request.flags ?? 0).toString(16)}` : undefined,
  };
}
