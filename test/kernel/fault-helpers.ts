// Pieces the fault tests share (reliability, metadata full, queue_if_no_space): every driver
// call bounded so a hang fails the test instead of stalling it, durable writes, drivers and
// watchers torn down at the test's end.
import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import type { DriverOptions } from '../../src/driver/options.js';
import type { PoolEvent, PoolWatcher } from '../../src/thin/events.js';
import { withTimeout } from './helpers.js';

/** How long one driver call may take before the test calls it hung. */
export const CALL_MS = 20_000;

export const bounded = <T>(promise: Promise<T>, what: string, ms = CALL_MS): Promise<T> =>
  withTimeout(promise, ms, what);

/** Writes `data` to `path` and fsyncs it (so it is on the pool before a fault). */
export function writeDurably(path: string, data: Buffer): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Resolves with what `promise` rejected with, or undefined when it fulfilled. */
export const settle = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => undefined,
    (e: unknown) => e,
  );

/**
 * A home whose 2 MiB loop metadata file fills before its 4 GiB data file: many layers each
 * written a little (fillMetadata) use up the metadata first; no free-space floor stops them.
 */
export const SMALL_METADATA = {
  baseSize: '64M',
  loopDataSize: '4G',
  loopMetadataSize: '2M',
  minFreeSpacePercent: 0,
} as const satisfies Omit<DriverOptions, 'home'>;

/** Opens a driver whose cleanup() also runs at teardown (cleanup is idempotent). */
export async function open(t: ExecutionContext, options: DriverOptions): Promise<Driver> {
  const driver = await bounded(Driver.init(options), 'init');
  t.teardown(() => bounded(driver.cleanup(), 'cleanup at teardown'));
  return driver;
}

/** Collects a watcher's events; stopped at teardown. */
export function collect(t: ExecutionContext, watcher: PoolWatcher): PoolEvent[] {
  const events: PoolEvent[] = [];
  watcher.on('event', (event: PoolEvent) => events.push(event));
  watcher.on('error', (error) => t.fail(`watcher: ${String(error)}`));
  t.teardown(() => bounded(watcher.stop(), 'watcher.stop'));
  return events;
}

/**
 * Layers on the base, each mounted and written (4 files of 200 KiB, fsynced), until the pool
 * refuses: returns the layers finished, the one that was being written (maybe) and the error.
 */
export async function fillMetadata(
  driver: Driver,
  limit = 2000,
): Promise<{ done: string[]; writing: string | undefined; error: unknown }> {
  const done: string[] = [];
  for (let i = 0; i < limit; i++) {
    const id = `l${i}`;
    try {
      await bounded(driver.create(id, null), `create ${id}`);
    } catch (error) {
      return { done, writing: undefined, error };
    }
    try {
      const root = await bounded(driver.get(id), `get ${id}`);
      for (let k = 0; k < 4; k++) writeDurably(join(root, `f${k}`), randomBytes(200 << 10));
      await bounded(driver.put(id), `put ${id}`);
    } catch (error) {
      return { done, writing: id, error };
    }
    done.push(id);
  }
  throw new Error(`the metadata did not fill in ${limit} layers`);
}
