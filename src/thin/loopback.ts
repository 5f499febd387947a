// Loopback storage for a pool: sparse `data` and `metadata` files attached to loop devices.
// Attached with autoclear, so once the pool holds them a crash leaves nothing attached; on the
// next start the loop device that already backs a file is found and reused.
import { closeSync, existsSync, mkdirSync, openSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import type { KernelOptions } from '../ioctl/kernel.js';
import { LoopDevices, type LoopStatus } from '../ioctl/loop.js';
import { InvalidArgumentError } from '../errors.js';
import { bytes, isSectorAligned, type Bytes } from './units.js';

export interface LoopbackOptions extends KernelOptions {
  /** Directory holding the two files. Created (0700) if missing. */
  dir: string;
  /** Sparse size of the data file when it is created. */
  dataSize: Bytes | number | bigint;
  /** Sparse size of the metadata file when it is created. */
  metadataSize: Bytes | number | bigint;
}

export interface LoopbackFile {
  file: string;
  loop: LoopStatus;
  /** Whether this call created the file (a brand-new pool needs its metadata zeroed). */
  created: boolean;
}

/**
 * The attached pair. Until release(), the loop devices are held open by us; release once the
 * pool's table holds them, so autoclear detaches them when the pool goes away.
 */
export class LoopbackStorage {
  readonly data: LoopbackFile;
  readonly metadata: LoopbackFile;
  readonly #loops: LoopDevices;
  #held: number[];

  private constructor(loops: LoopDevices, data: LoopbackFile, metadata: LoopbackFile, held: number[]) {
    this.#loops = loops;
    this.data = data;
    this.metadata = metadata;
    this.#held = held;
  }

  static open(options: LoopbackOptions): LoopbackStorage {
    const dataSize = positiveSize(options.dataSize, 'dataSize');
    const metadataSize = positiveSize(options.metadataSize, 'metadataSize');
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    const loops = new LoopDevices({ kernel: options.kernel, ffi: options.ffi });
    const held: number[] = [];
    const made: string[] = [];
    try {
      const attach = (name: string, size: Bytes): LoopbackFile => {
        const file = join(options.dir, name);
        const created = !existsSync(file);
        if (created) {
          closeSync(openSync(file, 'wx', 0o600));
          made.push(file);
          truncateSync(file, Number(size));
        }
        const existing = created ? undefined : loops.findByBackingFile(file);
        if (existing) return { file, loop: existing, created };
        const { status, fd } = loops.attachAndHold(file, { autoclear: true });
        held.push(fd);
        return { file, loop: status, created };
      };
      const data = attach('data', dataSize);
      const metadata = attach('metadata', metadataSize);
      return new LoopbackStorage(loops, data, metadata, held);
    } catch (error) {
      for (const fd of held) loops.release(fd); // autoclear detaches them
      for (const file of made) rmSync(file, { force: true });
      throw error;
    }
  }

  /** Stops holding the loop devices open (do it once the pool holds them, or to give up). */
  release(): void {
    for (const fd of this.#held) this.#loops.release(fd);
    this.#held = [];
  }

  /** Grows the data file to `size` and makes its loop device see it. Then call pool.grow(). */
  growData(size: Bytes | number | bigint): void {
    const target = positiveSize(size, 'dataSize');
    const current = BigInt(statSync(this.data.file).size);
    if (target < current)
      throw new InvalidArgumentError(
        'dataSize',
        `shrinking the data file is not supported (${target} < ${current} bytes)`,
      );
    truncateSync(this.data.file, Number(target));
    this.#loops.refreshCapacity(this.data.loop.path);
  }

  /** Grows the metadata file to `size` and makes its loop device see it. Then call pool.grow(). */
  growMetadata(size: Bytes | number | bigint): void {
    const target = positiveSize(size, 'metadataSize');
    const current = BigInt(statSync(this.metadata.file).size);
    if (target < current)
      throw new InvalidArgumentError(
        'metadataSize',
        `shrinking the metadata file is not supported (${target} < ${current} bytes)`,
      );
    if (target > MAX_METADATA_BYTES)
      throw new InvalidArgumentError(
        'metadataSize',
        `the kernel uses at most ${MAX_METADATA_BYTES} bytes of a metadata device`,
      );
    truncateSync(this.metadata.file, Number(target));
    this.#loops.refreshCapacity(this.metadata.loop.path);
  }

  /** The metadata file's size in bytes. */
  metadataSize(): bigint {
    return BigInt(statSync(this.metadata.file).size);
  }
}

/** dm-thin's limit: 255 index entries of 16384 metadata blocks of 4 KiB (THIN_METADATA_MAX_SECTORS). */
export const MAX_METADATA_BYTES = 255n * 16384n * 4096n;

function positiveSize(value: Bytes | number | bigint, argument: string): Bytes {
  const size = bytes(value, argument);
  if (size < 1024n * 1024n) throw new InvalidArgumentError(argument, `${size} bytes is too small (at least 1 MiB)`);
  if (!isSectorAligned(size)) throw new InvalidArgumentError(argument, 'must be a multiple of 512 bytes');
  return size;
}
