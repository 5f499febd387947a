// The thin layer against a real kernel: ThinPool on LoopbackStorage, ThinDevice, PoolWatcher.
// Pools live on sparse files in a private directory under os.tmpdir(); thin devices carry ext4
// where a filesystem matters and raw dd writes where only block allocation does. dmsetup,
// losetup, mkfs and mount are independent reference tools (never used by the library itself).
// Every test cleans up in t.teardown (LIFO: unmount, thin devices, watcher, pool, loop hold);
// the last test checks that nothing of ours is left: no dm device, loop device or mount.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DevmapperError, DmSystemError, InvalidArgumentError } from '../../src/errors.js';
import { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import { LoopDevices } from '../../src/ioctl/loop.js';
import { PoolWatcher, type PoolEvent, type PoolEventKind } from '../../src/thin/events.js';
import { LoopbackStorage } from '../../src/thin/loopback.js';
import { ThinPool, type ThinPoolOptions } from '../../src/thin/pool.js';
import {
  parsePoolStatus,
  parseThinStatus,
  type PoolStatus,
  type PoolStatusOk,
  type ThinStatus,
  type ThinStatusOk,
} from '../../src/thin/status.js';
import { ThinDevice } from '../../src/thin/thin-device.js';
import { assertKernelTestBed, dmsetup, run } from './reference-tools.js';

const MiB = 1 << 20;
/** Every dm name this file makes starts with this. */
const PREFIX = `thintest${process.pid}-`;

let root = '';
let dm: DeviceMapper;
let serial = 0;

test.before(() => {
  assertKernelTestBed();
  root = mkdtempSync(join(tmpdir(), 'thin-test-'));
  dm = DeviceMapper.open();
});

test.after.always(() => {
  dm?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// helpers

const unique = (label: string): string => `${PREFIX}${label}-${++serial}`;
const big = (n: bigint): bigint => n; // drops the unit brand for t.is
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function ok(status: PoolStatus): PoolStatusOk {
  if (status.kind !== 'ok') throw new Error(`pool status is ${status.kind}`);
  return status;
}

function thinOk(status: ThinStatus): ThinStatusOk {
  if (status.kind !== 'ok') throw new Error(`thin status is ${status.kind}`);
  return status;
}

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

function mounted(dir: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[1] === dir);
}

/** Loop devices whose backing file name lies under `dir` (losetup as the reference). */
function loopsUnder(dir: string): string[] {
  return run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'])
    .split('\n')
    .filter((line) => line.includes(dir));
}

interface PoolScene {
  dir: string;
  storage: LoopbackStorage;
  pool: ThinPool;
}

/** LoopbackStorage + ThinPool.create, released once the pool holds the loops; torn down after the test. */
function makePool(
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

function activate(t: ExecutionContext, pool: ThinPool, id: number, sizeMiB: number, label = `thin${id}`): ThinDevice {
  const thin = ThinDevice.activate(pool, { name: unique(label), id, size: BigInt(sizeMiB * 2048) });
  t.teardown(() => {
    if (dm.exists(thin.name)) thin.deactivate();
  });
  return thin;
}

function mkfs(device: string): void {
  run('mkfs.ext4', ['-q', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', device]);
}

function mount(t: ExecutionContext, device: string, label: string, options?: string): string {
  const dir = join(root, unique(label));
  mkdirSync(dir);
  run('mount', [...(options ? ['-o', options] : []), device, dir]);
  t.teardown(() => {
    if (mounted(dir)) run('umount', [dir]);
  });
  return dir;
}

function umount(dir: string): void {
  run('umount', [dir]);
}

/** Writes `bytes` of pseudo-random data to a file and fsyncs it. */
function writeFileSynced(path: string, bytes: number, seed = 1): void {
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
function dd(
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

function dropCaches(): void {
  run('sync', []);
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** The pool's status line as dmsetup prints it, parsed by the library's parser. */
function referencePoolStatus(pool: ThinPool): PoolStatusOk {
  const line = dmsetup('status', pool.name).trim();
  const m = /^0 (\d+) thin-pool (.*)$/.exec(line);
  if (!m) throw new Error(`unexpected dmsetup status line ${JSON.stringify(line)}`);
  return ok(parsePoolStatus(m[2]!, { dataBlockSize: pool.dataBlockSize }));
}

/** An InvalidArgumentError naming `argument`, thrown by `fn`. */
function throwsInvalid(t: ExecutionContext, fn: () => unknown, argument: string): void {
  const error = t.throws(fn, { instanceOf: InvalidArgumentError });
  t.is(error?.code, 'ERR_DM_INVALID_ARGUMENT');
  t.is(error?.argument, argument, error?.message);
  t.true(error?.message.startsWith(`${argument}:`), error?.message);
}

function throwsSystem(t: ExecutionContext, fn: () => unknown, code: string): DmSystemError | undefined {
  const error = t.throws(fn, { instanceOf: DmSystemError });
  t.is(error?.code, code, error?.message);
  return error;
}

/** Collects a watcher's events; waitFor resolves with the first event carrying `kind`. */
function watch(
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

// ---------------------------------------------------------------------------------------------
// pools

test.serial(
  'pool on loop files: created, adopted from a fresh handle with the same table, status matches dmsetup',
  (t) => {
    const dataSize = 96 * MiB;
    const { storage, pool } = makePool(t, 'create', {
      dataSize,
      dataBlockSize: 256,
      lowWaterMark: 20,
      features: { skipBlockZeroing: true, errorIfNoSpace: true },
    });
    t.true(storage.data.created);
    t.true(storage.metadata.created);
    t.true(storage.data.loop.autoclear, 'attached with autoclear');
    t.regex(storage.data.loop.path, /^\/dev\/loop\d+$/);
    t.is(loopsUnder(storage.data.file).length, 1, 'losetup sees the data file attached');

    // The kernel echoes the table as the library wrote it.
    const line = dmsetup('table', pool.name).trim();
    t.is(
      line,
      `0 ${dataSize / 512} thin-pool ${pool.table.metadataDev} ${pool.table.dataDev} 256 20 2 skip_block_zeroing error_if_no_space`,
    );
    t.is(big(pool.length), BigInt(dataSize / 512));

    const other = DeviceMapper.open();
    t.teardown(() => other.close());
    const adopted = ThinPool.adopt(other, pool.name, { dataBlockSize: 256 });
    t.deepEqual(adopted.table, pool.table);
    t.is(big(adopted.table.dataBlockSize), 256n);
    t.is(big(adopted.table.lowWaterMark), 20n);
    t.deepEqual(adopted.table.features, {
      skipBlockZeroing: true,
      ignoreDiscard: false,
      noDiscardPassdown: false,
      readOnly: false,
      errorIfNoSpace: true,
    });
    t.is(big(adopted.length), big(pool.length));
    t.is(adopted.devno, pool.devno);

    const mismatch = t.throws(() => ThinPool.adopt(other, pool.name, { dataBlockSize: 128 }), {
      instanceOf: DevmapperError,
    });
    t.is(mismatch?.code, 'ERR_DM_POOL_MISMATCH');

    pool.createThin(0);
    const thin = activate(t, pool, 0, 16);
    const notAPool = t.throws(() => ThinPool.adopt(other, thin.name), { instanceOf: DevmapperError });
    t.is(notAPool?.code, 'ERR_DM_NOT_A_POOL');

    const status = ok(adopted.status({ committed: true }));
    t.is(big(status.transactionId), 0n);
    t.is(big(status.data.totalBlocks), BigInt(dataSize / (256 * 512)));
    t.is(big(status.data.usedBlocks), 0n);
    t.is(big(status.data.freeBlocks), big(status.data.totalBlocks));
    t.is(big(status.data.blockSize!), 256n);
    t.is(big(status.data.totalBytes!), BigInt(dataSize));
    t.is(big(status.metadata.totalBlocks), BigInt((8 * MiB) / 4096));
    t.true(status.metadata.usedBlocks > 0n);
    t.is(status.mode, 'rw');
    t.is(status.noSpace, 'error');
    t.is(status.heldMetadataRoot, null);
    t.is(status.needsCheck, false);
    t.deepEqual(referencePoolStatus(pool), status, 'dmsetup status parses to the same figures');
  },
);

test.serial(
  'ext4 on a thin device: mapped sectors and pool usage grow with writes; deleteThin frees the blocks',
  (t) => {
    const { pool } = makePool(t, 'usage', { dataSize: 128 * MiB });
    pool.createThin(1);
    const thin = activate(t, pool, 1, 64);
    const empty = thinOk(thin.status());
    t.is(big(empty.mappedSectors), 0n);
    t.is(empty.highestMappedSector, null);

    mkfs(thin.path);
    const afterMkfs = thinOk(thin.status());
    t.true(afterMkfs.mappedSectors > 0n, 'mkfs provisioned blocks');

    const mnt = mount(t, thin.path, 'usage-mnt');
    const before = ok(pool.status());
    writeFileSynced(join(mnt, 'a'), 8 * MiB, 1);
    writeFileSynced(join(mnt, 'b'), 4 * MiB, 2);
    run('sync', []);
    // Frozen while the readings are compared: ext4's lazy inode-table init keeps provisioning
    // blocks in the background after mount (mkfs above uses lazy_itable_init).
    run('fsfreeze', ['--freeze', mnt]);
    let after: ReturnType<typeof thinOk>;
    let poolAfter: ReturnType<typeof ok>;
    let ref: RegExpExecArray | null;
    try {
      after = thinOk(thin.status());
      poolAfter = ok(pool.status());
      ref = /^0 \d+ thin (.*)$/.exec(dmsetup('status', thin.name).trim());
    } finally {
      run('fsfreeze', ['--unfreeze', mnt]);
    }
    t.true(
      after.mappedSectors >= afterMkfs.mappedSectors + BigInt((12 * MiB) / 512),
      `${after.mappedSectors} sectors mapped after 12 MiB of files`,
    );
    t.true(after.highestMappedSector !== null && after.highestMappedSector < thin.size);
    t.true(poolAfter.data.usedBlocks >= before.data.usedBlocks + BigInt((12 * MiB) / (128 * 512)));
    // One thin device in the pool: its mapped sectors are exactly the pool's used data blocks.
    t.is(big(poolAfter.data.usedBlocks * pool.dataBlockSize), big(after.mappedSectors));
    t.is(big(poolAfter.data.usedBlocks + poolAfter.data.freeBlocks), big(poolAfter.data.totalBlocks));

    // dmsetup reads the same thin status.
    t.deepEqual(parseThinStatus(ref![1]!), after);

    // delete of an active thin device is refused by the kernel; deactivate first.
    umount(mnt);
    throwsSystem(t, () => pool.deleteThin(1), 'EBUSY');
    t.is(thin.deactivate(), 'removed');
    t.false(dm.exists(thin.name));
    pool.deleteThin(1);
    const freed = ok(pool.status());
    t.is(big(freed.data.usedBlocks), 0n, "the thin device's blocks went back to the pool");
    t.is(big(ok(pool.status({ committed: true })).data.usedBlocks), 0n);
    throwsSystem(t, () => pool.deleteThin(1), 'ENODATA');
  },
);

test.serial(
  're-attach: after the pool goes the loops detach; open finds the files, reopen keeps thin ids and data',
  async (t) => {
    const dir = join(root, unique('reattach'));
    const first = makePool(t, 'reattach', { dir, dataSize: 64 * MiB, features: { skipBlockZeroing: true } });
    const { pool, storage } = first;
    pool.createThin(1);
    pool.createThin(5);
    pool.setTransactionId(0, 42);
    const thin = activate(t, pool, 1, 32);
    mkfs(thin.path);
    const mnt = mount(t, thin.path, 'reattach-mnt');
    writeFileSync(join(mnt, 'kept.txt'), 'survives a re-attach');
    run('sync', []);
    umount(mnt);
    const usedBefore = ok(pool.status({ committed: true })).data.usedBlocks;
    t.is(thin.deactivate(), 'removed');
    pool.deactivate();
    t.false(dm.exists(pool.name));
    const loops = new LoopDevices();
    await until(
      'the loop devices to detach (autoclear)',
      () =>
        loops.findByBackingFile(storage.data.file) === undefined &&
        loops.findByBackingFile(storage.metadata.file) === undefined,
    );
    t.deepEqual(loopsUnder(dir), [], 'losetup lists neither file');

    const storage2 = LoopbackStorage.open({ dir, dataSize: 64 * MiB, metadataSize: 8 * MiB });
    t.teardown(() => storage2.release());
    t.false(storage2.data.created);
    t.false(storage2.metadata.created);
    t.is(storage2.data.file, storage.data.file);
    const pool2 = ThinPool.reopen(dm, unique('reattach-pool'), {
      metadataDevice: storage2.metadata.loop.path,
      dataDevice: storage2.data.loop.path,
      features: { skipBlockZeroing: true },
    });
    t.teardown(() => {
      if (dm.exists(pool2.name)) pool2.deactivate();
    });
    storage2.release();

    const status = ok(pool2.status());
    t.is(big(status.transactionId), 42n, 'the transaction id is in the metadata');
    t.is(big(status.data.usedBlocks), big(usedBefore));
    const exists = throwsSystem(t, () => pool2.createThin(1), 'EEXIST');
    t.true(exists?.message.includes('create_thin 1'), exists?.message);
    throwsSystem(t, () => pool2.createThin(5), 'EEXIST');
    pool2.createThin(2); // a fresh id is still free

    const again = activate(t, pool2, 1, 32, 'reattach-thin');
    const mnt2 = mount(t, again.path, 'reattach-mnt2');
    t.is(readFileSync(join(mnt2, 'kept.txt'), 'utf8'), 'survives a re-attach');

    // A second open while the pool holds the loops reuses them rather than attaching again.
    const storage3 = LoopbackStorage.open({ dir, dataSize: 64 * MiB, metadataSize: 8 * MiB });
    storage3.release();
    t.is(storage3.data.loop.path, storage2.data.loop.path);
    t.is(storage3.metadata.loop.path, storage2.metadata.loop.path);
    t.is(loopsUnder(dir).length, 2);
  },
);

test.serial(
  'snapshot of an active, mounted origin: content as of the snapshot, no leaks either way, origin resumed even on failure',
  (t) => {
    const { pool } = makePool(t, 'snap', { dataSize: 128 * MiB });
    pool.createThin(1);
    const origin = activate(t, pool, 1, 48, 'origin');
    mkfs(origin.path);
    const omnt = mount(t, origin.path, 'origin-mnt');
    writeFileSync(join(omnt, 'hello'), 'before the snapshot');
    writeFileSynced(join(omnt, 'bulk'), 2 * MiB, 3);
    run('sync', []);

    pool.createSnapshot(2, 1, origin.name);
    t.false(origin.info().suspended, 'the origin is resumed');

    writeFileSync(join(omnt, 'hello'), 'origin after the snapshot');
    writeFileSync(join(omnt, 'origin-only'), 'x');
    const snap = activate(t, pool, 2, 48, 'snap');
    const smnt = mount(t, snap.path, 'snap-mnt'); // same ext4 UUID as the origin: ext4 allows it
    t.is(readFileSync(join(smnt, 'hello'), 'utf8'), 'before the snapshot');
    t.false(existsSync(join(smnt, 'origin-only')));
    writeFileSync(join(smnt, 'hello'), 'snapshot side');
    writeFileSync(join(smnt, 'snap-only'), 'y');

    dropCaches(); // what follows is read back from the thin devices, not the page cache
    t.is(readFileSync(join(omnt, 'hello'), 'utf8'), 'origin after the snapshot');
    t.false(existsSync(join(omnt, 'snap-only')));
    t.true(existsSync(join(omnt, 'origin-only')));
    t.is(readFileSync(join(smnt, 'hello'), 'utf8'), 'snapshot side');
    t.false(existsSync(join(smnt, 'origin-only')));
    t.is(readFileSync(join(smnt, 'bulk')).length, 2 * MiB);

    // create_snap with an id in use: the kernel refuses it, the origin is resumed all the same.
    const error = throwsSystem(t, () => pool.createSnapshot(2, 1, origin.name), 'EEXIST');
    t.is(error?.operation, 'DM_TARGET_MSG');
    t.true(error?.message.includes('create_snap 2 1'), error?.message);
    const info = origin.info();
    t.false(info.suspended, 'the origin is resumed after the failed create_snap');
    t.true(info.active);
    // A suspended origin would block this write; it must complete promptly.
    const probe = dd(['if=/dev/zero', `of=${join(omnt, 'probe')}`, 'bs=4k', 'count=4', 'conv=fsync'], 15_000);
    t.is(probe.status, 0, probe.stderr);
    t.false(probe.timedOut);

    // A snapshot of a missing origin is refused too (ENODATA), with no device suspended.
    throwsSystem(t, () => pool.createSnapshot(3, 99), 'ENODATA');
  },
);

test.serial('transaction id compare-and-swap: set from the current value, refused (EINVAL) when stale', (t) => {
  const { pool } = makePool(t, 'txid', { dataSize: 16 * MiB });
  t.is(big(ok(pool.status()).transactionId), 0n);
  pool.setTransactionId(0, 1);
  t.is(big(ok(pool.status()).transactionId), 1n);
  const stale = throwsSystem(t, () => pool.setTransactionId(0, 2), 'EINVAL');
  t.true(stale?.message.includes('set_transaction_id 0 2'), stale?.message);
  t.is(big(ok(pool.status()).transactionId), 1n);
  t.is(big(referencePoolStatus(pool).transactionId), 1n, 'dmsetup agrees');
  pool.setTransactionId(1n, 2n ** 63n);
  t.is(big(ok(pool.status()).transactionId), 2n ** 63n, 'transaction ids are u64');
});

test.serial(
  'metadata snapshot: reserve holds a root, release drops it; the kernel refuses a second reserve and a spare release',
  (t) => {
    const { pool } = makePool(t, 'metasnap', { dataSize: 16 * MiB });
    t.is(ok(pool.status()).heldMetadataRoot, null);
    pool.reserveMetadataSnap();
    const held = ok(pool.status()).heldMetadataRoot;
    t.not(held, null);
    t.is(referencePoolStatus(pool).heldMetadataRoot, held);
    throwsSystem(t, () => pool.reserveMetadataSnap(), 'EBUSY');
    pool.releaseMetadataSnap();
    t.is(ok(pool.status()).heldMetadataRoot, null);
    throwsSystem(t, () => pool.releaseMetadataSnap(), 'EINVAL');
    pool.reserveMetadataSnap(); // the round trip repeats
    t.not(ok(pool.status()).heldMetadataRoot, null);
    pool.releaseMetadataSnap();
    t.is(ok(pool.status()).heldMetadataRoot, null);
  },
);

// ---------------------------------------------------------------------------------------------
// events

test.serial('events: writing past the low-water mark raises a low-water-mark event (async iteration)', async (t) => {
  // 32 MiB of 64 KiB blocks = 512 blocks; the event fires once free blocks fall to 256.
  const { pool } = makePool(t, 'lowwater', { dataSize: 32 * MiB, lowWaterMark: 256 });
  pool.createThin(1);
  const thin = activate(t, pool, 1, 32);
  const watcher = new PoolWatcher(pool, { pollIntervalMs: 50 });
  t.teardown(() => watcher.stop());
  const seen: PoolEvent[] = [];
  const iterated = (async () => {
    for await (const event of watcher) {
      seen.push(event);
      if (event.kinds.includes('low-water-mark')) return event;
    }
    return undefined;
  })();

  // 4 MiB (64 blocks): still far above the mark.
  const small = dd(['if=/dev/zero', `of=${thin.path}`, 'bs=1M', 'count=4', 'conv=fsync']);
  t.is(small.status, 0, small.stderr);
  await sleep(300);
  t.false(
    seen.some((e) => e.kinds.includes('low-water-mark')),
    'no low-water event above the mark',
  );

  // 20 MiB more (384 blocks in all): 128 free, below the mark.
  const big20 = dd(['if=/dev/zero', `of=${thin.path}`, 'bs=1M', 'count=20', 'seek=4', 'conv=fsync']);
  t.is(big20.status, 0, big20.stderr);
  const event = await Promise.race([iterated, sleep(5000).then(() => undefined)]);
  await watcher.stop();
  t.truthy(event, `a low-water-mark event (seen: ${JSON.stringify(seen.map((e) => e.kinds))})`);
  const status = ok(event!.status);
  t.true(status.data.freeBlocks <= 256n, `${status.data.freeBlocks} free blocks`);
  t.is(status.mode, 'rw');
  t.true(event!.eventNr > 0);
  t.is(await iterated, event, 'the iteration ended with the event');
  // The iterator finishes once the watcher is stopped.
  const after: PoolEvent[] = [];
  for await (const e of watcher) after.push(e);
  t.deepEqual(after, []);
});

test.serial(
  'events: a full pool with error_if_no_space fails writes promptly, reports out_of_data_space, and growing brings it back to rw',
  async (t) => {
    // 16 MiB of data (256 blocks) under a 64 MiB thin device.
    const { pool, storage } = makePool(t, 'full', { dataSize: 16 * MiB, features: { errorIfNoSpace: true } });
    pool.createThin(1);
    const thin = activate(t, pool, 1, 64);
    const { watcher, events, waitFor } = watch(t, pool);

    const full = dd(['if=/dev/zero', `of=${thin.path}`, 'bs=1M', 'count=32', 'conv=fsync'], 30_000);
    t.false(full.timedOut, `dd did not hang (${full.ms} ms)`);
    t.not(full.status, 0, 'the write failed');
    t.regex(full.stderr, /Input\/output error|No space left on device/);
    t.log(`dd on a full pool failed after ${full.ms} ms: ${full.stderr.split('\n')[0]}`);

    const status = ok(pool.status());
    t.is(status.mode, 'out_of_data_space');
    t.is(status.noSpace, 'error');
    t.is(big(status.data.freeBlocks), 0n);
    t.is(big(status.data.usedBlocks), 256n);
    const outOfSpace = await waitFor('out-of-data-space');
    t.is(ok(outOfSpace.status).mode, 'out_of_data_space');
    t.is(referencePoolStatus(pool).mode, 'out_of_data_space', 'dmsetup agrees');

    storage.growData(64 * MiB);
    t.is(big(pool.grow()), BigInt((64 * MiB) / 512));
    t.is(big(pool.length), BigInt((64 * MiB) / 512));
    const grown = ok(pool.status());
    t.is(grown.mode, 'rw');
    t.is(big(grown.data.totalBlocks), 1024n);
    const resumed = await waitFor('resumed-rw');
    t.is(ok(resumed.status).mode, 'rw');

    const retry = dd(['if=/dev/zero', `of=${thin.path}`, 'bs=1M', 'count=32', 'conv=fsync'], 30_000);
    t.is(retry.status, 0, retry.stderr);
    t.is(big(ok(pool.status()).data.usedBlocks), 512n);
    await watcher.stop();
    t.log(`events: ${JSON.stringify(events.map((e) => e.kinds))}`);
  },
);

// ---------------------------------------------------------------------------------------------
// bad input and rollback

test.serial('bad input is rejected before anything is touched', (t) => {
  // LoopbackStorage.open: sizes below 1 MiB; no directory, no file, no loop device.
  const tinyDir = join(root, unique('tiny'));
  throwsInvalid(
    t,
    () => LoopbackStorage.open({ dir: tinyDir, dataSize: 512 * 1024, metadataSize: 8 * MiB }),
    'dataSize',
  );
  throwsInvalid(
    t,
    () => LoopbackStorage.open({ dir: tinyDir, dataSize: 8 * MiB, metadataSize: MiB - 512 }),
    'metadataSize',
  );
  t.false(existsSync(tinyDir));
  t.deepEqual(loopsUnder(tinyDir), []);

  // ThinPool.create on real loop devices with a marker in the metadata: bad options leave it.
  const dir = join(root, unique('badpool'));
  const storage = LoopbackStorage.open({ dir, dataSize: 8 * MiB, metadataSize: 4 * MiB });
  t.teardown(() => storage.release());
  const marker = Buffer.from('not zeroed by a rejected create');
  const fd = openSync(storage.metadata.loop.path, 'r+');
  writeSync(fd, marker, 0, marker.length, 0);
  fsyncSync(fd);
  closeSync(fd);
  const name = unique('badpool');
  const devices = { metadataDevice: storage.metadata.loop.path, dataDevice: storage.data.loop.path };
  throwsInvalid(t, () => ThinPool.create(dm, name, { ...devices, dataBlockSize: 100 }), 'dataBlockSize');
  throwsInvalid(t, () => ThinPool.create(dm, name, { ...devices, dataBlockSize: 64 }), 'dataBlockSize');
  throwsInvalid(t, () => ThinPool.create(dm, name, { ...devices, lowWaterMark: -1 }), 'lowWaterMark');
  throwsInvalid(t, () => ThinPool.create(dm, name, { ...devices, lowWaterMark: 1.5 }), 'lowWaterMark');
  throwsInvalid(
    t,
    () => ThinPool.create(dm, name, { ...devices, features: { frobnicate: true } as never }),
    'features.frobnicate',
  );
  t.false(dm.exists(name), 'no dm device was created');
  const head = Buffer.alloc(marker.length);
  const rfd = openSync(storage.metadata.loop.path, 'r');
  readSync(rfd, head, 0, head.length, 0);
  closeSync(rfd);
  t.deepEqual(head, marker, 'the metadata device was not zeroed');
  storage.release();

  // createThin and ThinDevice.activate on a working pool.
  const { pool } = makePool(t, 'badthin', { dataSize: 16 * MiB });
  const before = ok(pool.status({ committed: true }));
  throwsInvalid(t, () => pool.createThin(-1), 'id');
  throwsInvalid(t, () => pool.createThin(2 ** 24), 'id');
  throwsInvalid(t, () => pool.createThin(1.5), 'id');
  throwsInvalid(t, () => pool.createSnapshot(1, -1), 'originId');
  t.deepEqual(ok(pool.status({ committed: true })), before, 'the pool metadata is unchanged');
  pool.createThin(0);
  pool.createThin(2 ** 24 - 1); // the largest id is fine
  const thinName = unique('badthin');
  throwsInvalid(t, () => ThinDevice.activate(pool, { name: thinName, id: 0, size: 0 }), 'size');
  throwsInvalid(t, () => ThinDevice.activate(pool, { name: thinName, id: 0, size: -8 }), 'size');
  throwsInvalid(t, () => ThinDevice.activate(pool, { name: thinName, id: -1, size: 8 }), 'id');
  t.false(dm.exists(thinName), 'no thin dm device was created');
  t.false(dmsetup('ls').includes(thinName));
});

test.serial(
  'create never wipes metadata in use: devices a live pool holds (EBUSY at open), a taken name (EBUSY at create)',
  async (t) => {
    const head = (file: string): Buffer => {
      const b = Buffer.alloc(512);
      const fd = openSync(file, 'r');
      readSync(fd, b, 0, b.length, 0);
      closeSync(fd);
      return b;
    };
    const live = makePool(t, 'wipe-live', { dataSize: 16 * MiB });
    live.pool.createThin(1);
    live.pool.status({ committed: true }); // the superblock is on disk
    const superblock = head(live.storage.metadata.file); // the backing file: what the loop device wrote
    t.false(superblock.equals(Buffer.alloc(512)), 'a committed pool has a superblock');

    // Same devices, another name: the pool's exclusive claim makes the zeroing open fail.
    const other = unique('wipe-other');
    const held = throwsSystem(
      t,
      () =>
        ThinPool.create(dm, other, {
          metadataDevice: live.storage.metadata.loop.path,
          dataDevice: live.storage.data.loop.path,
        }),
      'EBUSY',
    );
    t.is(held?.syscall, 'open');
    t.false(dm.exists(other), 'the new dm device was removed again');
    t.deepEqual(head(live.storage.metadata.file), superblock, "the live pool's superblock is untouched");

    // An inactive pool's devices under a name that is taken: refused before the metadata is zeroed.
    const dir = join(root, unique('wipe-idle'));
    const idle = makePool(t, 'wipe-idle', { dir, dataSize: 16 * MiB });
    idle.pool.createThin(3);
    idle.pool.deactivate();
    await until("the idle pool's loops to detach", () => loopsUnder(dir).length === 0);
    const storage = LoopbackStorage.open({ dir, dataSize: 16 * MiB, metadataSize: 8 * MiB });
    t.teardown(() => storage.release());
    const devices = { metadataDevice: storage.metadata.loop.path, dataDevice: storage.data.loop.path };
    const taken = throwsSystem(t, () => ThinPool.create(dm, live.pool.name, devices), 'EBUSY');
    t.is(taken?.operation, 'DM_DEV_CREATE');
    const reopened = ThinPool.reopen(dm, unique('wipe-reopen'), devices);
    t.teardown(() => {
      if (dm.exists(reopened.name)) reopened.deactivate();
    });
    storage.release();
    throwsSystem(t, () => reopened.createThin(3), 'EEXIST'); // the metadata kept thin id 3
  },
);

test.serial('rollback: activating a thin id the pool lacks fails at table load and leaves no dm device', (t) => {
  const { pool } = makePool(t, 'rollback', { dataSize: 16 * MiB });
  pool.createThin(1);
  const name = unique('missing');
  const error = throwsSystem(t, () => ThinDevice.activate(pool, { name, id: 7, size: 2048 }), 'ENODATA');
  t.is(error?.operation, 'DM_TABLE_LOAD');
  t.false(dm.exists(name), 'the half-made device was removed');
  t.false(dmsetup('ls').includes(name));
  // The name is free again, and the existing id activates.
  const thin = ThinDevice.activate(pool, { name, id: 1, size: 2048 });
  t.teardown(() => {
    if (dm.exists(name)) thin.deactivate();
  });
  t.true(thin.info().active);
});

test.serial('deactivate a mounted thin device: EBUSY after retries; deferred removal happens at umount', async (t) => {
  const { pool } = makePool(t, 'busy', { dataSize: 64 * MiB });
  pool.createThin(1);
  const thin = activate(t, pool, 1, 32);
  mkfs(thin.path);
  const mnt = mount(t, thin.path, 'busy-mnt');

  const started = Date.now();
  const busy = throwsSystem(t, () => thin.deactivate(), 'EBUSY');
  t.is(busy?.operation, 'DM_DEV_REMOVE');
  t.true(Date.now() - started >= 200, 'it retried before giving up');
  t.true(dm.exists(thin.name));
  t.true(mounted(mnt));
  t.false(thin.info().suspended);

  t.is(thin.deactivate({ deferred: true, retries: 1 }), 'deferred');
  const info = thin.info();
  t.true(info.deferredRemove, 'marked for deferred removal');
  t.true(info.openCount > 0);
  t.true(dm.exists(thin.name), 'still there while mounted');
  umount(mnt);
  await until('the deferred removal', () => !dm.exists(thin.name));
  t.false(dmsetup('ls').includes(thin.name));
  pool.deleteThin(1); // the pool lets it go
});

// ---------------------------------------------------------------------------------------------

test.serial('nothing is left behind: no dm device, loop device or mount of ours', async (t) => {
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
});
