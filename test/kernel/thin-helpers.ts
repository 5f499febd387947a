// Shared pieces of the thin-layer kernel tests (thin-*.test.ts): each file's test bed (the kernel
// check, a private directory under os.tmpdir(), one DeviceMapper handle, set up in a before hook
// and undone in an after.always hook), pools on LoopbackStorage and thin devices torn down by
// the test's teardown (LIFO: unmount, thin devices, watcher, pool, loop hold), mkfs/mount/dd,
// dmsetup's view of a pool, and the end-of-file check that nothing of ours is left.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DmSystemError, InvalidArgumentError } from '../../src/errors.js';
import { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import { PoolWatcher, type PoolEvent, type PoolEventKind } from '../../src/thin/events.js';
import { LoopbackStorage } from '../../src/thin/loopback.js';
import { ThinPool, type ThinPoolOptions } from '../../src/thin/pool.js';
import {
  parsePoolStatus,
  type PoolStatus,
  type PoolStatusOk,
  type ThinStatus,
  type ThinStatusOk,
} from '../../src/thin/status.js';
import { ThinDevice } from '../../src/thin/thin-device.js';
import { sleep } from './helpers.js';
import { assertKernelTestBed, dmsetup, run } from './reference-tools.js';

export const MiB = 1 << 20;
/** Every dm name a thin test file makes starts with this. */
const PREFIX = `thintest${process.pid}-`;

/** The file's private directory (pools, mount points) and its DeviceMapper handle, set by useThinBed's before hook. */
export let root = '';
export let dm: DeviceMapper;
let serial = 0;

/**
 * Registers the file's test bed: a before hook (the kernel check, `root`, `dm`) and an
 * after.always hook that closes `dm` and removes `root`. With `leakCheckHook`, the end-of-file
 * check (assertNothingOfOursLeft) runs as an after.always hook first, for the files that do
 * not end with it as a test (thin-pool.test.ts does).
 */
export function useThinBed(options: { leakCheckHook: boolean }): void {
  test.before(() => {
    assertKernelTestBed();
    root = mkdtempSync(join(tmpdir(), 'thin-test-'));
    dm = DeviceMapper.open();
  });
  if (options.leakCheckHook) {
    test.serial.after.always('nothing is left behind: no dm device, loop device or mount of ours', (t) =>
      assertNothingOfOursLeft(t),
    );
  }
  test.serial.after.always(() => {
    dm?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });
}

/** The end-of-file check: no dm device, loop device or mount of this file's is left. */
export async function assertNothingOfOursLeft(t: ExecutionContext): Promise<void> {
  await until('our loop devices to detach', () => loopsUnder(root).length === 0 || undefined, 3000).catch(
    () => undefined,
  );
  const names = dmsetup('ls')
    .split('\n')
    .filter((line) => line.startsWith(PREFIX));
  t.deepEqual(names, [], 'dmsetup ls');
  t.deepEqual(
    dm.list().filter((d) => d.name.startsWith(PREFIX)),
    [],
  );
  t.deepEqual(loopsUnder(root), [], 'losetup -l');
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter((line) => line.includes(root));
  t.deepEqual(mounts, [], '/proc/self/mounts');
  t.true(readdirSync(root).length > 0, 'the tests did use the directory');
}

export const unique = (label: string): string => `${PREFIX}${label}-${++serial}`;
export const big = (n: bigint): bigint => n; // drops the unit brand for t.is

export function ok(status: PoolStatus): PoolStatusOk {
  if (status.kind !== 'ok') throw new Error(`pool status is ${status.kind}`);
  return status;
}

export function thinOk(status: ThinStatus): ThinStatusOk {
  if (status.kind !== 'ok') throw new Error(`thin status is ${status.kind}`);
  return status;
}

export async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

export function mounted(dir: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[1] === dir);
}

/** Loop devices whose backing file name lies under `dir` (losetup as the reference). */
export function loopsUnder(dir: string): string[] {
  return run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'])
    .split('\n')
    .filter((line) => line.includes(dir));
}

export interface PoolScene {
  dir: string;
  storage: LoopbackStorage;
  pool: ThinPool;
}

