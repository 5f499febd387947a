// The thin layer against a real kernel, refusals and rollback: bad input rejected before anything
// is touched, create never wipes metadata in use, a thin id the pool lacks leaves no dm device.
// Pools live on sparse files in the file's private directory (thin-helpers.ts); dmsetup and
// losetup are independent reference tools. Every test cleans up in t.teardown; an after.always
// hook checks that nothing of ours is left: no dm device, loop device or mount.
import test from 'ava';
import { closeSync, existsSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LoopbackStorage } from '../../src/thin/loopback.js';
import { ThinPool } from '../../src/thin/pool.js';
import { ThinDevice } from '../../src/thin/thin-device.js';
import { dmsetup } from './reference-tools.js';
import {
  MiB,
  dm,
  loopsUnder,
  makePool,
  ok,
  root,
  throwsInvalid,
  throwsSystem,
  unique,
  until,
  useThinBed,
} from './thin-helpers.js';

useThinBed({ leakCheckHook: true });

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
