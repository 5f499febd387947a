// Pools for the guest-side measurements: a bare pool on two loop devices (latency), and the
// preparation of a Driver home so its pool starts on zero-filled metadata (lifecycle, scale).
// A fresh pool answers its first few thousand messages 2-3x slower while the metadata allocator
// first touches its blocks; the metadata file is written with zeros and the pool is warmed up
// with create_thin/delete pairs before anything is measured.
import { mkdirSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceMapper } from '../src/ioctl/device-mapper.js';
import { LoopDevices } from '../src/ioctl/loop.js';
import { ThinPool } from '../src/thin/pool.js';
import { parsePoolStatus } from '../src/thin/status.js';
import { progress, sparseFile, zeroFile } from './common.js';

export interface BarePool {
  pool: ThinPool;
  name: string;
  /** `major:minor` of the pool device, as thin tables name it. */
  dev: string;
  /** Removes the pool (its loop devices detach with it: autoclear). */
  remove(): void;
}

/** A thin pool on a zero-filled metadata file and a sparse data file under `dir`. */
export function createBarePool(
  dm: DeviceMapper,
  dir: string,
  name: string,
  sizes: { metadata: number; data: number },
): BarePool {
  mkdirSync(dir, { recursive: true });
  const metadataFile = join(dir, 'metadata');
  const dataFile = join(dir, 'data');
  zeroFile(metadataFile, sizes.metadata);
  sparseFile(dataFile, sizes.data);
  const loops = new LoopDevices();
  const metadata = loops.attachAndHold(metadataFile, { autoclear: true });
  let data: ReturnType<LoopDevices['attachAndHold']> | undefined;
  try {
    data = loops.attachAndHold(dataFile, { autoclear: true });
    const pool = ThinPool.create(dm, name, {
      metadataDevice: metadata.status.path,
      dataDevice: data.status.path,
      dataBlockSize: 128,
      features: { skipBlockZeroing: true },
    });
    const { dev } = dm.info(name);
    return { pool, name, dev: `${dev.major}:${dev.minor}`, remove: () => pool.deactivate() };
  } finally {
    loops.release(metadata.fd); // the pool holds the loop devices now
    if (data) loops.release(data.fd);
  }
}

/**
 * Writes <home>/devicemapper/metadata before the Driver first opens the home: `bytes` long, its
 * first `zeroed` bytes (all of it by default) written with zeros, the rest sparse.
 */
export function prefillDriverMetadata(home: string, bytes: number, zeroed = bytes): void {
  const dir = join(home, 'devicemapper');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'metadata');
  zeroFile(file, Math.min(bytes, zeroed));
  if (zeroed < bytes) truncateSync(file, bytes);
}

/** `pairs` create_thin + delete messages on a thin id nobody uses. */
export function warmPool(dm: DeviceMapper, poolName: string, pairs: number, thinId = 0xfffff0): void {
  if (pairs <= 0) return;
  const t0 = Date.now();
  const create = `create_thin ${thinId}`;
  const remove = `delete ${thinId}`;
  for (let i = 0; i < pairs; i++) {
    dm.message(poolName, 0, create);
    dm.message(poolName, 0, remove);
  }
  progress(`warmed ${poolName} with ${pairs} create_thin/delete pairs in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

/** The pool's transaction id, read without a metadata commit. */
export function transactionId(dm: DeviceMapper, poolName: string): bigint {
  const [target] = dm.status(poolName, { noFlush: true });
  const status = parsePoolStatus(target?.params ?? 'Fail');
  if (status.kind !== 'ok') throw new Error(`pool ${poolName} reports ${status.kind}`);
  return status.transactionId;
}