/** LoopbackStorage + ThinPool.create, released once the pool holds the loops; torn down after the test. */
export function makePool(
  t: ExecutionContext,
  label: string,
  options: { dataSize: number; metadataSize?: number; dir?: string } & ThinPoolOptions,
): PoolScene {
  const { dataSize, metadataSize = 8 * MiB, dir = join(root, unique(label)), ...poolOptions } = options;
  const storage = LoopbackStorage.open({ dir, dataSize, metadataSize });
  t.teardown(() => storage.release());
  const pool = ThinPool.create(dm, unique(`${label}-pool`), {
    metadataDevice: storage.metadata.loop.path,
    dataDevice: storage.data.loop.path,
    ...poolOptions,
  });
  t.teardown(() => {
    if (dm.exists(pool.name)) pool.deactivate();
  });
  storage.release();
  return { dir, storage, pool };
}

export function activate(
  t: ExecutionContext,
  pool: ThinPool,
  id: number,
  sizeMiB: number,
  label = `thin${id}`,
): ThinDevice {
  const thin = ThinDevice.activate(pool, { name: unique(label), id, size: BigInt(sizeMiB * 2048) });
  t.teardown(() => {
    if (dm.exists(thin.name)) thin.deactivate();
  });
  return thin;
}

export function mkfs(device: string): void {
  run('mkfs.ext4', ['-q', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', device]);
}

export function mount(t: ExecutionContext, device: string, label: string, options?: string): string {
  const dir = join(root, unique(label));
  mkdirSync(dir);
  run('mount', [...(options ? ['-o', options] : []), device, dir]);
  t.teardown(() => {
    if (mounted(dir)) run('umount', [dir]);
  });
  return dir;
}

export function umount(dir: string): void {
  run('umount', [dir]);
}

/** Writes `bytes` of pseudo-random data to a file and fsyncs it. */
export function writeFileSynced(path: string, bytes: number, seed = 1): void {
  const chunk = Buffer.alloc(MiB);
  let x = seed * 2654435761;
  for (let i = 0; i < chunk.length; i += 4) {
    x = (x * 1103515245 + 12345) >>> 0;
    chunk.writeUInt32LE(x, i);
  }
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < bytes; done += chunk.length)
      writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** dd to a device or file, bounded by a timeout: a hang is a failure, not a stuck test. */
export function dd(
  args: string[],
  timeoutMs = 30_000,
): { status: number | null; stderr: string; ms: number; timedOut: boolean } {
  const started = Date.now();
  const r = spawnSync('dd', args, { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' });
  return {
    status: r.status,
    stderr: r.stderr ?? '',
    ms: Date.now() - started,
    timedOut: r.error !== undefined || r.signal !== null,
  };
}

export function dropCaches(): void {
  run('sync', []);
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** The pool's status line as dmsetup prints it, parsed by the library's parser. */
export function referencePoolStatus(pool: ThinPool): PoolStatusOk {
  const line = dmsetup('status', pool.name).trim();
  const m = /^0 (\d+) thin-pool (.*)$/.exec(line);
  if (!m) throw new Error(`unexpected dmsetup status line ${JSON.stringify(line)}`);
  return ok(parsePoolStatus(m[2]!, { dataBlockSize: pool.dataBlockSize }));
}

/** An InvalidArgumentError naming `argument`, thrown by `fn`. */
export function throwsInvalid(t: ExecutionContext, fn: () => unknown, argument: string): void {
  const error = t.throws(fn, { instanceOf: InvalidArgumentError });
  t.is(error?.code, 'ERR_DM_INVALID_ARGUMENT');
  t.is(error?.argument, argument, error?.message);
  t.true(error?.message.startsWith(`${argument}:`), error?.message);
}

export function throwsSystem(t: ExecutionContext, fn: () => unknown, code: string): DmSystemError | undefined {
  const error = t.throws(fn, { instanceOf: DmSystemError });
  t.is(error?.code, code, error?.message);
  return error;
}

/** Collects a watcher's events; waitFor resolves with the first event carrying `kind`. */
export function watch(
  t: ExecutionContext,
  pool: ThinPool,
): { watcher: PoolWatcher; events: PoolEvent[]; waitFor: (kind: PoolEventKind, ms?: number) => Promise<PoolEvent> } {
  const watcher = new PoolWatcher(pool, { pollIntervalMs: 50 });
  t.teardown(() => watcher.stop());
  const events: PoolEvent[] = [];
  const errors: unknown[] = [];
  watcher.on('event', (event: PoolEvent) => events.push(event));
  watcher.on('error', (error: unknown) => errors.push(error));
  const waitFor = (kind: PoolEventKind, ms = 5000): Promise<PoolEvent> =>
    until(
      `a '${kind}' event (seen: ${JSON.stringify(events.map((e) => e.kinds))}, errors: ${errors.map(String).join('; ')})`,
      () => events.find((e) => e.kinds.includes(kind)),
      ms,
    );
  return { watcher, events, waitFor };
}
