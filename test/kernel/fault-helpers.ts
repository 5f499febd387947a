// Pieces the fault tests share (reliability, metadata full, queue_if_no_space): every driver
// call bounded so a hang fails the test instead of stalling it, durable writes, drivers and
// watchers torn down at the test's end.
import type { ExecutionContext } from 'ava';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
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
