// The thin layer against a real kernel, thin devices: ext4 on a ThinDevice (mapped sectors and
// pool usage follow the writes, deleteThin frees them), a snapshot of an active mounted origin,
// deactivating a mounted device (EBUSY, then deferred removal). Pools live on sparse files in
// the file's private directory (thin-helpers.ts); dmsetup, mkfs and mount are independent
// reference tools. Every test cleans up in t.teardown; an after.always hook checks that nothing
// of ours is left: no dm device, loop device or mount.
import test from 'ava';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseThinStatus } from '../../src/thin/status.js';
import { dmsetup, run } from './reference-tools.js';
import {
  MiB,
  activate,
  big,
  dd,
  dm,
  dropCaches,
  makePool,
  mkfs,
  mount,
  mounted,
  ok,
  thinOk,
  throwsSystem,
  umount,
  until,
  useThinBed,
  writeFileSynced,
} from './thin-helpers.js';

useThinBed({ leakCheckHook: true });

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

    // An origin device named that is not active: the snapshot is made without a suspend, and
    // the origin that is active is left alone.
    pool.createSnapshot(3, 1, `${origin.name}-inactive`);
    throwsSystem(t, () => pool.createSnapshot(3, 1), 'EEXIST'); // thin id 3 exists now
    t.false(origin.info().suspended);
    pool.deleteThin(3);
  },
);

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
